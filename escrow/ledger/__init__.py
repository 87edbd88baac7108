"""The ledger: an RFC 9162 transparency log of signed envelopes.

* :mod:`escrow.ledger.merkle` — pure RFC 9162 hashing, proofs and their verification;
* :mod:`escrow.ledger.checkpoint` — C2SP signed-note checkpoints;
* :mod:`escrow.ledger.store` — :class:`~escrow.ledger.store.Ledger` on SQLite or PostgreSQL;
* :mod:`escrow.ledger.verify` — the whole-log audit behind ``escrow ledger verify``.
"""
