"""pack verify on crafted evidence: a pack statement, consistency proof or signer key of a
shape no pack has is a failed check in one sentence (exit 1), never a traceback.

The packs are signed by a certificate that is valid but not anchored, as anyone can make
one: without --trust the evidence checks still run on what the attacker wrote."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import Collected, PackRequest, collect
from escrow.pack.evidence import CONSISTENCY, SIGNER_KEYS, attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf

from .conftest import PackLedger

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

Files = list[AttachmentFile]


def _pack(
    pack_ledger: PackLedger,
    path: Path,
    predicate: Callable[[dict[str, Any]], None] | None = None,
    files: Callable[[Files], Files] | None = None,
) -> Path:
    from escrow.config import load_settings

    pack_ledger.add(0)
    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    collected: Collected = collect(
        pack_ledger.ledger, PackRequest(generated_at=WHEN, projects=("example",)), view
    )
    pred = json.loads(json.dumps(collected.predicate))
    if predicate is not None:
        predicate(pred)
    attachments = attachments_for(dataclasses.replace(collected, predicate=pred))
    if files is not None:
        attachments = files(attachments)
    pdf = render_pdf(collected.view, attachments, WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def _bad_pem(files: Files) -> Files:
    out = []
    for f in files:
        if f.name == SIGNER_KEYS:
            keys = json.loads(f.data)
            keys[0]["publicKey"] = "not a key"
            f = AttachmentFile(f.name, json.dumps(keys).encode(), f.description)
        out.append(f)
    return out


CRAFTED: dict[str, dict[str, Any]] = {
    "checkpoint-a-string": {"predicate": lambda p: p.__setitem__("checkpoint", "x")},
    "signer-a-string": {"predicate": lambda p: p.__setitem__("signer", "x")},
    "scope-entries-not-indexes": {"predicate": lambda p: p["scope"].__setitem__("entries", ["a"])},
    "evidence-mixed-types": {"predicate": lambda p: p.__setitem__("evidence", [1, "a"])},
    "consistency-a-list": {"files": lambda f: [*f, AttachmentFile(CONSISTENCY, b"[]", "crafted")]},
    "signer-key-pem-garbage": {"files": _bad_pem},
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_evidence_fails_in_one_sentence(
    case: str, pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pdf = _pack(pack_ledger, tmp_path / f"{case}.pdf", **CRAFTED[case])
    r = cli(["pack", "verify", str(pdf)])
    assert r.exit_code == 1, (r.exit_code, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("escrow: error: The pack ") and "fails verification" in last
    assert ".." not in last
