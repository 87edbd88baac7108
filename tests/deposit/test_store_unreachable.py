"""An `oci://` deposit store that does not answer is named as the deposit store, as the
README's error table says ("Cannot open the deposit store …", exit 3), before any build."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_an_unreachable_registry_store_is_named_as_the_deposit_store(
    escrow_home: Path, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")

    r = run_cli(
        ["build", str(ctx), "-t", "escrow-test/never:1", "--deposit-store", "oci://127.0.0.1:1/d"]
    )

    assert r.exit_code == 3
    assert r.stderr.startswith(
        "escrow: error: Cannot open the deposit store oci://127.0.0.1:1/d: the registry "
        "127.0.0.1:1 is not reachable"
    ), r.stderr
    assert run_cli(["log", "--json"]).json()["entries"][-1]["kind"] == "key-event"  # nothing built


def test_every_deposit_command_names_an_unreachable_registry_store(escrow_home: Path) -> None:
    store = "oci://127.0.0.1:1/escrow/dep"
    for args in (["deposit", "check", "0"], ["deposit", "stats"], ["gc"], ["rebuild", "0"]):
        r = run_cli([*args, "--deposit-store", store])
        assert r.exit_code == 3, (args, r.stderr)
        assert r.stderr.startswith(f"escrow: error: Cannot open the deposit store {store}: "), (
            args,
            r.stderr,
        )
