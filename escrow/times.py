"""Times as manifests and deposit records write them: RFC 3339, UTC, microseconds, ``Z``."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from escrow.errors import UsageError


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_the_second(moment: datetime) -> str:
    """``moment`` as people read it in messages: UTC, to the second, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> str:
    """Now as RFC 3339 UTC with microseconds and ``Z``."""
    return rfc3339(datetime.now(UTC))


#: a fraction of a second with a non-zero digit past the sixth (finer than a microsecond);
#: compiled on first use (this module is imported on the way to `escrow build`'s request)
_FINER_THAN_MICROSECONDS = r"[.,]\d{6}\d*[1-9]"


def parse_time(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """A time a user gave (``--since``, ``--until``, the server's query): RFC 3339 (``Z`` or
    an offset) or a bare date; naive times are UTC.  With ``end_of_day`` a bare date means
    the end of that day (``--until`` is exclusive: the next midnight)."""
    value = text.strip()
    try:
        if len(value) == 10 or (len(value) == 8 and value.isascii() and value.isdigit()):
            form = "%Y-%m-%d" if len(value) == 10 else "%Y%m%d"  # 2026-12-06, 20261206
            day = datetime.strptime(value, form).replace(tzinfo=UTC)
            if end_of_day:  # --until is exclusive: the day after (the last day ends at the last µs)
                return (
                    day + timedelta(days=1)
                    if day.date() < date.max
                    else datetime.max.replace(tzinfo=UTC)
                )
            return day
        # RFC 3339 allows a lower-case t and z
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if re.search(_FINER_THAN_MICROSECONDS, value):
            # Python keeps microseconds and drops the rest; times are stored to the
            # microsecond, so the time given lies after the truncated one: rounded up,
            # an entry at .865133 is before --since/--until .865133123, as it is
            parsed += timedelta(microseconds=1)
        return parsed.astimezone(UTC)
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a date or an RFC 3339 time.",
            hint="Write it like 2026-12-01 or 2026-12-01T12:00:00Z.",
        ) from None
    except OverflowError:  # a time whose UTC falls outside years 1–9999
        raise UsageError(f"{option} {text!r} is outside the years 1 to 9999 in UTC.") from None
