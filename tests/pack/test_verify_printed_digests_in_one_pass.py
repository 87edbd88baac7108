"""`escrow pack verify` looks the required digests up in the pages' text in one pass.

Each build in a pack requires its image ID, diff IDs and leaf hash to be printed; the
check searched the whole extracted text once for each of them, so its cost grew with
the square of the builds (2.6 s of `pack verify` at 900 builds, ~40 s at 3,650). The
answers must stay exactly those of ``value in text``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from escrow.pack import verify as pack_verify
from tests.conftest import run_cli

from .conftest import PackLedger

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


class _CountedText(str):
    """The extracted text, counting the substring searches made in it."""

    searches = 0

    def __contains__(self, value: object) -> bool:
        type(self).searches += 1
        return super().__contains__(value)  # type: ignore[operator]


def _pack(pack_ledger: PackLedger, tmp_path: Path, builds: int) -> Path:
    for n in range(builds):
        pack_ledger.add(n)
    out = tmp_path / "pack.pdf"
    r = run_cli(["pack", "--project", "example", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    return out


def test_the_text_is_not_searched_once_per_required_digest(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _pack(pack_ledger, tmp_path, 3)
    real = pack_verify.pdf_text
    monkeypatch.setattr(pack_verify, "pdf_text", lambda path: _CountedText(real(path)))
    _CountedText.searches = 0

    report = pack_verify.verify_pack(out)

    assert report.ok, report.to_json()
    shown = next(c for c in report.checks if c.name == "printed digests")
    # 3 builds x (image ID, 3 diff IDs, leaf hash) and the pack ID
    assert shown.detail.startswith("16 required values shown"), shown.detail
    assert _CountedText.searches <= 1  # the pack ID only; it was 16


def test_a_digest_missing_from_the_pages_is_still_named(
    pack_ledger: PackLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _pack(pack_ledger, tmp_path, 2)
    diff_id = pack_ledger.ledger.get(2).statement()["predicate"]["layers"][1]["diffId"]
    real = pack_verify.pdf_text
    # the digest printed without its "sha256:" is not the value the pages must show
    monkeypatch.setattr(
        pack_verify, "pdf_text", lambda path: real(path).replace(diff_id, diff_id[7:])
    )

    report = pack_verify.verify_pack(out)

    assert not report.ok
    bad = report.first_failure
    assert bad is not None and bad.name == "printed digests"
    assert f"entry 2 diff ID {diff_id}" in bad.detail


def _h(x: object) -> str:
    return hashlib.sha256(str(x).encode()).hexdigest()


def test_found_in_answers_as_a_substring_search() -> None:
    from escrow.pack.verify import _found_in

    a, b, c, d = _h(1), _h(2), _h(3), _h(4)
    text = (
        f"image sha256:{a}\nleaf {b}\n"  # as the pages print them
        f"run {c}{d[:10]} end\n"  # a run of 74 hex digits holds c and other windows
        f"sha256:{d}ff x{a[:63]} "  # a prefixed run longer than 64
        f"long {'0' * 2000}{b} "  # a run too long to index window by window
        "EP-1A2B-3C4D-5E6F-7081"
    )
    values: list[Any] = [
        f"sha256:{a}",
        a,
        b,
        f"sha256:{b}",
        c,
        f"sha256:{c}",
        (c + d[:10])[5:69],
        f"sha256:{d}",
        d,
        (d + "ff")[2:],
        a[:63] + "0",
        "0" * 64,
        f"sha256:{'0' * 64}",
        "EP-1A2B-3C4D-5E6F-7081",
        "EP-0000",
        f"sha256:{_h(5)}",
        f"SHA256:{a}",
    ]
    assert _found_in(text, values) == {v for v in values if v in text}
