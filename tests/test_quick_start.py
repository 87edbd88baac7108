"""The README's main job, `bash scripts/example.sh`, run as a user runs it: twice.

It builds the example's base image (``FROM scratch``) and the app on it as phoenix
builds, records and verifies them and writes a signed audit pack.  Run a second time,
every image is new — the base too — and the pack covers both days: the app's base changed
behind its tag, to the image of the base's own recorded build, which the pack holds.
That is the routine of phoenix builds, a note naming that build (verdict rules 2 and later), so the
pack reads "Verified", not "Verified, with findings".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _example(home: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env.update(ESCROW_HOME=str(home), ESCROW_EXAMPLE_OUT=str(out))
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "example.sh")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def _verify(pdf: Path, home: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env["ESCROW_HOME"] = str(home)
    r = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "escrow"), "pack", "verify", str(pdf), "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_the_main_job_runs_twice_and_its_pack_is_verified(tmp_path: Path) -> None:
    home, out = tmp_path / "escrow-home", tmp_path / "out"
    pack = out / "example-pack.pdf"

    first = _example(home, out)
    assert first.returncode == 0, first.stderr
    assert f"audit pack: {pack}" in first.stdout
    assert re.search(r"^Entry \d+ verified\.$", first.stderr, re.M), first.stderr
    day1 = _verify(pack, home)
    assert day1["builds"] == 2
    assert day1["verdict"] == {
        "overall": "Verified",
        "findings": 0,
        "rebuilds_failed": 0,
        "notes": 0,
        "rules": 4,
    }

    second = _example(home, out)
    assert second.returncode == 0, second.stderr
    assert re.search(r"Pack EP-[0-9A-F-]+: 4 builds, \d+ pages, verified\.", second.stderr), (
        second.stderr
    )
    day2 = _verify(pack, home)
    assert day2["builds"] == 4
    # the app's base was rebuilt by the base's own build, in the pack: a note, not a finding
    assert day2["verdict"] == {
        "overall": "Verified",
        "findings": 0,
        "rebuilds_failed": 0,
        "notes": 1,
        "rules": 4,
    }
    text = subprocess.run(
        ["pdftotext", "-layout", str(pack), "-"], capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    assert re.search(
        r"base image escrow-example/base:latest changed between entry \d+ and entry \d+, "
        r"rebuilt by entry \d+ \(project example-base\)",
        flat,
    ), flat[:3000]
