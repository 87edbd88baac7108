"""``POST /v1/packs`` reads a bare date as ``escrow pack`` does."""

from __future__ import annotations

from datetime import date, timedelta

from server_helpers import LiveServer


def test_a_bare_until_date_includes_that_day(live_server: LiveServer) -> None:
    """Regression: `{"until": "2026-12-05"}` meant that day's midnight (exclusive), while
    `escrow pack --until 2026-12-05` includes the whole day."""
    with live_server.client("pipeline") as pipeline:  # a build in scope (else refused, 422)
        posted = pipeline.post("/v1/entries", json=live_server.envelope())
        assert posted.status_code == 201, posted.text
    day = posted.json()["entry"]["integrated_at"][:10]  # the build's day, YYYY-MM-DD
    with live_server.client("auditor") as auditor:
        # the build of that day is in scope: the bare until includes the whole day
        r = auditor.post("/v1/packs", json={"since": "2020-12-01", "until": day})
        assert r.status_code == 202, r.text
        scope = r.json()["scope"]
        assert scope["since"].startswith("2020-12-01T00:00:00")
        after = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
        assert scope["until"].startswith(f"{after}T00:00:00")
        r = auditor.post("/v1/packs", json={"until": "2999-12-05T12:00:00Z"})
        assert r.json()["scope"]["until"].startswith("2999-12-05T12:00:00")
        r = auditor.post("/v1/packs", json={"until": "2026-13-45"})
        assert r.status_code == 422, r.text
