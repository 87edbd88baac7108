"""What docs/ARCHITECTURE.md, docs/DESIGN-NOTES.md and docs/deposits.md state, held to the code.

Each test names the statement it pins; a failure here means the code or the document
moved, and one of them must be changed to agree again.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.server.server_helpers import serving

ESCROW_SRC = Path(__file__).resolve().parent.parent / "escrow"


def test_a_server_makes_no_ledger_where_its_database_holds_none(
    escrow_home: Path, tmp_path: Path, cli: Any
) -> None:
    """DESIGN-NOTES "Only `escrow init` creates a ledger": a mistyped ESCROW_DB_URL is an
    error and not a new, empty, healthy-looking log — for the server's app too (the
    factory Uvicorn runs, `escrow.server.app:app_from_env`), not only for `escrow serve`'s
    own check before it starts Uvicorn."""
    import httpx

    from escrow.config import load_settings
    from escrow.server.app import ServerConfig, create_app

    typo = tmp_path / "mistyped.db"
    settings = load_settings(db_url=f"sqlite:///{typo}")
    app = create_app(ServerConfig(settings, pack_workers=0))
    with serving(app) as url:
        health = httpx.get(f"{url}/healthz", timeout=30)
    assert health.status_code == 503, health.text
    assert health.json()["error"] == "unavailable"
    # nothing was made there: no file, or at least no ledger in it
    if typo.exists():
        with sqlite3.connect(typo) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert not tables & {"ledger_meta", "ledger_entry"}
    r = cli(["--db-url", f"sqlite:///{typo}", "ledger", "checkpoint"])
    assert r.exit_code == 3, r.stdout + r.stderr
    # the ledger `escrow init` made is the one still served where it is
    with serving(create_app(ServerConfig(load_settings(), pack_workers=0))) as url:
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200


def test_document_type_uris_are_spelled_only_in_types() -> None:
    """DESIGN-NOTES "Type URIs are `https://escrow.dev/<document>/v1` and live once, in
    `escrow/documents/types.py`; a test fails if any other module spells one out" — every
    one of them, the deposit and import records' included, not only the ledger's."""
    spelled = sorted(
        str(p.relative_to(ESCROW_SRC))
        for p in ESCROW_SRC.rglob("*.py")
        if p.name != "types.py" and "https://escrow.dev/" in p.read_text(encoding="utf-8")
    )
    assert spelled == []


#: docs/ARCHITECTURE.md's table of packages: each public face it names, by module
PUBLIC_FACES = {
    "escrow.errors": ["EscrowError"],
    "escrow.config": ["Settings", "load_settings", "redact_url"],
    "escrow.text": ["count"],
    "escrow.times": ["utc_now", "rfc3339"],
    "escrow.documents.canonical": ["canonical_bytes"],
    "escrow.documents.schemas": ["validate_statement", "validate_document"],
    "escrow.documents.types": [],
    "escrow.documents.slsa": ["provenance_statement"],
    "escrow.signing.keys": ["SigningKey", "PublicKey", "KeyType"],
    "escrow.signing.dsse": ["Envelope", "pae", "sign_statement"],
    "escrow.capture.build": ["phoenix_build"],
    "escrow.capture.capture": ["capture_image"],
    "escrow.capture.record": ["record_command"],
    "escrow.capture.context": ["make_context"],
    "escrow.capture.dockerfile": [],
    "escrow.capture.engine": ["Engine", "DockerEngine"],
    "escrow.capture.publish": ["Publisher"],
    "escrow.blobs": ["BlobStore"],
    "escrow.ledger.merkle": ["leaf_hash", "node_hash", "verify_inclusion", "verify_consistency"],
    "escrow.ledger.checkpoint": [
        "read_checkpoint_file",
        "sign_checkpoint",
        "verify_checkpoint",
        "verifier_key_line",
    ],
    "escrow.ledger.store": ["Ledger"],
    "escrow.ledger.models": ["Entry", "Checkpoint"],
    "escrow.ledger.verify": [],
    "escrow.verification": ["verify_entry", "resolve_target"],
    "escrow.rebuild.layers": [],
    "escrow.rebuild.compare": ["compare_indexes", "compare_images"],
    "escrow.rebuild.manifests": ["diff_manifests"],
    "escrow.rebuild.verify": ["rebuild_entry"],
    "escrow.deposit.store": ["DepositStore", "FileDepositStore", "check_store"],
    "escrow.deposit.oci": [],
    "escrow.deposit.deposit": ["deposit_build", "check_entry"],
    "escrow.deposit.bundle": ["export_deposit", "import_deposit"],
    "escrow.deposit.gc": [],
    "escrow.deposit.safetar": [],
    "escrow.deposit.ahead": ["ContextAhead"],
    "escrow.registry": [],
    "escrow.pack.collect": ["collect", "assess"],
    "escrow.pack.model": ["VerdictRules"],
    "escrow.pack.render": ["render_pack", "render_parts"],
    "escrow.pack.sign": ["ensure_pack_signer", "sign_pdf"],
    "escrow.pack.verify": ["verify_pack"],
    "escrow.pack.evidence": [],
    "escrow.server.app": ["create_app", "ServerConfig"],
    "escrow.server.auth": [],
    "escrow.server.packs": [],
    "escrow.server.client": ["RemoteLedger"],
    "escrow.cli.main": ["COMMANDS", "main"],
    "escrow.cli.app": ["App"],
    "escrow.cli.entry": ["main"],
}


def test_the_architecture_table_names_what_exists() -> None:
    """docs/ARCHITECTURE.md: every module and public face its table of packages names."""
    from escrow.capture.engine import DockerEngine
    from escrow.ledger.store import Ledger

    missing = [
        f"{module}.{name}"
        for module, names in PUBLIC_FACES.items()
        for name in names
        if not hasattr(importlib.import_module(module), name)
    ]
    assert missing == []
    assert callable(DockerEngine.local_config)
    # the ledger contract's methods, as the document lists them
    for method in (
        "open",
        "append",
        "append_many",
        "get",
        "size",
        "entries",
        "inclusion_proof",
        "consistency_proof",
        "root",
        "checkpoint",
        "verifier_key",
        "keys",
        "key_status",
        "verify",
        "key_events_checkpoint",
    ):
        assert callable(getattr(Ledger, method)), method


def test_the_cli_entry_modules_import_nothing_heavy() -> None:
    """docs/ARCHITECTURE.md "Conventions": heavy imports (docker, sqlmodel/sqlalchemy,
    weasyprint, pyhanko) happen inside the functions that need them, never in
    `escrow/cli/main.py` or `escrow/cli/app.py`."""
    heavy = ("docker", "sqlmodel", "sqlalchemy", "weasyprint", "pyhanko")
    code = (
        "import sys, escrow.cli.main, escrow.cli.app\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_the_ledger_tables_and_batches_are_as_documented(escrow_home: Path) -> None:
    """docs/ARCHITECTURE.md "Tables (schema 2)": the six tables, checkpoints kept every
    1,024 entries, derived data every 64, and the rows of `ledger_meta`; DESIGN-NOTES:
    a new ledger's origin is `escrow.local/ledger/` and 8 hex digits."""
    from escrow.ledger import store, tables

    assert [t.name for t in tables.ALL_TABLES] == [
        "ledger_entry",
        "ledger_node",
        "ledger_term",
        "ledger_checkpoint",
        "ledger_key",
        "ledger_meta",
    ]
    assert (store.CHECKPOINT_EVERY, store.INDEX_EVERY, store.SCHEMA) == (1024, 64, "2")
    with sqlite3.connect(escrow_home / "ledger.db") as conn:
        meta = dict(conn.execute("SELECT name, value FROM ledger_meta").fetchall())
    assert set(meta) == {"origin", "log_public_key", "schema", "key_version", "indexed"}
    assert meta["schema"] == "2"
    assert re.fullmatch(r"escrow\.local/ledger/[0-9a-f]{8}", meta["origin"])


