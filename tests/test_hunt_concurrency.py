"""Concurrent commands on one ESCROW_HOME, as a CI machine runs them: several pipelines
at once (builds, posts, imports, packs) while an operator runs maintenance (``gc
--apply``, ``keys rotate``, ``init``).  Every command runs as a real process of the
console script; after each run the ledger verifies, the deposits check, and nothing
temporary is left in ESCROW_HOME.

Two races were found and fixed here:

- ``escrow keys rotate`` retired the old key in the ledger *before* it put the new key
  file in place, so a build (or ``record``) reading the key file in between signed with
  a key the ledger had just retired: it stopped with exit 3, told to rotate the key.
- ``escrow pack`` signs its statement with the build key it read at the start: a rotation
  while it rendered made the ledger refuse the pack at the very end (exit 1, no PDF).
  It now signs again with the key the rotation put in place, as a build does.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ASSETS, BASE_TAG

ESCROW = str(Path(sys.executable).with_name("escrow"))
#: what an interrupted or unfinished write leaves, anywhere under ESCROW_HOME
_TEMPORARY = (".incoming-", "incoming-", ".ref-", ".tmp", ".partial")


def start(home: Path, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env["ESCROW_HOME"] = str(home)
    return subprocess.Popen(
        [ESCROW, *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def run(home: Path, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    return finish(start(home, *args, cwd=cwd))


def one_sentence_error(err: str) -> str:
    """The one ``escrow: error: …`` line of a failed command (no traceback)."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("escrow: error: ")]
    assert len(errors) == 1, err
    return errors[0]


def leftovers(home: Path) -> list[str]:
    """Temporary files under ``home``; pins and spooled blobs of the deposit store."""
    found = [
        str(p)
        for p in home.rglob("*")
        if p.name.startswith(_TEMPORARY) or p.name.endswith(_TEMPORARY)
    ]
    for folder in (home / "deposits" / "tmp", home / "deposits" / "pins"):
        if folder.is_dir():
            found += [str(p) for p in folder.iterdir()]
    return found


def assert_ledger_ok(home: Path) -> None:
    code, out, err = run(home, "ledger", "verify", "--json")
    assert code == 0 and json.loads(out)["ok"], out + err


def context(root: Path, name: str, text: str) -> Path:
    ctx = root / name
    ctx.mkdir(parents=True)
    (ctx / "app.txt").write_text(text)
    (ctx / "Dockerfile").write_text(
        f"FROM {BASE_TAG}\nCOPY app.txt /app.txt\n"
        'RUN ["/bin/busybox", "sh", "-c", "cat /app.txt > /built"]\n'
    )
    return ctx


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    code, _, err = run(home, "init")
    assert code == 0, err
    return home


@pytest.fixture
def tags(docker_client: Any) -> Iterator[str]:
    """A unique ``hunt-conc-…`` repository; every tag of it is removed afterwards."""
    repo = f"hunt-conc-{uuid.uuid4().hex[:10]}"
    yield repo
    for image in docker_client.images.list(name=repo):
        for tag in image.tags:
            if tag.startswith(repo + ":"):
                docker_client.images.remove(tag, force=True)


def test_builds_at_once_while_gc_applies_deposit_whole(
    home: Path, tmp_path: Path, base_image: str, tags: str
) -> None:
    """Two builds at once (two projects, one tag) while `gc --apply` runs again and again:
    gc never removes what a build stored before recording it, so every deposit checks
    whole; every build is recorded and the ledger verifies."""
    code, _, err = run(home, "gc", "--apply")  # before anything was deposited
    assert code == 3 and "There is no deposit store" in one_sentence_error(err)
    first = context(tmp_path, "first", "first\n")  # the deposit store exists before gc
    code, _, err = run(home, "build", str(first), "-t", f"{tags}:first", "--json")
    assert code == 0, err
    for rep, same_tag in enumerate((True,)):  # (one round: the suite's time is counted)
        builds = [
            start(
                home,
                "build",
                str(context(tmp_path, f"{p}{rep}", f"{p} {rep} {uuid.uuid4()}\n")),
                "-t",
                f"{tags}:same" if same_tag else f"{tags}:{p}{rep}",
                "--project",
                p,
                "--json",
            )
            for p in ("alpha", "beta")
        ]
        gcs = []
        while any(b.poll() is None for b in builds):
            gcs.append(run(home, "gc", "--apply", "--json"))
        done = [finish(b) for b in builds]
        for code, out, err in done:
            assert code == 0, err
        for code, out, err in gcs:
            assert code == 0, err
            assert json.loads(out)["damaged"] == []
        indexes = [json.loads(out)["index"] for _, out, _ in done]
        assert len(set(indexes)) == 2
        for index in indexes:
            code, out, err = run(home, "deposit", "check", str(index))
            assert code == 0, out + err
        assert_ledger_ok(home)
        assert leftovers(home) == []
    code, out, err = run(home, "log", "--kind", "build-manifest", "--json")
    assert code == 0, err
    assert len(json.loads(out)["entries"]) == 3


