"""`escrow verify` of a build follows its base image to the recorded build that made it.

A phoenix build's base is usually itself a phoenix build recorded in the same ledger.  The
"base" check names that build (the first succeeded build of the base's image before the
entry) and verifies its entry too — signature, inclusion, record and its own bases — so a
build whose base record was tampered with does not verify.  A base from outside the
ledger is reported as not verified here (skipped: nothing found wrong), and a build
``FROM scratch`` has no base to check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.pack.synth import manifest_variant

OTHER_BASE = "sha256:" + "ab" * 32
BASE_REF = "escrow-example/base:latest"  # the base reference of every synthetic build

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@pytest.fixture
def add(escrow_home: Path) -> Iterator[Any]:
    """Append a signed statement with the build key; its ledger entry."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    key = SigningKey.load(settings.key_path)
    with Ledger.open(settings) as ledger:
        yield lambda st: ledger.append(sign_statement(st, key))[0]


def _base(n: int) -> dict[str, Any]:
    st = manifest_variant(n, project="example-base")
    st["predicate"]["inputs"]["baseImages"] = []  # FROM scratch
    return st


def _image(st: dict[str, Any]) -> str:
    return str(st["predicate"]["image"]["id"])


def _checks(cli: Any, index: int) -> tuple[int, list[dict[str, Any]]]:
    r = cli(["verify", str(index), "--json"])
    return r.exit_code, [c for c in r.json()["checks"] if c["name"] == "base"]


def test_a_base_built_in_the_ledger_is_named_and_verified(add: Any, cli: Any) -> None:
    base = _base(1)
    maker = add(base)
    add(manifest_variant(1, base_image_id=_image(base)))  # an earlier user of the same base
    app = add(manifest_variant(2, base_image_id=_image(base)))

    code, checks = _checks(cli, app.index)
    assert code == 0
    assert checks == [
        {
            "name": "base",
            "ok": True,
            "skipped": False,
            "detail": f"{BASE_REF} ({_image(base)[:19]}) is the image of entry {maker.index} "
            "(example-base), verified",
        }
    ]
    text = cli(["verify", str(app.index)])
    assert text.exit_code == 0
    assert f"ok   base       {BASE_REF} ({_image(base)[:19]}) is the image of entry" in text.stdout
    # the base's own build, FROM scratch, has no base to check
    assert _checks(cli, maker.index) == (0, [])


def test_a_base_from_outside_the_ledger_is_not_verified_here(add: Any, cli: Any) -> None:
    """Nor is an image recorded only after the build that used it, which cannot have made
    its base."""
    app = add(manifest_variant(1, base_image_id=OTHER_BASE))
    later = _base(2)
    uses_later = add(manifest_variant(2, base_image_id=_image(later)))
    add(later)

    for index, image in ((app.index, OTHER_BASE), (uses_later.index, _image(later))):
        code, checks = _checks(cli, index)
        assert code == 0
        assert checks == [
            {
                "name": "base",
                "ok": True,
                "skipped": True,
                "detail": f"{BASE_REF} ({image[:19]}): not built in this ledger; not verified",
            }
        ]


def test_a_tampered_base_record_fails_the_build_that_used_it(
    add: Any, cli: Any, escrow_home: Path
) -> None:
    base = _base(1)
    maker = add(base)
    app = add(manifest_variant(1, base_image_id=_image(base)))
    db = sqlite3.connect(escrow_home / "ledger.db")
    with db:
        (data,) = db.execute(
            "SELECT envelope FROM ledger_entry WHERE idx = ?", (maker.index,)
        ).fetchone()
        data = bytes(data)
        pos = data.index(b'"sig":"') + 12  # the signature changed, the statement intact
        flipped = data[:pos] + (b"A" if data[pos : pos + 1] != b"A" else b"B") + data[pos + 1 :]
        db.execute("UPDATE ledger_entry SET envelope = ? WHERE idx = ?", (flipped, maker.index))
    db.close()

    code, checks = _checks(cli, app.index)
    assert code == 1
    (check,) = checks
    assert not check["ok"]
    assert check["detail"].startswith(
        f"{BASE_REF} ({_image(base)[:19]}) is the image of entry {maker.index} (example-base), "
        "whose signature check fails: "
    ), check
