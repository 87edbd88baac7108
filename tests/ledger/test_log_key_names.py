"""A log key that is not the ledger's was refused naming the ledger's key by its key ID
(``44892f17dc4cc1ac…``), while `escrow init` and `escrow ledger verifier-key` show keys as
``<origin>+<key hash>``: the two could not be matched by eye.  Both keys are now named
the way those commands print them."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_helpers import LedgerEnv

from escrow.errors import KeyLocked
from escrow.ledger.checkpoint import verifier_key_line
from escrow.ledger.store import Ledger
from escrow.signing.keys import PublicKey, SigningKey


def _named(origin: str, public: PublicKey) -> str:
    return "+".join(verifier_key_line(origin, public).split("+", 2)[:2])


def test_both_log_keys_are_named_as_verifier_keys(env: LedgerEnv, tmp_path: Path) -> None:
    other = LedgerEnv.create(tmp_path / "other", f"sqlite:///{tmp_path / 'o.db'}", register=False)
    settings = other.settings._replace(db_url=env.settings.db_url)
    with Ledger.open(env.settings) as lg:
        origin, ledger_key = lg.origin, lg.log_public
    this_key = SigningKey.load(other.settings.log_key_path, None).public
    with pytest.raises(KeyLocked) as info:
        Ledger.open(settings)
    message = info.value.message
    assert f"({_named(origin, this_key)})" in message, message
    assert f"created with the log key {_named(origin, ledger_key)}" in message, message
