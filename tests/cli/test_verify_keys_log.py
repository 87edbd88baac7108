"""`escrow verify`, `escrow log` and `escrow keys` on odd input.

A --from past year 9999 in UTC is a usage error, not a traceback; a revocation reason with a
line break stays on its row of `keys list`; `log --since X --until X` (an empty range) is a
usage error; `verify TARGET --key/--threshold` refuses options it would ignore; an image the
engine lacks is a skipped check; the latest build of an image is found past the first page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.types import BUILD_MANIFEST

ASSET = Path(__file__).parent.parent / "assets" / "build-manifest.example.json"
IMAGE = "sha256:e619ec11273d6c1f0a3b1d2c4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071"


def _post_example(cli: Any, tmp_path: Path) -> int:
    signed = cli(["sign", str(ASSET)])
    assert signed.exit_code == 0, signed.stderr
    env = tmp_path / "example.env"
    env.write_text(signed.stdout)
    posted = cli(["post", "--json", str(env)])
    assert posted.exit_code == 0, posted.stderr
    return int(json.loads(posted.stdout)["results"][0]["index"])


# -- keys: --from whose UTC time is past year 9999 -------------------------------------


@pytest.mark.parametrize("command", [["retire", "build"], ["rotate"]])
def test_a_from_time_beyond_year_9999_in_utc_is_a_usage_error(
    escrow_home: Path, cli: Any, command: list[str]
) -> None:
    r = cli(["keys", *command, "--from", "9999-12-31T23:00:00-05:00"])
    assert r.exit_code == 2, r.stderr
    assert r.stderr == (
        "escrow: error: The time '9999-12-31T23:00:00-05:00' is outside the years 1 to 9999 "
        "in UTC.\n"
    )
    assert cli(["keys", "list", "--json"]).json()["keys"][0]["retired_at"] is None


# -- keys list: a reason with a line break stays on its row ----------------------------


def test_a_revocation_reason_with_a_line_break_stays_on_its_row(
    escrow_home: Path, cli: Any
) -> None:
    made = cli(["keys", "generate", "--name", "leaky"])
    assert made.exit_code == 0, made.stderr
    r = cli(["keys", "revoke", "leaky", "--reason", "leaked\nin CI\tlogs"])
    assert r.exit_code == 0, r.stderr
    listed = cli(["keys", "list"])
    assert listed.exit_code == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert len(rows) == 3, rows  # header, build, leaky
    assert rows[2].endswith("(leaked\\x0ain CI\\x09logs)"), rows[2]
    # --json keeps the reason as recorded
    reasons = [k["reason"] for k in cli(["keys", "list", "--json"]).json()["keys"]]
    assert "leaked\nin CI\tlogs" in reasons


# -- log: a time range with nothing in it ----------------------------------------------


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("2026-12-05", "2026-12-04"),  # the bare --until ends where --since begins
        ("2026-12-05T10:00:00Z", "2026-12-05T10:00:00Z"),  # --until is exclusive
        ("2026-12-05T10:00:00Z", "2026-12-05T11:00:00+01:00"),  # the same instant
    ],
)
def test_log_with_an_empty_time_range_is_a_usage_error(
    escrow_home: Path, cli: Any, since: str, until: str
) -> None:
    for extra in ([], ["--json"]):
        r = cli(["log", "--since", since, "--until", until, *extra])
        assert r.exit_code == 2, r.stdout + r.stderr
        assert r.stdout == ""
        assert r.stderr.startswith(
            f"escrow: error: --since {since} and --until {until} leave no time in between"
        ), r.stderr


def test_log_with_a_range_of_one_bare_day_still_lists_it(escrow_home: Path, cli: Any) -> None:
    day = cli(["log", "--json"]).json()["entries"][0]["integrated_at"][:10]
    r = cli(["log", "--since", day, "--until", day, "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [0]


# -- verify TARGET: options that only --envelope uses ----------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--key", "trusted.pub.pem"], "--key applies"),
        (["--threshold", "2"], "--threshold applies"),
        (["--key", "a.pem", "--threshold", "3"], "--key and --threshold apply"),
    ],
)
def test_verify_target_refuses_envelope_only_options(
    escrow_home: Path, cli: Any, tmp_path: Path, options: list[str], named: str
) -> None:
    index = _post_example(cli, tmp_path)
    for extra in ([], ["--json"]):
        r = cli(["verify", str(index), *options, *extra])
        assert r.exit_code == 2, r.stdout + r.stderr
        assert r.stdout == ""
        assert r.stderr.startswith(
            f"escrow: error: {named} only with --envelope, not to a TARGET."
        ), r.stderr


# -- verify: an image the engine lacks was not compared --------------------------------


class _EngineWithout:
    """An engine holding no image at all."""

    def image_facts(self, ref: str) -> None:
        return None


def test_an_image_the_engine_lacks_is_a_skipped_check(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.verification import verify_entry

    index = _post_example(cli, tmp_path)
    with Ledger.open(load_settings()) as ledger:
        result = verify_entry(ledger, ledger.get(index), engine=_EngineWithout())
    image = next(c for c in result.checks if c.name == "image")
    assert image.skipped is True and image.ok is True
    assert image.detail == "image not in the engine; not compared"
    assert result.ok is True
    assert result.to_dict()["checks"][-1]["skipped"] is True


def test_verify_prints_skip_for_an_image_the_engine_lacks(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from escrow.cli import verify_cmd

    index = _post_example(cli, tmp_path)
    monkeypatch.setattr(verify_cmd.DockerFacts, "probe", classmethod(lambda cls: cls(client=None)))
    monkeypatch.setattr(verify_cmd.DockerFacts, "image_facts", lambda self, ref: None)
    r = cli(["verify", str(index)])
    assert r.exit_code == 0, r.stderr
    assert "skip image      image not in the engine; not compared" in r.stdout
    assert "ok   image" not in r.stdout


# -- verify IMAGE: the latest build, however many came before --------------------------


@dataclass
class _Entry:
    index: int


class _ManyBuilds:
    """A ledger holding ``n`` builds of one image; ``entries`` pages as the real one does."""

    def __init__(self, n: int) -> None:
        self.all = [_Entry(i) for i in range(n)]

    def entries(self, *, after: int | None = None, limit: int = 100, **filters: Any) -> list[Any]:
        start = 0 if after is None else after + 1
        return self.all[start : start + limit]


@pytest.mark.parametrize("n", [1, 1000, 1001, 2500])
def test_verify_by_image_resolves_the_latest_build_past_the_first_page(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    import escrow.ledger.store as store
    from escrow.verification import resolve_target

    monkeypatch.setattr(store, "signed_fields", lambda e: (BUILD_MANIFEST, "p", IMAGE))
    found = resolve_target(_ManyBuilds(n), IMAGE)  # type: ignore[arg-type]
    assert found.index == n - 1
