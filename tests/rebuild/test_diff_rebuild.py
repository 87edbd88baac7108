"""``escrow diff`` and ``escrow rebuild`` as an engineer reads them: a failed build's steps
that never ran, a capture or a recorded command against a build, two layers made by
different commands, and a rebuild that failed without an exit code."""

from __future__ import annotations

from typing import Any

import pytest

from escrow.cli.rebuild_cmd import _render_verdict

from .conftest import Recorder
from .test_diff_report import _image
from .test_diff_reported import diff, predicate

BASE = "FROM escrow-test/base:latest\n"


def _steps(*instructions: str, failed_at: int | None = None) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "instruction": text,
            "exitCode": 1 if i == failed_at else 0,
        }
        for i, text in enumerate(instructions, start=1)
        if failed_at is None or i <= failed_at
    ]


def _failed(pred: dict[str, Any], step: int, instruction: str) -> dict[str, Any]:
    pred["build"] = {
        **pred["build"],
        "status": "failed",
        "failure": {"step": step, "exitCode": 1, "instruction": instruction},
    }
    pred["image"] = None
    return pred


RECIPE = ("FROM base", "COPY . /src", "RUN test -f /src/flag", "RUN echo done > /done")


# ---------------------------------------------------------------------------
# 1. the steps a failed build never ran are not "removed"


def test_steps_after_the_failing_step_read_as_not_run() -> None:
    """A build that failed at step 3 of 4 read "- step 4: RUN echo done" against the same
    Dockerfile built successfully, as if the step had been taken out of the recipe."""
    ok = predicate(steps=_steps(*RECIPE))
    failed = _failed(predicate(steps=_steps(*RECIPE, failed_at=3)), 3, RECIPE[2])
    doc, text = diff(ok, failed)
    assert [(s["change"], s.get("notRunIn"), s.get("failedAt")) for s in doc["steps"]] == [
        ("exit-code", None, None),
        ("not-run", 2, 3),
    ]
    assert "step 4 not run in entry 2 (its build failed at step 3): RUN echo done" in text, text
    assert "- step 4" not in text, text
    # and the other way round
    doc, text = diff(failed, ok)
    assert [s["change"] for s in doc["steps"]] == ["exit-code", "not-run"]
    assert "+ step 4" not in text and "step 4 not run in entry 1" in text, text


def test_a_step_removed_before_the_failing_step_is_still_removed() -> None:
    ok = predicate(steps=_steps("FROM base", "RUN a", "RUN b", "RUN c"))
    failed = _failed(predicate(steps=_steps("FROM base", "RUN b", "RUN c", failed_at=3)), 3, "c")
    doc, _text = diff(ok, failed)
    assert [s["change"] for s in doc["steps"]] == ["removed", "exit-code"], doc["steps"]


def test_a_changed_step_that_failed_names_its_exit_code() -> None:
    """A step that failed but whose instruction also changed was listed with no sign that
    it failed: "+ step 3: RUN echo boom && exit 7"."""
    ok = predicate(steps=_steps("FROM base", "RUN date > /stamp"))
    failed = predicate(steps=_steps("FROM base", "RUN echo hi", "RUN exit 7"))
    failed["steps"][2]["exitCode"] = 7
    _doc, text = diff(ok, _failed(failed, 3, "RUN exit 7"))
    assert "+ step 3: RUN exit 7 (failed, exit code 7)" in text, text
    assert "+ step 2: RUN echo hi\n" in text, text


def test_a_failed_build_against_a_passing_one_on_the_engine(cli: Any, recorder: Recorder) -> None:
    recipe = BASE + "COPY . /src\nRUN test -f /src/flag\nRUN echo done > /done\n"
    ok = recorder.build({"Dockerfile": recipe, "flag": ""}, name="flag")
    (ok.context / "flag").unlink()
    failed = recorder.build({}, name="flag", context=ok.context)
    assert failed.image_id is None
    r = cli(["diff", str(ok.index), str(failed.index)])
    assert r.exit_code == 0, r.stderr
    assert "step 3: exit code 0 -> 1: RUN test -f /src/flag" in r.stdout, r.stdout
    assert (
        f"step 4 not run in entry {failed.index} (its build failed at step 3): "
        "RUN echo done > /done" in r.stdout
    ), r.stdout
    assert "- step 4" not in r.stdout
    r = cli(["diff", str(ok.index), str(failed.index), "--json"])
    assert [s["change"] for s in r.json()["steps"]] == ["exit-code", "not-run"]


# ---------------------------------------------------------------------------
# 2. what a capture or a recorded command never records is not "removed"


def _capture(**over: Any) -> dict[str, Any]:
    pred = predicate(steps=[], **over)
    pred["build"] = {**pred["build"], "kind": "image"}
    pred["inputs"] = {**pred["inputs"], "context": None, "recipe": None, "baseImages": []}
    return pred


BASES = [{"stage": 0, "reference": "team/base:1", "imageId": "sha256:" + "b" * 64}]


