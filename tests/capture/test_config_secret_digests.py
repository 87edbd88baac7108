"""Secret-named ``Env`` values and labels of the built image are recorded as salted
SHA-256 digests an auditor can check, not only hidden.

Regression: the runtime config recorded ``DB_PASSWORD=[secret DB_PASSWORD]`` and
``api.token: [secret api.token]`` and nothing else — the README (and issue 5) promise
"build args, labels and environment values … stored as {salt, sha256(salt || value)}",
so an auditor holding the value could check a build argument but not an ``ENV``."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.capture.conftest import show, write_tree
from tests.conftest import run_cli

ENV_SECRET = "pw-Lk22-env-secret-value"
LABEL_SECRET = "label-tok-Xy91-value"
TAG = "escrow-test/config-secrets:1"


def _digest(record: dict[str, Any], value: str) -> str:
    return hashlib.sha256(bytes.fromhex(record["salt"]) + value.encode()).hexdigest()


@pytest.fixture(scope="module")
def statement(module_home: Path, base_ref: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    ctx = write_tree(
        tmp_path_factory.mktemp("config-secrets") / "ctx",
        {
            "Dockerfile": "ARG BASE\nFROM ${BASE}\nARG DB_PASSWORD\n"
            "ENV DB_PASSWORD=${DB_PASSWORD} APP_MODE=prod\n"
            f'LABEL api.token="{LABEL_SECRET}" team=platform\n'
        },
    )
    r = run_cli(
        [
            "build",
            str(ctx),
            "-t",
            TAG,
            "--build-arg",
            f"BASE={base_ref}",
            "--build-arg",
            f"DB_PASSWORD={ENV_SECRET}",
            "--no-deposit",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    yield show(r.json()["index"])
    subprocess.run(["/usr/bin/docker", "image", "rm", "-f", TAG], capture_output=True)


def test_env_and_label_secrets_have_checkable_digests(statement: Any) -> None:
    image = statement["predicate"]["image"]
    assert "DB_PASSWORD=[secret DB_PASSWORD]" in image["config"]["Env"]
    assert image["config"]["Labels"]["api.token"] == "[secret api.token]"
    records = {(s["in"], s["name"]): s for s in image["secrets"]}
    assert set(records) == {("Env", "DB_PASSWORD"), ("Labels", "api.token")}
    env, label = records["Env", "DB_PASSWORD"], records["Labels", "api.token"]
    assert env["secret"] is True and label["secret"] is True
    assert env["sha256"] == _digest(env, ENV_SECRET)
    assert label["sha256"] == _digest(label, LABEL_SECRET)
    assert env["sha256"] != _digest(env, ENV_SECRET + "x")
    # the build argument passed on to the ENV has the same salt, so the same digest
    (arg,) = [
        a for a in statement["predicate"]["inputs"]["buildArgs"] if a["name"] == "DB_PASSWORD"
    ]
    assert (arg["salt"], arg["sha256"]) == (env["salt"], env["sha256"])


def test_the_values_appear_nowhere_in_the_statement(statement: Any) -> None:
    text = json.dumps(statement)
    assert ENV_SECRET not in text and LABEL_SECRET not in text
