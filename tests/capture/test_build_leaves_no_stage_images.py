"""``escrow build`` of a multi-stage Dockerfile leaves no image of its earlier stages.

The classic builder keeps the image of every stage but the last one, untagged (as
``docker build`` does); their history names the build args their ``RUN`` steps used — the
very secrets a multi-stage build is written to keep out of the image — in plain text.
escrow removes them once the build is recorded (a failed build's step images too), and
never a base image, the built image or the layers under it.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from imagekit import all_images, images_naming

from tests.conftest import BASE_TAG

from .conftest import write_tree

pytestmark = [pytest.mark.docker]

MULTI_STAGE = (
    f"FROM {BASE_TAG} AS build\n"
    "ARG API_TOKEN\n"
    'RUN test -n "$API_TOKEN" && echo built > /stage-out.txt\n'
    f"FROM {BASE_TAG}\n"
    "COPY --from=build /stage-out.txt /stage-out.txt\n"
    "RUN cat /stage-out.txt\n"
)


def _build(cli: Any, tmp_path: Path, dockerfile: str, token: str, tag: str) -> Any:
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": dockerfile})
    return cli(
        ["build", str(ctx), "-t", tag, "--build-arg", f"API_TOKEN={token}", "--no-deposit", "-q"]
        + ["--secret", "API_TOKEN", "--json"]
    )


def test_the_earlier_stages_of_a_build_are_removed(
    cli: Any, escrow_home: Path, tmp_path: Path, docker_client: Any, base_image: str
) -> None:
    token = "tok-" + secrets.token_hex(8)
    tag = f"escrow-test/stages:{secrets.token_hex(4)}"
    before = all_images(docker_client)
    try:
        r = _build(cli, tmp_path, MULTI_STAGE, token, tag)
        assert r.exit_code == 0, r.stderr
        built = docker_client.images.get(tag).id
        # the images this build made (others may build on the same engine meanwhile)
        made = images_naming(docker_client, all_images(docker_client) - before, "stage-out.txt")
        assert not images_naming(docker_client, made, token), "a stage image names the secret"
        # the built image and the layers under it stay; the base stays
        assert built in made
        chain = {h["Id"] for h in docker_client.api.history(built) if h["Id"] != "<missing>"}
        assert made <= chain, made - chain
        assert docker_client.images.get(BASE_TAG).id == base_image
        statement = cli(["show", str(r.json()["index"]), "--json"]).json()["statement"]
        first_stage = [s for s in statement["predicate"]["steps"] if s.get("stage") == 0]
        assert [
            s["imageId"] for s in first_stage if s["imageId"] and "FROM" not in s["instruction"]
        ]
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_failed_multi_stage_build_leaves_no_step_image(
    cli: Any, escrow_home: Path, tmp_path: Path, docker_client: Any, base_image: str
) -> None:
    token = "tok-" + secrets.token_hex(8)
    failing = MULTI_STAGE + "RUN exit 3\n"
    before = all_images(docker_client)
    r = _build(cli, tmp_path, failing, token, f"escrow-test/stages-failed:{secrets.token_hex(4)}")
    assert r.exit_code == 1, r.stderr
    assert r.json()["status"] == "failed"
    made = images_naming(docker_client, all_images(docker_client) - before, "stage-out.txt")
    assert made == set(), "the failed build's step images are removed"
    assert docker_client.images.get(BASE_TAG).id == base_image


def test_a_single_stage_build_keeps_its_layers(
    cli: Any, escrow_home: Path, tmp_path: Path, docker_client: Any, base_image: str
) -> None:
    tag = f"escrow-test/one-stage:{secrets.token_hex(4)}"
    dockerfile = f"FROM {BASE_TAG}\nRUN echo one > /stage-out.txt\nRUN cat /stage-out.txt\n"
    try:
        r = _build(cli, tmp_path, dockerfile, "unused", tag)
        assert r.exit_code == 0, r.stderr
        built = docker_client.images.get(tag)
        parent = docker_client.api.inspect_image(built.id)["Parent"]
        assert parent and docker_client.api.inspect_image(parent)["Id"] == parent
    finally:
        docker_client.images.remove(tag, force=True)
