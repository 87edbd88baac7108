"""Parsing the classic builder's stream into steps."""

from __future__ import annotations

from typing import Any

from escrow.capture.progress import PlainProgress
from escrow.capture.steps import StepParser

FAILING_STREAM: list[dict[str, Any]] = [
    {"stream": "Step 1/6 : ARG BASE=escrow-test/base:latest"},
    {"stream": "\n"},
    {"stream": "Step 2/6 : FROM ${BASE} AS one"},
    {"stream": "\n"},
    {"stream": " ---> e619ec11273d\n"},
    {"stream": "Step 3/6 : RUN echo hi && echo err >&2"},
    {"stream": "\n"},
    {"stream": " ---> Running in c114ee42ff20\n"},
    {"stream": "hi\n"},
    {"stream": "\x1b[91merr\n\x1b[0m"},
    {"stream": "no newline at the end"},
    {"stream": "Removing intermediate container c114ee42ff20\n"},
    {"stream": " ---> f974126b0929\n"},
    {"aux": {"ID": "sha256:" + "9" * 64}},
    {"stream": "Step 4/6 : FROM one"},
    {"stream": "\n"},
    {"stream": " ---> f974126b0929\n"},
    {"stream": "Step 5/6 : COPY Dockerfile /x"},
    {"stream": "\n"},
    {"stream": " ---> 81c345f3fcd6\n"},
    {"stream": "Step 6/6 : RUN exit 3"},
    {"stream": "\n"},
    {"stream": " ---> Running in 49b9d891556a\n"},
    {"stream": "about to fail\n"},
    {"stream": "Removing intermediate container 49b9d891556a\n"},
    {
        "errorDetail": {
            "code": 3,
            "message": "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
        },
        "error": "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
    },
]


def _parse(messages: list[dict[str, Any]]) -> Any:
    parser = StepParser()
    for m in messages:
        parser.feed(m)
    return parser.finish()


def test_steps_texts_images_stages_and_logs() -> None:
    result = _parse(FAILING_STREAM)
    assert [s.instruction for s in result.steps] == [
        "ARG BASE=escrow-test/base:latest",
        "FROM ${BASE} AS one",
        "RUN echo hi && echo err >&2",
        "FROM one",
        "COPY Dockerfile /x",
        "RUN exit 3",
    ]
    assert [s.image_short for s in result.steps] == [
        None,
        "e619ec11273d",
        "f974126b0929",
        "f974126b0929",
        "81c345f3fcd6",
        None,
    ]
    assert [s.stage for s in result.steps] == [None, 0, 0, 1, 1, 1]
    assert bytes(result.steps[2].log) == b"hi\nerr\nno newline at the end\n"
    assert result.steps[2].container == "c114ee42ff20"
    assert bytes(result.steps[1].log) == b""


def test_a_failing_step_has_its_exit_code_and_the_error_in_its_log() -> None:
    result = _parse(FAILING_STREAM)
    assert result.image_id is None
    assert result.failed_step is result.steps[-1]
    assert result.error_code == 3 and result.failed_step.exit_code == 3
    assert bytes(result.failed_step.log).endswith(
        b"about to fail\nThe command '/bin/sh -c exit 3' returned a non-zero code: 3\n"
    )
    assert all(s.exit_code == 0 for s in result.steps[:-1])


def test_exit_code_from_the_message_when_the_detail_has_none() -> None:
    msgs = [
        {"stream": "Step 1/1 : RUN false\n"},
        {"error": "The command '/bin/sh -c false' returned a non-zero code: 1"},
    ]
    assert _parse(msgs).error_code == 1
    msgs = [
        {"stream": "Step 1/1 : COPY nope /\n"},
        {"errorDetail": {"message": "COPY failed: file not found"}, "error": "COPY failed"},
    ]
    assert _parse(msgs).error_code is None


def test_a_successful_stream_gives_the_last_stage_image() -> None:
    ok = [m for m in FAILING_STREAM if "error" not in m and "errorDetail" not in m]
    ok += [
        {"aux": {"ID": "sha256:" + "a" * 64}},
        {"stream": "Successfully built aaaaaaaaaaaa\n"},
        {"stream": "Successfully tagged x:1\n"},
    ]
    result = _parse(ok)
    assert result.error is None and result.image_id == "sha256:" + "a" * 64
    assert b"Successfully" not in bytes(result.steps[-1].log)


