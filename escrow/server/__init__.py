"""The escrow server: the ledger over HTTP, for pipelines and auditors.

Public face:

* :func:`escrow.server.app.create_app` — the FastAPI application (routes under ``/v1``);
* :class:`escrow.server.auth.TokenStore` and :class:`escrow.server.auth.Role` — bearer tokens;
* :class:`escrow.server.client.RemoteLedger` — the CLI's client, with the methods of
  :class:`escrow.ledger.store.Ledger` the commands use.

The server runs the same ledger code as the CLI (:mod:`escrow.ledger.store`); it adds
authentication, HTTP error mapping and pack jobs, nothing else.
"""
