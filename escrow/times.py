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

#: an ISO 8601 week (2026-W49, 2026W49) or a day of one (2026-W49-7, 2026W497), alone
_WEEK = r"(\d{4})-?W(\d{2})(?:-?([1-7]))?"

#: the time of day after the date: an hour or minute with a fraction (ISO 8601's 12.5 is
#: half past twelve; Python's reader takes it for 12:00:00.5), or the second 60 of a leap
#: second, which Python refuses
_HOUR_OR_MINUTE_FRACTION = r"[Tt ]\d{2}(?::?\d{2})?[.,]"
_LEAP_SECOND = r"([Tt ]\d{2}:?\d{2}:?)60(?=$|[.,+\-Zz ])"


class TimeOutOfRange(UsageError):
    """A time whose UTC falls outside the years 1 to 9999."""


#: a calendar year (2026), month (2026-12) or quarter (2026-Q3, 2026Q3), alone: the
#: periods audits are asked for
_YEAR_MONTH_QUARTER = r"(\d{4})(?:-(\d{2})|-?Q([1-4]))?"


def _bare_period(value: str) -> tuple[date, date | None] | None:
    """The first day of the period a bare date (2026-12-06, 20261206), ISO week (2026-W49,
    a week day 2026-W49-1), month (2026-12), quarter (2026-Q3) or year (2026) names, and
    the day after it (``None`` past the year 9999); ``None`` for any other text.
    ``ValueError`` for a period the calendar lacks."""
    if len(value) == 10 and "W" not in value:
        first = datetime.strptime(value, "%Y-%m-%d").date()
        return first, _later(first, timedelta(days=1))
    if len(value) == 8 and value.isdigit():
        first = datetime.strptime(value, "%Y%m%d").date()
        return first, _later(first, timedelta(days=1))
    if (m := re.fullmatch(_WEEK, value)) is not None:
        weekday = m[3]
        first = date.fromisocalendar(int(m[1]), int(m[2]), int(weekday or 1))
        return first, _later(first, timedelta(days=1 if weekday else 7))
    if (m := re.fullmatch(_YEAR_MONTH_QUARTER, value)) is not None:
        year = int(m[1])
        if m[2] is not None:
            month, months = int(m[2]), 1
        elif m[3] is not None:
            month, months = 3 * int(m[3]) - 2, 3
        else:
            month, months = 1, 12
        first = date(year, month, 1)
        after = month - 1 + months
        if year + after // 12 > date.max.year:
            return first, None
        return first, date(year + after // 12, after % 12 + 1, 1)
    return None


def _later(first: date, length: timedelta) -> date | None:
    return first + length if first <= date.max - length else None


def parse_time(text: str, option: str, *, end_of_day: bool = False) -> datetime:
    """A time a user gave (``--since``, ``--until``, the server's query): RFC 3339 (``Z`` or
    an offset) or a bare date; naive times are UTC.  With ``end_of_day`` a bare date means
    the end of that day (``--until`` is exclusive: the next midnight), and a bare ISO week
    (2026-W49), month (2026-12), quarter (2026-Q3) or year (2026) the end of that period.
    A leap second (``23:59:60``) is the start of the next second, as POSIX clocks (and so
    the ledger's times) count it."""
    value = text.strip()
    try:
        period = _bare_period(value.upper()) if value.isascii() else None
        if period is not None:  # --until is exclusive: the day after the period
            first, after = period
            if not end_of_day:
                return datetime.combine(first, datetime.min.time(), UTC)
            if after is None:  # the last day ends at the last µs
                return datetime.max.replace(tzinfo=UTC)
            return datetime.combine(after, datetime.min.time(), UTC)
        if re.search(_HOUR_OR_MINUTE_FRACTION, value):
            raise ValueError("a fraction of an hour or a minute")
        value, leap = re.subn(_LEAP_SECOND, r"\g<1>59", value, count=1)
        # RFC 3339 allows a lower-case t and z
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if leap:
            utc = parsed.astimezone(UTC)
            if (utc.hour, utc.minute) != (23, 59):  # only the last minute of a UTC day has one
                raise ValueError("not a leap second")
            # no clock escrow reads shows :60: the leap second's times are the next second's
            return (utc.replace(microsecond=0) + timedelta(seconds=1)).astimezone(UTC)
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
        raise TimeOutOfRange(f"{option} {text!r} is outside the years 1 to 9999 in UTC.") from None


def check_period(
    start: datetime | None, end: datetime | None, since: str | None, until: str | None
) -> None:
    """``--since``/``--until`` as read (``since``/``until`` as given) leave some time in
    between: a UsageError (exit 2) if ``--since`` is after ``--until``, or if they meet,
    since ``--until`` is exclusive and nothing can be in scope."""
    if start is None or end is None:
        return
    if start > end:
        raise UsageError("--since is after --until.")
    if start == end:
        raise UsageError(
            f"--since {since} and --until {until} leave no time in between, so no entry "
            "can match (--until is exclusive; a bare date includes that whole day)."
        )
