"""`escrow build --label`: labels set on the image, recorded as inputs, given again by a
rebuild, compared by `escrow diff`; a secret-named label is never recorded in plain."""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Any

import pytest

from escrow.documents.schemas import validate_statement

from .conftest import Recorder
from .test_rebuild import BASE, next_second, rebuild, verdict_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SECRET = "pw-7Hq2-label-secret"
DOCKERFILE = BASE + "COPY hello.txt /hello.txt\nENV GREETING=hello\n"


def build(cli: Any, recorder: Recorder, name: str, *labels: str) -> dict[str, Any]:
    ctx = recorder.context({"Dockerfile": DOCKERFILE, "hello.txt": "hello\n"}, name)
    args = ["build", str(ctx), "-t", recorder.tag(name), "--json", "-q", "--no-deposit"]
    for label in labels:
        args += ["--label", label]
    r = cli(args)
    assert r.exit_code == 0, r.stderr
    shown = cli(["show", str(r.json()["index"]), "--json"])
    return {"result": r.json(), "statement": shown.json()["statement"], "shown": shown.stdout}


def test_labels_are_set_recorded_and_given_again_by_a_rebuild(cli: Any, recorder: Recorder) -> None:
    built = build(cli, recorder, "labelled", "org.opencontainers.image.revision=abc123", "tier=1")
    st = built["statement"]
    validate_statement(st)
    assert st["predicate"]["inputs"]["labels"] == [
        {"name": "org.opencontainers.image.revision", "value": "abc123"},
        {"name": "tier", "value": "1"},
    ]
    engine = json.loads(
        subprocess.run(
            ["/usr/bin/docker", "image", "inspect", built["result"]["image_id"]],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )[0]["Config"]["Labels"]
    assert engine["org.opencontainers.image.revision"] == "abc123" and engine["tier"] == "1"
    assert st["predicate"]["image"]["config"]["Labels"] == engine
    next_second()
    r = rebuild(cli, recorder, built["result"]["index"], recorder.root / "labelled")
    assert r.exit_code == 0, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] in ("identical", "equivalent"), verdict
    assert verdict["config"] == []  # the labels came back


def test_a_secret_label_is_only_a_salted_digest_and_a_rebuild_says_it_lacks_it(
    cli: Any, recorder: Recorder
) -> None:
    built = build(cli, recorder, "secret-label", f"DEPLOY_PASSWORD={SECRET}", "tier=2")
    st = built["statement"]
    (rec,) = [x for x in st["predicate"]["inputs"]["labels"] if x["name"] == "DEPLOY_PASSWORD"]
    assert rec["secret"] is True and "value" not in rec
    assert rec["sha256"] == hashlib.sha256(bytes.fromhex(rec["salt"]) + SECRET.encode()).hexdigest()
    labels = st["predicate"]["image"]["config"]["Labels"]
    assert labels["DEPLOY_PASSWORD"] == "[secret DEPLOY_PASSWORD]" and labels["tier"] == "2"
    assert SECRET not in built["shown"]  # nor in the steps or history the engine wrote it to
    r = rebuild(cli, recorder, built["result"]["index"], recorder.root / "secret-label")
    assert r.exit_code == 1, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] == "unknown"
    assert {"kind": "label", "name": "DEPLOY_PASSWORD"}.items() <= verdict["missing"][0].items()


def test_diff_names_a_changed_label(cli: Any, recorder: Recorder) -> None:
    a = build(cli, recorder, "diff-a", "tier=1")
    b = build(cli, recorder, "diff-b", "tier=2", "extra=x")
    r = cli(["diff", str(a["result"]["index"]), str(b["result"]["index"]), "--json"])
    assert r.exit_code == 0, r.stderr
    labels = r.json()["inputs"]["labels"]
    assert {"name": "tier", "original": "1", "rebuilt": "2", "change": "value"} in labels
    assert {"name": "extra", "original": None, "rebuilt": "x", "change": "added"} in labels
    text = cli(["diff", str(a["result"]["index"]), str(b["result"]["index"])]).stdout
    assert "label tier: 1 -> 2" in text


def test_a_label_without_equals_is_a_usage_error(cli: Any, recorder: Recorder) -> None:
    ctx = recorder.context({"Dockerfile": DOCKERFILE, "hello.txt": "hello\n"}, "bad-label")
    r = cli(["build", str(ctx), "-t", recorder.tag("bad-label"), "--label", "tier"])
    assert r.exit_code == 2
    assert "The label 'tier' has no '='" in r.stderr and "--label NAME=VALUE" in r.stderr
    entries = cli(["log", "--json"]).json()["entries"]
    assert [e for e in entries if e["kind"] == "build-manifest"] == []  # nothing recorded
