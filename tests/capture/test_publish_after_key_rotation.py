"""`escrow keys rotate` while CI builds run on the same ESCROW_HOME.

A build reads its signing key when it starts; the rotation retires that key at once and
puts a new one in its place (ESCROW_KEY).  Every build still running then failed once
the engine had built it: "The envelope is signed only by keys that may not sign now
(… retired)" (exit 1, as a failed build, yet nothing recorded) — or, rotated before the
background check, stopped with "is retired … Replace it with `escrow keys rotate`",
the very command just run.  A build now signs with the key the rotation put in place.

The interleavings are the real ones, in order: the publisher of a build is opened (and
its check run, or not yet), the real `escrow keys rotate` runs, then the build is
published.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.capture.publish import Publisher
from escrow.config import load_settings
from escrow.errors import KeyLocked
from escrow.signing.keys import SigningKey

STATEMENT = Path(__file__).resolve().parents[1] / "assets" / "build-manifest.example.json"


def _statement(project: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(STATEMENT.read_text())
    doc["predicate"]["build"]["project"] = project
    return doc


def _rotate(cli: Any) -> tuple[str, str]:
    r = cli(["keys", "rotate", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    return doc["old"]["keyid"], doc["new"]["keyid"]


@pytest.mark.parametrize("checked_before", [True, False], ids=["checked", "not-checked-yet"])
def test_a_build_running_while_the_key_is_rotated_is_recorded_with_the_new_key(
    escrow_home: Path, cli: Any, checked_before: bool
) -> None:
    settings = load_settings()
    with Publisher.open(settings) as publisher:  # `escrow build` starts: the key is read
        if checked_before:
            publisher.start()  # the engine builds; the key's standing is checked meanwhile
            assert publisher._signer is not None
            publisher._signer.result()
            publisher.check()
        old, new = _rotate(cli)
        entry, created = publisher.publish(_statement("rotated-meanwhile"))
    assert created
    assert entry.signer == new != old

    r = cli(["ledger", "verify"])
    assert r.exit_code == 0, r.stderr
    r = cli(["verify", str(entry.index)])
    assert r.exit_code == 0, r.stderr
    r = cli(["log", "--signer", old[:16], "--kind", "build-manifest", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"] == []  # nothing recorded with the retired key


def test_a_retired_key_not_replaced_is_still_refused(escrow_home: Path, cli: Any) -> None:
    """Only a rotation's new key is taken: a key retired and left in place still stops
    the build, with the message saying to rotate it."""
    settings = load_settings()
    keyid = SigningKey.load(settings.key_path).keyid
    r = cli(["keys", "retire", keyid])
    assert r.exit_code == 0, r.stderr
    with Publisher.open(settings) as publisher:
        publisher.start()
        with pytest.raises(KeyLocked) as caught:
            publisher.publish(_statement("retired"))
    assert "is retired in the ledger" in caught.value.message
    assert "escrow keys rotate" in str(caught.value.hint)