def test_the_documented_server_times() -> None:
    """DESIGN-NOTES "Server and client": a heartbeat every minute, a job dead after five
    minutes without one, 2 h to render by default (less than the 3 h `escrow pack` waits),
    progress at most every five seconds, a worker checking its supervisor every second,
    2 s of quick 503s after a failed connection, libpq's 10 s connect timeout; and the
    client trying reads and appends again for up to 30 s."""
    from escrow.ledger.store import PG_CONNECT_S
    from escrow.server import app, client, packs

    assert packs.HEARTBEAT_S == 60
    assert packs.STALE_AFTER_S == 5 * 60
    assert packs.DEFAULT_TIME_LIMIT_S == 2 * 3600 < client.PACK_WAIT_S == 3 * 3600
    assert packs.PROGRESS_EVERY_S == 5
    assert app.SUPERVISOR_CHECK_S == 1
    assert app._Backend.RECONNECT_S == 2
    assert PG_CONNECT_S == 10
    assert client.RETRY_FOR_S == 30


@pytest.mark.parametrize(
    ("name", "table"),
    [("auth", "server_tokens"), ("packs", "server_pack_job"), ("packs", "server_pack_record")],
)
def test_the_server_tables_are_named_as_documented(name: str, table: str) -> None:
    """docs/ARCHITECTURE.md: `auth` (table `server_tokens`), `packs` (`server_pack_job`,
    `server_pack_record`)."""
    from sqlmodel import SQLModel

    importlib.import_module(f"escrow.server.{name}")
    assert table in SQLModel.metadata.tables
