"""`escrow capture` (images built by `docker run` + `docker commit`) and `escrow record`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from tests.conftest import BASE_TAG

from .conftest import inspect, show, write_tree

pytestmark = pytest.mark.docker

DOCKER = "/usr/bin/docker"


def _docker(*args: str) -> str:
    return subprocess.run(
        [DOCKER, *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def scripted_image(base_image: str) -> str:
    """A shell-driven build: each stage runs in a container and is committed."""
    tag = "escrow-test/scripted:latest"
    image = BASE_TAG
    stages = [
        ("mkdir -p /opt/app && echo one > /opt/app/one", "stage 1: lay out /opt/app", []),
        ("echo two > /opt/app/two", "stage 2: add two", ["ENV STAGE=2", "LABEL built-by=script"]),
        ("true", "stage 3: metadata only", ['CMD ["/bin/sh"]', "WORKDIR /opt/app"]),
    ]
    for i, (cmd, message, changes) in enumerate(stages):
        cid = _docker("run", "-d", image, "sh", "-c", cmd)
        assert _docker("wait", cid) == "0"
        change_args = [a for c in changes for a in ("-c", c)]
        target = tag if i == len(stages) - 1 else f"escrow-test/scripted-stage:{i}"
        _docker("commit", "-m", message, *change_args, cid, target)
        _docker("rm", cid)
        image = target
    return tag


def test_capture_records_config_history_and_layers_of_a_committed_image(
    escrow_home: Path, cli: Any, scripted_image: str, tmp_path: Path
) -> None:
    recipe = write_tree(tmp_path / "script", {"build.sh": "#!/bin/sh\n# the scripted build\n"})
    r = cli(
        [
            "capture",
            scripted_image,
            "--context",
            str(recipe),
            "-f",
            str(recipe / "build.sh"),
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    result = r.json()
    engine = inspect(scripted_image)
    assert result["image_id"] == engine["Id"] and result["status"] == "succeeded"
    assert result["project"] == "script"
    st = show(result["index"])
    p = st["predicate"]
    assert p["build"]["kind"] == "image" and p["steps"] == []
    assert st["subject"][0] == {"name": scripted_image, "digest": {"sha256": engine["Id"][7:]}}
    assert [lyr["diffId"] for lyr in p["layers"]] == engine["RootFS"]["Layers"]
    comments = [h["comment"] for h in p["history"] if h["comment"]]
    assert comments == ["stage 1: lay out /opt/app", "stage 2: add two", "stage 3: metadata only"]
    by_comment = {lyr.get("comment"): lyr for lyr in p["layers"]}
    assert "echo one" in by_comment["stage 1: lay out /opt/app"]["createdBy"]
    assert "echo two" in by_comment["stage 2: add two"]["createdBy"]
    for layer in p["layers"]:
        assert p["history"][layer["historyIndex"]]["emptyLayer"] is False
    cfg = p["image"]["config"]
    assert "STAGE=2" in cfg["Env"] and cfg["Labels"] == {"built-by": "script"}
    assert cfg["WorkingDir"] == "/opt/app" and cfg["Cmd"] == ["/bin/sh"]
    inputs = p["inputs"]
    assert inputs["recipe"]["path"] == "build.sh"
    assert (
        inputs["recipe"]["sha256"] == hashlib.sha256((recipe / "build.sh").read_bytes()).hexdigest()
    )
    assert [f["path"] for f in inputs["context"]["files"]] == ["build.sh"]


def test_capture_by_image_id(escrow_home: Path, cli: Any, scripted_image: str) -> None:
    image_id = inspect(scripted_image)["Id"]
    r = cli(["capture", image_id, "--json", "--project", "by-id"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["image_id"] == image_id and r.json()["project"] == "by-id"


def test_record_runs_the_command_and_exits_with_its_code(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = write_tree(tmp_path / "scripted-build", {"Makefile": "all:\n", "src/a.c": "int a;\n"})
    monkeypatch.chdir(ctx)
    r = cli(
        [
            "record",
            "--json",
            "--",
            sys.executable,
            "-c",
            "import sys; print('compiling'); print('warning', file=sys.stderr); sys.exit(5)",
        ]
    )
    assert r.exit_code == 5, r.stderr
    result = r.json()
    assert (
        result["status"] == "failed"
        and result["exit_code"] == 5
        and result["inputs_changed"] is False
    )
    p = show(result["index"])["predicate"]
    cmd = p["command"]
    assert cmd["argv"][0] == sys.executable and cmd["exitCode"] == 5 and cmd["cwd"] == str(ctx)
    assert cmd["contextBefore"] == cmd["contextAfter"] == p["inputs"]["context"]["treeDigest"]
    assert p["build"]["failure"]["exitCode"] == 5
    assert p["build"]["project"] == "scripted-build"
    log = BlobStore(escrow_home / "blobs").get(cmd["log"]["sha256"])
    assert b"compiling\n" in log and b"warning\n" in log
    logs = cli(["logs", str(result["index"])])
    assert "compiling" in logs.stdout


def test_record_flags_a_command_that_changes_its_inputs_and_records_the_image(
    escrow_home: Path,
    cli: Any,
    scripted_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = write_tree(tmp_path / "mutating", {"version.txt": "1\n", "keep.txt": "k\n"})
    secret = "rec-S3cr3t-value-991"
    monkeypatch.setenv("DEPLOY_TOKEN", secret)
    r = cli(
        [
            "record",
            "--image",
            scripted_image,
            "--context",
            str(ctx),
            "--json",
            "--",
            "sh",
            "-c",
            f"echo 2 > {ctx}/version.txt; echo token=$DEPLOY_TOKEN",
        ]
    )
    assert r.exit_code == 0, r.stderr
    result = r.json()
    assert result["inputs_changed"] is True and result["status"] == "succeeded"
    assert result["image_id"] == inspect(scripted_image)["Id"]
    assert "changed its own inputs" in r.stderr
    st = show(result["index"])
    cmd = st["predicate"]["command"]
    assert cmd["contextBefore"] != cmd["contextAfter"] and cmd["changedPaths"] == ["version.txt"]
    assert st["subject"][0]["digest"]["sha256"] == result["image_id"][7:]
    assert [lyr["diffId"] for lyr in st["predicate"]["layers"]] == inspect(scripted_image)[
        "RootFS"
    ]["Layers"]
    log = BlobStore(escrow_home / "blobs").get(cmd["log"]["sha256"])
    assert log == b"token=[secret DEPLOY_TOKEN]\n"
    assert secret not in r.stderr


def test_record_of_an_image_that_was_not_produced_fails(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli(["record", "--image", "escrow-test/not-produced:1", "--json", "--", "true"])
    assert r.exit_code == 1, r.stderr
    assert r.json()["status"] == "failed"
    assert "does not exist in the Docker Engine" in r.stderr


def test_record_of_a_missing_program_is_recorded_with_exit_127(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli(["record", "--json", "--", "escrow-no-such-program-xyz"])
    assert r.exit_code == 127
    assert r.json()["exit_code"] == 127
