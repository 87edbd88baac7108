"""``escrow rebuild`` on the real Docker Engine: each verdict, from real phoenix builds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.schemas import validate_statement
from escrow.documents.types import REBUILD_VERIFICATION

from .conftest import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE = "FROM escrow-test/base:latest\n"


def rebuild(cli: Any, rec: Recorder, index: int, context: Path, *extra: str) -> Any:
    r = cli(
        [
            "rebuild",
            str(index),
            "--context",
            str(context),
            "--json",
            "-q",
            "--rm",
            "--tag",
            rec.tag(f"rb{index}"),
            *extra,
        ]
    )
    return r


def verdict_of(r: Any) -> dict[str, Any]:
    doc = r.json()
    statement = doc["statement"]
    assert statement["predicateType"] == REBUILD_VERIFICATION
    validate_statement(statement)
    return dict(statement["predicate"]["verdict"])


def next_second() -> None:
    """Let the wall clock pass a whole second: the engine writes mtimes in whole seconds."""
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)


def test_copy_env_label_is_identical(cli: Any, recorder: Recorder) -> None:
    built = recorder.build(
        {
            "Dockerfile": BASE + "COPY hello.txt /hello.txt\nENV GREETING=hello\nLABEL team=qa\n",
            "hello.txt": "hello\n",
        }
    )
    next_second()
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["verdict"] == "identical"
    verdict = verdict_of(r)
    assert {layer["verdict"] for layer in verdict["layers"]} == {"identical"}
    assert verdict["config"] == []
    pred = doc["statement"]["predicate"]
    assert pred["original"]["index"] == built.index
    assert pred["original"]["imageId"] == built.image_id
    assert doc["entry"]["index"] == built.index + 1  # appended to the ledger
    assert pred["rebuild"]["imageId"] != built.image_id  # created times differ, layers do not


def test_run_echo_is_equivalent_naming_mtime(cli: Any, recorder: Recorder) -> None:
    built = recorder.build({"Dockerfile": BASE + "RUN echo x > /f\n"})
    next_second()
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] == "equivalent"
    last = verdict["layers"][-1]
    assert last["verdict"] == "equivalent"
    assert "echo x > /f" in last["createdBy"]
    assert "mtime" in last["normalisations"]
    assert all(layer["verdict"] == "identical" for layer in verdict["layers"][:-1])


def test_run_date_is_different_naming_f_content(cli: Any, recorder: Recorder) -> None:
    built = recorder.build({"Dockerfile": BASE + "RUN date +%s%N > /f\n"})
    # busybox's date has no %N, so /f holds whole seconds: rebuild in a later second
    # (a rebuild within the same second was, rightly, identical — a flaky test)
    next_second()
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] == "different"
    last = verdict["layers"][-1]
    assert last["verdict"] == "different"
    assert [(d["path"], d["kind"]) for d in last["differences"]] == [("/f", "content")]
    # the human report says the same
    r2 = cli(
        [
            "rebuild",
            str(built.index),
            "--context",
            str(built.context),
            "-q",
            "--rm",
            "--tag",
            recorder.tag("human"),
        ]
    )
    assert r2.exit_code == 1
    assert "different" in r2.stdout and "content  /f" in r2.stdout


def test_mode_owner_and_whiteout_are_reported(
    cli: Any, recorder: Recorder, file_server: Any
) -> None:
    script = file_server.root / "script"
    script.write_text("echo x > /p && chmod 644 /p && echo y > /o\n")
    url = file_server.url_in_container("script")
    built = recorder.build({"Dockerfile": BASE + f"RUN wget -qO- {url} | sh\n"}, retries=1)
    assert built.image_id is not None, built.statement["predicate"]["build"].get("failure")
    # the same recipe now fetches a script that changes a mode, an owner, and deletes a file
    script.write_text(
        "echo x > /p && chmod 600 /p && echo y > /o && chown 1000:1000 /o && rm /bin/vi\n"
    )
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1, r.stderr
    verdict = verdict_of(r)
    found = {(d["path"], d["kind"]) for d in verdict["layers"][-1]["differences"]}
    assert ("/p", "mode") in found
    assert ("/o", "owner") in found
    assert ("/bin/vi", "removed") in found
    mode = next(d for d in verdict["layers"][-1]["differences"] if d["kind"] == "mode")
    assert (mode["original"]["mode"], mode["rebuilt"]["mode"]) == (0o644, 0o600)


def test_failed_rebuild_is_not_reproduced_with_the_step(
    cli: Any, recorder: Recorder, file_server: Any
) -> None:
    (file_server.root / "payload").write_text("payload\n")
    url = file_server.url_in_container("payload")
    built = recorder.build(
        {"Dockerfile": BASE + "ENV A=1\n" + f"RUN wget -qO /payload {url}\n"}, retries=1
    )
    assert built.image_id is not None, built.statement["predicate"]["build"].get("failure")
    file_server.stop()  # the network resource the recipe needs is gone
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] == "not-reproduced"
    failure = verdict["failure"]
    assert failure["step"] == 3
    assert "wget" in failure["instruction"]
    assert failure["exitCode"] not in (0, None)
    assert r.json()["statement"]["predicate"]["rebuild"]["imageId"] is None


def test_missing_base_image_is_unknown(cli: Any, recorder: Recorder, docker_client: Any) -> None:
    base = recorder.build({"Dockerfile": BASE + f"LABEL unique={recorder.run}\n"}, name="base")
    built = recorder.build({"Dockerfile": f"FROM {base.tag}\nRUN echo x > /f\n"})
    docker_client.images.remove(built.tag)
    docker_client.images.remove(base.tag)
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] == "unknown"
    assert [(m["kind"], m["name"], m["digest"]) for m in verdict["missing"]] == [
        ("base-image", base.tag, base.image_id)
    ]


def test_moved_base_tag_is_pinned_to_the_recorded_image(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    base = recorder.build({"Dockerfile": BASE + "LABEL generation=1\n"}, name="movingbase")
    built = recorder.build({"Dockerfile": f"FROM {base.tag}\nCOPY a /a\n", "a": "a\n"})
    # the tag moves on (yesterday's base is still in the engine, under its ID)
    recorder.build({"Dockerfile": BASE + "LABEL generation=2\n"}, name="movingbase")
    assert docker_client.images.get(base.tag).id != base.image_id
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["verdict"] == "identical"
    assert doc["statement"]["predicate"]["rebuild"]["pinning"] == "rewritten-from"
    # the engine's tag was not touched
    assert docker_client.images.get(base.tag).id != base.image_id


def test_edited_context_file_exits_2_naming_it(cli: Any, recorder: Recorder) -> None:
    built = recorder.build(
        {
            "Dockerfile": BASE + "COPY . /app\n",
            "app.sh": "echo one\n",
            "keep.txt": "same\n",
        }
    )
    (built.context / "app.sh").write_text("echo two\n")
    (built.context / "new.txt").write_text("new\n")
    (built.context / "keep.txt").unlink()
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 2
    assert "app.sh" in r.stderr and "new.txt" in r.stderr and "keep.txt" in r.stderr
    doc = r.json()
    assert doc["ok"] is False
    assert doc["context"]["changed"] == [{"path": "app.sh", "kinds": ["content"]}]
    assert doc["context"]["missing"] == ["keep.txt"]
    assert doc["context"]["extra"] == ["new.txt"]


def test_rebuild_needs_a_context(cli: Any, recorder: Recorder) -> None:
    built = recorder.build({"Dockerfile": BASE + "ENV A=1\n"})
    r = cli(["rebuild", str(built.index)])
    assert r.exit_code == 2
    assert "--context" in r.stderr


def test_secret_build_arg_must_be_given_again(cli: Any, recorder: Recorder) -> None:
    built = recorder.build(
        {"Dockerfile": BASE + 'ARG API_TOKEN\nRUN test -n "$API_TOKEN" && echo ok > /ok\n'},
        build_args=(("API_TOKEN", "s3cr3t-value"),),
    )
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1
    verdict = verdict_of(r)
    assert verdict["overall"] == "unknown"
    assert verdict["missing"][0]["kind"] == "build-arg"
    assert verdict["missing"][0]["name"] == "API_TOKEN"
    wrong = rebuild(cli, recorder, built.index, built.context, "--build-arg", "API_TOKEN=nope")
    assert wrong.exit_code == 2
    assert "API_TOKEN" in wrong.stderr
    right = rebuild(
        cli, recorder, built.index, built.context, "--build-arg", "API_TOKEN=s3cr3t-value"
    )
    assert right.exit_code == 0, right.stderr
    assert right.json()["verdict"] == "equivalent" or right.json()["verdict"] == "identical"
    assert "s3cr3t-value" not in right.stdout
