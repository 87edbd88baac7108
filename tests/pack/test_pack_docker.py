"""A pack of a real phoenix build: the engine's image ID and diff IDs are in the PDF's text."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import pdftotext

EXAMPLE_APP = Path(__file__).resolve().parents[2] / "examples" / "app"
TAG = "escrow-test/pack-app:latest"

pytestmark = [
    pytest.mark.docker,
    pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning"),
]


def test_pack_of_a_real_build_shows_the_engines_ids(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    r = cli(
        [
            "build",
            str(EXAMPLE_APP),
            "-t",
            TAG,
            "--build-arg",
            "BASE=escrow-test/base:latest",
            "--project",
            "pack-example",
            "--json",
        ]
    )
    assert r.exit_code == 0, r.stderr
    built = r.json()
    inspect = json.loads(
        subprocess.run(
            ["/usr/bin/docker", "image", "inspect", TAG], capture_output=True, check=True
        ).stdout
    )[0]
    assert inspect["Id"] == built["image_id"]

    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "pack-example", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"] == [built["index"]]
    text = pdftotext(out)
    assert inspect["Id"] in text
    for diff_id in inspect["RootFS"]["Layers"]:
        assert diff_id in text, diff_id
    assert built["leaf_hash"] in text
    v = cli(["pack", "verify", str(out), "--trust", str(escrow_home / "keys" / "pack.cert.pem")])
    assert v.exit_code == 0, v.stderr
