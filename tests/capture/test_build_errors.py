"""Failed builds are recorded; bad inputs are one-sentence errors with the right exit code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from tests.conftest import BASE_TAG

from .conftest import show, write_tree

pytestmark = pytest.mark.docker


def _size(cli: Any) -> int:
    r = cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    data = r.json()
    entries = data if isinstance(data, list) else data.get("entries", [])
    return len(entries)


def test_a_failing_run_step_is_recorded_as_failed_and_exits_1(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "broken",
        {
            "Dockerfile": f"FROM {BASE_TAG}\nRUN echo preparing\n"
            "RUN echo line1 && echo oops >&2 && exit 42\nRUN echo never\n",
        },
    )
    r = cli(["build", str(ctx), "-t", "escrow-test/broken:1", "--json"])
    assert r.exit_code == 1, r.stderr
    result = r.json()
    assert result["status"] == "failed" and result["image_id"] is None
    assert (
        "Step 3 failed with exit code 42" in r.stderr
        and f"ledger entry {result['index']}" in r.stderr
    )
    assert "Traceback" not in r.stderr
    st = show(result["index"])
    p = st["predicate"]
    failure = p["build"]["failure"]
    assert failure["step"] == 3 and failure["exitCode"] == 42
    assert failure["instruction"] == "RUN echo line1 && echo oops >&2 && exit 42"
    assert "line1\n" in failure["logTail"] and "oops\n" in failure["logTail"]
    assert "returned a non-zero code: 42" in failure["logTail"]
    assert "image" not in p and "layers" not in p
    assert [s["index"] for s in p["steps"]] == [1, 2, 3]
    assert [s["exitCode"] for s in p["steps"]] == [0, 0, 42]
    recipe = p["inputs"]["recipe"]
    assert st["subject"] == [
        {"name": "dockerfile:Dockerfile", "digest": {"sha256": recipe["sha256"]}}
    ]
    # signed and in the ledger like any other entry
    v = cli(["verify", str(result["index"]), "--json"])
    checks = {c["name"]: c["ok"] for c in v.json()["checks"]}
    assert checks.get("signature") is True and checks.get("inclusion") is True, v.stdout
    logs = cli(["logs", str(result["index"]), "3"])
    assert logs.exit_code == 0 and "oops" in logs.stdout
    assert (
        BlobStore(escrow_home / "blobs").get(p["steps"][2]["log"]["sha256"]).count(b"line1\n") == 1
    )


def test_a_missing_base_image_is_an_error_before_the_build(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "nobase",
        {
            "Dockerfile": "ARG TAG=9\nFROM scratch AS a\n"
            "FROM escrow-test/no-such-base:${TAG} AS b\nRUN true\n",
        },
    )
    before = _size(cli)
    r = cli(["build", str(ctx), "-t", "escrow-test/nobase:1"])
    assert r.exit_code == 2, r.stderr
    assert "escrow-test/no-such-base:9 (stage 1, line 3)" in r.stderr
    assert "cannot be pulled" in r.stderr and "Step" not in r.stderr
    assert _size(cli) == before


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("no-dockerfile", 2, "There is no Dockerfile at"),
        ("context-is-a-file", 2, "is not a directory"),
        ("context-missing", 2, "missing does not exist"),
        ("build-arg-without-equals", 2, "has no '='"),
        ("build-arg-without-name", 2, "The build argument '=v' has no name before '='"),
        ("engine-rejects-dockerfile", 2, "unknown instruction: FROB"),
        ("buildkit-only-dockerfile", 2, "uses BuildKit-only syntax (heredocs)"),
        ("invalid-tag", 2, "The tag 'Bad Tag!' is not a valid image name"),
        ("invalid-second-tag", 2, "The tag 'UPPER:1' is not a valid image name"),
        ("unknown-target", 2, "no stage named 'nope'"),
        ("engine-unreachable", 3, "is not reachable"),
        ("capture-missing-image", 2, "does not exist in the Docker Engine"),
        ("logs-no-such-step", 2, None),
    ],
)
def test_errors_are_one_sentence_with_the_right_exit_code(
    escrow_home: Path,
    cli: Any,
    base_image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    code: int,
    message: str | None,
) -> None:
    good = write_tree(tmp_path / "good", {"Dockerfile": f"FROM {BASE_TAG}\nRUN true\n"})
    args: list[str]
    if case == "no-dockerfile":
        args = ["build", str(write_tree(tmp_path / "empty", {"x": "y"})), "-t", "t:1"]
    elif case == "context-is-a-file":
        (tmp_path / "file").write_text("x")
        args = ["build", str(tmp_path / "file"), "-t", "t:1"]
    elif case == "context-missing":
        args = ["build", str(tmp_path / "missing"), "-t", "t:1"]
    elif case == "build-arg-without-equals":
        args = ["build", str(good), "-t", "t:1", "--build-arg", "NOVALUE"]
    elif case == "build-arg-without-name":
        args = ["build", str(good), "-t", "t:1", "--build-arg", "=v"]
    elif case == "engine-rejects-dockerfile":
        bad = write_tree(tmp_path / "bad", {"Dockerfile": f"FROM {BASE_TAG}\nFROB x\n"})
        args = ["build", str(bad), "-t", "t:1"]
    elif case == "buildkit-only-dockerfile":
        heredoc = f"FROM {BASE_TAG}\nRUN <<EOF\necho hi\nEOF\n"
        args = ["build", str(write_tree(tmp_path / "bk", {"Dockerfile": heredoc})), "-t", "t:1"]
    elif case == "invalid-tag":
        args = ["build", str(good), "-t", "Bad Tag!"]
    elif case == "invalid-second-tag":  # the engine built, then refused the name: lost
        args = ["build", str(good), "-t", "escrow-test/ok:1", "-t", "UPPER:1"]
    elif case == "unknown-target":
        args = ["build", str(good), "-t", "t:1", "--target", "nope"]
    elif case == "engine-unreachable":
        monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
        args = ["build", str(good), "-t", "t:1"]
    elif case == "capture-missing-image":
        args = ["capture", "escrow-test/never-built:0"]
    else:
        args = ["logs", "0", "99"]
    before = _size(cli)
    r = cli(args)
    assert r.exit_code == code, (r.stdout, r.stderr)
    last = r.stderr.splitlines()[-1]
    assert last.startswith("escrow: error: ") and "Traceback" not in r.stderr
    assert r.stderr.count("escrow: error: ") == 1 and r.stdout == ""
    if message:
        assert message in r.stderr
    assert _size(cli) == before


def test_build_arg_and_target_are_recorded(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "tgt",
        {
            "Dockerfile": f"FROM {BASE_TAG} AS one\nARG V\nRUN echo $V > /v\n"
            "FROM one AS two\nRUN false\n",
        },
    )
    r = cli(
        [
            "build",
            str(ctx),
            "-t",
            "escrow-test/tgt:1",
            "--target",
            "one",
            "--build-arg",
            "V=7",
            "--project",
            "targets",
            "--build-arg",
            "LICENSE=lic-0042-zz",
            "--secret",
            "LICENSE",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    st = show(r.json()["index"])
    inputs = st["predicate"]["inputs"]
    assert inputs["target"] == "one" and inputs["buildArgs"][0] == {"name": "V", "value": "7"}
    # --secret NAME makes any build argument a secret
    lic = inputs["buildArgs"][1]
    assert lic["name"] == "LICENSE" and lic["secret"] is True and "value" not in lic
    assert "lic-0042-zz" not in json.dumps(st)
    assert r.json()["project"] == "targets"


def _encrypt_build_key(home: Path, passphrase: str) -> None:
    from escrow.config import load_settings
    from escrow.signing.keys import SigningKey

    path = load_settings(home=home).key_path
    key = SigningKey.load(path)
    path.write_bytes(key.private_pem(passphrase))


def test_an_encrypted_key_without_passphrase_is_refused_before_the_build(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _encrypt_build_key(escrow_home, "right horse battery")
    monkeypatch.delenv("ESCROW_KEY_PASSPHRASE", raising=False)
    ctx = write_tree(tmp_path / "app", {"Dockerfile": f"FROM {BASE_TAG}\nRUN echo built\n"})
    before = _size(cli)
    r = cli(["build", str(ctx), "-t", "escrow-test/locked:1"])
    assert r.exit_code == 3, r.stderr
    assert "is encrypted and no passphrase was given" in r.stderr
    assert "phoenix build" not in r.stderr  # refused before the engine was asked
    assert _size(cli) == before


def test_a_wrong_passphrase_stops_the_build_and_records_nothing(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key is parsed while the engine builds; its failure stops the build."""
    _encrypt_build_key(escrow_home, "right horse battery")
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "wrong staple")
    ctx = write_tree(
        tmp_path / "app",
        {"Dockerfile": f"FROM {BASE_TAG}\n" + "".join(f"RUN echo {i}\n" for i in range(8))},
    )
    before = _size(cli)
    r = cli(["build", str(ctx), "-t", "escrow-test/wrong-passphrase:1"])
    assert r.exit_code == 3, r.stderr
    assert "The passphrase for the signing key" in r.stderr and "is wrong" in r.stderr
    assert "the build was stopped; nothing is recorded" in r.stderr
    assert "Traceback" not in r.stderr
    assert _size(cli) == before
    # with the right passphrase the same build is recorded
    monkeypatch.setenv("ESCROW_KEY_PASSPHRASE", "right horse battery")
    r = cli(["build", str(ctx), "-t", "escrow-test/wrong-passphrase:1", "--json"])
    assert r.exit_code == 0, r.stderr
    assert _size(cli) == before + 1


