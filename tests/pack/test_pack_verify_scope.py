"""An auditor checks that the pack handed over is the one asked for.

A dishonest operator holds the pack key, so a pack of another project or period, a pack
whose statement was edited after rendering, or one made on a forked ledger is still
signed by the trusted certificate.  ``escrow pack verify`` must refuse each: with
``--project``/``--since``/``--until``/``--since-checkpoint`` (what the auditor asked
for), and, from the file alone, a statement whose scope or pack ID disagrees with its
builds or with the pages.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.collect import Collected, PackRequest, collect
from escrow.pack.evidence import PACK_STATEMENT, attachments_for
from escrow.pack.model import ScopeView, SignerView
from escrow.pack.render import AttachmentFile, render_pdf
from escrow.pack.sign import ensure_pack_signer, sign_pdf
from tests.conftest import run_cli

from .conftest import PackLedger

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _make(pack_ledger: PackLedger, request: PackRequest) -> tuple[Any, Collected]:
    from escrow.config import load_settings

    signer = ensure_pack_signer(load_settings())
    view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
    return signer, collect(pack_ledger.ledger, request, view)


def _write(
    path: Path,
    signer: Any,
    collected: Collected,
    *,
    view: Any = None,
    statement: dict[str, Any] | None = None,
) -> Path:
    files = attachments_for(collected)
    if statement is not None:  # the operator edits the statement after rendering
        files = [
            AttachmentFile(f.name, json.dumps(statement).encode(), f.description)
            if f.name == PACK_STATEMENT
            else f
            for f in files
        ]
    pdf = render_pdf(view or collected.view, files, WHEN, strict=True).pdf
    path.write_bytes(sign_pdf(pdf, signer))
    return path


def _statement(collected: Collected) -> dict[str, Any]:
    doc = next(f for f in attachments_for(collected) if f.name == PACK_STATEMENT)
    return dict(json.loads(doc.data))


def _request(**kw: Any) -> PackRequest:
    return PackRequest(generated_at=WHEN, **kw)


def _verify(pdf: Path, *args: str) -> Any:
    trust = pdf.parent / "pack-signer.pem"
    return run_cli(["pack", "verify", str(pdf), "--trust", str(trust), *args])


@pytest.fixture
def trusted(pack_ledger: PackLedger, tmp_path: Path) -> Path:
    from escrow.config import load_settings

    ensure_pack_signer(load_settings())  # the certificate is made on first use
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    return tmp_path


def test_a_pack_of_another_project_or_period_is_refused(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    since = datetime(2026, 12, 1, tzinfo=UTC)
    until = datetime(2027, 1, 1, tzinfo=UTC)  # `--until 2026-12-31`
    signer, collected = _make(
        pack_ledger, _request(projects=("example",), since=since, until=until)
    )
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "dec.pdf", signer, collected)

    asked = ["--project", "example", "--since", "2026-12-01", "--until", "2026-12-31"]
    ok = _verify(pdf, *asked)
    assert ok.exit_code == 0, ok.stderr
    assert "projects example; from 2026-12-01 to 2026-12-31 (inclusive)" in ok.stdout

    # the same instant, written with an offset, is the same period
    same = _verify(pdf, "--since", "2026-12-01T01:00:00+01:00")
    assert same.exit_code == 0, same.stderr

    other_project = _verify(pdf, "--project", "billing")
    assert other_project.exit_code == 1
    assert "requested scope: it is a pack of projects example, not of projects billing" in (
        other_project.stderr
    )
    other_period = _verify(pdf, "--since", "2026-11-01", "--until", "2026-11-30")
    assert other_period.exit_code == 1
    assert (
        "its period is from 2026-12-01 to 2026-12-31 (inclusive), "
        "not from 2026-11-01 to 2026-11-30 (inclusive)" in other_period.stderr
    )
    # one sentence, not a traceback
    assert other_period.stderr.count("escrow: error:") == 1
    assert "Traceback" not in other_period.stderr


def test_without_expectations_the_summary_names_the_scope(
    pack_ledger: PackLedger, trusted: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _make(pack_ledger, _request(projects=("example",)))
    r = _verify(_write(trusted / "p.pdf", signer, collected))
    assert r.exit_code == 0, r.stderr
    assert "scope: projects example; checkpoint " in r.stdout


def test_a_statement_scope_edited_after_rendering_is_refused(
    pack_ledger: PackLedger, trusted: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _make(pack_ledger, _request(projects=("example",)))
    st = _statement(collected)
    st["predicate"]["scope"]["projects"] = ["billing"]
    r = _verify(_write(trusted / "edited.pdf", signer, collected, statement=st))
    assert r.exit_code == 1
    assert "pack statement: build " in r.stderr
    assert "is of project example, which is not in its scope (billing)" in r.stderr


def test_a_statement_whose_pack_id_is_not_its_own_is_refused(
    pack_ledger: PackLedger, trusted: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _make(pack_ledger, _request(projects=("example",)))
    st = _statement(collected)
    st["predicate"]["requester"] = "someone else"
    r = _verify(_write(trusted / "edited.pdf", signer, collected, statement=st))
    assert r.exit_code == 1
    assert "pack statement: its pack ID" in r.stderr


def test_pages_that_print_another_scope_than_the_statement_are_refused(
    pack_ledger: PackLedger, trusted: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _make(
        pack_ledger, _request(projects=("example",), since=datetime(2026, 12, 1, tzinfo=UTC))
    )
    shown = ScopeView(("example",), "2026-11-01T00:00:00Z", "", collected.view.scope.entries, "")
    view = dataclasses.replace(collected.view, scope=shown)
    r = _verify(_write(trusted / "cover.pdf", signer, collected, view=view))
    assert r.exit_code == 1
    assert "printed digests: the pages do not show the scope the pack statement states" in (
        r.stderr
    )


def _fork_checkpoint(pack_ledger: PackLedger, tmp_path: Path, monkeypatch: Any) -> str:
    """The home copied now, then one different entry appended to each copy: the
    fork's signed checkpoint (same size, same log key, another root)."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement

    from .synth import manifest_variant

    fork_home = tmp_path / "fork-home"
    shutil.copytree(pack_ledger.home, fork_home)
    pack_ledger.add(1)
    monkeypatch.setenv("ESCROW_HOME", str(fork_home))
    fork = Ledger.open(load_settings())
    try:
        fork.append(sign_statement(manifest_variant(7), pack_ledger.key))
        note = fork.checkpoint().note
    finally:
        fork.close()
        monkeypatch.setenv("ESCROW_HOME", str(pack_ledger.home))
    return note


