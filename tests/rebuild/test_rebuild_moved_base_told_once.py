"""A base image two stages build FROM, whose tag moved since, is named once by the rebuild."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_moved_base_of_two_stages_is_named_once(
    cli: Any, recorder: Recorder, docker_client: Any, base_image: str
) -> None:
    base = recorder.tag("base")
    docker_client.api.tag(base_image, *base.rsplit(":", 1))
    built = recorder.build(
        {
            "Dockerfile": f"FROM {base} AS first\nRUN echo a > /a\n"
            f"FROM {base}\nCOPY --from=first /a /a\n"
        }
    )
    other = recorder.build({"Dockerfile": "FROM escrow-test/base:latest\nRUN echo b > /b\n"})
    docker_client.api.tag(other.image_id, *base.rsplit(":", 1))  # the tag moved on

    r = cli(
        [
            "rebuild",
            str(built.index),
            "--context",
            str(built.context),
            "-t",
            recorder.tag("rb"),
            "--rm",
            "-q",
        ]
    )

    assert r.exit_code == 0, r.stderr
    told = [line for line in r.stderr.splitlines() if "now names" in line]
    assert told == [
        f"escrow: {base} now names {str(other.image_id)[:19]}; "
        f"building FROM the recorded {base_image[:19]}"
    ]
