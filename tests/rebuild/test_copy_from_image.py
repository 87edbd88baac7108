"""``COPY --from=IMAGE`` copies files from an image that is no stage of the Dockerfile:
an input of the build as much as a base image.  It was recorded nowhere (only the
instruction's text, not the image it resolved to), neither deposited nor pinned by a
rebuild, and `escrow diff` could not say it changed."""

from __future__ import annotations

from typing import Any

import pytest

from escrow.documents.schemas import validate_statement

from .conftest import Recorder
from .test_rebuild import BASE, rebuild

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _source(recorder: Recorder, generation: int) -> Any:
    return recorder.build(
        {"Dockerfile": BASE + "COPY data.txt /data.txt\n", "data.txt": f"gen {generation}\n"},
        name="copysource",
    )


def _dockerfile(source_tag: str) -> str:
    return (
        BASE
        + "COPY tools.txt /tools.txt\n"
        + "FROM escrow-test/base:latest AS app\n"
        + f"COPY --from={source_tag} /data.txt /data.txt\n"
        + "COPY --from=0 /tools.txt /tools.txt\n"
    )


def _files(source_tag: str) -> dict[str, str]:
    return {"Dockerfile": _dockerfile(source_tag), "tools.txt": "tools\n"}


def test_the_copied_from_image_is_recorded_pinned_and_diffed(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    source = _source(recorder, 1)
    built = recorder.build(_files(source.tag), name="app")
    validate_statement(built.statement)
    assert built.statement["predicate"]["inputs"]["copyFromImages"] == [
        {
            "stage": 1,
            "line": 4,
            "reference": source.tag,
            "imageId": source.image_id,
            "repoDigest": None,
        }
    ]
    # the source tag moves on; the rebuild copies from the recorded image, not the tag
    moved = _source(recorder, 2)
    assert moved.image_id != source.image_id
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["verdict"] == "identical", doc["statement"]["predicate"]["verdict"]
    assert doc["statement"]["predicate"]["rebuild"]["pinning"] == "rewritten-from"
    # a build copying from the moved tag differs from the first by that image
    again = recorder.build(_files(source.tag), name="app2")
    r = cli(["diff", str(built.index), str(again.index), "--json"])
    assert r.exit_code == 0, r.stderr
    changes = r.json()["inputs"]["copyFromImages"]
    assert [(c["stage"], c["change"], c["reference"]) for c in changes] == [
        (1, "image", source.tag)
    ]
    assert changes[0]["original"]["imageId"] == source.image_id
    assert changes[0]["rebuilt"]["imageId"] == moved.image_id
    r = cli(["diff", str(built.index), str(again.index)])
    assert f"COPY --from image {source.tag} (stage 1)" in r.stdout


def test_a_missing_copied_from_image_stops_the_build_before_it_starts(
    cli: Any, recorder: Recorder
) -> None:
    ctx = recorder.context(_files("escrow-test/no-such-image:404"))
    r = cli(["build", str(ctx), "-t", recorder.tag("nope"), "-q"])
    assert r.exit_code == 2, r.stderr
    assert "escrow-test/no-such-image:404 that COPY --from names (stage 1, line 4)" in r.stderr
    assert r.stderr.count("\n") <= 2, r.stderr
    entries = cli(["log", "--json"]).json()["entries"]
    assert [e for e in entries if e["kind"] != "key-event"] == []  # nothing was recorded


def test_a_rebuild_without_the_copied_from_image_is_unknown(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    source = _source(recorder, 1)
    built = recorder.build(_files(source.tag), name="app")
    docker_client.images.remove(source.tag, force=True)
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1, r.stderr
    missing = r.json()["statement"]["predicate"]["verdict"]["missing"]
    assert [(m["kind"], m["name"], m["digest"]) for m in missing] == [
        ("base-image", source.tag, source.image_id)
    ]
    assert "COPY --from on line 4" in missing[0]["reason"]
