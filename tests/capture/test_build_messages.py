"""What ``escrow build`` says when the engine refuses an instruction (no
exit code: a ``COPY`` source that is not in the context, a ``FROM --platform`` that
names BuildKit's automatic platform ARGs, which the classic builder leaves empty),
and when it is asked to read the Dockerfile or the context from standard input."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG

from .conftest import show, write_tree

TAG = "escrow-test/review10-messages:1"


@pytest.mark.docker
def test_a_step_the_engine_refuses_says_why(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(tmp_path / "c", {"Dockerfile": f"FROM {BASE_TAG}\nCOPY nosuch.txt /x\n"})
    r = cli(["build", str(ctx), "-t", TAG, "--no-deposit", "--json"])
    assert r.exit_code == 1, r.stderr
    index = r.json()["index"]
    assert "Step 2 failed (COPY failed: " in r.stderr
    assert "nosuch.txt" in r.stderr and f"recorded as ledger entry {index}" in r.stderr
    failure = show(index)["predicate"]["build"]["failure"]
    assert failure["exitCode"] is None and "nosuch.txt" in failure["message"]


@pytest.mark.docker
def test_from_platform_buildplatform_names_the_empty_automatic_arg(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "p",
        {"Dockerfile": f"FROM --platform=$BUILDPLATFORM {BASE_TAG}\nRUN true\n"},
    )
    r = cli(["build", str(ctx), "-t", TAG, "--no-deposit"])
    assert r.exit_code == 1, r.stderr
    assert "Step 1 failed (failed to parse platform" in r.stderr
    assert "does not set BuildKit's automatic platform ARGs" in r.stderr
    assert "ARG BUILDPLATFORM=" in r.stderr
    subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True)


@pytest.mark.docker
def test_a_run_step_keeps_its_exit_code_message(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(tmp_path / "r", {"Dockerfile": f"FROM {BASE_TAG}\nRUN exit 7\n"})
    r = cli(["build", str(ctx), "-t", TAG, "--no-deposit"])
    assert r.exit_code == 1
    assert "Step 2 failed with exit code 7; the failure is recorded" in r.stderr


@pytest.mark.parametrize(
    ("args", "what"),
    [(["-f", "-"], "Dockerfile"), ([], "build context")],
)
def test_standard_input_is_refused_in_one_sentence(
    escrow_home: Path, cli: Any, tmp_path: Path, args: list[str], what: str
) -> None:
    write_tree(tmp_path / "c", {"Dockerfile": f"FROM {BASE_TAG}\n"})
    context = str(tmp_path / "c") if args else "-"
    r = cli(["build", context, *args, "-t", TAG], input=f"FROM {BASE_TAG}\n")
    assert r.exit_code == 2, r.stderr
    assert f"escrow build does not read the {what} from standard input ('-')." in r.stderr
    assert "Traceback" not in r.stderr
