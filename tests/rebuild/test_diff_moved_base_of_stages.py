"""`escrow diff` names a base image several stages build FROM, moved between two builds,
on one line listing the stages, not once per stage."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_a_base_moved_for_two_stages_is_one_line(
    cli: Any, recorder: Recorder, docker_client: Any, base_image: str
) -> None:
    base = recorder.tag("base")
    docker_client.api.tag(base_image, *base.rsplit(":", 1))
    files = {
        "Dockerfile": f"FROM {base} AS first\nRUN echo a > /a\n"
        f"FROM {base}\nCOPY --from=first /a /a\n"
    }
    ctx = recorder.context(files)
    day1 = recorder.build(files, context=ctx)
    other = recorder.build({"Dockerfile": "FROM escrow-test/base:latest\nRUN echo b > /b\n"})
    docker_client.api.tag(other.image_id, *base.rsplit(":", 1))  # the base tag moved on
    day2 = recorder.build(files, context=ctx)

    r = cli(["diff", str(day1.index), str(day2.index)])

    assert r.exit_code == 0, r.stderr
    moved = [line for line in r.stdout.splitlines() if line.startswith("  base image ")]
    # the new base is the image of a recorded build: named (the old one no build made)
    assert moved == [
        f"  base image {base} (stages 0, 1): {base_image[:19]} -> {str(other.image_id)[:19]} "
        f"(built by entry {other.index}, rebuild-test) (same reference, another image)"
    ]
    # the JSON still has one item per stage
    doc = cli(["diff", str(day1.index), str(day2.index), "--json"]).json()
    assert [b["stage"] for b in doc["inputs"]["baseImages"]] == [0, 1]
