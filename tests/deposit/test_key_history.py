"""An imported entry's signer must have been registered, and not revoked or retired, before it."""

from __future__ import annotations

from typing import Any

import pytest

from escrow.deposit.bundle import _check_key_valid
from escrow.errors import CheckFailed
from escrow.signing.keys import SigningKey

KEY = SigningKey.generate()
ADDED = {"event": "added", "publicKey": KEY.public.pem(), "effectiveFrom": "2026-01-01T00:00:00Z"}


def _ev(event: str, when: str) -> dict[str, Any]:
    return {"event": event, "effectiveFrom": when}


@pytest.mark.parametrize(
    ("history", "ok"),
    [
        pytest.param([(1, ADDED)], True, id="added-before"),
        pytest.param([(7, ADDED)], False, id="added-after"),
        pytest.param([], False, id="never-added"),
        pytest.param(
            [(1, ADDED), (3, _ev("revoked", "2026-01-02T00:00:00Z"))], False, id="revoked-before"
        ),
        pytest.param(
            [(1, ADDED), (9, _ev("revoked", "2026-01-02T00:00:00Z"))], True, id="revoked-after"
        ),
        pytest.param(
            [(1, ADDED), (3, _ev("retired", "2026-12-31T00:00:00Z"))],
            True,
            id="retired-from-a-later-date",
        ),
        pytest.param(
            [(1, ADDED), (3, _ev("retired", "2026-02-01T00:00:00Z"))],
            False,
            id="retired-before-it-signed",
        ),
    ],
)
def test_key_validity_at_the_entry(history: list[tuple[int, dict[str, Any]]], ok: bool) -> None:
    item = {"index": 5, "integratedAt": "2026-06-01T12:00:00.000000Z"}
    if ok:
        _check_key_valid({KEY.keyid: history}, KEY.keyid, item)
    else:
        with pytest.raises(CheckFailed, match="nothing was imported"):
            _check_key_valid({KEY.keyid: history}, KEY.keyid, item)


def test_an_added_event_for_another_key_does_not_count() -> None:
    other = {**ADDED, "publicKey": SigningKey.generate().public.pem()}
    with pytest.raises(CheckFailed, match="does not show registered"):
        _check_key_valid({KEY.keyid: [(1, other)]}, KEY.keyid, {"index": 5, "integratedAt": ""})
