"""``COPY --from=IMAGE``: read as the classic builder reads the flag (quotes
removed, ``--from`` in lower case only, a stage name only for an *earlier* stage), a
``$VAR`` value refused as what it is, and the rebuild's pin of a ``COPY`` continued over
several lines (or quoted) made where the flag is, never on a flag split in two.

Each behaviour was checked against Docker Engine 20.10's classic builder first."""

from __future__ import annotations

from typing import Any

import pytest

from escrow.capture import dockerfile as dfparse
from escrow.capture.build import resolve_copy_sources
from escrow.errors import InputError
from escrow.rebuild.verify import rewrite_from_lines

from .conftest import Recorder
from .test_rebuild import BASE, rebuild

ID = "sha256:" + "c" * 64


def _sources(text: str) -> list[tuple[int, int, str]]:
    return [(c.stage, c.instruction.line, c.reference) for c in dfparse.parse(text).copy_sources()]


def test_a_quoted_from_names_the_image_without_its_quotes() -> None:
    # the builder strips the quotes (docker build copies from src:1); escrow looked for an
    # image named '"src:1"' and stopped the build: "cannot be pulled: invalid reference"
    text = (
        'FROM base:1\nCOPY --from="team/src:1" /a /a\n'
        "COPY --chown=0:0 --from='team/src:2' /b /b\n"
        "COPY --from=team/src\\:3 /c /c\n"
    )
    assert _sources(text) == [(0, 2, "team/src:1"), (0, 3, "team/src:2"), (0, 4, "team/src:3")]


def test_an_upper_case_flag_is_no_from_flag() -> None:
    # the builder refuses the Dockerfile ("Unknown flag: FROM"); escrow tried to pull the
    # image first and reported that instead
    assert _sources("FROM base:1\nCOPY --FROM=team/src:1 /a /a\n") == []


def test_the_name_of_this_or_a_later_stage_is_an_image() -> None:
    # the builder looks a name up among the stages built so far: it copies from the image
    # of that name; escrow took it for the stage and recorded no input at all
    text = (
        "FROM base:1 AS own\n"
        "COPY --from=own /a /a\n"
        "COPY --from=later /b /b\n"
        "FROM base:1 AS later\n"
        "COPY --from=Own /c /c\n"
        "COPY --from=own2 /d /d\n"
    )
    assert _sources(text) == [(0, 2, "own"), (0, 3, "later"), (1, 6, "own2")]


class _Engine:
    def __init__(self) -> None:
        self.pulled: list[str] = []

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        return None

    def pull(self, ref: str, platform: str | None) -> None:
        self.pulled.append(ref)
        raise InputError(f"Pulling {ref} failed: invalid reference format.")


def test_an_arg_in_from_is_refused_as_not_expanded_without_a_pull() -> None:
    engine = _Engine()
    df = dfparse.parse("ARG SRC=team/src:1\nFROM base:1\nCOPY --from=${SRC} /a /a\n")
    with pytest.raises(InputError) as e:
        resolve_copy_sources(df, engine)  # type: ignore[arg-type]
    assert "'${SRC}'" in e.value.message
    assert "expands no ARG" in e.value.message
    assert engine.pulled == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "FROM base:1\nCOPY \\\n  --from=team/src:1 \\\n  /a /a\n",
            f"FROM base:1\nCOPY \\\n  --from={ID} \\\n  /a /a\n",
        ),
        (
            'FROM base:1\nCOPY \\\n  # see --from="team/src:1"\n  --from="team/src:1" /a /a\n',
            f'FROM base:1\nCOPY \\\n  # see --from="team/src:1"\n  --from={ID} /a /a\n',
        ),
    ],
    ids=["continued", "quoted-after-a-comment"],
)
def test_a_continued_copy_is_pinned_where_its_flag_is(text: str, expected: str) -> None:
    assert rewrite_from_lines(text, {}, {}, {2: ID}) == expected


def test_a_from_flag_split_over_lines_is_refused_not_pinned_in_half() -> None:
    # the builder joins "--from=team/src\" and ":1" into one word; pinning the first half
    # would make "--from=sha256:…:1"
    with pytest.raises(InputError, match="split over lines"):
        rewrite_from_lines("FROM base:1\nCOPY --from=team/src\\\n:1 /a /a\n", {}, {}, {2: ID})


@pytest.mark.docker
@pytest.mark.slow
def test_a_continued_quoted_copy_from_is_pinned_after_its_tag_moved(
    cli: Any, recorder: Recorder
) -> None:
    def source(generation: int) -> Any:
        return recorder.build(
            {"Dockerfile": BASE + "COPY data.txt /data.txt\n", "data.txt": f"gen {generation}\n"},
            name="r12src",
        )

    first = source(1)
    dockerfile = BASE + f'COPY \\\n  --from="{first.tag}" \\\n  /data.txt /data.txt\n'
    built = recorder.build({"Dockerfile": dockerfile}, name="r12app")
    assert built.statement["predicate"]["build"]["status"] == "succeeded"
    assert [
        (c["line"], c["reference"], c["imageId"])
        for c in built.statement["predicate"]["inputs"]["copyFromImages"]
    ] == [(2, first.tag, first.image_id)]
    moved = source(2)
    assert moved.image_id != first.image_id
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["verdict"] == "identical", doc["statement"]["predicate"]["verdict"]
    assert doc["statement"]["predicate"]["rebuild"]["pinning"] == "rewritten-from"
