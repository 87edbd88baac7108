"""The two ways escrow talks to the engine: the local socket directly, and the Docker SDK.

A local engine is reached with :mod:`http.client` on its Unix socket (no SDK
import on the build path); remote engines, and pull/push/load, use the SDK.
Both must tell the same story about the same image.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.capture.build import BuildRequest, phoenix_build
from escrow.capture.context import sdk_exclude_paths
from escrow.capture.engine import DockerEngine, local_socket_path
from escrow.errors import EngineUnavailable, InputError
from tests.capture.conftest import inspect, write_tree

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (None, "/var/run/docker.sock"),
        ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"),
        ("http+unix:///tmp/d.sock", "/tmp/d.sock"),
        ("tcp://127.0.0.1:2376", None),
        ("ssh://builder@ci", None),
    ],
)
def test_only_unix_sockets_are_spoken_to_directly(
    monkeypatch: pytest.MonkeyPatch, host: str | None, expected: str | None
) -> None:
    if host is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", host)
    assert local_socket_path() == expected


@pytest.mark.docker
def test_socket_and_sdk_give_the_same_answers(base_image: str, docker_client: Any) -> None:
    import docker

    local = DockerEngine()
    sdk = DockerEngine(api=docker.APIClient(version="auto"))
    assert local._local is not None and sdk._local is None
    try:
        a, b = local.inspect_image(base_image), sdk.inspect_image(base_image)
        assert a is not None and a == b
        assert local.history(a["Id"]) == sdk.history(a["Id"])
        assert local.image_config(a["Id"]) == sdk.image_config(a["Id"])
        assert local.image_config(a["Id"])["rootfs"]["diff_ids"] == a["RootFS"]["Layers"]
        fa, fb = local.facts(), sdk.facts()
        assert fa["version"] and fa["apiVersion"] and fa["storageDriver"]
        assert {k: fa[k] for k in ("version", "os", "arch", "storageDriver")} == {
            k: fb[k] for k in ("version", "os", "arch", "storageDriver")
        }
        assert local.inspect_image("escrow-test/no-such-image:nope") is None
        assert sdk.inspect_image("escrow-test/no-such-image:nope") is None
        saved_local = b"".join(local.save([a["Id"]]))
        saved_sdk = b"".join(sdk.save([a["Id"]]))
        assert len(saved_local) == len(saved_sdk) > 0
        with pytest.raises(InputError, match="not in the Docker Engine"):
            b"".join(local.save(["escrow-test/no-such-image:nope"]))
    finally:
        local.close()
        sdk.close()


def _build(engine: DockerEngine, context: Path, tag: str, tmp_path: Path) -> dict[str, Any]:
    outcome = phoenix_build(
        BuildRequest(context=context, tags=(tag, tag + "-also")),
        engine=engine,
        blobs=BlobStore(tmp_path / "blobs"),
    )
    assert outcome.status == "succeeded", outcome.failure
    return outcome.statement["predicate"]


@pytest.mark.docker
def test_a_build_through_either_transport_records_the_same_facts(
    base_image: str, tmp_path: Path
) -> None:
    import docker

    context = write_tree(
        tmp_path / "ctx",
        {
            "Dockerfile": f"FROM {base_image}\nCOPY a.txt /a.txt\nRUN echo 'ünïcode ✓' && "
            "cat /a.txt > /b.txt\nENV X=1\n",
            "a.txt": "a\n",
            ".dockerignore": "*.tmp\n!keep.tmp\n",
            "junk.tmp": "ignored\n",
            "keep.tmp": "kept\n",
        },
    )
    engines = {"socket": DockerEngine(), "sdk": DockerEngine(api=docker.APIClient(version="auto"))}
    got = {}
    for name, engine in engines.items():
        with engine:
            got[name] = _build(engine, context, f"escrow-test/transport:{name}", tmp_path)
    a, b = got["socket"], got["sdk"]
    for name in engines:  # the second tag is set after the build
        tags = inspect(f"escrow-test/transport:{name}")["RepoTags"]
        assert f"escrow-test/transport:{name}-also" in tags
    for p in (a, b):
        assert p["image"]["id"] == inspect(p["image"]["id"])["Id"]
        assert [x["diffId"] for x in p["layers"]] == inspect(p["image"]["id"])["RootFS"]["Layers"]
        paths = [f["path"] for f in p["inputs"]["context"]["files"]]
        assert "keep.tmp" in paths and "junk.tmp" not in paths
        assert "✓" in "".join(
            BlobStore(tmp_path / "blobs").get(s["log"]["sha256"]).decode() for s in p["steps"]
        )
    assert a["inputs"]["context"]["treeDigest"] == b["inputs"]["context"]["treeDigest"]
    assert [s["instruction"] for s in a["steps"]] == [s["instruction"] for s in b["steps"]]
    assert [s["exitCode"] for s in a["steps"]] == [s["exitCode"] for s in b["steps"]]
    assert a["builder"]["engine"]["version"] == b["builder"]["engine"]["version"]


@pytest.mark.docker
def test_a_dockerfile_the_engine_rejects_is_an_input_error_through_the_socket(
    base_image: str, tmp_path: Path
) -> None:
    context = write_tree(tmp_path / "ctx", {"Dockerfile": f"FROM {base_image}\nNOSUCH thing\n"})
    with DockerEngine() as engine, pytest.raises(InputError, match="rejected the build"):
        phoenix_build(
            BuildRequest(context=context, tags=("escrow-test/rejected:1",)),
            engine=engine,
            blobs=BlobStore(tmp_path / "blobs"),
        )


def test_a_missing_socket_is_a_clear_engine_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    engine = DockerEngine()
    with pytest.raises(EngineUnavailable, match="not reachable") as e:
        engine.inspect_image("anything")
    assert "DOCKER_HOST" in (e.value.hint or "")


def test_the_dockerignore_rules_are_the_sdks_own_code(tmp_path: Path) -> None:
    import docker.utils.build

    root = write_tree(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM scratch\n",
            "a/b/c.txt": "x",
            "a/b/d.log": "x",
            "a/keep.log": "x",
            "e/f.md": "x",
            ".git/config": "x",
        },
    )
    patterns = ["**/*.log", "!a/keep.log", ".git", "e/", "# comment"]
    ours = sdk_exclude_paths()
    assert Path(ours.__code__.co_filename).samefile(docker.utils.build.__file__)
    assert sorted(ours(str(root), patterns, dockerfile="Dockerfile")) == sorted(
        docker.utils.build.exclude_paths(str(root), patterns, dockerfile="Dockerfile")
    )


@pytest.mark.docker
def test_a_plain_build_loads_no_sdk_client_no_requests_no_sqlalchemy(
    base_image: str, tmp_path: Path
) -> None:
    """The build path's speed depends on it (issue 5); checked in a fresh interpreter."""
    context = write_tree(
        tmp_path / "ctx",
        {"Dockerfile": f"FROM {base_image}\nRUN true\n", ".dockerignore": "*.tmp\n"},
    )
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESCROW_", "DOCKER_HOST"))}
    env["ESCROW_HOME"] = str(home)
    code = textwrap.dedent(
        f"""
        import sys
        from escrow.cli.main import main
        try:
            main(["build", {str(context)!r}, "-t", "escrow-test/lean:1", "-q"])
        except SystemExit as e:
            assert not e.code, e.code
        heavy = ("docker", "requests", "urllib3", "jsonschema", "sqlalchemy", "sqlmodel")
        print(sorted(m for m in heavy if m in sys.modules))
        """
    )
    init = [sys.executable, "-m", "escrow.cli.main", "init"]
    subprocess.run(init, cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


class _Chunks:
    """A response whose ``read1`` hands out the given pieces, then end of stream."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    def read1(self, n: int = -1) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


def test_the_build_stream_is_split_anywhere() -> None:
    """Messages split across reads, several in one read, and UTF-8 split mid-character."""
    from escrow.capture.engine import _json_messages

    text = (
        '{"stream":"Step 1/2 : FROM base\\n"}\r\n'
        '{"stream":"ünïcode ✓\\n"}\r\n{"aux":{"ID":"sha256:abc"}}\r\n'
        '{"stream":"Successfully built abc\\n"}'
    ).encode()
    expected = [
        {"stream": "Step 1/2 : FROM base\n"},
        {"stream": "ünïcode ✓\n"},
        {"aux": {"ID": "sha256:abc"}},
        {"stream": "Successfully built abc\n"},
    ]
    for size in (1, 2, 3, 7, 40, len(text)):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        assert list(_json_messages(_Chunks(pieces))) == expected, size  # type: ignore[arg-type]


def test_a_build_stream_cut_mid_message_is_an_engine_error() -> None:
    from escrow.capture.engine import _json_messages

    with pytest.raises(EngineUnavailable, match="ended mid-message"):
        list(_json_messages(_Chunks([b'{"stream":"Step 1/2'])))  # type: ignore[arg-type]
