"""Naming every base image before the build: stages, global ARGs, substitution."""

from __future__ import annotations

import pytest

from escrow.capture.dockerfile import logical_lines, parse, substitute
from escrow.errors import InputError

MULTI = """\
# syntax comment is just a comment here
ARG REGISTRY=registry.local:5000
ARG BASE_TAG
ARG VARIANT=slim
FROM --platform=linux/amd64 ${REGISTRY}/team/builder:${BASE_TAG:-1.0} AS build
ARG REGISTRY=ignored-inside-a-stage
RUN make \\
    all
FROM scratch AS empty
FROM build
COPY --from=build /out /out
FROM $REGISTRY/runtime-${VARIANT} AS final
"""


def _bases(
    text: str, args: dict[str, str] | None = None
) -> list[tuple[int, str | None, str, str | None, int | None]]:
    df = parse(text, args)
    return [(s.index, s.name, s.reference, s.platform, s.from_stage) for s in df.stages]


def test_every_stage_is_named_after_global_arg_substitution() -> None:
    assert _bases(MULTI) == [
        (0, "build", "registry.local:5000/team/builder:1.0", "linux/amd64", None),
        (1, "empty", "scratch", None, None),
        (2, None, "build", None, 0),
        (3, "final", "registry.local:5000/runtime-slim", None, None),
    ]


def test_build_args_override_global_defaults() -> None:
    bases = _bases(MULTI, {"REGISTRY": "mirror", "BASE_TAG": "2.3", "VARIANT": "full"})
    assert [b[2] for b in bases] == [
        "mirror/team/builder:2.3",
        "scratch",
        "build",
        "mirror/runtime-full",
    ]


def test_images_skips_scratch_and_earlier_stages() -> None:
    df = parse(MULTI)
    assert [s.index for s in df.images()] == [0, 3]
    assert df.stages[1].is_scratch and not df.stages[1].is_image
    assert df.stage_index("FINAL") == 3
    with pytest.raises(InputError, match="no stage named 'nope'"):
        df.stage_index("nope")


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("$A/x", {"A": "a"}, "a/x"),
        ("${A}x", {"A": "a"}, "ax"),
        ("${A:-def}", {}, "def"),
        ("${A:-def}", {"A": "set"}, "set"),
        ("${A:+alt}", {"A": "set"}, "alt"),
        ("${A:+alt}", {}, ""),
        ("$UNSET", {}, ""),
        ("no vars", {}, "no vars"),
    ],
    ids=[
        "plain",
        "braced",
        "default-unset",
        "default-set",
        "alt-set",
        "alt-unset",
        "unset",
        "none",
    ],
)
def test_substitution(text: str, values: dict[str, str], expected: str) -> None:
    assert substitute(text, values) == expected


def test_continuations_comments_and_the_escape_directive() -> None:
    text = "# escape=`\nFROM base\nRUN echo a `\n  # inside\n  && echo b\nCOPY c:\\path d\n"
    lines = logical_lines(text)
    assert [(i.keyword, i.args, i.line) for i in lines] == [
        ("FROM", "base", 2),
        ("RUN", "echo a && echo b", 3),
        ("COPY", "c:\\path d", 6),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("RUN true\nFROM x\n", "comes before any FROM"),
        ("FROM\n", "names no image"),
        ("FROM a b c d\n", "malformed"),
        ("ARG B\nFROM $B\n", "empty image name"),
    ],
    ids=["empty", "comments-only", "run-first", "from-nothing", "malformed", "empty-after-args"],
)
def test_bad_dockerfiles_are_input_errors(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("FROM a\nRUN echo hi\nCOPY x /x\n", []),
        ("# syntax=docker/dockerfile:1\nFROM a\n", ["a `# syntax=` frontend"]),
        ("FROM a\nRUN <<EOF\necho hi\nEOF\n", ["heredocs"]),
        ("FROM a\nCOPY <<-'CONF' /etc/x.conf\nk=v\nCONF\n", ["heredocs"]),
        (
            "FROM a\nRUN --mount=type=cache,target=/root/.cache pip install x\n",
            ["RUN --mount/--network/--security"],
        ),
        (
            "FROM a\nCOPY --link --chmod=755 app /app\n",
            ["COPY/ADD --link/--chmod/--parents/--exclude"],
        ),
        ("FROM a\n# RUN --mount=type=cache in a comment\nRUN echo --mount\n", []),
    ],
)
def test_buildkit_only_syntax_is_named(text: str, found: list[str]) -> None:
    from escrow.capture.build import buildkit_only

    assert buildkit_only(text) == found