@pytest.mark.parametrize("capture_first", [False, True])
def test_a_capture_against_a_build_reports_no_removed_steps_or_base_images(
    capture_first: bool,
) -> None:
    """`escrow diff BUILD CAPTURE` of the very same image listed every step as removed
    ("- step 1: FROM base", …) and "stage 0: base image removed"."""
    build = predicate(steps=_steps("FROM team/base:1", "RUN make"))
    build["inputs"]["baseImages"] = BASES
    a, b = (_capture(), build) if capture_first else (build, _capture())
    capture_index = 1 if capture_first else 2
    doc, text = diff(a, b)
    assert doc["steps"] == [] and doc["inputs"]["baseImages"] == []
    note = f"entry {capture_index} records no steps (recorded by `escrow capture`)"
    assert doc["stepsNote"] == note
    assert doc["inputs"]["baseImagesNote"] == f"entry {capture_index} records no base images"
    assert "step 1" not in text and "removed" not in text and "added" not in text, text
    assert f"  not compared: entry {capture_index} records no steps" in text, text
    assert f"  base images: entry {capture_index} records no base images" in text, text


def test_a_capture_given_its_dockerfile_still_compares_base_images() -> None:
    build = predicate(steps=_steps("FROM team/base:1"))
    build["inputs"]["baseImages"] = BASES
    capture = _capture()
    capture["inputs"] = {**build["inputs"], "baseImages": []}  # -f: recipe recorded, no FROM
    doc, _text = diff(build, capture)
    assert [x["change"] for x in doc["inputs"]["baseImages"]] == ["removed"]
    assert "baseImagesNote" not in doc["inputs"]


def test_a_recorded_command_against_a_build_reports_no_removed_steps() -> None:
    command = {"argv": ["make"], "cwd": "/src", "exitCode": 0, "inputsChanged": False}
    record = predicate(steps=[], command=command)
    record["build"] = {**record["build"], "kind": "command"}
    build = predicate(steps=_steps("FROM base", "RUN make"))
    doc, text = diff(build, record)
    assert doc["steps"] == []
    assert "- step" not in text, text
    assert "not compared: entry 2 records no steps (recorded by `escrow record`)" in text, text


def test_two_captures_compare_no_steps_and_say_nothing_of_them() -> None:
    doc, text = diff(_capture(), _capture())
    assert doc["steps"] == [] and "stepsNote" not in doc
    assert "same instructions, same exit codes" in text


# ---------------------------------------------------------------------------
# 3. two layers of different commands paired by position name both commands


def test_layers_of_different_commands_paired_by_position_name_both() -> None:
    """A layer made by `RUN date` in entry 2, paired with entry 1's `WORKDIR /app`, read
    "layer 1: different  WORKDIR /app" only, as if entry 2 had a WORKDIR layer there."""
    a = _image(["COPY busybox", "WORKDIR /app", "COPY . /app"])
    b = _image(["COPY busybox", "RUN date > /stamp"])
    doc, text = diff(a, b)
    layer = doc["image"]["layers"][1]
    assert (layer["createdBy"], layer["rebuiltCreatedBy"]) == ("WORKDIR /app", "RUN date > /stamp")
    assert "layer 1: different  WORKDIR /app\n      made in entry 2 by: RUN date > /stamp" in text
    # a layer paired with one of the same command names it once
    assert "rebuiltCreatedBy" not in doc["image"]["layers"][0]
    assert text.count("made in entry 2 by") == 1, text


# ---------------------------------------------------------------------------
# 4. a rebuild that failed without an exit code


def _not_reproduced(failure: dict[str, Any]) -> str:
    return _render_verdict(
        {
            "predicate": {
                "project": "app",
                "original": {"index": 7, "imageId": "sha256:" + "a" * 64},
                "rebuild": {"imageId": None},
                "verdict": {"overall": "not-reproduced", "layers": [], "failure": failure},
            }
        }
    )


def test_a_rebuild_failure_without_an_exit_code_reads_as_such() -> None:
    """The engine failing at a step (no command exit code) read "exit code None"."""
    text = _not_reproduced(
        {
            "step": 6,
            "exitCode": None,
            "instruction": "COPY app.sh ./",
            "message": "failed to export image",
            "logTail": "",
        }
    )
    assert "  failed at step 6, no exit code: COPY app.sh ./" in text, text
    assert "None" not in text, text
    text = _not_reproduced(
        {"step": None, "exitCode": None, "message": "the engine refused it", "logTail": ""}
    )
    assert "  failed, no exit code\n" in text, text
    assert "None" not in text and "?" not in text, text
    text = _not_reproduced(
        {"step": 3, "exitCode": 7, "instruction": "RUN x", "message": "m", "logTail": ""}
    )
    assert "  failed at step 3, exit code 7: RUN x" in text, text


# ---------------------------------------------------------------------------
# 5. a build arg or label the recorded build was not given


def test_an_unknown_build_arg_or_label_is_named_in_one_sentence() -> None:
    """`escrow rebuild 1 --build-arg GREETING=hi` read "The build argument(s) GREETING were
    not used by the recorded build"."""
    from escrow.errors import UsageError
    from escrow.rebuild.verify import check_build_args, recorded_labels

    recorded = {"inputs": {"buildArgs": [{"name": "V", "value": "1"}], "labels": []}}
    with pytest.raises(UsageError) as one:
        check_build_args(recorded, {"GREETING": "hi"})
    assert one.value.message == "The build argument GREETING was not given to the recorded build."
    with pytest.raises(UsageError) as two:
        check_build_args(recorded, {"B": "1", "A": "2"})
    assert two.value.message == "The build arguments A, B were not given to the recorded build."
    with pytest.raises(UsageError) as label:
        recorded_labels(recorded, {"team": "x"})
    assert label.value.message == "The label team was not given to the recorded build."