def test_export_while_gc_applies_then_three_imports_of_it_at_once(
    home: Path, tmp_path: Path, base_image: str, tags: str
) -> None:
    """`deposit export` while `gc --apply` runs: the archive is whole.  Three `deposit
    import`s of it at once into another home each succeed (idempotent), and leave
    nothing temporary and nothing damaged."""
    indexes = []
    for i in range(1):
        ctx = context(tmp_path, f"c{i}", f"exported {i}\n")
        code, out, err = run(home, "build", str(ctx), "-t", f"{tags}:e{i}", "--json")
        assert code == 0, err
        indexes.append(str(json.loads(out)["index"]))
    archive = tmp_path / "deposit.tar"
    export = start(home, "deposit", "export", *indexes, "-o", str(archive), "--json")
    gcs = []
    while export.poll() is None:
        gcs.append(run(home, "gc", "--apply", "--json"))
    code, out, err = finish(export)
    assert code == 0, err
    assert all(g[0] == 0 for g in gcs), gcs
    assert leftovers(home) == []

    for round_ in range(1):  # a fresh agent: the imports race to record
        agent = tmp_path / f"agent{round_}"
        assert run(agent, "init")[0] == 0
        imports = [start(agent, "deposit", "import", str(archive), "--json") for _ in range(3)]
        done = [finish(p) for p in imports]
        assert all(code == 0 for code, _, _ in done), done
        said_new = [
            e["leafHash"] for _, out, _ in done for e in json.loads(out)["entries"] if e["new"]
        ]
        # each entry is new to exactly one of them (it was to all three, each writing its
        # own import record, the others' left in the store referenced by nothing)
        assert len(said_new) == len(set(said_new)) == len(indexes), said_new
        code, out, err = run(agent, "gc", "--json")
        assert code == 0, err
        doc = json.loads(out)
        assert doc["damaged"] == [] and doc["unreferenced"]["blobs"] == 0, doc
        assert doc["storeTemporary"]["files"] == 0
        assert sum(p["imported"] for p in doc["projects"].values()) == len(indexes)
        assert leftovers(agent) == []


def test_pack_while_records_append_verifies(home: Path, tmp_path: Path) -> None:
    """`escrow pack` of a project while other processes append builds of it: the pack
    is recorded, its scope and checkpoint agree (`pack verify`), and so does the log."""
    work = tmp_path / "work"
    work.mkdir()
    record = ("record", "--context", str(work), "--project", "busy", "--json", "--", "true")
    assert run(home, *record, cwd=work)[0] == 0
    pdf = tmp_path / "busy.pdf"
    pack = start(home, "pack", "--project", "busy", "-o", str(pdf), "--json")
    appended = 0
    while pack.poll() is None:
        code, _, err = run(home, *record, cwd=work)
        assert code == 0, err
        appended += 1
    code, out, err = finish(pack)
    assert code == 0, err
    made = json.loads(out)
    code, out, err = run(home, "pack", "verify", str(pdf), "--json")
    assert code == 0, out + err
    assert 1 <= len(made["entries"]) <= 1 + appended, made
    assert_ledger_ok(home)
    assert leftovers(home) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "busy.pdf",
        "home",
        "work",
    ]


#: ``escrow keys rotate``, held still once the old key is retired in the ledger
_PAUSED_ROTATE = """
import sys, time
from pathlib import Path
from escrow.ledger.store import Ledger

real, flags = Ledger.retire_key, Path(sys.argv[1])

def retire_key(self, *args, **kwargs):
    entry = real(self, *args, **kwargs)
    (flags / "retired").touch()
    while not (flags / "go").exists():
        time.sleep(0.01)
    return entry

Ledger.retire_key = retire_key
from escrow.cli.main import main
main(["keys", "rotate", "--json"])
"""


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        try:
            proc.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            pass


