"""``escrow rebuild`` checks the values given again (``--build-arg``, ``--label``) before
it restores or hashes the context: a mistyped one is told at once, not after the context."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_an_unknown_build_arg_is_told_before_the_context_is_checked(
    cli: Any, recorder: Recorder
) -> None:
    built = recorder.build(
        {"Dockerfile": "FROM escrow-test/base:latest\nCOPY a.txt /a.txt\n", "a.txt": "a\n"}
    )
    (built.context / "a.txt").write_text("changed\n")

    r = cli(["rebuild", str(built.index), "--context", str(built.context), "--build-arg", "NOPE=1"])

    assert r.exit_code == 2
    assert "The build argument NOPE was not given to the recorded build." in r.stderr
    assert "differs from the recorded one" not in r.stderr


def test_a_wrong_secret_is_told_before_the_context_is_checked(cli: Any, recorder: Recorder) -> None:
    built = recorder.build(
        {
            "Dockerfile": "FROM escrow-test/base:latest\nARG API_TOKEN\n"
            'RUN test -n "$API_TOKEN"\nCOPY a.txt /a.txt\n',
            "a.txt": "a\n",
        },
        build_args=(("API_TOKEN", "right-value"),),
    )
    (built.context / "a.txt").write_text("changed\n")

    r = cli(
        [
            "rebuild",
            str(built.index),
            "--context",
            str(built.context),
            "--build-arg",
            "API_TOKEN=wrong-value",
        ]
    )

    assert r.exit_code == 2
    assert "The value given for the build argument API_TOKEN is not the recorded one" in r.stderr
    assert "differs from the recorded one" not in r.stderr