def test_plain_progress_prints_steps_and_scrubbed_output(capsys: Any) -> None:
    import sys

    parser = StepParser(PlainProgress(sys.stderr), scrub=lambda t: t.replace("hi", "[x]"))
    for m in FAILING_STREAM:
        parser.feed(m)
    parser.finish()
    err = capsys.readouterr().err
    assert "step 3/6: RUN echo [x] && echo err >&2" in err
    assert "  | [x]\n" in err
    assert "step 6 failed with exit code 3" in err


def test_from_scratch_empty_arrow_is_not_log_output() -> None:
    """Regression: `FROM scratch`'s empty ` ---> ` line was shown and logged as output."""
    result = _parse(
        [
            {"stream": "Step 1/2 : FROM scratch\n"},
            {"stream": " ---> \n"},
            {"stream": "Step 2/2 : COPY busybox /bin/busybox\n"},
            {"stream": " ---> 81c345f3fcd6\n"},
            {"aux": {"ID": "sha256:" + "8" * 64}},
        ]
    )
    assert [bytes(s.log) for s in result.steps] == [b"", b""]
    assert result.steps[0].image_short is None
    assert result.steps[1].image_short == "81c345f3fcd6"


def _steps(parser: StepParser, lines: list[str]) -> None:
    for line in lines:
        parser.feed({"stream": line + "\n"})


def test_the_layers_are_known_once_only_metadata_steps_remain() -> None:
    """``escrow build`` saves the image of the last step that could add a layer while
    the steps that cannot (ENV, CMD, ...) still run."""
    from escrow.capture import dockerfile as dfparse
    from escrow.capture.build import _layers_watch

    df = dfparse.parse('ARG B=x\nFROM $B\nRUN a\nWORKDIR /w\nENV A=1\nCMD ["x"]\n')
    offered: list[str] = []
    parser = StepParser(on_step=_layers_watch(df, offered.append))
    _steps(
        parser,
        [
            "Step 1/6 : ARG B=x",
            "Step 2/6 : FROM $B",
            " ---> 111111111111",
            "Step 3/6 : RUN a",
            " ---> Running in 222222222222",
            " ---> 333333333333",
            "Step 4/6 : WORKDIR /w",  # WORKDIR may add a layer: not yet
            " ---> 444444444444",
        ],
    )
    assert offered == []
    _steps(parser, ["Step 5/6 : ENV A=1", " ---> 555555555555"])
    assert offered == ["444444444444"]
    _steps(parser, ['Step 6/6 : CMD ["x"]', " ---> 666666666666"])
    assert offered == ["444444444444", "555555555555"]  # the saver takes the first


def test_no_layers_are_guessed_from_a_stream_that_is_not_the_file() -> None:
    from escrow.capture import dockerfile as dfparse
    from escrow.capture.build import _layers_watch

    df = dfparse.parse("FROM x AS a\nRUN a\nENV A=1\nFROM a\nRUN b\n")
    offered: list[str] = []
    # --target a: the engine numbers the steps of the whole file, the last ones never come
    parser = StepParser(on_step=_layers_watch(df, offered.append))
    _steps(
        parser,
        ["Step 1/5 : FROM x AS a", " ---> 111111111111", "Step 2/5 : RUN a", " ---> 222222222222"],
    )
    _steps(parser, ["Step 3/5 : ENV A=1", " ---> 333333333333"])
    assert offered == []  # a FROM and a RUN follow in the file
    # a step count that is not the file's: nothing is assumed
    other = StepParser(on_step=_layers_watch(df, offered.append))
    _steps(other, ["Step 1/2 : FROM x", " ---> 111111111111", "Step 2/2 : ENV A=1"])
    assert offered == []
    # a step whose text is not the file's instruction there
    third = StepParser(
        on_step=_layers_watch(dfparse.parse("FROM x\nRUN a\nENV A=1\n"), offered.append)
    )
    _steps(
        third,
        [
            "Step 1/3 : FROM x",
            " ---> 111111111111",
            "Step 2/3 : RUN a",
            " ---> 222222222222",
            "Step 3/3 : CMD y",
        ],
    )
    assert offered == []
