"""Deposits of two ledgers with the same origin and the same entry index, imported side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.config import load_settings
from escrow.deposit.bundle import imported_entry
from escrow.deposit.store import open_store
from escrow.errors import InputError
from tests.conftest import run_cli
from tests.deposit.conftest import Builds


def _vendor(
    root: Path, name: str, mp: pytest.MonkeyPatch, origin: str | None = None
) -> tuple[Path, str, int]:
    """A ledger of its own (`escrow init`; ``origin``: as configured before it, like the
    ledgers made before origins were unique, all `escrow.local/ledger`), one build,
    exported."""
    mp.setenv("ESCROW_HOME", str(root / name))
    if origin is not None:
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(json.dumps({"origin": origin}))
    assert run_cli(["init"]).exit_code == 0
    builds = Builds(root / f"{name}-work")
    builds.make_base()
    try:
        ctx = builds.context({"app.txt": f"{name}'s app\n"})
        (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
        index, _ = builds.build(ctx, project=name)
        assert run_cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
        out = root / f"{name}.tar"
        r = run_cli(["deposit", "export", str(index), "-o", str(out), "--json"])
        assert r.exit_code == 0, r.stderr
        return out, str(r.json()["verifierKey"]), index
    finally:
        builds.cleanup()


def test_the_ledger_is_named_by_its_verifier_key_when_origins_are_the_same(
    tmp_path: Path, docker_client: Any
) -> None:
    """Regression: both vendors' ledgers are `escrow.local/ledger`, so `--origin` could not
    tell their entries apart and neither could be rebuilt."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            mp.delenv(var, raising=False)
        tar_a, key_a, index_a = _vendor(tmp_path, "alpha", mp, "escrow.local/ledger")
        tar_b, key_b, index_b = _vendor(tmp_path, "beta", mp, "escrow.local/ledger")
        assert index_a == index_b and key_a != key_b
        mp.setenv("ESCROW_HOME", str(tmp_path / "agent"))
        assert run_cli(["init"]).exit_code == 0
        for tar in (tar_a, tar_b):
            r = run_cli(["deposit", "import", str(tar)])
            assert r.exit_code == 0, r.stderr
        store = open_store(load_settings().home)
        with pytest.raises(InputError) as caught:
            imported_entry(store, index_a, "escrow.local/ledger")
        assert key_a in str(caught.value.hint) and key_b in str(caught.value.hint)
        for key, project in ((key_a, "alpha"), (key_b, "beta")):
            by_key, _ = imported_entry(store, index_a, key)
            by_hash, _ = imported_entry(store, index_a, key.split("+", 2)[1])
            assert by_key.project == by_hash.project == project


def test_new_ledgers_are_told_apart_by_their_origin(tmp_path: Path, docker_client: Any) -> None:
    """Ledgers made by `escrow init` now each have an origin of their own: deposits of
    two of them with the same index are named by origin alone."""
    from escrow.ledger.checkpoint import parse_verifier_key

    with pytest.MonkeyPatch.context() as mp:
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            mp.delenv(var, raising=False)
        tar_a, key_a, index_a = _vendor(tmp_path, "alpha", mp)
        tar_b, key_b, index_b = _vendor(tmp_path, "beta", mp)
        origin_a, origin_b = (parse_verifier_key(k)[0] for k in (key_a, key_b))
        assert index_a == index_b and origin_a != origin_b
        mp.setenv("ESCROW_HOME", str(tmp_path / "agent"))
        assert run_cli(["init"]).exit_code == 0
        for tar in (tar_a, tar_b):
            assert run_cli(["deposit", "import", str(tar)]).exit_code == 0
        store = open_store(load_settings().home)
        for origin, project in ((origin_a, "alpha"), (origin_b, "beta")):
            entry, _ = imported_entry(store, index_a, origin)
            assert entry.project == project
