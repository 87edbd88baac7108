"""`escrow capture --help` says what project a capture without --context gets: the image's
repository name (the help said "the context folder's name", which there is none of)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BASE_TAG, option_help, run_cli


def test_the_help_names_the_default_project_of_a_capture() -> None:
    text = option_help(run_cli(["capture", "--help"]).stdout, "--project")
    assert "without --context, the image's repository name" in text, text


def test_a_capture_without_context_is_filed_under_the_repository_name(
    module_home: Path, base_image: str
) -> None:
    r = run_cli(["capture", BASE_TAG, "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["project"] == BASE_TAG.split("/")[-1].split(":")[0]  # "base"
