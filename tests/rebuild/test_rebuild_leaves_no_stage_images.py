"""``escrow rebuild`` of a multi-stage build leaves no image of its earlier stages behind.

The classic builder keeps the image of every stage but the last one, untagged; its
history holds the build args its ``RUN`` steps used, a secret given again with
``--build-arg`` in plain text.  A rebuild removes them once compared (and, with ``--rm``,
what is left of the rebuilt image), never a base image nor a tagged one.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from imagekit import all_images, images_naming

from .conftest import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MULTI_STAGE = (
    "FROM escrow-test/base:latest AS build\n"
    "ARG API_TOKEN\n"
    'RUN test -n "$API_TOKEN" && echo built > /out.txt\n'
    "FROM escrow-test/base:latest\n"
    "COPY --from=build /out.txt /out.txt\n"
)


def _remove(docker_client: Any, images: set[str]) -> None:
    import docker.errors

    for image in images:
        try:
            docker_client.images.remove(image, noprune=False)
        except docker.errors.APIError:
            pass


@pytest.mark.parametrize("remove", [False, True], ids=["kept", "rm"])
def test_the_earlier_stages_of_a_rebuild_are_removed(
    cli: Any, recorder: Recorder, docker_client: Any, base_image: str, remove: bool
) -> None:
    token = "tok-" + secrets.token_hex(8)
    before = all_images(docker_client)
    built = recorder.build({"Dockerfile": MULTI_STAGE}, build_args=(("API_TOKEN", token),))
    assert built.image_id
    by_build = images_naming(docker_client, all_images(docker_client) - before, token)
    assert by_build, "the original build's stage image names the token (what is tested)"
    _remove(docker_client, by_build)  # not the rebuild's to remove
    tag = recorder.tag("rb")
    before_rebuild = all_images(docker_client)

    r = cli(
        [
            "rebuild",
            str(built.index),
            "--context",
            str(built.context),
            "--build-arg",
            f"API_TOKEN={token}",
            "-t",
            tag,
            "-q",
            "--json",
            *(["--rm"] if remove else []),
        ]
    )

    assert r.exit_code == 0, r.stderr
    rebuilt = r.json()["rebuiltImage"]
    # the images this rebuild made (others may build on the same engine meanwhile)
    made = images_naming(docker_client, all_images(docker_client) - before_rebuild, "/out.txt")
    left = images_naming(docker_client, made, token)
    _remove(docker_client, left)
    assert not left, "an image of the rebuild's first stage names the secret build arg"
    # the base stays; the rebuilt image stays unless --rm
    assert docker_client.images.get(base_image).id == base_image
    assert (rebuilt in made) is not remove
    if remove:
        assert made == set(), "--rm leaves nothing of the rebuild in the engine"
