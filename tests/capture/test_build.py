"""`escrow build` against the real Docker Engine."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from tests.conftest import BASE_TAG, run_cli

from .conftest import inspect, show, write_tree

pytestmark = pytest.mark.docker

SECRET = "tok-Zq81-very-secret-value"
TAG = "escrow-test/capture-app:latest"

DOCKERFILE = f"""\
ARG BASE={BASE_TAG}
FROM ${{BASE}} AS builder
ARG VERSION=0
RUN echo "v=$VERSION" > /v
FROM scratch AS empty
FROM ${{BASE}}
ARG API_TOKEN
LABEL org.example.team=platform
ENV APP_MODE=production
WORKDIR /app
COPY --from=builder /v /app/v
COPY . /ctx/
RUN echo "using $API_TOKEN" && ls -a /ctx && touch /app/ran
EXPOSE 8080
VOLUME /data
HEALTHCHECK CMD true
USER 1000
CMD ["/app/app.sh"]
"""


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(
        tmp_path_factory.mktemp("ctx") / "shop",
        {
            "Dockerfile": DOCKERFILE,
            ".dockerignore": "*.log\n!keep.log\nsecret.txt\n",
            "app.sh": "#!/bin/sh\necho app\n",
            "keep.log": "kept\n",
            "debug.log": "ignored\n",
            "secret.txt": "ignored too\n",
        },
    )


@pytest.fixture(scope="module")
def built(module_home: Path, base_ref: str, context: Path) -> dict[str, Any]:
    r = run_cli(
        [
            "build",
            str(context),
            "-t",
            TAG,
            "--build-arg",
            f"API_TOKEN={SECRET}",
            "--build-arg",
            "VERSION=2",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    result: dict[str, Any] = r.json()
    return {
        "result": result,
        "stderr": r.stderr,
        "stdout": r.stdout,
        "statement": show(result["index"]),
        "home": module_home,
    }


def test_json_result_names_the_entry_and_nothing_else_is_on_stdout(built: dict[str, Any]) -> None:
    result = built["result"]
    assert set(result) >= {"index", "leaf_hash", "image_id", "status", "project", "build_id"}
    assert result["status"] == "succeeded" and result["project"] == "shop"
    assert re.fullmatch(r"[0-9a-f]{64}", result["leaf_hash"])
    assert built["stdout"].lstrip().startswith("{") and built["stdout"].rstrip().endswith("}")
    # progress went to stderr as plain lines (not a terminal)
    assert (
        'step 13/18: RUN echo "using $API_TOKEN" && ls -a /ctx && touch /app/ran' in built["stderr"]
    )


def test_image_id_and_diff_ids_equal_docker_inspect(built: dict[str, Any]) -> None:
    inspected = inspect(TAG)
    st = built["statement"]
    assert built["result"]["image_id"] == inspected["Id"] == st["predicate"]["image"]["id"]
    assert st["subject"] == [
        {"name": TAG, "digest": {"sha256": inspected["Id"].removeprefix("sha256:")}}
    ]
    assert [lyr["diffId"] for lyr in st["predicate"]["layers"]] == inspected["RootFS"]["Layers"]
    assert st["predicate"]["image"]["size"] == inspected["Size"]


def test_layers_map_to_the_history_entries_that_made_them(built: dict[str, Any]) -> None:
    p = built["statement"]["predicate"]
    history, layers = p["history"], p["layers"]
    assert layers  # otherwise the loops below check nothing
    assert len([h for h in history if not h["emptyLayer"]]) == len(layers)
    for layer in layers:
        entry = history[layer["historyIndex"]]
        assert entry["emptyLayer"] is False and entry["createdBy"] == layer["createdBy"]
    # Independent oracle: each step's intermediate image in the engine.  A step
    # made a layer exactly when its image has one more diff ID than the previous.
    final = [st for st in p["steps"] if st["stage"] == 2]
    first = len(history) - (len(final) - 1)  # history index of the first own entry
    by_diff = {lyr["diffId"]: lyr for lyr in layers}
    kinds = set()
    for k, step in enumerate(final[1:]):
        prev = inspect(final[k]["imageId"])["RootFS"]["Layers"]
        cur = inspect(step["imageId"])["RootFS"]["Layers"]
        entry = history[first + k]
        keyword = step["instruction"].split()[0]
        assert keyword in entry["createdBy"] or keyword == "RUN", (step, entry)
        if len(cur) == len(prev) + 1:
            assert entry["emptyLayer"] is False
            assert by_diff[cur[-1]]["historyIndex"] == first + k
            kinds.add(("layer", keyword))
        else:
            assert cur == prev and entry["emptyLayer"] is True, step
            kinds.add(("empty", keyword))
    assert {("layer", "COPY"), ("layer", "RUN"), ("empty", "LABEL"), ("empty", "CMD")} <= kinds


def test_layer_sizes_come_from_the_engine(built: dict[str, Any]) -> None:
    out = subprocess.run(
        ["/usr/bin/docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}", TAG],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    engine_sizes = [int(x) for x in reversed(out.split())]  # oldest first, as the config's
    p = built["statement"]["predicate"]
    layers = p["layers"]
    assert len(engine_sizes) == len(p["history"])
    assert layers[0]["size"] > 1_000_000  # busybox
    assert all(isinstance(lyr["size"], int) for lyr in layers)
    # the engine's own view: each layer's size is that of the history entry that made it
    assert [lyr["size"] for lyr in layers] == [engine_sizes[lyr["historyIndex"]] for lyr in layers]
    made = {lyr["historyIndex"] for lyr in layers}
    assert all(size == 0 for i, size in enumerate(engine_sizes) if i not in made)


def test_every_stage_base_is_recorded(built: dict[str, Any], base_image: str) -> None:
    bases = built["statement"]["predicate"]["inputs"]["baseImages"]
    assert [
        (b["stage"], b["stageName"], b["reference"], b["source"], b["imageId"]) for b in bases
    ] == [
        (0, "builder", BASE_TAG, "image", base_image),
        (1, "empty", "scratch", "scratch", None),
        (2, None, BASE_TAG, "image", base_image),
    ]
    inputs = built["statement"]["predicate"]["inputs"]
    assert inputs["globalArgs"] == [{"name": "BASE", "default": BASE_TAG}]


def test_dockerignore_is_honoured_in_the_record_and_in_what_the_engine_got(
    built: dict[str, Any], context: Path
) -> None:
    ctx = built["statement"]["predicate"]["inputs"]["context"]
    paths = {f["path"] for f in ctx["files"]}
    assert paths == {".dockerignore", "Dockerfile", "app.sh", "keep.log"}
    by_path = {f["path"]: f for f in ctx["files"]}
    assert (
        by_path["app.sh"]["sha256"] == hashlib.sha256((context / "app.sh").read_bytes()).hexdigest()
    )
    # the RUN step listed /ctx inside the build: its log shows what the engine received
    r = run_cli(["logs", str(built["result"]["index"]), "13"])
    assert r.exit_code == 0, r.stderr
    listed = set(r.stdout.split())
    assert {"app.sh", "keep.log", "Dockerfile"} <= listed
    assert not listed & {"debug.log", "secret.txt"}


def test_steps_have_images_exit_codes_times_and_logs(built: dict[str, Any]) -> None:
    steps = built["statement"]["predicate"]["steps"]
    assert [s["index"] for s in steps] == list(range(1, 19))
    assert steps[1]["instruction"] == "FROM ${BASE} AS builder"
    blobs = BlobStore(built["home"] / "blobs")
    for s in steps:
        assert s["exitCode"] == 0
        assert s["log"]["sha256"] in blobs and blobs.size(s["log"]["sha256"]) == s["log"]["size"]
    no_image = [s["instruction"] for s in steps if s["imageId"] is None]
    assert no_image == [f"ARG BASE={BASE_TAG}", "FROM scratch AS empty"]
    assert steps[-1]["imageId"] == built["result"]["image_id"]
    last = steps[-1]["stage"]
    for s in steps:
        if s["imageId"] is None:
            continue
        if s["stage"] == last or s["instruction"].startswith("FROM "):
            assert inspect(s["imageId"])["Id"] == s["imageId"]
        else:  # an earlier stage's image: recorded, then removed (its history names args)
            gone = subprocess.run(["/usr/bin/docker", "image", "inspect", s["imageId"]])
            assert gone.returncode == 1, s
    assert all(s["startedOn"].endswith("Z") and s["durationMs"] >= 0 for s in steps)


def test_runtime_config_is_recorded(built: dict[str, Any]) -> None:
    cfg = built["statement"]["predicate"]["image"]["config"]
    engine = inspect(TAG)["Config"]
    for key in (
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "Healthcheck",
    ):
        assert cfg[key] == engine.get(key), key
    assert cfg["Env"] == engine["Env"]
    assert cfg["User"] == "1000" and cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert cfg["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]


def test_builder_and_engine_facts(built: dict[str, Any]) -> None:
    builder = built["statement"]["predicate"]["builder"]
    version = subprocess.run(
        ["/usr/bin/docker", "version", "--format", "{{.Server.Version}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert builder["engine"]["version"] == version
    assert builder["engine"]["storageDriver"]
    build = built["statement"]["predicate"]["build"]
    assert build["phoenix"]["noCache"] is True and build["phoenix"]["removeIntermediates"] is True


def test_the_secret_is_recorded_only_as_a_salted_digest(built: dict[str, Any]) -> None:
    st = built["statement"]
    (arg,) = [a for a in st["predicate"]["inputs"]["buildArgs"] if a["name"] == "API_TOKEN"]
    assert "value" not in arg and arg["secret"] is True
    assert arg["sha256"] == hashlib.sha256(bytes.fromhex(arg["salt"]) + SECRET.encode()).hexdigest()
    run_lines = [
        h["createdBy"] for h in st["predicate"]["history"] if "ls -a /ctx" in h["createdBy"]
    ]
    assert run_lines and run_lines[0].startswith("|1 API_TOKEN=[secret API_TOKEN] /bin/sh -c")
    # Docker itself keeps it in plain text in the image history; escrow does not
    assert (
        SECRET
        in subprocess.run(
            ["/usr/bin/docker", "history", "--no-trunc", TAG],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    r = run_cli(["logs", str(built["result"]["index"]), "13"])
    assert "using [secret API_TOKEN]" in r.stdout and SECRET not in r.stdout
    assert SECRET not in built["stderr"]


def test_the_secret_is_nowhere_in_the_ledger_the_blobs_or_a_pack(
    built: dict[str, Any], tmp_path: Path
) -> None:
    home: Path = built["home"]
    needle = SECRET.encode()
    ledger_files = [p for p in home.iterdir() if p.name.startswith("ledger.db")]
    assert ledger_files
    for path in ledger_files:
        assert needle not in path.read_bytes(), path
    blob_files = [p for p in (home / "blobs").rglob("*") if p.is_file()]
    run_log = built["statement"]["predicate"]["steps"][12]["log"]["sha256"]
    assert any(p.name == run_log for p in blob_files)
    for path in blob_files:
        assert needle not in path.read_bytes(), path
    # the stored envelopes' payloads are base64: decode every one
    db = sqlite3.connect(home / "ledger.db")
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    seen = 0
    for table in tables:
        for row in db.execute(f"SELECT * FROM {table}"):
            for cell in row:
                raw = cell if isinstance(cell, bytes) else str(cell).encode()
                assert needle not in raw, table
                if raw.startswith(b"{") and b'"payload"' in raw:
                    payload = json.loads(raw)["payload"]
                    assert needle not in base64.b64decode(payload)
                    seen += 1
    db.close()
    assert seen >= 1
    pack = tmp_path / "shop.pdf"
    r = run_cli(["pack", "--project", "shop", "-o", str(pack)])
    assert r.exit_code == 0, r.stderr
    assert needle not in pack.read_bytes()
    text = subprocess.run(
        ["pdftotext", str(pack), "-"], check=True, capture_output=True, text=True
    ).stdout
    assert SECRET not in text
    assert built["result"]["image_id"].removeprefix("sha256:")[:12] in text.replace("\n", "")


def test_log_finds_the_build_by_the_short_image_id_it_prints(built: dict[str, Any]) -> None:
    """`escrow log` prints 12 hex digits of the image ID; `--image` takes them back."""
    short = built["result"]["image_id"].removeprefix("sha256:")[:12]
    r = run_cli(["log", "--image", short, "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [built["result"]["index"]]
