"""`escrow verify` believes the signed envelope and the log's own key events, never the
database's query columns or key table, which an operator can edit without the log key.

Each case edits the database directly, then asks `escrow verify` (without running
`escrow ledger verify`, which reports the edit).
"""

from __future__ import annotations

import io
import subprocess
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, manifest, q, raw_sign, raw_sql


@pytest.fixture
def home(cli_env: LedgerEnv) -> LedgerEnv:
    return cli_env


def test_an_edited_image_id_column_does_not_verify_another_image(home: LedgerEnv, cli: Any) -> None:
    """Regression: with entry 1's `image_id` column set to another image's ID, `escrow
    verify <that image>` found entry 1 and reported it verified (exit 0), though its
    signed statement records a different image."""
    st = manifest(1)
    with home.open() as lg:
        entry, _ = lg.append(raw_sign(st, home.build_key))
    other = "sha256:" + "e" * 64
    with raw_sql(home.settings.db_url) as conn:
        q(conn, "UPDATE ledger_entry SET image_id = :i, project = 'victim'", i=other)
        q(conn, "UPDATE ledger_entry SET project = NULL WHERE idx = 0")
        q(conn, "UPDATE ledger_entry SET image_id = NULL WHERE idx = 0")
    r = cli(["verify", other])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert f"No build of image {other} is recorded" in r.stderr
    r = cli(["verify", str(entry.index), "--json"])
    assert r.exit_code == 1, r.stdout + r.stderr
    doc = r.json()
    assert doc["image_id"] == st["predicate"]["image"]["id"]
    assert doc["project"] == "proj"
    record = next(c for c in doc["checks"] if c["name"] == "record")
    assert record["ok"] is False and "project, image ID" in record["detail"]


def test_a_key_table_edited_back_to_active_does_not_make_late_entries_valid(
    home: LedgerEnv, cli: Any
) -> None:
    """Regression: after `keys revoke`, an operator set the key's row back to active; the
    ledger then appended envelopes signed by the revoked key, and `escrow verify` read
    the key table and reported them valid (exit 0)."""
    with home.open() as lg:
        before, _ = lg.append(raw_sign(manifest(1), home.build_key))
        lg.revoke_key(home.build_key.keyid, "laptop lost")
    with raw_sql(home.settings.db_url) as conn:
        q(
            conn,
            "UPDATE ledger_key SET status = 'active', revoked_us = NULL, "
            "ended_index = NULL, reason = NULL",
        )
    with home.open() as lg:
        late, _ = lg.append(raw_sign(manifest(2), home.build_key))
    r = cli(["verify", str(late.index), "--json"])
    assert r.exit_code == 1, r.stdout + r.stderr
    sig = next(c for c in r.json()["checks"] if c["name"] == "signature")
    assert sig["ok"] is False and "revoked before the entry was appended" in sig["detail"]
    r = cli(["verify", str(before.index), "--json"])  # signed before the revocation
    assert r.exit_code == 0, r.stdout + r.stderr


@pytest.mark.docker
def test_an_image_with_the_same_layers_and_another_config_is_not_verified(
    escrow_home: Any, cli: Any, base_image: str, docker_client: Any
) -> None:
    """The attack the image ID column allowed: an image sharing a recorded build's layers
    but with another config (here its CMD) passed the engine comparison once the entry's
    `image_id` column named it."""
    from escrow.config import load_settings

    r = cli(["capture", base_image, "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    index = r.json()["index"]
    dockerfile = io.BytesIO(b'FROM escrow-test/base:latest\nCMD ["sh", "-c", "echo evil"]\n')
    evil, _ = docker_client.images.build(fileobj=dockerfile, tag="escrow-test/evil:1", rm=True)
    try:
        assert (
            evil.attrs["RootFS"]["Layers"]
            == docker_client.images.get(base_image).attrs["RootFS"]["Layers"]
        )
        db = load_settings().db_url.removeprefix("sqlite:///")
        subprocess.run(
            ["sqlite3", db, f"UPDATE ledger_entry SET image_id = '{evil.id}' WHERE idx = {index}"],
            check=True,
        )
        r = cli(["verify", evil.id])
        assert r.exit_code == 1, r.stdout + r.stderr
        assert "No build of image" in r.stderr
        r = cli(["verify", str(index), "--json"])
        assert r.exit_code == 1
        checks = {c["name"]: c for c in r.json()["checks"]}
        assert checks["record"]["ok"] is False
        assert checks["image"]["ok"] is True  # the recorded image, compared with the engine's
    finally:
        docker_client.images.remove(evil.id, force=True)
