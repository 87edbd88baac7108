"""`escrow pack verify` meets a pack that was tampered with: each is refused (exit 1) in
one sentence naming what was done to it.

Bytes appended after the signed file were reported as a file "cut short" or "not a
readable PDF (startxref not found)"; an encrypted pack as pyHanko's "No key available to
decrypt"; an incremental update only as "the signature does not cover the whole file",
never what it changes; and a pack signed with the pack key that holds an attachment escrow
never writes verified."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_escrow
from .synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Made:
    pdf: Path  # a genuine pack of two builds
    home: Path  # its ESCROW_HOME: the ledger and the pack key

    @property
    def cert(self) -> Path:
        return self.home / "keys" / "pack.cert.pem"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    tmp = tmp_path_factory.mktemp("hunt-tamper")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(tmp / "home"))
        for var in (
            "ESCROW_DB_URL",
            "ESCROW_KEY",
            "ESCROW_KEY_PASSPHRASE",
            "ESCROW_SERVER",
            "ESCROW_TSA_URL",
        ):
            mp.delenv(var, raising=False)
        assert run_escrow(["init"]) == 0
        settings = load_settings()
        with Ledger.open(settings) as ledger:
            key = SigningKey.load(settings.key_path, settings.passphrase)
            for n in range(2):
                ledger.append(sign_statement(manifest_variant(n), key))
        out = tmp / "pack.pdf"
        assert run_escrow(["pack", "--project", "example", "-o", str(out)]) == 0
        made = Made(out, tmp / "home")
        assert run_escrow(["pack", "verify", str(out), "--trust", str(made.cert)]) == 0
        yield made


def refused(cli: Any, path: Path, *args: str, check: str = "pdf signature") -> str:
    """The one sentence `pack verify` refuses ``path`` with (exit 1), after the check's name."""
    r = cli(["pack", "verify", str(path), *args])
    assert r.exit_code == 1, (r.exit_code, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    head = f"escrow: error: The pack {path} fails verification: {check}: "
    assert last.startswith(head), last
    assert last.endswith(".") and not last.endswith((". .", "..", ".).")), last
    return last.removeprefix(head)


# -- bytes after the signed file, before its header; empty; encrypted -------------------


def _signed(made: Made) -> bytes:
    return made.pdf.read_bytes()


RAW: dict[str, Callable[[bytes], bytes]] = {
    "text-after-eof": lambda d: d + b"hello\n",
    "a-second-eof": lambda d: d + b"%%EOF\n",
    "junk-then-eof": lambda d: d + b"junk junk\n%%EOF\n",
    "zeros": lambda d: d + b"\0\0\0\0",
    "blank-lines": lambda d: d + b"\n\n   \n",
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_bytes_appended_after_the_signed_file_are_named(
    made: Made, cli: Any, tmp_path: Path, case: str
) -> None:
    """Regression: text appended was "the file is cut short ... interrupted download";
    an appended %%EOF "not a readable PDF (startxref not found)"."""
    data = _signed(made)
    bad = tmp_path / f"{case}.pdf"
    bad.write_bytes(RAW[case](data))
    added = len(bad.read_bytes()) - len(data)
    said = refused(cli, bad, "--trust", str(made.cert))
    assert said == (
        f"{added} bytes were appended after the end of the signed file (byte {len(data)}, "
        "its %%EOF): the file is not the one escrow signed."
    )


def test_bytes_put_before_the_header_are_named(made: Made, cli: Any, tmp_path: Path) -> None:
    """Regression: "the file is not a readable PDF (Illegal PDF header)"."""
    bad = tmp_path / "prefixed.pdf"
    bad.write_bytes(b"GARBAGE\n" + _signed(made))
    assert refused(cli, bad).startswith("8 bytes come before the PDF's %PDF- header")


def test_an_empty_file_says_it_is_empty(cli: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert refused(cli, empty) == "the file is empty (0 bytes), not a readable PDF."


def _encrypted_and_signed(made: Made) -> bytes:
    """The pack's rendering encrypted (no user password), then signed with the pack key."""
    from escrow.pack.sign import FIELD_NAME, pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.pdf_utils.writer import copy_into_new_writer
        from pyhanko.sign import fields, signers

    data = _signed(made)
    rendered = data[: data.index(b"%%EOF") + len(b"%%EOF\n")]
    w = copy_into_new_writer(PdfFileReader(io.BytesIO(rendered)))
    w.encrypt("owner", "")
    encrypted = io.BytesIO()
    w.write(encrypted)
    iw = IncrementalPdfFileWriter(io.BytesIO(encrypted.getvalue()))
    iw.encrypt("owner")
    key = made.home / "keys"
    signer = signers.SimpleSigner.load(str(key / "pack.key.pem"), str(key / "pack.cert.pem"))
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    out = io.BytesIO()
    signers.sign_pdf(iw, meta, signer=signer, output=out)
    return out.getvalue()


def test_an_encrypted_pack_says_it_is_encrypted(made: Made, cli: Any, tmp_path: Path) -> None:
    """Regression: "the file is not a readable PDF (No key available to decrypt, please
    authenticate first.)." for a pack encrypted and signed with the pack key."""
    bad = tmp_path / "encrypted.pdf"
    bad.write_bytes(_encrypted_and_signed(made))
    assert refused(cli, bad, "--trust", str(made.cert)) == (
        "the PDF is encrypted, and escrow never encrypts a pack: the file is not the one "
        "escrow signed."
    )


# -- incremental updates after the signature -------------------------------------------


def _update(data: bytes, change: Callable[[Any], None]) -> bytes:
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(io.BytesIO(data))
    change(w)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def _g() -> Any:
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils import generic
    return generic


def _first_page(w: Any) -> Any:
    page = w.root["/Pages"].get_object()
    while "/Kids" in page:
        page = page["/Kids"][0].get_object()
    return page


def _statement_spec(w: Any) -> Any:
    from escrow.pack.verify import _name_tree

    tree = w.root["/Names"]["/EmbeddedFiles"].get_object()
    return dict(_name_tree(tree))["pack-statement.json"].get_object()


def _replace_attachment(w: Any) -> None:
    g = _g()
    spec = _statement_spec(w)
    doc = json.loads(spec["/EF"]["/F"].get_object().data)
    doc["predicate"]["requester"] = "someone else"
    stream = g.StreamObject(
        g.DictionaryObject({g.NameObject("/Type"): g.NameObject("/EmbeddedFile")}),
        stream_data=json.dumps(doc).encode(),
    )
    spec["/EF"][g.NameObject("/F")] = w.add_object(stream)
    w.update_container(spec)


def _add_attachment(w: Any) -> None:
    g = _g()
    stream = w.add_object(
        g.StreamObject(
            g.DictionaryObject({g.NameObject("/Type"): g.NameObject("/EmbeddedFile")}),
            stream_data=b"all fine\n",
        )
    )
    spec = w.add_object(
        g.DictionaryObject(
            {
                g.NameObject("/Type"): g.NameObject("/Filespec"),
                g.NameObject("/F"): g.TextStringObject("zz-notes.txt"),
                g.NameObject("/UF"): g.TextStringObject("zz-notes.txt"),
                g.NameObject("/EF"): g.DictionaryObject({g.NameObject("/F"): stream}),
            }
        )
    )
    tree = w.root["/Names"]["/EmbeddedFiles"]
    node = tree.get_object()
    while "/Kids" in node:
        node = node["/Kids"][-1].get_object()
    node["/Names"].extend([g.TextStringObject("zz-notes.txt"), spec])
    node.pop("/Limits", None)
    if isinstance(node.container_ref, g.Reference):
        w.mark_update(node.container_ref)
    w.update_root()


def _change_content(w: Any) -> None:
    g = _g()
    page = _first_page(w)
    stream = w.add_object(g.StreamObject(stream_data=b"q 1 0 0 rg 10 10 100 100 re f Q\n"))
    contents = page.raw_get("/Contents")
    old = contents.get_object()
    page[g.NameObject("/Contents")] = g.ArrayObject(
        [*(old if isinstance(old, g.ArrayObject) else [contents]), stream]
    )
    w.update_container(page)


def _add_annotation(w: Any) -> None:
    g = _g()
    n = g.NameObject
    page = _first_page(w)
    note = w.add_object(
        g.DictionaryObject(
            {
                n("/Type"): n("/Annot"),
                n("/Subtype"): n("/Text"),
                n("/Rect"): g.ArrayObject([g.NumberObject(x) for x in (100, 100, 120, 120)]),
                n("/Contents"): g.TextStringObject("All fine."),
            }
        )
    )
    page[n("/Annots")] = g.ArrayObject([*(page.get("/Annots") or []), note])
    w.update_container(page)


def _add_signature_field(w: Any) -> None:
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.sign import fields

    fields.append_signature_field(w, fields.SigFieldSpec("Second", box=(10, 10, 100, 40)))


def _change_info(w: Any) -> None:
    g = _g()
    info = w.trailer["/Info"].get_object()
    info[g.NameObject("/Title")] = g.TextStringObject("Verified, no findings")
    w.update_container(info)


UPDATES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "attachment-replaced": (lambda d: _update(d, _replace_attachment), "the attachments"),
    "attachment-added": (lambda d: _update(d, _add_attachment), "the attachments"),
    "page-content": (lambda d: _update(d, _change_content), "the content of page 1"),
    "annotation": (lambda d: _update(d, _add_annotation), "the annotations of page 1"),
    "signature-field": (lambda d: _update(d, _add_signature_field), "the signature fields"),
    "info": (lambda d: _update(d, _change_info), "the document information (/Info)"),
}


@pytest.mark.parametrize("case", sorted(UPDATES))
def test_an_update_after_signing_names_what_it_changes(
    made: Made, cli: Any, tmp_path: Path, case: str
) -> None:
    """Regression: every such pack was refused as "the signature does not cover the whole
    file", never saying that the file was changed after signing, nor what changed."""
    make, what = UPDATES[case]
    data = _signed(made)
    bad = tmp_path / f"{case}.pdf"
    bad.write_bytes(make(data))
    said = refused(cli, bad, "--trust", str(made.cert))
    added = len(bad.read_bytes()) - len(data)
    assert said.startswith(
        f"the signature does not cover the whole file: {added} bytes were added after it by "
        "an incremental update, which changes "
    ), said
    assert said.endswith(", so the file was changed after escrow signed it."), said
    changes = said.split(", which changes ", 1)[1].split(", so the file", 1)[0]
    assert what in changes.replace(" and ", ", ").split(", "), said


def test_a_second_signature_says_the_pack_was_signed_again(
    made: Made, cli: Any, tmp_path: Path
) -> None:
    """Regression: "expected one signature, found 2"."""
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import signers

    key = made.home / "keys"
    signer = signers.SimpleSigner.load(str(key / "pack.key.pem"), str(key / "pack.cert.pem"))
    out = io.BytesIO()
    signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(_signed(made))),
        signers.PdfSignatureMetadata(field_name="Second", md_algorithm="sha256"),
        signer=signer,
        output=out,
    )
    bad = tmp_path / "twice.pdf"
    bad.write_bytes(out.getvalue())
    assert refused(cli, bad, "--trust", str(made.cert)) == (
        "the file holds 2 signatures (EscrowPackSignature, Second), where a pack has "
        "escrow's one: it was signed again after escrow signed it."
    )