def test_a_recording_while_a_rotation_retires_the_old_key_is_recorded(
    home: Path, tmp_path: Path
) -> None:
    """A rotation has retired the old key in the ledger: a pipeline that reads the key
    file now must get the new key, not the retired one (it used to exit 3: "The signing
    key … is retired … Replace it with `escrow keys rotate`")."""
    flags = tmp_path / "flags"
    flags.mkdir()
    script = tmp_path / "rotate.py"
    script.write_text(_PAUSED_ROTATE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    rotate = subprocess.Popen(
        [sys.executable, str(script), str(flags)],
        env={**env, "ESCROW_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(flags / "retired", rotate)
        work = tmp_path / "work"
        work.mkdir()
        code, out, err = run(
            home, "record", "--context", str(work), "--json", "--", "true", cwd=work
        )
    finally:
        (flags / "go").touch()
        rotated = finish(rotate)
    assert rotated[0] == 0, rotated[2]
    new_key = json.loads(rotated[1])["new"]["keyid"]
    assert code == 0, err
    code, shown, err = run(home, "verify", str(json.loads(out)["index"]), "--json")
    assert code == 0, shown + err
    assert new_key[:16] in shown
    assert_ledger_ok(home)
    assert leftovers(home) == []


def test_a_pack_rendering_while_the_build_key_is_rotated_is_recorded(
    home: Path, tmp_path: Path
) -> None:
    """`escrow keys rotate` while `escrow pack` renders: the pack is signed with the new
    key and recorded (it used to fail at the end, exit 1, "signed only by keys that may
    not sign now", its rendering lost and no PDF written)."""
    work = tmp_path / "work"
    work.mkdir()
    rec = ("record", "--context", str(work), "--project", "rot", "--json", "--", "true")
    assert run(home, *rec, cwd=work)[0] == 0
    pdf = tmp_path / "rot.pdf"
    pack = start(home, "pack", "--project", "rot", "-o", str(pdf), "--json")
    assert pack.stderr is not None
    seen = []
    while not (seen and ("rendering" in seen[-1] or not seen[-1])):
        seen.append(pack.stderr.readline())
    assert seen[-1], seen  # the pack reached its rendering: hold it there
    pack.send_signal(signal.SIGSTOP)
    try:
        rotated = run(home, "keys", "rotate", "--json")
    finally:
        pack.send_signal(signal.SIGCONT)
    assert rotated[0] == 0, rotated[2]
    new_key = json.loads(rotated[1])["new"]["keyid"]
    code, out, err = finish(pack)
    assert code == 0, "".join(seen) + err
    index = json.loads(out)["index"]
    code, shown, err = run(home, "verify", str(index), "--json")
    assert code == 0 and new_key[:16] in shown, shown + err
    code, out, err = run(home, "pack", "verify", str(pdf))
    assert code == 0, out + err
    assert_ledger_ok(home)
    assert leftovers(home) == []


def test_three_inits_at_once_on_an_empty_home(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    inits = [start(home, "init", "--json") for _ in range(3)]
    done = [finish(p) for p in inits]
    assert all(code == 0 for code, _, _ in done), done
    assert len({json.loads(out)["build_key"] for _, out, _ in done}) == 1
    code, out, err = run(home, "keys", "list", "--json")
    assert code == 0, err
    keys = json.loads(out)["keys"]
    assert [k["status"] for k in keys if k["name"] == "build"] == ["active"], keys
    assert_ledger_ok(home)
    assert leftovers(home) == []


def test_the_same_json_lines_posted_by_two_processes_at_once(home: Path, tmp_path: Path) -> None:
    """Two `escrow post` of the same envelopes at once: each envelope is appended once
    (one process appends it, the other finds it), both exit 0, the log verifies."""
    example = json.loads((ASSETS / "build-manifest.example.json").read_text())
    statements = tmp_path / "statements.jsonl"
    with statements.open("w") as f:
        for n in range(24):
            st = copy.deepcopy(example)
            st["predicate"]["build"]["id"] = f"hunt-conc-{n}"
            st["subject"][0]["digest"]["sha256"] = f"{n:064x}"
            f.write(json.dumps(st) + "\n")
    envelopes = tmp_path / "envelopes.jsonl"
    code, _, err = run(home, "sign", str(statements), "-o", str(envelopes))
    assert code == 0, err
    posts = [start(home, "post", str(envelopes), "--json") for _ in range(2)]
    done = [finish(p) for p in posts]
    assert all(code == 0 for code, _, _ in done), done
    docs = [json.loads(out) for _, out, _ in done]
    assert sum(d["appended"] for d in docs) == 24
    assert all(d["appended"] + d["existing"] == 24 and d["rejected"] == 0 for d in docs)
    by_line = [{r["line"]: (r["index"], r["leaf_hash"]) for r in d["results"]} for d in docs]
    assert by_line[0] == by_line[1]
    assert len({index for index, _ in by_line[0].values()}) == 24
    code, out, err = run(home, "log", "--kind", "build-manifest", "--json")
    assert len(json.loads(out)["entries"]) == 24
    assert_ledger_ok(home)
    assert leftovers(home) == []
