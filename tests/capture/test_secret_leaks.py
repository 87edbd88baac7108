"""Secrets a build can print that escrow learns of only from its base image."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli

from .conftest import write_tree

pytestmark = pytest.mark.docker

BASE_SECRET = "base-env-Pw-4242-quartz"
LABEL_SECRET = "label-Pw-9090-amber"


@pytest.fixture(scope="module")
def secret_base(base_ref: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A base image that brings a secret-named variable and label of its own."""
    tag = f"escrow-test/secret-base:{uuid.uuid4().hex[:8]}"
    ctx = write_tree(
        tmp_path_factory.mktemp("secret-base"),
        {
            "Dockerfile": f"FROM {base_ref}\nENV DB_PASSWORD={BASE_SECRET}\n"
            f'LABEL vendor.password="{LABEL_SECRET}"\n'
        },
    )
    subprocess.run(["/usr/bin/docker", "build", "-q", "-t", tag, str(ctx)], check=True)
    yield tag
    subprocess.run(["/usr/bin/docker", "rmi", "-f", tag], check=False, capture_output=True)


def test_a_secret_the_base_image_brings_is_not_in_the_step_logs(
    module_home: Path, secret_base: str, tmp_path: Path
) -> None:
    """`RUN echo $DB_PASSWORD` prints a value set by the base image, not the Dockerfile:
    its log is stored (blob store and deposit) before the built image's config says the
    variable is secret, so it must be known before the build."""
    ctx = write_tree(
        tmp_path / "app",
        {"Dockerfile": f'FROM {secret_base}\nRUN echo "pw=$DB_PASSWORD" && echo done\n'},
    )
    tag = f"escrow-test/secret-app:{uuid.uuid4().hex[:8]}"
    try:
        r = run_cli(["build", str(ctx), "-t", tag, "--json"])
        assert r.exit_code == 0, r.stderr
        assert BASE_SECRET not in r.stderr
        logs = run_cli(["logs", str(r.json()["index"])])
        assert logs.exit_code == 0, logs.stderr
        assert "pw=[secret DB_PASSWORD]" in logs.stdout
        assert BASE_SECRET not in logs.stdout
    finally:
        subprocess.run(["/usr/bin/docker", "rmi", "-f", tag], check=False, capture_output=True)
    logs_dir = module_home / "blobs"
    for path in [p for p in logs_dir.rglob("*") if p.is_file()]:
        assert BASE_SECRET.encode() not in path.read_bytes(), path
    # the deposit keeps the base image's own config (it is the image) but no step log
    # with the value
    for path in (module_home / "deposits" / "blobs").rglob("*"):
        if path.is_file() and BASE_SECRET.encode() in path.read_bytes():
            assert path.read_bytes().lstrip().startswith(b"{"), path  # an image config


def test_a_secret_label_in_the_dockerfile_is_not_shown_while_building(
    module_home: Path, base_ref: str, tmp_path: Path
) -> None:
    ctx = write_tree(
        tmp_path / "labelled",
        {"Dockerfile": f'FROM {base_ref}\nLABEL team.password="{LABEL_SECRET}"\n'},
    )
    tag = f"escrow-test/secret-label:{uuid.uuid4().hex[:8]}"
    try:
        r = run_cli(["build", str(ctx), "-t", tag, "--json", "--no-deposit"])
        assert r.exit_code == 0, r.stderr
        assert LABEL_SECRET not in r.stderr
    finally:
        subprocess.run(["/usr/bin/docker", "rmi", "-f", tag], check=False, capture_output=True)
