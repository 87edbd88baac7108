"""``escrow diff`` on two real recorded builds of the same recipe ("yesterday's and today's")."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Recorded, Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE = "FROM escrow-test/base:latest\n"


@pytest.fixture
def two_builds(recorder: Recorder, file_server: Any) -> tuple[Recorded, Recorded, str]:
    base = recorder.build({"Dockerfile": BASE + "LABEL generation=1\n"}, name="nightlybase")
    script = file_server.root / "script"
    script.write_text("echo x > /p && chmod 644 /p && echo y > /o\n")
    url = file_server.url_in_container("script")
    recipe = f"FROM {base.tag}\nARG V\nCOPY app.sh /app.sh\nRUN wget -qO- {url} | sh\n"
    # the RUN fetches over the Docker bridge: once in a full CI run on a loaded 2-core
    # machine the fetched script came back garbled ("sh: to: not found"), so each build
    # that fetches gets one more try, and the fixture says what went wrong if both fail
    a = recorder.build(
        {"Dockerfile": recipe, "app.sh": "echo one\n", "gone.txt": "bye\n"},
        name="app",
        build_args=(("V", "1"),),
        retries=1,
    )
    assert a.image_id is not None, a.statement["predicate"]["build"].get("failure")
    # overnight: the base tag moves, a file is edited, one added, one deleted, a line added,
    # and the fetched script now changes a mode and an owner and deletes a file
    new_base = recorder.build({"Dockerfile": BASE + "LABEL generation=2\n"}, name="nightlybase")
    (a.context / "app.sh").write_text("echo two\n")
    (a.context / "extra.txt").write_text("extra\n")
    (a.context / "gone.txt").unlink()
    (a.context / "Dockerfile").write_text(recipe + "LABEL release=2\n")
    script.write_text(
        "echo x > /p && chmod 600 /p && echo y > /o && chown 1000:1000 /o && rm /bin/vi\n"
    )
    b = recorder.build({}, name="app", build_args=(("V", "2"),), context=a.context, retries=1)
    assert b.image_id is not None, b.statement["predicate"]["build"].get("failure")
    assert new_base.image_id is not None
    return a, b, new_base.image_id


def test_diff_reports_inputs_steps_and_layers(cli: Any, two_builds: Any) -> None:
    a, b, new_base = two_builds
    r = cli(["diff", str(a.index), str(b.index), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    inputs = doc["inputs"]
    ctx = inputs["context"]
    assert {c["path"] for c in ctx["changed"]} == {"Dockerfile", "app.sh"}
    assert ctx["added"] == ["extra.txt"] and ctx["removed"] == ["gone.txt"]
    assert "+LABEL release=2" in inputs["recipe"]["diff"]
    (base,) = inputs["baseImages"]
    assert base["change"] == "image" and base["rebuilt"]["imageId"] == new_base
    assert inputs["buildArgs"] == [
        {"name": "V", "original": "1", "rebuilt": "2", "change": "value"}
    ]
    assert [s["change"] for s in doc["steps"]] == ["added"]
    assert doc["steps"][0]["rebuilt"]["instruction"] == "LABEL release=2"
    image = doc["image"]
    assert image["verdict"] == "different"
    assert any(c["field"] == "config.Labels" for c in image["config"])
    # without --files the layers only say that they differ
    assert doc["filesCompared"] is False
    assert image["layers"][-1]["verdict"] == "different"
    assert image["layers"][-1]["differences"] == []


def test_diff_files_names_each_kind(cli: Any, two_builds: Any) -> None:
    a, b, _ = two_builds
    r = cli(["diff", str(a.index), str(b.index), "--files", "--json"])
    assert r.exit_code == 0, r.stderr
    layers = r.json()["image"]["layers"]
    copy_layer, run_layer = layers[-2], layers[-1]
    assert [(d["path"], d["kind"]) for d in copy_layer["differences"]] == [("/app.sh", "content")]
    found = {(d["path"], d["kind"]) for d in run_layer["differences"]}
    assert {("/p", "mode"), ("/o", "owner"), ("/bin/vi", "removed")} <= found
    # the human report
    r = cli(["diff", str(a.index), str(b.index), "--files"])
    assert r.exit_code == 0, r.stderr
    text = r.stdout
    for expected in (
        "changed  app.sh (content)",
        "added    extra.txt",
        "removed  gone.txt",
        "+LABEL release=2",
        "(same reference, another image)",
        "build arg V: 1 -> 2",
        "+ step",
        "mode     /p  0644 -> 0600",
        "owner    /o  0:0 -> 1000:1000",
        "removed  /bin/vi",
    ):
        assert expected in text, text


def test_diff_files_of_an_image_gone_from_the_engine(
    cli: Any, two_builds: Any, docker_client: Any
) -> None:
    a, b, _ = two_builds
    docker_client.images.remove(a.tag)
    r = cli(["diff", str(a.index), str(b.index), "--files", "--json"])
    assert r.exit_code == 0, r.stderr
    last = r.json()["image"]["layers"][-1]
    assert "not in the Docker Engine" in last["note"]


def test_diff_of_an_entry_with_itself(cli: Any, recorder: Recorder) -> None:
    a = recorder.build({"Dockerfile": BASE + "ENV A=1\n"})
    r = cli(["diff", str(a.index), str(a.index)])
    assert r.exit_code == 0, r.stderr
    assert "unchanged" in r.stdout
    assert "same instructions" in r.stdout
    assert "identical" in r.stdout


def test_two_identical_builds_say_why_their_image_ids_differ(cli: Any, recorder: Recorder) -> None:
    """Two phoenix builds of one recipe: the same layers and configuration under two image
    IDs read as a contradiction ("identical: A -> B") unless the output says why."""
    import time

    files = {"Dockerfile": BASE + "COPY hello.txt /hello.txt\nENV A=1\n", "hello.txt": "hi\n"}
    a = recorder.build(files, name="same-a")
    start = int(time.time())
    while int(time.time()) == start:  # another creation time
        time.sleep(0.05)
    b = recorder.build({}, name="same-b", context=a.context)
    assert a.image_id != b.image_id
    r = cli(["diff", str(a.index), str(b.index)])
    assert r.exit_code == 0, r.stderr
    assert "identical: " in r.stdout
    assert "the image IDs differ only in what no rebuild repeats" in r.stdout
    same = cli(["diff", str(a.index), str(a.index)]).stdout
    assert "differ only" not in same  # one image: nothing to explain


def test_diff_refuses_entries_that_are_not_builds(cli: Any, escrow_home: Any) -> None:
    r = cli(["diff", "0", "0"])  # entry 0 is the key event of `escrow init`
    assert r.exit_code == 2
    assert "not a build manifest" in r.stderr
