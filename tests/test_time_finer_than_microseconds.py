"""`--since`/`--until` finer than a microsecond are rounded up, not truncated.

Regression: `escrow log --until 2026-…T…58.865133123Z` left out an entry integrated at
…58.865133, which is before that time: Python keeps six digits of a fraction and drops
the rest, so the time compared was …58.865133 itself, and `--until` is exclusive."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from escrow.times import parse_time


def test_parse_time_rounds_a_finer_fraction_up() -> None:
    t = parse_time("2026-01-01T00:00:58.865133123Z", "--until")
    assert t.microsecond == 865134
    assert parse_time("2026-01-01T00:00:58.865133000Z", "--until").microsecond == 865133
    assert parse_time("2026-01-01T00:00:58.865133Z", "--until").microsecond == 865133
    assert parse_time("2026-01-01T00:00:58.9999999Z", "--until").second == 59
    assert parse_time("2026-01-01T00:00:58.5+01:00", "--since").hour == 23


def test_log_until_a_nanosecond_after_an_entry_lists_it(escrow_home: Path, cli: Any) -> None:
    entry = cli(["log", "--json"]).json()["entries"][0]  # the build key's event
    at = entry["integrated_at"]  # …SS.ffffffZ (…SSZ at a whole second)
    if "." not in at:
        at = at[:-1] + ".000000Z"
    assert at.endswith("Z") and len(at.split(".")[1]) == 7
    just_after = at[:-1] + "001Z"  # 1 ns later
    listed = cli(["log", "--json", "--until", just_after]).json()["entries"]
    assert [e["index"] for e in listed] == [entry["index"]]
    # and --since that instant leaves it out: it was before
    later = cli(["log", "--json", "--since", just_after]).json()["entries"]
    assert entry["index"] not in [e["index"] for e in later]
    assert parse_time(just_after, "--until") - parse_time(at, "--until") == timedelta(
        microseconds=1
    )
