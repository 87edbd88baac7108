"""``POST /v1/packs`` reads a bare date as ``escrow pack`` does."""

from __future__ import annotations

from server_helpers import LiveServer


def test_a_bare_until_date_includes_that_day(live_server: LiveServer) -> None:
    """Regression: `{"until": "2026-12-05"}` meant that day's midnight (exclusive), while
    `escrow pack --until 2026-12-05` includes the whole day."""
    with live_server.client("auditor") as auditor:
        r = auditor.post("/v1/packs", json={"since": "2026-12-01", "until": "2026-12-05"})
        assert r.status_code == 202, r.text
        scope = r.json()["scope"]
        assert scope["since"].startswith("2026-12-01T00:00:00")
        assert scope["until"].startswith("2026-12-06T00:00:00")
        r = auditor.post("/v1/packs", json={"until": "2026-12-05T12:00:00Z"})
        assert r.json()["scope"]["until"].startswith("2026-12-05T12:00:00")
        r = auditor.post("/v1/packs", json={"until": "2026-13-45"})
        assert r.status_code == 422, r.text
