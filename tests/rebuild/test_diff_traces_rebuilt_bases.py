"""`escrow diff` names the recorded build that made each side's base image.

Phoenix builds rebuild their base image too, so two builds of an application usually
differ in their base "behind the same reference".  When the ledger holds the build that
made an image (a succeeded build before the entry that used it), the diff names it —
``builtBy`` in ``--json`` — and, when both sides' bases were recorded builds, says which
``escrow diff`` compares them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pack.conftest import PackLedger
from tests.pack.synth import manifest_variant

BASE_REF = "escrow-example/base:latest"  # the base reference of every synthetic build
OTHER_BASE = "sha256:" + "ab" * 32

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _base(n: int, status: str = "succeeded") -> dict[str, Any]:
    st = manifest_variant(n, project="example-base", status=status)
    st["predicate"]["inputs"]["baseImages"] = []  # FROM scratch
    return st


def _image(n: int) -> str:
    return str(manifest_variant(n, project="example-base")["predicate"]["image"]["id"])


def _line(r: Any) -> list[str]:
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  base image "))
    return lines[at : at + 2]


def test_both_bases_built_in_the_ledger_are_named(pack_ledger: PackLedger, cli: Any) -> None:
    b1 = pack_ledger.add_statement(_base(1))
    a1 = pack_ledger.add_statement(manifest_variant(1, base_image_id=_image(1)))
    b2 = pack_ledger.add_statement(_base(2))
    a2 = pack_ledger.add_statement(manifest_variant(2, base_image_id=_image(2)))

    lines = _line(cli(["diff", str(a1.index), str(a2.index)]))
    assert lines == [
        f"  base image {BASE_REF} (stage 0): {_image(1)[:19]} (built by entry {b1.index}, "
        f"example-base) -> {_image(2)[:19]} (built by entry {b2.index}, example-base) "
        "(same reference, another image)",
        f"    `escrow diff {b1.index} {b2.index}` shows what changed in it",
    ]
    doc = cli(["diff", str(a1.index), str(a2.index), "--json"]).json()
    (base,) = doc["inputs"]["baseImages"]
    assert base["original"]["builtBy"] == {"index": b1.index, "project": "example-base"}
    assert base["rebuilt"]["builtBy"] == {"index": b2.index, "project": "example-base"}


def test_an_image_no_earlier_build_made_is_not_named(pack_ledger: PackLedger, cli: Any) -> None:
    """From outside the ledger, made by a failed build, or built only after the entry that
    used it: nothing explains it, and the diff says nothing more than before."""
    a1 = pack_ledger.add_statement(manifest_variant(1, base_image_id=OTHER_BASE))
    pack_ledger.add_statement(_base(3, status="failed"))
    a2 = pack_ledger.add_statement(manifest_variant(2, base_image_id=_image(5)))
    pack_ledger.add_statement(_base(5))  # the image a2 used, recorded only after it

    lines = _line(cli(["diff", str(a1.index), str(a2.index)]))
    assert lines[0] == (
        f"  base image {BASE_REF} (stage 0): {OTHER_BASE[:19]} -> {_image(5)[:19]} "
        "(same reference, another image)"
    )
    assert not lines[1].startswith("    `escrow diff")
    doc = cli(["diff", str(a1.index), str(a2.index), "--json"]).json()
    (base,) = doc["inputs"]["baseImages"]
    assert "builtBy" not in base["original"] and "builtBy" not in base["rebuilt"]


def test_the_builds_that_used_the_image_are_not_taken_for_its_maker(
    pack_ledger: PackLedger, cli: Any
) -> None:
    """The image-ID index lists the builds that used an image as a base beside the one that
    made it; only the maker is named, even when the users come first in the log."""
    user = pack_ledger.add_statement(manifest_variant(1, base_image_id=_image(1)))
    maker = pack_ledger.add_statement(_base(1))
    a2 = pack_ledger.add_statement(manifest_variant(2, base_image_id=_image(1)))
    a3 = pack_ledger.add_statement(manifest_variant(3, base_image_id=OTHER_BASE))

    doc = cli(["diff", str(a2.index), str(a3.index), "--json"]).json()
    (base,) = doc["inputs"]["baseImages"]
    assert base["original"]["builtBy"] == {"index": maker.index, "project": "example-base"}
    assert user.index < maker.index
