"""``signer-keys.json`` must describe each key as its key events do.

The verdict is computed from the key events (signed by the log key, every one of them in
the pack), never from this file; but an auditor reads the file, and `pack verify` did not
compare it with the events: a pack signed with the pack key whose file called a revoked
key "active", renamed a key or left out its revocation verified.  Now each of those is
refused, naming the key and what differs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import PackRequest, collect
from escrow.pack.evidence import SIGNER_KEYS, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import verify_pack
from tests.conftest import run_cli

from .conftest import PackLedger

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _pack(
    pack_ledger: PackLedger, path: Path, edit: Callable[[list[dict[str, Any]]], None] | None
) -> Path:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    collected = collect(
        pack_ledger.ledger, PackRequest(generated_at=WHEN, projects=("example",)), view
    )
    files = attachments_for(collected)
    if edit is not None:
        keys = next(f for f in files if f.name == SIGNER_KEYS)
        doc = json.loads(keys.data)
        edit(doc)
        files = [
            AttachmentFile(f.name, json.dumps(doc).encode(), f.description)
            if f.name == SIGNER_KEYS
            else f
            for f in files
        ]
    pdf = render_pdf(collected.view, files, WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


@pytest.fixture
def revoked(pack_ledger: PackLedger) -> PackLedger:
    """Two builds, then the build key revoked (it signed both before)."""
    pack_ledger.add(0)
    pack_ledger.add(1)
    keyid = pack_ledger.key.public.keyid
    r = run_cli(["keys", "revoke", keyid, "--reason", "laptop stolen"])
    assert r.exit_code == 0, r.stderr
    return pack_ledger


def _key(doc: list[dict[str, Any]], pack_ledger: PackLedger) -> dict[str, Any]:
    return next(k for k in doc if k["keyid"] == pack_ledger.key.public.keyid)


def test_the_genuine_pack_verifies(revoked: PackLedger, tmp_path: Path) -> None:
    report = verify_pack(_pack(revoked, tmp_path / "pack.pdf", None))
    keys = next(c for c in report.checks if c.name == "signer keys")
    assert keys.ok, keys.detail
    assert report.ok or report.first_failure.name == "verdict", report.first_failure


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "status": (
        lambda k: k.update(status="active"),
        'signer-keys.json gives its status as "active", its key events "revoked" when the '
        "pack was made",
    ),
    "name": (
        lambda k: k.update(name="release"),
        'signer-keys.json gives its name as "release", its key event "build"',
    ),
    "algorithm": (
        lambda k: k.update(algorithm="rsa"),
        'signer-keys.json gives its algorithm as "rsa", its key event "ed25519"',
    ),
    "event-left-out": (
        lambda k: k.update(events=k["events"][:1]),
        "signer-keys.json lists its events as added at 0, its key events are added at 0, "
        'revoked at 3 ("laptop stolen")',
    ),
    "reason": (
        lambda k: k["events"][-1].update(reason="rotated"),
        'signer-keys.json lists its events as added at 0, revoked at 3 ("rotated"), its key '
        'events are added at 0, revoked at 3 ("laptop stolen")',
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_signer_keys_file_that_differs_from_the_key_events_is_refused(
    revoked: PackLedger, tmp_path: Path, case: str
) -> None:
    change, said = CASES[case]
    path = _pack(revoked, tmp_path / f"{case}.pdf", lambda doc: change(_key(doc, revoked)))
    report = verify_pack(path)
    assert not report.ok
    first = report.first_failure
    keyid = revoked.key.public.keyid
    assert (first.name, first.detail) == ("signer keys", f"signer key {keyid[:16]}…: {said}")
