"""A project name longer than the ledger's column (200 characters) is one rejected
envelope on both backends.

PostgreSQL enforces ``VARCHAR(200)``; SQLite ignores it.  On PostgreSQL such an envelope
used to fail its transaction ("value too long for type character varying(200)"), so
`escrow post` stopped there with exit 3 and the good envelopes after it were never
appended, while SQLite stored it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, manifest, raw_sign

from escrow.errors import SchemaError


def _envelope(env: LedgerEnv, n: int, project: str) -> bytes:
    return raw_sign(manifest(n, project=project, tag="r10long"), env.build_key).to_bytes()


def test_post_rejects_the_long_project_alone(cli_env: LedgerEnv, cli: Any) -> None:
    lines = [
        _envelope(cli_env, 1, "p" * 200),  # the longest that fits
        _envelope(cli_env, 2, "p" * 201),
        _envelope(cli_env, 3, "é" * 200),  # characters, not bytes
        _envelope(cli_env, 4, "ok"),
    ]
    r = cli(["post", "--json"], input=b"\n".join(lines).decode() + "\n")
    assert r.exit_code == 1, r.stdout + r.stderr
    doc = r.json()
    assert "stopped" not in doc
    statuses = [res["status"] for res in doc["results"]]
    assert statuses == ["appended", "rejected", "appended", "appended"]
    error = doc["results"][1]["error"]
    assert "201 characters" in error and "at most 200" in error and "database" not in error
    assert cli(["log", "--project", "p" * 200]).stdout.count("build-manifest") == 1
    assert cli(["ledger", "verify"]).exit_code == 0


def test_append_refuses_it_as_a_schema_error_and_indexes_the_rest(env: LedgerEnv) -> None:
    with env.open() as lg:
        with pytest.raises(SchemaError) as info:
            lg.append(_envelope(env, 5, "x" * 500))
        assert info.value.pointer == "/predicate/build/project"
        for n in range(6, 6 + 2 * lg.index_every):  # enough for the query index to cover
            lg.append(_envelope(env, n, "y" * 200))
        assert len(lg.entries(project="y" * 200, limit=1000)) == 2 * lg.index_every


def test_build_refuses_a_project_the_ledger_cannot_store_before_building(
    escrow_home: Path, tmp_path: Path
) -> None:
    """`escrow build --project` of 201 characters: refused at once (exit 2), not after the
    engine has built it."""
    from tests.conftest import run_cli

    r = run_cli(["build", str(tmp_path / "nowhere"), "-t", "x:1", "--project", "p" * 201])
    assert r.exit_code == 2, r.stderr
    assert "at most 200 characters" in r.stderr
    assert "does not exist" not in r.stderr  # refused before the context is even looked at