def test_a_revoked_build_key_stops_the_build_and_says_so(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """Regression: with a revoked build key the whole build ran, then the append failed
    ("signed only by keys that may not sign now", exit 1) and nothing was recorded."""
    keyid = cli(["keys", "list", "--json"]).json()["keys"][0]["keyid"]
    assert cli(["keys", "revoke", keyid, "--reason", "leaked"]).exit_code == 0
    ctx = write_tree(
        tmp_path / "app",
        {"Dockerfile": f"FROM {BASE_TAG}\n" + "".join(f"RUN echo {i}\n" for i in range(8))},
    )
    before = _size(cli)
    r = cli(["build", str(ctx), "-t", "escrow-test/revoked-key:1"])
    assert r.exit_code == 3, r.stderr
    assert f"The signing key {keyid[:16]}… (build) is revoked in the ledger" in r.stderr
    assert "escrow keys rotate --name build" in r.stderr
    assert _size(cli) == before
    # after a rotation the same build is recorded
    assert cli(["keys", "rotate"]).exit_code == 0
    r = cli(["build", str(ctx), "-t", "escrow-test/revoked-key:1", "--json"])
    assert r.exit_code == 0, r.stderr
    assert _size(cli) == before + 2  # the rotation's key event and the build


def _images_labelled(label: str) -> list[str]:
    import subprocess

    out = subprocess.run(
        ["docker", "images", "-a", "-q", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


@pytest.mark.parametrize("stop_at", [3, 6])
def test_a_build_stopped_part_way_leaves_no_images(
    base_image: str, tmp_path: Path, stop_at: int
) -> None:
    """Regression: a build stopped by escrow (a signing key the ledger refuses, a server
    down, Ctrl-C) recorded nothing but left the images of its finished steps, and one
    the engine committed after the stop, untagged in the engine."""
    from escrow.capture.build import BuildRequest, phoenix_build
    from escrow.capture.engine import DockerEngine
    from escrow.capture.progress import NoProgress
    from escrow.errors import KeyLocked

    class Steps(NoProgress):
        started = 0

        def step(self, index: int, total: int | None, text: str) -> None:
            self.started = index

    progress = Steps()

    def check() -> None:
        if progress.started >= stop_at:
            raise KeyLocked("The signing key may not sign (a test).")

    import uuid

    # every image this build makes carries the label (a step's image has its parent's)
    label = f"escrow-test-stopped={uuid.uuid4()}"
    lines = ["ENV B=2", "RUN echo 3 > /three", "RUN sleep 0.3 && echo 4 > /four"]
    ctx = write_tree(
        tmp_path / "app",
        {"Dockerfile": f"FROM {BASE_TAG}\nLABEL {label}\n" + "\n".join(lines * 2) + "\n"},
    )
    with DockerEngine() as engine, pytest.raises(KeyLocked):
        phoenix_build(
            BuildRequest(context=ctx, tags=("escrow-test/stopped:1",)),
            engine=engine,
            blobs=BlobStore(tmp_path / "blobs"),
            progress=progress,
            check=check,
        )
    assert progress.started >= stop_at  # the engine had finished steps before the stop
    assert _images_labelled(label) == []
