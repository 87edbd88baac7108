"""A build that fails at a step, end to end: how it is recorded, and how every other
command sees it (logs, show, log, verify, diff, export, rebuild, deposit check, pack)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.capture.conftest import write_tree
from tests.conftest import BASE_TAG, run_cli

pytestmark = pytest.mark.docker

SECRET = "hunt-fail-Zq9sekritXYZ"
#: one line, no spaces: longer than any log tail escrow keeps
LONG = 12000


@pytest.fixture(scope="module")
def home(module_home: Path, base_image: str) -> Path:
    return module_home


def _build(ctx: Path, tag: str, *extra: str) -> Any:
    r = run_cli(["build", str(ctx), "-t", tag, "--project", "hunt", "-q", "--json", *extra])
    assert "Traceback" not in r.stderr
    return r


@pytest.fixture(scope="module")
def builds(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A succeeded build (entry 1) and the same Dockerfile failing at step 4 (entry 2),
    whose failing step echoes the secret build arg and then one very long line."""
    root = tmp_path_factory.mktemp("hunt-fail-ctx")
    dockerfile = (
        f"FROM {BASE_TAG}\nARG TOKEN\nARG FAIL\n"
        'RUN echo "token=$TOKEN"; if [ -n "$FAIL" ]; then '
        f"head -c {LONG} /dev/zero | tr '\\0' a; echo; exit 3; fi\n"
        "RUN echo after\n"
    )
    ctx = write_tree(root / "app", {"Dockerfile": dockerfile})
    secret = ["--build-arg", f"TOKEN={SECRET}", "--secret", "TOKEN"]
    ok = _build(ctx, "hunt-fail-app:1", *secret)
    assert ok.exit_code == 0, ok.stderr
    bad = _build(ctx, "hunt-fail-app:1", *secret, "--build-arg", "FAIL=1")
    assert bad.exit_code == 1, bad.stderr
    return {"ok": ok.json(), "bad": bad.json(), "ctx": ctx}


def test_a_failing_step_s_log_tail_is_bounded_and_hides_the_secret(
    home: Path, builds: dict[str, Any]
) -> None:
    """A step that fails after one very long line (a minified file, a progress bar):
    the whole line went into the signed `build.failure.logTail` (a megabyte line, a
    megabyte in the manifest, and `escrow pack` never finished laying it out). The tail
    keeps its end, marked cut; the step's whole log stays in `escrow logs`."""
    bad = builds["bad"]
    assert bad["status"] == "failed" and bad["image_id"] is None
    failure = bad["failure"]
    assert failure["step"] == 4 and failure["exitCode"] == 3
    tail = failure["logTail"]
    assert len(tail) <= 4000
    assert tail.startswith("…a") and tail.endswith("returned a non-zero code: 3")
    shown = run_cli(["show", str(bad["index"]), "--json"])
    assert shown.exit_code == 0
    assert shown.json()["statement"]["predicate"]["build"]["failure"]["logTail"] == tail
    # the whole log, secret hidden, from the step's log blob
    logs = run_cli(["logs", str(bad["index"]), "4"])
    assert logs.exit_code == 0, logs.stderr
    assert "token=[secret TOKEN]" in logs.stdout and "a" * LONG in logs.stdout
    assert SECRET not in logs.stdout + shown.stdout


def test_every_command_sees_the_failed_build(home: Path, builds: dict[str, Any]) -> None:
    ok, bad = builds["ok"]["index"], builds["bad"]["index"]
    listed = {e["index"]: e for e in run_cli(["log", "--json"]).json()["entries"]}
    assert listed[bad]["status"] == "failed" and listed[bad]["image_id"] is None
    assert listed[ok]["status"] == "succeeded"

    verify = run_cli(["verify", str(bad)])
    assert verify.exit_code == 0, verify.stderr
    assert "the recorded build failed (step 4, exit code 3)" in verify.stderr

    diff = run_cli(["diff", str(bad), str(ok)])
    assert diff.exit_code == 0, diff.stderr
    assert "step 4: exit code 3 -> 0" in diff.stdout
    assert "step 5 not run in entry 2 (its build failed at step 4)" in diff.stdout

    slsa = run_cli(["export", "--slsa", str(bad)])
    assert slsa.exit_code == 2 and slsa.stdout == ""
    assert f"Ledger entry {bad} is a failed build" in slsa.stderr

    rebuild = run_cli(["rebuild", str(bad)])
    assert rebuild.exit_code == 2 and rebuild.stdout == ""
    assert f"Entry {bad} is a failed build; there is no image to reproduce." in rebuild.stderr

    check = run_cli(["deposit", "check", str(bad), "--json"])
    assert check.exit_code == 0, check.stderr
    assert check.json()["complete"] is True


def _pack(home: Path, name: str, entries: str) -> tuple[Path, str]:
    out = home.parent / name
    r = run_cli(["pack", "--entries", entries, "-o", str(out), "-q"])
    assert r.exit_code == 0, r.stderr
    verified = run_cli(["pack", "verify", str(out)])
    assert verified.exit_code == 0, verified.stderr
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    return out, text


def test_a_pack_of_the_failed_build_shows_its_cut_tail_without_the_secret(
    home: Path, builds: dict[str, Any]
) -> None:
    out, text = _pack(home, "failed.pdf", f"{builds['ok']['index']},{builds['bad']['index']}")
    assert "Failed builds" in text and "token=[secret TOKEN]" not in text  # cut off
    assert "returned a non-zero code: 3" in text
    assert SECRET.encode() not in out.read_bytes()
    # nowhere in the ledger, the log blobs or the deposit of the failed build: only in the
    # succeeded image's own config (its history, as `docker build` leaves it)
    holding = [p.name for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert holding == [builds["ok"]["image_id"].split(":")[1]]


def test_a_pack_cuts_the_whole_tail_an_older_escrow_signed(
    home: Path, builds: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry an older escrow signed with the whole long line in its tail: the pack
    shows the tail cut as escrow now cuts it (the envelope embedded holds it all)."""
    import escrow.capture.build as build_module

    def whole_tail(data: bytes, lines: int = 20) -> str:  # escrow before the fix
        return "\n".join(data.decode(errors="replace").rstrip("\n").splitlines()[-lines:])

    monkeypatch.setattr(build_module, "log_tail", whole_tail)
    old = _build(builds["ctx"], "hunt-fail-app:1", "--build-arg", "FAIL=1", "--no-deposit")
    assert old.exit_code == 1, old.stderr
    assert "a" * LONG in old.json()["failure"]["logTail"]  # signed whole
    _, text = _pack(home, "older.pdf", str(old.json()["index"]))
    runs = sorted(len(w) for w in text.split() if set(w) == {"a"})
    assert sum(runs) < 4000, runs
