"""What an engineer reads from recorded entries: ``escrow export``, ``escrow sign`` and
``escrow logs`` on inputs that are hostile, damaged or only partly bad."""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "ledger"))

from ledger_helpers import manifest, raw_sign  # noqa: E402

from escrow.config import load_settings  # noqa: E402
from escrow.ledger.store import Ledger  # noqa: E402
from escrow.signing.keys import SigningKey  # noqa: E402

EXAMPLE = Path(__file__).parent.parent / "assets" / "build-manifest.example.json"


def _append(statement: dict[str, Any]) -> int:
    settings = load_settings()
    key = SigningKey.load(settings.key_path)
    with Ledger.open(settings) as lg:
        entry, _ = lg.append(raw_sign(statement, key))
    return entry.index


# -- escrow export -----------------------------------------------------------------


def test_export_escapes_c1_controls_and_del_of_a_recorded_name(escrow_home: Path, cli: Any) -> None:
    """Regression: `escrow export --slsa` printed non-ASCII as it is (ensure_ascii=False),
    so a project named with U+009B (a one-character CSI) or DEL reached the reader's
    terminal raw, where `escrow log` and `escrow show` escape it."""
    project = "ev\x9b2Jil\x7f-\x85-Ünïcode"
    index = _append(manifest(1, project=project))
    r = cli(["export", "--slsa", str(index)])
    assert r.exit_code == 0, r.stderr
    for c in ("\x9b", "\x7f", "\x85", "\x1b"):
        assert c not in r.stdout
    assert "\\u009b" in r.stdout and "\\u007f" in r.stdout
    assert "Ünïcode" in r.stdout  # other non-ASCII text stays readable
    doc = json.loads(r.stdout)  # still JSON, naming the same project
    assert doc["predicate"]["buildDefinition"]["externalParameters"]["project"] == project
    again = cli(["export", "--slsa", str(index)])
    assert again.stdout == r.stdout  # deterministic


def test_export_of_a_failed_build_names_the_entry(escrow_home: Path, cli: Any) -> None:
    """Regression: the refusal named the build's UUID ("Build 7d9a… failed"), which no
    command takes, instead of the ledger entry given."""
    st = manifest(2)
    pred = st["predicate"]
    pred["build"]["status"] = "failed"
    pred["build"]["failure"] = {
        "step": 2,
        "instruction": "COPY app.sh /app.sh",
        "exitCode": 1,
        "message": "COPY failed",
        "logTail": "",
    }
    for key in ("image", "layers"):
        pred.pop(key)
    index = _append(st)
    r = cli(["export", "--slsa", str(index)])
    assert r.exit_code == 2
    assert r.stdout == ""
    assert f"Ledger entry {index} is a failed build" in r.stderr
    assert pred["build"]["id"] not in r.stderr
    assert f"escrow logs {index}" in r.stderr


# -- escrow sign -------------------------------------------------------------------


def _statement_line() -> str:
    return json.dumps(json.loads(EXAMPLE.read_text()))


