"""A pack's key events are all of the log's: the checkpoint commits to them.

A pack embeds the key events that register, retire and revoke its signer keys, and
``pack verify`` replays them.  Nothing told it that all of them were there: a pack made
from a reader that left out a revocation verified, with the revoked key shown active
and a build signed by it rated clean.  The checkpoint a pack is made against now
carries ``key-events <count> <base64 digest>`` after its root, signed by the log key,
and ``pack verify`` recomputes it from the embedded key events — and checks that the
auditor's previous checkpoint's key events are the first of them.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.types import KEY_EVENT
from escrow.ledger import checkpoint as cpmod
from escrow.pack.collect import PackRequest, collect
from escrow.pack.evidence import attachments_for
from escrow.pack.model import SignerView
from escrow.pack.render import render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from escrow.pack.verify import Expected, verify_pack
from escrow.signing.keys import SigningKey
from tests.conftest import run_cli

from .conftest import PackLedger

WHEN = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


class Hiding:
    """The operator's view of the ledger with one entry left out of every query."""

    def __init__(self, ledger: Any, hidden: int, *, plain_checkpoint: bool = False) -> None:
        self._ledger, self._hidden, self._plain = ledger, hidden, plain_checkpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def entries(self, **filters: Any) -> list[Any]:
        return [e for e in self._ledger.entries(**filters) if e.index != self._hidden]

    def key_events_checkpoint(self, tree_size: int | None = None) -> Any:
        if self._plain:  # a checkpoint as every append signs it: no key-events line
            return self._ledger.checkpoint(tree_size)
        return self._ledger.key_events_checkpoint(tree_size)


def _pack(reader: Any, path: Path, *, since_checkpoint: str | None = None) -> Path:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    request = PackRequest(
        generated_at=WHEN, projects=("example",), since_checkpoint=since_checkpoint
    )
    collected = collect(reader, request, view)
    pdf = render_pdf(collected.view, attachments_for(collected), WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def _check(report: Any, name: str) -> Any:
    return next(c for c in report.checks if c.name == name)


@pytest.fixture
def revoked(pack_ledger: PackLedger) -> tuple[PackLedger, int]:
    """Entry 0 registers the build key, entry 1 is a build it signed, entry 2 revokes it
    (its private key leaked): the build's pack must say so."""
    pack_ledger.add(0)
    r = run_cli(["keys", "revoke", "build", "--reason", "the private key leaked", "--json"])
    assert r.exit_code == 0, r.stderr
    events = pack_ledger.ledger.entries(predicate_type=KEY_EVENT)
    assert [e.index for e in events] == [0, 2]
    return pack_ledger, 2


def test_the_pack_checkpoint_commits_to_the_logs_key_events(
    revoked: tuple[PackLedger, int],
) -> None:
    pack_ledger, _ = revoked
    lg = pack_ledger.ledger
    cp = lg.key_events_checkpoint()
    plain = lg.checkpoint()
    body = cpmod.open_note(cp.note, lg.verifier_key())  # signed by the log key
    origin, size, root = cpmod.parse_checkpoint_body(body)
    assert (
        (origin, size, root)
        == (plain.origin, plain.size, plain.root)
        == (
            plain.origin,
            3,
            lg.root(),
        )
    )
    # recomputed here: SHA-256 over (8-byte index || RFC 9162 leaf hash) of each key event
    h = hashlib.sha256()
    for e in lg.entries(predicate_type=KEY_EVENT):
        h.update(e.index.to_bytes(8, "big") + hashlib.sha256(b"\x00" + e.envelope).digest())
    line = f"key-events 2 {base64.b64encode(h.digest()).decode()}"
    assert body.split("\n")[3] == line and body.endswith(line + "\n")
    # at an earlier size, only the key events below it
    early = cpmod.parse_key_events(cpmod.parse_note(lg.key_events_checkpoint(2).note)[0])
    first = lg.get(0)
    assert early == cpmod.key_events_digest(
        [(0, hashlib.sha256(b"\x00" + first.envelope).digest())]
    )


def test_a_pack_with_all_key_events_verifies(
    revoked: tuple[PackLedger, int], tmp_path: Path
) -> None:
    pack_ledger, _ = revoked
    report = verify_pack(_pack(pack_ledger.ledger, tmp_path / "pack.pdf"))
    assert report.ok, report.first_failure
    assert _check(report, "signer keys").detail == (
        "1 key registered by the log key; every key event below entry 3 is in the pack (2)"
    )


def test_a_pack_that_leaves_out_a_revocation_fails(
    revoked: tuple[PackLedger, int], tmp_path: Path
) -> None:
    pack_ledger, revocation = revoked
    pdf = _pack(Hiding(pack_ledger.ledger, revocation), tmp_path / "hidden.pdf")
    report = verify_pack(pdf)
    keys = _check(report, "signer keys")
    assert not keys.ok and not report.ok
    assert keys.detail == (
        "the pack holds 1 key event of the 2 below entry 3 that its checkpoint commits to: "
        "a key event was left out"
    )
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "signer.pem")
    r = run_cli(["pack", "verify", str(pdf), "--trust", str(tmp_path / "signer.pem")])
    assert r.exit_code == 1
    assert "a key event was left out" in r.stdout + r.stderr


