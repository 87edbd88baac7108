"""Times as manifests and deposit records write them: RFC 3339, UTC, microseconds, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_now() -> str:
    """Now as RFC 3339 UTC with microseconds and ``Z``."""
    return rfc3339(datetime.now(UTC))
