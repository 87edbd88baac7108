"""`escrow rebuild` names the recorded build that made a base image, as `escrow diff` and
`escrow verify` do.

Phoenix builds rebuild their base every day, so by the time a build is rebuilt its base
tag usually names a newer base.  The rebuild is pinned to the recorded image; it now also
says which entry of the ledger built that image and which built the one behind the tag
now (``builtBy`` in ``--json``), and which ``escrow diff`` shows what changed in the base.
When the recorded base is gone from the engine, it names the build that made it.
"""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest

from .conftest import Recorded, Recorder
from .test_rebuild import BASE

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE_PROJECT = "example-base"


def _base(recorder: Recorder, generation: int, name: str = "base") -> Recorded:
    """A phoenix build of the base, tagged ``name`` (the tag moves to each new one)."""
    return recorder.build(
        {"Dockerfile": BASE + f"LABEL generation={generation}\n"}, name=name, project=BASE_PROJECT
    )


def _rebuild(cli: Any, recorder: Recorder, built: Recorded, *extra: str) -> Any:
    return cli(
        [
            "rebuild",
            str(built.index),
            "--context",
            str(built.context),
            "-q",
            "--rm",
            "--tag",
            recorder.tag(f"rb{built.index}"),
            *extra,
        ]
    )


def _made(image: Recorded) -> dict[str, Any]:
    return {"imageId": image.image_id, "builtBy": {"index": image.index, "project": BASE_PROJECT}}


def _by(image: Recorded) -> str:
    return f"{str(image.image_id)[:19]} (built by entry {image.index}, {BASE_PROJECT})"


def _from(stdout: str, start: str, count: int) -> list[str]:
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(start))
    return lines[at : at + count]


def test_a_moved_base_names_the_builds_of_both_images(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    yesterday = _base(recorder, 1)
    app = recorder.build({"Dockerfile": f"FROM {yesterday.tag}\nCOPY a /a\n", "a": "a\n"})
    today = _base(recorder, 2)  # the tag moves on
    assert docker_client.images.get(today.tag).id == today.image_id != yesterday.image_id

    r = _rebuild(cli, recorder, app)

    assert r.exit_code == 0, r.stderr
    assert _from(r.stdout, "  base image ", 3) == [
        f"  base image {yesterday.tag} (stage 0): the recorded {_by(yesterday)}; "
        f"the reference now names {_by(today)}",
        f"    `escrow diff {yesterday.index} {today.index}` shows what changed in it",
        "Layers",
    ]
    doc = _rebuild(cli, recorder, app, "--json").json()
    assert doc["verdict"] == "identical"
    assert doc["baseImages"] == [
        {
            "stage": 0,
            "reference": yesterday.tag,
            "inEngine": True,
            "recorded": _made(yesterday),
            "now": _made(today),
        }
    ]
    assert doc["copyFromImages"] == []
    # the diff it names is the one that tells the two bases apart
    d = cli(["diff", str(yesterday.index), str(today.index)])
    assert d.exit_code == 0, d.stderr
    assert "generation" in d.stdout


def test_a_missing_base_names_the_build_that_made_it(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    yesterday = _base(recorder, 1)
    app = recorder.build({"Dockerfile": f"FROM {yesterday.tag}\nRUN echo x > /f\n"})
    today = _base(recorder, 2)
    # the app image goes, and with it yesterday's base (untagged since the tag moved)
    docker_client.images.remove(app.tag)
    try:
        docker_client.images.remove(str(yesterday.image_id))
    except docker.errors.ImageNotFound:
        pass
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(str(yesterday.image_id))

    r = _rebuild(cli, recorder, app)

    assert r.exit_code == 1, r.stderr  # unknown, as documented
    assert _from(r.stdout, "  missing base-image ", 4) == [
        f"  missing base-image {yesterday.tag}: image {str(yesterday.image_id)[:19]} is not "
        "in the Docker Engine",
        f"    the recorded image was built by entry {yesterday.index} ({BASE_PROJECT}): "
        f"`escrow rebuild {yesterday.index}` rebuilds that image from its own inputs, but as "
        "a new one under another ID; this rebuild needs the recorded one, which a deposit of "
        f"entry {yesterday.index} holds too",
        f"    {yesterday.tag} now names {_by(today)}: "
        f"`escrow diff {yesterday.index} {today.index}` shows what changed in it",
        "  to rebuild it, put the recorded base image back into the engine under its image ID "
        f"(`docker load` of a saved copy, or `docker pull` by its repo digest; `escrow show "
        f"{app.index}` lists both) and run the rebuild again; a build deposited with its base "
        "images has them loaded from the deposit store",
    ]
    doc = _rebuild(cli, recorder, app, "--json").json()
    assert doc["verdict"] == "unknown"
    assert doc["baseImages"] == [
        {
            "stage": 0,
            "reference": yesterday.tag,
            "inEngine": False,
            "recorded": _made(yesterday),
            "now": _made(today),
        }
    ]


def test_only_images_a_recorded_build_made_are_named(
    cli: Any, recorder: Recorder, docker_client: Any, base_image: str
) -> None:
    """A base from outside the ledger has no maker, even when the tag now names a
    recorded build's image (no `escrow diff` then); a ``COPY --from`` image is traced as
    a base is."""
    outside = recorder.tag("outside")
    docker_client.api.tag(base_image, *outside.rsplit(":", 1))
    source = _base(recorder, 1, name="source")
    app = recorder.build(
        {"Dockerfile": f"FROM {outside}\nCOPY --from={source.tag} /bin/busybox /copied\n"}
    )
    moved_source = _base(recorder, 2, name="source")
    replacement = _base(recorder, 3, name="replacement")
    docker_client.api.tag(replacement.image_id, *outside.rsplit(":", 1))

    r = _rebuild(cli, recorder, app)

    assert r.exit_code == 0, r.stderr
    assert _from(r.stdout, "  base image ", 3) == [
        f"  base image {outside} (stage 0): the recorded {base_image[:19]}; "
        f"the reference now names {_by(replacement)}",
        f"  COPY --from image {source.tag} (line 2): the recorded {_by(source)}; "
        f"the reference now names {_by(moved_source)}",
        f"    `escrow diff {source.index} {moved_source.index}` shows what changed in it",
    ]
    doc = _rebuild(cli, recorder, app, "--json").json()
    assert doc["baseImages"] == [
        {
            "stage": 0,
            "reference": outside,
            "inEngine": True,
            "recorded": {"imageId": base_image},
            "now": _made(replacement),
        }
    ]
    assert doc["copyFromImages"] == [
        {
            "stage": 0,
            "line": 2,
            "reference": source.tag,
            "inEngine": True,
            "recorded": _made(source),
            "now": _made(moved_source),
        }
    ]