def test_a_pack_whose_checkpoint_commits_to_no_key_events_fails(
    revoked: tuple[PackLedger, int], tmp_path: Path
) -> None:
    pack_ledger, revocation = revoked
    reader = Hiding(pack_ledger.ledger, revocation, plain_checkpoint=True)
    report = verify_pack(_pack(reader, tmp_path / "plain.pdf"))
    keys = _check(report, "signer keys")
    assert not keys.ok
    assert keys.detail.startswith("the checkpoint commits to no list of key events")


def _forged_earlier(pack_ledger: PackLedger, size: int) -> str:
    """A checkpoint of the log at ``size`` whose key-events line names other events."""
    from escrow.config import load_settings

    settings = load_settings()
    lg = pack_ledger.ledger
    cp = lg.checkpoint(size)
    line = cpmod.key_events_line(1, hashlib.sha256(b"another key history").digest())
    log_key = SigningKey.load(settings.log_key_path, settings.passphrase)
    return cpmod.sign_checkpoint(lg.origin, cp.size, cp.root, log_key, lg.origin, (line,))


def test_key_events_that_do_not_extend_the_previous_checkpoints_fail(
    revoked: tuple[PackLedger, int], tmp_path: Path
) -> None:
    pack_ledger, _ = revoked
    lg = pack_ledger.ledger
    honest = lg.key_events_checkpoint(2)
    report = verify_pack(_pack(lg, tmp_path / "ok.pdf", since_checkpoint=honest.note))
    assert report.ok, report.first_failure
    assert _check(report, "consistency").detail == (
        "checkpoint 2 → 3: the log only grew; the pack's key events begin with the 1 key event "
        "it names"
    )
    assert (
        report.ok
        and verify_pack(tmp_path / "ok.pdf", expected=Expected(checkpoint_note=honest.note)).ok
    )

    forged = _forged_earlier(pack_ledger, 2)
    report = verify_pack(_pack(lg, tmp_path / "since.pdf", since_checkpoint=forged))
    consistency = _check(report, "consistency")
    assert not consistency.ok
    assert consistency.detail == (
        "the pack's key events do not begin with the 1 key event that the previous "
        "checkpoint commits to: the log's key history was rewritten"
    )
    # the auditor's own saved checkpoint, given to `pack verify --since-checkpoint`
    report = verify_pack(tmp_path / "ok.pdf", expected=Expected(checkpoint_note=forged))
    scope = _check(report, "requested scope")
    assert not scope.ok
    assert "that your previous checkpoint commits to" in scope.detail
