"""Periods, time zones and scopes: how `--since`/`--until` (and the server's `since`/`until`)
read a time, and what a scope that holds no time says.

Regressions:

- a leap second (`2016-12-31T23:59:60Z`, valid RFC 3339) was refused as "not an RFC 3339
  time"; it is now the start of the next second, as the POSIX clock the ledger's times
  come from counts it;
- `2026-12-06T12.5` (ISO 8601's half past twelve) was read by Python as 12:00:00.5, and
  `12:30.5` as 12:30:00.5; a fraction of an hour or a minute is now refused;
- an ISO week was half read: `--until 2026-W49` meant that week's Monday midnight (the
  week it names left out, and `--since 2026-W49 --until 2026-W49` an empty scope), while
  `2026-W49-1`, a date, was refused as "not a date"; a week is now a period as a bare date
  is (`--until` includes it), and a week day that date;
- `escrow pack --since D --until D-1` (no time in between) started the pack and ended in
  "No recorded build is in the scope", and `pack verify` then failed the pack; both now
  say, as `escrow log` does, that the two leave no time in between (exit 2);
- `POST /v1/packs` read a fraction finer than a microsecond truncated (`escrow pack` and
  `GET /v1/entries` round it up), and refused the week and leap second the query reads;
- the options' help did not say that a time without an offset is UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from escrow.errors import UsageError
from escrow.server import models as m
from escrow.times import parse_time
from tests.conftest import option_help


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        "2016-12-31T23:59:60Z",
        "2016-12-31T23:59:60.5Z",
        "2016-12-31t23:59:60z",
        "2017-01-01T05:29:60+05:30",  # the same leap second, in India
        "20161231T235960Z",
    ],
)
def test_a_leap_second_is_the_start_of_the_next_second(text: str) -> None:
    for end_of_day in (False, True):
        assert parse_time(text, "--until", end_of_day=end_of_day) == _utc(2017, 1, 1)


def test_a_second_60_that_is_no_leap_second_is_refused() -> None:
    with pytest.raises(UsageError, match="is not a date or an RFC 3339 time"):
        parse_time("2016-12-31T12:30:60Z", "--since")


def test_log_until_a_leap_second_lists_what_came_before_it(escrow_home: Path, cli: Any) -> None:
    r = cli(["log", "--json", "--until", "2999-12-31T23:59:60Z"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [0]
    r = cli(["log", "--json", "--since", "2016-12-31T23:59:60Z"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [0]


@pytest.mark.parametrize("text", ["2026-12-06T12.5", "2026-12-06T12:30.5", "2026-12-06T1230,5Z"])
def test_a_fraction_of_an_hour_or_minute_is_refused_not_misread(text: str) -> None:
    with pytest.raises(UsageError, match="is not a date or an RFC 3339 time"):
        parse_time(text, "--since")


def test_a_fraction_of_a_second_is_still_read() -> None:
    assert parse_time("2026-12-06T12:30:00.5Z", "--since") == _utc(2026, 12, 6, 12, 30, 0, 500000)
    assert parse_time("2026-12-06T123000,5Z", "--since") == _utc(2026, 12, 6, 12, 30, 0, 500000)


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("2026-W49", _utc(2026, 11, 30), _utc(2026, 12, 7)),
        ("2026W49", _utc(2026, 11, 30), _utc(2026, 12, 7)),
        ("2026-W53", _utc(2026, 12, 28), _utc(2027, 1, 4)),  # 2026 has 53 weeks
        ("2026-W49-1", _utc(2026, 11, 30), _utc(2026, 12, 1)),
        ("2026-W49-7", _utc(2026, 12, 6), _utc(2026, 12, 7)),
        ("2026W497", _utc(2026, 12, 6), _utc(2026, 12, 7)),
        ("9999-W52", _utc(9999, 12, 27), datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_a_week_is_a_period_as_a_bare_date_is(text: str, since: datetime, until: datetime) -> None:
    assert parse_time(text, "--since") == since
    assert parse_time(text, "--until", end_of_day=True) == until


@pytest.mark.parametrize("text", ["2027-W53", "2026-W00", "2026-W49-8"])
def test_a_week_the_calendar_lacks_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not a date or an RFC 3339 time"):
        parse_time(text, "--until", end_of_day=True)


def test_log_since_and_until_one_week_lists_that_weeks_entries(escrow_home: Path, cli: Any) -> None:
    entry = cli(["log", "--json"]).json()["entries"][0]
    day = date.fromisoformat(entry["integrated_at"][:10])
    year, week, weekday = day.isocalendar()
    for since, until in [
        (f"{year}-W{week:02d}", f"{year}-W{week:02d}"),
        (f"{year}-W{week:02d}-{weekday}", f"{year}-W{week:02d}-{weekday}"),
    ]:
        r = cli(["log", "--json", "--since", since, "--until", until])
        assert r.exit_code == 0, r.stderr
        assert [e["index"] for e in r.json()["entries"]] == [entry["index"]], (since, until)


def test_pack_since_and_until_that_meet_say_so_first(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--since", "2026-12-06", "--until", "2026-12-05", "-o", str(out)])
    assert r.exit_code == 2
    assert r.stderr == (
        "escrow: error: --since 2026-12-06 and --until 2026-12-05 leave no time in between, "
        "so no entry can match (--until is exclusive; a bare date includes that whole day).\n"
    )
    assert not out.exists() and not list(tmp_path.glob("*.pdf*"))
    r = cli(
        [
            "pack",
            "--since",
            "2026-12-06T12:00:00Z",
            "--until",
            "2026-12-06T13:00:00+01:00",
            "-o",
            str(out),
        ]
    )
    assert r.exit_code == 2 and "leave no time in between" in r.stderr
    assert "step 1" not in r.stderr


def test_pack_verify_since_and_until_that_meet_say_so(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    pdf = tmp_path / "pack.pdf"
    pdf.write_bytes(b"%PDF-1.7\n")
    r = cli(["pack", "verify", str(pdf), "--since", "2026-W49", "--until", "2026-11-29"])
    assert r.exit_code == 2
    assert "--since 2026-W49 and --until 2026-11-29 leave no time in between" in r.stderr
    r = cli(["pack", "verify", str(pdf), "--since", "2026-12-06", "--until", "2026-12-04"])
    assert r.exit_code == 2 and "--since is after --until." in r.stderr


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        (
            "2026-12-06T12:00:00.123456789Z",
            _utc(2026, 12, 6, 12, 0, 0, 123457),
            _utc(2026, 12, 6, 12, 0, 0, 123457),
        ),
        ("2016-12-31T23:59:60Z", _utc(2017, 1, 1), _utc(2017, 1, 1)),
        ("2026-W49", _utc(2026, 11, 30), _utc(2026, 12, 7)),
        ("2026-12-06T12", _utc(2026, 12, 6, 12), _utc(2026, 12, 6, 12)),
    ],
)
def test_a_pack_request_reads_a_time_as_escrow_pack_does(
    text: str, since: datetime, until: datetime
) -> None:
    body = m.PackIn(since=text, until=text)  # type: ignore[arg-type]
    assert (body.since, body.until) == (since, until)
    assert body.since == parse_time(text, "--since")
    assert body.until == parse_time(text, "--until", end_of_day=True)


def test_a_pack_request_time_out_of_range_is_left_for_the_route_to_name() -> None:
    body = m.PackIn(until="9999-12-31T23:59:59-05:00")  # type: ignore[arg-type]
    assert body.until is not None and body.until.utcoffset() == -timedelta(hours=5)


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["log"], "--since"),
        (["log"], "--until"),
        (["pack"], "--since"),
        (["pack"], "--until"),
        (["pack", "verify"], "--since"),
        (["pack", "verify"], "--until"),
    ],
)
def test_the_help_says_a_time_without_an_offset_is_utc(
    cli: Any, command: list[str], option: str
) -> None:
    r = cli([*command, "--help"])
    assert r.exit_code == 0, r.stderr
    assert "UTC unless it gives an offset" in option_help(r.stdout, option)


@pytest.mark.parametrize(
    ("text", "since", "until"),
    [
        ("2026", _utc(2026, 1, 1), _utc(2027, 1, 1)),
        ("2026-12", _utc(2026, 12, 1), _utc(2027, 1, 1)),
        ("2028-02", _utc(2028, 2, 1), _utc(2028, 3, 1)),
        ("2026-Q3", _utc(2026, 7, 1), _utc(2026, 10, 1)),
        ("2026q4", _utc(2026, 10, 1), _utc(2027, 1, 1)),
        ("2026Q1", _utc(2026, 1, 1), _utc(2026, 4, 1)),
        ("9999-Q4", _utc(9999, 10, 1), datetime.max.replace(tzinfo=UTC)),
    ],
)
def test_a_year_month_or_quarter_is_a_period_as_a_bare_date_is(
    text: str, since: datetime, until: datetime
) -> None:
    """Audits are asked for a quarter or a month ("Q3 2026"); they were refused."""
    assert parse_time(text, "--since") == since
    assert parse_time(text, "--until", end_of_day=True) == until


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-Q5", "2026-Q0", "0000", "202612"])
def test_a_month_or_quarter_the_calendar_lacks_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="is not a date or an RFC 3339 time"):
        parse_time(text, "--since")


def test_log_and_pack_request_take_a_quarter(escrow_home: Path, cli: Any) -> None:
    entry = cli(["log", "--json"]).json()["entries"][0]
    day = date.fromisoformat(entry["integrated_at"][:10])
    quarter = f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    month, year = f"{day:%Y-%m}", f"{day.year}"
    for since, until in [(quarter, quarter), (month, month), (year, year)]:
        r = cli(["log", "--json", "--since", since, "--until", until])
        assert r.exit_code == 0, r.stderr
        assert [e["index"] for e in r.json()["entries"]] == [entry["index"]], (since, until)
    # the server's pack request reads it as `escrow pack` does
    body = m.PackIn.model_validate({"projects": ["p"], "since": quarter, "until": quarter})
    assert body.since == parse_time(quarter, "since")
    assert body.until == parse_time(quarter, "until", end_of_day=True)
