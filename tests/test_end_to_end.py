"""The whole path on the real engine: phoenix build → signed manifest → ledger → verify → pack."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

EXAMPLE_APP = Path(__file__).resolve().parent.parent / "examples" / "app"

pytestmark = pytest.mark.docker


@pytest.fixture
def app_build(escrow_home: Path, cli: Any, base_image: str, tmp_path: Path) -> dict[str, Any]:
    ctx = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, ctx)
    r = cli(
        [
            "build",
            str(ctx),
            "-t",
            "escrow-test/e2e-app:latest",
            "--project",
            "e2e",
            "--build-arg",
            "BASE=escrow-test/base:latest",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    result: dict[str, Any] = r.json()
    return result


def _inspect(ref: str) -> dict[str, Any]:
    import json

    out = subprocess.run(
        ["docker", "image", "inspect", ref], check=True, capture_output=True, text=True
    )
    data: dict[str, Any] = json.loads(out.stdout)[0]
    return data


def test_build_records_the_engines_image_id_and_diff_ids(
    app_build: dict[str, Any], cli: Any
) -> None:
    inspected = _inspect("escrow-test/e2e-app:latest")
    assert app_build["image_id"] == inspected["Id"]
    shown = cli(["show", str(app_build["index"]), "--json"])
    assert shown.exit_code == 0, shown.stderr
    predicate = shown.json()["statement"]["predicate"]
    assert predicate["image"]["id"] == inspected["Id"]
    assert [layer["diffId"] for layer in predicate["layers"]] == inspected["RootFS"]["Layers"]
    assert predicate["build"]["status"] == "succeeded"
    assert predicate["build"]["project"] == "e2e"
    assert shown.json()["leaf_hash"] == app_build["leaf_hash"]


def test_verify_passes_by_index_and_by_image(app_build: dict[str, Any], cli: Any) -> None:
    by_index = cli(["verify", str(app_build["index"]), "--json"])
    assert by_index.exit_code == 0, by_index.stdout + by_index.stderr
    checks = {c["name"]: c["ok"] for c in by_index.json()["checks"]}
    assert checks == {"signature": True, "inclusion": True, "image": True, "base": True}
    # the test base image was built outside the ledger: named, not verified here
    (base,) = [c for c in by_index.json()["checks"] if c["name"] == "base"]
    assert base["skipped"] and base["detail"].endswith("not built in this ledger; not verified")
    by_image = cli(["verify", "escrow-test/e2e-app:latest"])
    assert by_image.exit_code == 0, by_image.stdout + by_image.stderr


def test_a_changed_byte_in_the_stored_envelope_fails_verify(
    app_build: dict[str, Any], cli: Any, escrow_home: Path
) -> None:
    index = app_build["index"]
    db = sqlite3.connect(escrow_home / "ledger.db")
    table, column, key = _envelope_column(db)
    (blob,) = db.execute(f"SELECT {column} FROM {table} WHERE {key} = ?", (index,)).fetchone()
    data = bytearray(blob if isinstance(blob, bytes) else blob.encode())
    pos = data.index(b'"payload":"') + len(b'"payload":"') + 40
    data[pos] = ord("A") if data[pos] != ord("A") else ord("B")
    db.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (bytes(data), index))
    db.commit()
    db.close()
    r = cli(["verify", str(index)])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert f"Entry {index}" in r.stderr


def _envelope_column(db: sqlite3.Connection) -> tuple[str, str, str]:
    """Find the table and column that store the envelope bytes, and its index column."""
    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
        cols = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if "envelope" in cols:
            key = "idx" if "idx" in cols else "index" if "index" in cols else "leaf_index"
            return table, "envelope", f'"{key}"'
    raise AssertionError("no table stores the envelopes")


def test_a_failing_step_is_recorded_as_a_failed_build(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "broken"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM escrow-test/base:latest\nRUN echo about to fail\nRUN exit 7\nRUN echo never\n"
    )
    r = cli(["build", str(ctx), "-t", "escrow-test/broken:latest", "--json"])
    assert r.exit_code == 1, r.stderr
    result = r.json()
    assert result["status"] == "failed"
    shown = cli(["show", str(result["index"]), "--json"]).json()
    build = shown["statement"]["predicate"]["build"]
    assert build["status"] == "failed"
    assert build["failure"]["exitCode"] == 7
    assert "exit 7" in build["failure"]["instruction"]
    assert cli(["verify", str(result["index"])]).exit_code == 0


def test_the_pack_holds_the_image_id_and_every_diff_id(
    app_build: dict[str, Any], cli: Any, tmp_path: Path
) -> None:
    pdf = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "e2e", "-o", str(pdf), "--json"])
    assert r.exit_code == 0, r.stderr
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    inspected = _inspect("escrow-test/e2e-app:latest")
    flat = "".join(text.split())
    assert inspected["Id"].removeprefix("sha256:") in flat
    for diff_id in inspected["RootFS"]["Layers"]:
        assert diff_id.removeprefix("sha256:") in flat


def test_verify_shows_the_latest_rebuild_verdict(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "app"
    shutil.copytree(EXAMPLE_APP, ctx)
    args = ["--build-arg", "BASE=escrow-test/base:latest"]
    built = cli(["build", str(ctx), "-t", "escrow-test/e2e-rb:latest", *args, "--json"])
    assert built.exit_code == 0, built.stderr
    index = built.json()["index"]
    before = cli(["verify", str(index), "--json"]).json()
    assert before["rebuild_verdict"] is None
    rebuilt = cli(["rebuild", str(index), "--context", str(ctx), "--rm", "--json"])
    assert rebuilt.exit_code == 0, rebuilt.stdout + rebuilt.stderr
    after = cli(["verify", str(index), "--json"])
    assert after.exit_code == 0, after.stdout + after.stderr
    assert after.json()["rebuild_verdict"] in {"identical", "equivalent"}
    assert cli(["verify", str(index)]).stdout.count("rebuild    verdict:") == 1


def test_commands_on_a_home_that_was_never_initialised_say_so(
    tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: `escrow log` on a mistyped ESCROW_HOME created an empty ledger there."""
    home = tmp_path / "typo"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    monkeypatch.delenv("ESCROW_DB_URL", raising=False)
    monkeypatch.delenv("ESCROW_SERVER", raising=False)
    for args in (["log"], ["show", "0"], ["verify", "0"], ["ledger", "verify"]):
        r = cli(args)
        assert r.exit_code == 3, (args, r.stdout, r.stderr)
        assert "There is no ledger" in r.stderr and "escrow init" in r.stderr
    assert not (home / "ledger.db").exists()
