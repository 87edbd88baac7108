"""Retiring a key again whose retirement is still to come says so (the server's
``POST /v1/keys/{id}/retire`` answers with this message): it said "already retired"
while ``escrow keys list`` showed the key active."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from escrow.errors import InputError
from escrow.signing.keys import SigningKey


def test_retiring_again_a_key_retired_from_a_later_date_names_that_date(
    escrow_home: Path,
) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings()) as lg:
        key = SigningKey.generate()
        lg.register_key(key.public, "later")
        first = lg.retire_key(key.public.keyid, datetime(2030, 1, 1, tzinfo=UTC))
        size = lg.size()
        with pytest.raises(InputError) as e:
            lg.retire_key(key.public.keyid, datetime(2031, 1, 1, tzinfo=UTC))
        assert "is already to be retired from 2030-01-01T00:00:00Z" in e.value.message
        assert f"(entry {first.index})" in e.value.message
        assert "revoke" in (e.value.hint or "")
        assert lg.size() == size  # nothing appended
        # a retirement already in force is still "already retired"
        now = SigningKey.generate()
        lg.register_key(now.public, "now")
        lg.retire_key(now.public.keyid)
        with pytest.raises(InputError, match="is already retired"):
            lg.retire_key(now.public.keyid)
