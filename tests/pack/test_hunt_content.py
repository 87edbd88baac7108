"""What the pack prints of recorded values that hold characters which print nothing
legible: control characters (the ESC of a coloured log, a NUL), zero-width characters
and direction marks hidden in a name, line separators.  WeasyPrint drew a box for a
control character, which ``pdftotext`` drops, and drew nothing at all for a zero-width
one, so ``lat\u200best`` read "latest" on the page: each is now shown as ``[U+XXXX]``,
like the direction overrides, and the pack still verifies."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.pack.collect import PackRequest

from .conftest import PackLedger
from .synth import manifest_variant
from .test_pack_verify_scope import _make, _verify, _write

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


def _text(pdf: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", "-enc", "UTF-8", str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_invisible_characters_in_recorded_values_are_shown(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    st = manifest_variant(0)
    p = st["predicate"]
    p["image"]["tags"] = ["app:lat\u200best"]  # a zero-width space: "latest" to the eye
    p["image"]["config"]["Labels"] = {"org.example.note": "x\x1b[31my"}  # ESC of a colour
    p["inputs"]["source"]["branch"] = "ma\u200fin\u2028dev"  # RLM, line separator
    p["steps"][2]["instruction"] = "RUN echo a\x00b\x07c\ufeffd"
    pack_ledger.add_statement(st)
    signer, collected = _make(
        pack_ledger,
        PackRequest(
            generated_at=WHEN,
            projects=("example",),
            since=datetime(2026, 12, 1, tzinfo=UTC),
            until=datetime(2027, 1, 1, tzinfo=UTC),
        ),
    )
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "invisible.pdf", signer, collected)
    text = _text(pdf)
    for shown in (
        "app:lat[U+200B]est",
        "x[U+001B][31my",
        "ma[U+200F]in[U+2028]dev",
        "a[U+0000]b[U+0007]c[U+FEFF]d",
    ):
        assert shown in "".join(text.split()), shown
    r = _verify(pdf, "--project", "example")
    assert r.exit_code == 0, r.stderr + r.stdout


@pytest.mark.parametrize("project", ["ex\u200bample", "ex\x1bample"])
def test_a_pack_of_a_project_with_an_invisible_character_verifies(
    pack_ledger: PackLedger, tmp_path: Path, project: str
) -> None:
    """The verifier reads the project on the cover as the pages print it.  A control
    character in the project also went raw into the PDF's XMP metadata (the description
    of the scope), which XML forbids: signing the pack failed ("Failed to parse XMP XML")."""
    pack_ledger.add(0, project=project)
    signer, collected = _make(pack_ledger, PackRequest(generated_at=WHEN, projects=(project,)))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "name.pdf", signer, collected)
    assert f"projects ex[U+{ord(project[2]):04X}]ample" in _text(pdf)
    r = _verify(pdf, "--project", project)
    assert r.exit_code == 0, r.stderr + r.stdout


def test_empty_recorded_values_are_said_not_left_blank(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """An empty tag, label, build argument or instruction printed as a blank cell, which
    reads as a value left out; an argument without a value printed the same as an empty
    one; and an image whose os and architecture are empty lost its size with its
    "Platform / size" row."""
    st = manifest_variant(0)
    p = st["predicate"]
    p["image"]["tags"] = [""]
    p["image"]["config"]["Labels"] = {"": ""}
    p["image"]["os"] = p["image"]["architecture"] = ""
    p["inputs"]["buildArgs"][0]["value"] = ""
    p["inputs"]["buildArgs"].append({"name": "NO_VALUE", "value": None})
    p["steps"][2]["instruction"] = ""
    pack_ledger.add_statement(st)
    signer, collected = _make(pack_ledger, PackRequest(generated_at=WHEN, projects=("example",)))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "empty.pdf", signer, collected)
    lines = [" ".join(line.split()) for line in _text(pdf).splitlines()]
    for row in (
        "Tags (empty)",
        "Label (empty) (empty)",
        "VERSION (empty)",
        "NO_VALUE (no value)",
        "Platform / size —, 1.2 MiB",
    ):
        assert row in lines, row
    assert any(line.startswith("3 (empty) 640 ms") for line in lines)
    assert _verify(pdf, "--project", "example").exit_code == 0


@pytest.mark.parametrize("project", ["مشروع-التطبيق", "app-אב-גד", "مشروع 2", "אב.גד"])
def test_a_pack_of_a_right_to_left_name_with_a_hyphen_dot_or_digit_verifies(
    pack_ledger: PackLedger, tmp_path: Path, project: str
) -> None:
    """``pdftotext`` turns back only the runs of right-to-left letters, so the words of
    such a name came out of the cover in another order, and the honest pack failed
    ("the pages do not show the scope the pack statement states")."""
    pack_ledger.add(0, project=project)
    signer, collected = _make(pack_ledger, PackRequest(generated_at=WHEN, projects=(project,)))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "rtl.pdf", signer, collected)
    r = _verify(pdf, "--project", project)
    assert r.exit_code == 0, r.stderr + r.stdout


def test_a_cover_showing_a_right_to_left_name_with_its_words_swapped_is_refused(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """A cover printing "גד-אב" for a pack of "אב-גד" is another project's name; it was
    taken for the stated one, as ``pdftotext`` gives the words of either in the other's
    order once its direction controls are left out."""
    pack_ledger.add(0, project="אב-גד")
    signer, collected = _make(pack_ledger, PackRequest(generated_at=WHEN, projects=("אב-גד",)))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    view = dataclasses.replace(
        collected.view, scope=dataclasses.replace(collected.view.scope, projects=("גד-אב",))
    )
    pdf = _write(tmp_path / "swapped.pdf", signer, collected, view=view)
    r = _verify(pdf)
    assert r.exit_code == 1
    assert "do not show the scope the pack statement states" in r.stdout + r.stderr


def test_a_right_to_left_value_does_not_take_in_the_text_beside_it(
    pack_ledger: PackLedger, tmp_path: Path
) -> None:
    """The digits and separators after a right-to-left name joined its run, so the cover
    of projects "مشروع" and "2024-app" read "projects 2024 ,مشروع-app", and tags "عربي"
    and "1.0" read "1.0 ,عربي": each value is now isolated from the next."""
    pack_ledger.add(0, project="مشروع")
    st = manifest_variant(1, project="2024-app")
    st["predicate"]["image"]["tags"] = ["عربي", "1.0"]
    pack_ledger.add_statement(st)
    projects = ("مشروع", "2024-app")
    signer, collected = _make(pack_ledger, PackRequest(generated_at=WHEN, projects=projects))
    shutil.copy(pack_ledger.home / "keys" / "pack.cert.pem", tmp_path / "pack-signer.pem")
    pdf = _write(tmp_path / "isolated.pdf", signer, collected)
    lines = [" ".join(line.split()) for line in _text(pdf).splitlines()]
    assert "Scope projects \u202bمشروع\u202c, 2024-app" in lines
    assert "Tags \u202bعربي\u202c, 1.0" in lines
    r = _verify(pdf, "--project", "مشروع", "--project", "2024-app")
    assert r.exit_code == 0, r.stderr + r.stdout
