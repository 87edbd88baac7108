"""A pack cut short, stripped of its signature or changed by an incremental update is
refused by `escrow pack verify` (exit 1) in one sentence naming what happened; a renamed
pack still verifies; and the pack's "How to verify" page tells what `pdfsig` says of a
pack changed after signing."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import PackLedger, pdftotext

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@pytest.fixture
def pack(pack_ledger: PackLedger, cli: Any, tmp_path: Path) -> Path:
    pack_ledger.add(0)
    pack_ledger.add(1)
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


def with_annotation(pdf: bytes) -> bytes:
    """``pdf`` with a note added to its first page by an incremental update."""
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils import generic
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page = w.root["/Pages"]["/Kids"][0].get_object()
    note = w.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Annot"),
                generic.NameObject("/Subtype"): generic.NameObject("/Text"),
                generic.NameObject("/Rect"): generic.ArrayObject(
                    [generic.NumberObject(x) for x in (100, 100, 120, 120)]
                ),
                generic.NameObject("/Contents"): generic.TextStringObject("All fine."),
            }
        )
    )
    page[generic.NameObject("/Annots")] = generic.ArrayObject([note])
    w.update_container(page)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def refused(cli: Any, path: Path) -> str:
    r = cli(["pack", "verify", str(path)])
    assert r.exit_code == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"escrow: error: The pack {path} fails verification: pdf signature:")
    return last


@pytest.mark.parametrize("cut", [1, 2, 1000], ids=["newline", "into-eof", "1000-bytes"])
def test_a_pack_cut_short_says_so(cli: Any, pack: Path, tmp_path: Path, cut: int) -> None:
    """Regression: a truncated pack was "not a readable PDF (EOF marker not found)", or,
    cut by its last byte, "the signed bytes were changed"."""
    short = tmp_path / "short.pdf"
    short.write_bytes(pack.read_bytes()[:-cut])
    assert "the file is cut short" in refused(cli, short)


def test_a_pack_cut_back_to_its_rendering_says_it_is_not_signed(
    cli: Any, pack: Path, tmp_path: Path
) -> None:
    """Regression: "expected one signature, found 0" for a pack whose signature (its
    incremental update) was cut off."""
    data = pack.read_bytes()
    end = data.index(b"%%EOF") + len(b"%%EOF\n")
    unsigned = tmp_path / "unsigned.pdf"
    unsigned.write_bytes(data[:end])
    assert "the PDF is not signed" in refused(cli, unsigned)


def test_a_note_added_after_signing_is_refused_while_pdfsig_says_valid(
    cli: Any, pack: Path, tmp_path: Path
) -> None:
    changed = tmp_path / "changed.pdf"
    changed.write_bytes(with_annotation(pack.read_bytes()))
    assert "the signature does not cover the whole file" in refused(cli, changed)
    sig = subprocess.run(["pdfsig", str(changed)], capture_output=True, text=True).stdout
    assert "Signature is Valid" in sig and "Not total document signed" in sig, sig


def test_how_to_verify_asks_pdfsig_for_the_whole_document(pack: Path) -> None:
    """Regression: the page said pdfsig "must say Signature is Valid" only, which it
    also says of a pack changed after signing; and it did not explain pdfsig's
    certificate line ("Certificate issuer is unknown", later "Certificate has Expired")."""
    sig = subprocess.run(["pdfsig", str(pack)], capture_output=True, text=True).stdout
    assert "Total document signed" in sig and "Certificate issuer is unknown" in sig, sig
    flat = " ".join(pdftotext(pack).split())
    assert 'must say both "Signature is Valid" and "Total document signed"' in flat
    assert '"Certificate issuer is unknown"' in flat
    assert '"Certificate has Expired"' in flat
    assert "checks the certificate as of the signing time" in flat


def test_a_renamed_pack_verifies(cli: Any, pack: Path, tmp_path: Path) -> None:
    renamed = tmp_path / "ACME audit Q4 (copy).pdf"
    renamed.write_bytes(pack.read_bytes())
    r = cli(["pack", "verify", str(renamed)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"{renamed}: pack EP-")