# -- attachments escrow never writes, in a pack signed with the pack key -----------------


def _resigned(made: Made, out: Path, extra: str = "", drop: str = "") -> Path:
    """The pack rendered again from its ledger and signed with its own key, with an
    ``extra`` attachment, or without the attachment ``drop``."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.pack.collect import PackRequest, collect
    from escrow.pack.evidence import attachments_for
    from escrow.pack.model import SignerView
    from escrow.pack.render import AttachmentFile, render_pdf
    from escrow.pack.sign import ensure_pack_signer, sign_pdf

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(made.home))
        settings = load_settings()
        signer = ensure_pack_signer(settings)
        view = SignerView(signer.subject, signer.cert_sha256, "ECDSA P-256")
        with Ledger.open(settings) as ledger:
            collected = collect(ledger, PackRequest(generated_at=WHEN, projects=("example",)), view)
        files = [f for f in attachments_for(collected) if f.name != drop]
        if extra:
            files.append(AttachmentFile(extra, b"all fine\n", "notes"))
        pdf = render_pdf(collected.view, files, WHEN, strict=True).pdf
        out.write_bytes(sign_pdf(pdf, signer))
    return out


@pytest.mark.parametrize("name", ["notes.txt", "pack-statement.json "])
def test_an_attachment_escrow_never_writes_is_refused(
    made: Made, cli: Any, tmp_path: Path, name: str
) -> None:
    """Regression: a pack signed with the pack key that holds another attachment verified
    (exit 0), listing it among the evidence."""
    bad = _resigned(made, tmp_path / "extra.pdf", extra=name)
    said = refused(cli, bad, "--trust", str(made.cert), check="attachments")
    assert said == f"the pack holds an attachment escrow does not write: {json.dumps(name)}."


def test_the_attachments_check_reads_as_one_sentence(made: Made, cli: Any, tmp_path: Path) -> None:
    """Regression: "attachments: The pack has no attachment …", a capital in mid-sentence."""
    bad = _resigned(made, tmp_path / "no-keys.pdf", drop="signer-keys.json")
    said = refused(cli, bad, "--trust", str(made.cert), check="attachments")
    assert said == "the pack has no attachment signer-keys.json."
