"""``POST /v1/packs`` refuses at once a scope `escrow pack` would refuse, instead of queueing
a job that can only fail."""

from __future__ import annotations

from server_helpers import LiveServer


def test_an_impossible_pack_scope_is_refused_before_it_is_queued(live_server: LiveServer) -> None:
    with live_server.client("pipeline") as pipeline:
        built = []
        for _ in range(2):
            r = pipeline.post("/v1/entries", json=live_server.envelope())
            assert r.status_code == 201, r.text
            built.append(r.json()["entry"]["index"])
    with live_server.client("auditor") as auditor:
        size = auditor.get("/v1/checkpoint").json()["size"]
        cases = [
            ({"since": "2026-12-10", "until": "2026-12-01"}, "/since", "is after until"),
            ({"tree_size": size + 5}, "/tree_size", f"more than the log's size {size}"),
            ({"entries": [0, size + 7]}, "/entries/1", f"no entry {size + 7}"),
            ({"entries": [size - 1], "tree_size": size - 1}, "/entries/0", "at tree_size"),
        ]
        for body, pointer, words in cases:
            r = auditor.post("/v1/packs", json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["pointer"] == pointer, r.text
            assert words in r.json()["message"], r.text
        # nothing was queued for them; a possible scope still is
        ok = auditor.post("/v1/packs", json={"entries": [built[0]], "tree_size": size})
        assert ok.status_code == 202, ok.text
    from sqlmodel import Session, select

    from escrow.ledger.store import make_engine
    from escrow.server.packs import PackJob

    engine = make_engine(live_server.settings.db_url)
    try:
        with Session(engine) as s:
            assert len(s.exec(select(PackJob)).all()) == 1
    finally:
        engine.dispose()