def test_sign_names_a_bad_first_line_of_json_lines(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    """Regression: JSON Lines whose *first* line was cut short were read as one broken
    document ("Standard input is not valid JSON (Invalid control character at: line 1
    column 201)"), while the same line last was named ("line 3: not valid JSON")."""
    good = _statement_line()
    r = cli(["sign"], input=f"{good[:200]}\n{good}\n{good}\n")
    assert r.exit_code == 2
    assert r.stdout == ""  # nothing signed
    assert "line 1: not valid JSON" in r.stderr
    assert "1 of 3 statements are invalid; nothing was signed." in r.stderr
    # the same line last is named the same way
    r = cli(["sign"], input=f"{good}\n{good}\n{good[:200]}\n")
    assert r.exit_code == 2 and r.stdout == ""
    assert "line 3: not valid JSON" in r.stderr


def test_sign_still_reads_a_broken_pretty_document_as_one(escrow_home: Path, cli: Any) -> None:
    """A document spread over lines with one error is still one document, not JSON Lines
    with dozens of bad lines."""
    text = json.dumps(json.loads(EXAMPLE.read_text()), indent=2).replace('"_type"', "_type", 1)
    r = cli(["sign"], input=text)
    assert r.exit_code == 2 and r.stdout == ""
    assert "Standard input is not valid JSON" in r.stderr
    assert "line 5:" not in r.stderr


def test_sign_of_good_json_lines_signs_each(escrow_home: Path, cli: Any) -> None:
    good = _statement_line()
    r = cli(["sign"], input=f"{good}\n\n{good}\n")
    assert r.exit_code == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2


# -- escrow logs -------------------------------------------------------------------


EMPTY = hashlib.sha256(b"").hexdigest()


def _with_logs(home: Path) -> tuple[int, str]:
    """A build whose step 1 printed nothing and whose step 2's log is not in the store."""
    st = copy.deepcopy(manifest(3))
    lost = hashlib.sha256(b"the log of step 2\n").hexdigest()
    steps = st["predicate"]["steps"]
    for s in steps:
        s["log"] = {"sha256": EMPTY, "size": 0}
    steps[1]["log"] = {"sha256": lost, "size": 18}
    return _append(st), lost


def test_logs_names_the_step_whose_log_is_missing(escrow_home: Path, cli: Any) -> None:
    """Regression: a log missing from the blob store was named only by its digest, not by
    the step (nor the entry) whose log it is."""
    index, lost = _with_logs(escrow_home)
    r = cli(["logs", str(index)])
    assert r.exit_code == 2
    assert r.stdout == ""  # nothing half-printed
    assert f"Entry {index} has no readable log of step 2 (COPY app.sh /app.sh)" in r.stderr
    assert lost in r.stderr
    assert "Traceback" not in r.stderr


def test_logs_of_a_step_that_printed_nothing_needs_no_blob(escrow_home: Path, cli: Any) -> None:
    """Regression: a step that printed nothing failed to show (exit 2) when the blob
    store lacked the empty blob (a ledger copied without its blobs): its log is known to
    be empty from its digest alone."""
    index, _ = _with_logs(escrow_home)
    r = cli(["logs", str(index), "1"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    r = cli(["logs", str(index), "1", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["logs"][0]["text"] == ""


# -- escrow diff -------------------------------------------------------------------


def test_diff_survives_a_damaged_file_list_blob(escrow_home: Path, cli: Any) -> None:
    """Regression: a context file list kept in the blob store (over 1,000 files) whose blob
    was damaged stopped `escrow diff` altogether (exit 2, "does not match its SHA-256
    name"), although a missing one is only noted and the rest of the diff still shown."""
    from escrow.blobs import BlobStore

    files = [{"path": "app.sh", "type": "file", "mode": 420, "size": 2, "sha256": EMPTY}]
    blobs = BlobStore(load_settings().blobs_dir)
    good = blobs.put(json.dumps(files).encode())
    damaged = hashlib.sha256(b"a list that was never stored").hexdigest()
    path = blobs.path(damaged)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage")  # a blob whose bytes are not those its name says
    indexes = []
    for n, blob in ((4, good), (5, damaged)):
        st = manifest(n)
        context = st["predicate"]["inputs"]["context"]
        context.pop("files")
        context["filesBlob"] = {"sha256": blob, "size": 100}
        context["treeDigest"] = hashlib.sha256(blob.encode()).hexdigest()
        indexes.append(_append(st))
    r = cli(["diff", *map(str, indexes), "--json"])
    assert r.exit_code == 0, r.stderr
    ctx = r.json()["inputs"]["context"]
    assert ctx["same"] is False and "not available" in ctx["note"]
    r = cli(["diff", *map(str, indexes)])
    assert r.exit_code == 0, r.stderr
    assert "context: tree digest changed" in r.stdout and "Layers" in r.stdout