def test_a_pack_from_a_forked_ledger_is_refused(
    pack_ledger: PackLedger, trusted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack_ledger.add(0)
    fork_note = _fork_checkpoint(pack_ledger, trusted, monkeypatch)
    own_note = pack_ledger.ledger.checkpoint().note
    (trusted / "fork.checkpoint").write_text(fork_note, encoding="utf-8")
    (trusted / "own.checkpoint").write_text(own_note, encoding="utf-8")
    signer, collected = _make(pack_ledger, _request(projects=("example",)))
    pdf = _write(trusted / "p.pdf", signer, collected)

    mine = _verify(pdf, "--since-checkpoint", str(trusted / "own.checkpoint"))
    assert mine.exit_code == 0, mine.stderr
    forked = _verify(pdf, "--since-checkpoint", str(trusted / "fork.checkpoint"))
    assert forked.exit_code == 1
    assert "the log was forked or rewritten" in forked.stderr


def test_a_pack_that_proves_nothing_about_the_auditors_checkpoint_is_refused(
    pack_ledger: PackLedger, trusted: Path
) -> None:
    pack_ledger.add(0)
    old = pack_ledger.ledger.checkpoint().note
    (trusted / "old.checkpoint").write_text(old, encoding="utf-8")
    pack_ledger.add(1)
    # made without --since-checkpoint: it cannot show the log only grew since `old`
    signer, collected = _make(pack_ledger, _request(projects=("example",)))
    r = _verify(
        _write(trusted / "p.pdf", signer, collected),
        "--since-checkpoint",
        str(trusted / "old.checkpoint"),
    )
    assert r.exit_code == 1
    assert "it proves no consistency with your previous checkpoint" in r.stderr
    # made with it: accepted
    signer, collected = _make(pack_ledger, _request(projects=("example",), since_checkpoint=old))
    r = _verify(
        _write(trusted / "p2.pdf", signer, collected),
        "--since-checkpoint",
        str(trusted / "old.checkpoint"),
    )
    assert r.exit_code == 0, r.stderr


def test_a_since_checkpoint_that_is_not_a_checkpoint_is_a_usage_error(
    pack_ledger: PackLedger, trusted: Path
) -> None:
    pack_ledger.add(0)
    signer, collected = _make(pack_ledger, _request(projects=("example",)))
    (trusted / "key.txt").write_text("escrow.local/ledger+00000000+AQ==\n", encoding="utf-8")
    r = _verify(
        _write(trusted / "p.pdf", signer, collected), "--since-checkpoint", str(trusted / "key.txt")
    )
    assert r.exit_code == 2
    assert "is not a checkpoint note" in r.stderr
