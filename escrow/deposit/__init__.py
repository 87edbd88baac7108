"""Escrow deposits: everything a rebuild needs, stored once, rebuildable offline.

Public face:

* :mod:`escrow.deposit.store` — the content-addressed store (``DepositStore``
  protocol, ``FileDepositStore``, ``open_store``);
* :mod:`escrow.deposit.deposit` — ``deposit_build`` / ``deposit_entry`` /
  ``check_entry`` and the deposit record;
* :mod:`escrow.deposit.bundle` — ``export_deposit`` / ``import_deposit``;
* :mod:`escrow.deposit.gc` — ``store_stats`` / ``collect_garbage``;
* :mod:`escrow.deposit.rebuild` — what ``escrow rebuild`` uses without ``--context``.

The rest (``context``, ``images``, ``safetar``) is internal.
"""
