"""Rendering: the view model to HTML and PDF, without a ledger."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.render import AttachmentFile, digest_markup, render_html, render_pdf

from .conftest import PackLedger, example_view, pdftotext

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
D = "sha256:" + "0123456789abcdef" * 4

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (D, '<span class="dg">sha256:01234567\u00ad89abcdef\u00ad'),
        ("ab" * 32, '<span class="dg">abababab\u00ad'),
        ('<img src="x">', '<span class="dg">&lt;img src=&#34;x&#34;&gt;</span>'),
        ("sha256:" + "AB" * 32, '<span class="dg">sha256:ABAB'),  # not lower hex: left alone
        (None, '<span class="dg"></span>'),
    ],
    ids=["image-id", "bare-hex", "markup-escaped", "upper-hex", "none"],
)
def test_digest_markup(value: Any, expected: str) -> None:
    assert str(digest_markup(value)).startswith(expected)


def test_render_html_escapes_everything_untrusted() -> None:
    view = example_view(1, label="<script>alert(1)</script>", created_by="a & b </td>")
    html = render_html(view)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &amp; b &lt;/td&gt;" in html


def test_render_pdf_without_warnings_and_text_holds_every_digest(tmp_path: Path) -> None:
    view = example_view(3)
    rendered = render_pdf(view, [AttachmentFile("a.json", b"{}\n", "test")], WHEN, strict=True)
    assert rendered.warnings == []
    out = tmp_path / "v.pdf"
    out.write_bytes(rendered.pdf)
    text = pdftotext(out)
    for b in view.builds:
        assert b.image_id in text
        for layer in b.layers:
            assert layer.diff_id in text
        assert b.leaf_hash in text
    assert rendered.pages == int(text.count("\f"))


def test_a_wrapped_digest_is_still_found_by_pdftotext(tmp_path: Path) -> None:
    """In a cell too narrow for it, a digest wraps with a hyphen that pdftotext removes."""
    html = (
        '<html><head><link rel="stylesheet" href="pack.css"></head><body>'
        '<table><colgroup><col style="width:25%"><col style="width:75%"></colgroup>'
        f"<tbody><tr><td>{digest_markup(D)}</td><td>text</td></tr></tbody></table>"
        f'<p style="width:30mm">{digest_markup(D)}</p></body></html>'
    )
    rendered = render_pdf(example_view(1), [], WHEN, strict=True, html=html)
    out = tmp_path / "w.pdf"
    out.write_bytes(rendered.pdf)
    layout = pdftotext(out)
    assert D in layout
    # and it did wrap (otherwise this test proves nothing)
    import subprocess

    raw = subprocess.run(
        ["pdftotext", "-raw", str(out), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "sha256:01234567-" in raw or "89abcdef-" in raw


def test_same_view_and_time_give_the_same_bytes() -> None:
    view = example_view(2)
    files = [AttachmentFile("a.json", b"{}\n", "test")]
    a = render_pdf(view, files, WHEN, strict=True).pdf
    b = render_pdf(view, files, WHEN, strict=True).pdf
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    c = render_pdf(view, files, datetime(2026, 12, 5, tzinfo=UTC), strict=True).pdf
    assert c != a


def test_render_only_is_reproducible_and_is_the_signed_packs_first_revision(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    for i in range(2):
        pack_ledger.add(i)
    args = ["pack", "--project", "example", "--generated-at", "2026-12-04T16:00:00Z"]
    r1 = cli([*args, "--render-only", "-o", str(tmp_path / "a.pdf"), "--json"])
    r2 = cli([*args, "--render-only", "-o", str(tmp_path / "b.pdf"), "--json"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.stderr + r2.stderr
    a, b = (tmp_path / "a.pdf").read_bytes(), (tmp_path / "b.pdf").read_bytes()
    assert a == b
    assert r1.json()["index"] is None  # nothing recorded
    signed = cli([*args, "-o", str(tmp_path / "s.pdf"), "--json"])
    assert signed.exit_code == 0, signed.stderr
    res = signed.json()
    assert res["rendered_sha256"] == hashlib.sha256(a).hexdigest()
    s = (tmp_path / "s.pdf").read_bytes()
    assert s.startswith(a) and len(s) > len(a)  # the signature is an incremental update
    v = cli(["pack", "verify", str(tmp_path / "s.pdf"), "--json"])
    assert v.exit_code == 0, v.stderr
    assert v.json()["rendered_sha256"] == res["rendered_sha256"]
    st = pack_ledger.ledger.get(res["index"]).statement()
    assert st["subject"][0]["annotations"]["renderedSha256"] == res["rendered_sha256"]


def test_since_checkpoint_proves_the_log_only_grew(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    old = pack_ledger.ledger.checkpoint()
    note = tmp_path / "old-checkpoint.txt"
    note.write_text(old.note)
    for i in range(1, 4):
        pack_ledger.add(i)
    out = tmp_path / "p.pdf"
    r = cli(["pack", "--project", "example", "--since-checkpoint", str(note), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    text = pdftotext(out)
    assert "Consistency with the auditor's previous checkpoint" in text
    assert f"The previous checkpoint (size {old.size}) is consistent" in text
    v = cli(["pack", "verify", str(out), "--json"])
    assert v.exit_code == 0, v.stderr
    checks = {c["name"]: c for c in v.json()["checks"]}
    assert checks["consistency"]["ok"]

    # a checkpoint this log never signed is refused
    forged = tmp_path / "forged.txt"
    lines = old.note.split("\n")
    lines[1] = str(old.size + 100)
    forged.write_text("\n".join(lines))
    r = cli(["pack", "--project", "example", "--since-checkpoint", str(forged), "-o", str(out)])
    assert r.exit_code == 1  # a check that failed, as `escrow ledger consistency --from`
    assert "previous checkpoint" in r.stderr


def test_a_pack_as_of_an_earlier_tree_size_renders_again_byte_for_byte(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--tree-size N``: the pack the ledger gave at size N, after the ledger has grown —
    later builds left out, the key history as it was (a revocation after N is not in it),
    proofs against the checkpoint the log signed at N — byte for byte with the same
    ``--generated-at``; signed, it verifies offline like any pack."""
    from escrow.signing.keys import SigningKey

    first = [pack_ledger.add(i) for i in range(2)]
    size = pack_ledger.ledger.size()
    args = ["pack", "--project", "example", "--generated-at", "2026-12-04T16:00:00Z"]
    then = tmp_path / "then.pdf"
    r = cli([*args, "--render-only", "-o", str(then), "--json"])
    assert r.exit_code == 0, r.stderr

    later = [pack_ledger.add(i) for i in range(2, 4)]
    pack_ledger.ledger.revoke_key(first[0].signer, "laptop lost")
    again = tmp_path / "again.pdf"
    r = cli([*args, "--tree-size", str(size), "--render-only", "-o", str(again), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"] == [e.index for e in first]
    assert again.read_bytes() == then.read_bytes()

    now = tmp_path / "now.pdf"
    r = cli([*args, "--render-only", "-o", str(now), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"] == [e.index for e in first + later]
    assert "now revoked" in pdftotext(now) and "now revoked" not in pdftotext(again)

    new_key = SigningKey.generate()
    new_key.save(tmp_path / "new.key.pem")
    pack_ledger.ledger.register_key(new_key.public, "build-2")
    monkeypatch.setenv("ESCROW_KEY", str(tmp_path / "new.key.pem"))
    signed = tmp_path / "signed.pdf"
    r = cli(["pack", "--project", "example", "--tree-size", str(size), "-o", str(signed)])
    assert r.exit_code == 0, r.stderr
    v = cli(["pack", "verify", str(signed), "--json"])
    assert v.exit_code == 0, v.stdout + v.stderr
    assert f"size {size}" in v.stdout


def test_a_tree_size_the_ledger_does_not_have_is_refused(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    size = pack_ledger.ledger.size()
    out = tmp_path / "p.pdf"
    r = cli(["pack", "--project", "example", "--tree-size", str(size + 1), "-o", str(out)])
    assert r.exit_code == 2 and f"between 1 and the log's size {size}" in r.stderr
    r = cli(["pack", "--project", "example", "--tree-size", "0", "-o", str(out)])
    assert r.exit_code == 2
    r = cli(["pack", "--project", "example", "--tree-size", "1", "-o", str(out)])
    assert r.exit_code == 2 and "No recorded build is in the scope" in r.stderr  # key event only
    assert not out.exists()
