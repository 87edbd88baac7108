"""What escrow prints and records: record leaves escrow's own folders out of the context,
rebuild -q is quiet, ledger verify names an entry once, tokens list is a table, log says
when there is a next page."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from escrow.documents.schemas import validate_statement
from tests.conftest import BASE_TAG


def _show(cli: Any, index: int) -> dict[str, Any]:
    r = cli(["show", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    statement: dict[str, Any] = r.json()["statement"]
    return statement


def _record(cli: Any, *args: str) -> Any:
    r = cli(["record", "--json", *args, "--", "true"])
    assert r.exit_code == 0, r.stderr
    return r


# --- escrow record: ESCROW_HOME and the deposit store are not part of the context ---


def test_record_leaves_escrow_home_under_the_working_directory_out_of_the_context(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert escrow_home.parent == tmp_path
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    monkeypatch.chdir(tmp_path)

    first = _record(cli)
    second = _record(cli)  # the ledger in ESCROW_HOME changed in between

    assert "left escrow's own folders out of the recorded context: escrow-home/" in first.stderr
    statement = _show(cli, first.json()["index"])
    validate_statement(statement)
    context = statement["predicate"]["inputs"]["context"]
    assert [f["path"] for f in context["files"]] == ["main.c"]
    assert context["excluded"] == ["escrow-home"]
    assert context["fileCount"] == 1
    assert statement["predicate"]["command"]["inputsChanged"] is False

    diff = cli(["diff", str(first.json()["index"]), str(second.json()["index"])])
    assert diff.exit_code == 0, diff.stderr
    assert "escrow-home" not in diff.stdout
    assert "context:" not in diff.stdout  # the same context both times


def test_record_leaves_a_deposit_store_inside_the_context_out(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "var" / "deposits").mkdir(parents=True)
    (project / "var" / "deposits" / "blob").write_text("deposited\n")
    (project / "var" / "keep.txt").write_text("an input\n")
    (project / "src.txt").write_text("source\n")
    monkeypatch.setenv("ESCROW_DEPOSIT_STORE", str(project / "var" / "deposits"))
    monkeypatch.chdir(tmp_path)

    r = _record(cli, "--context", str(project))

    context = _show(cli, r.json()["index"])["predicate"]["inputs"]["context"]
    assert [f["path"] for f in context["files"]] == ["src.txt", "var", "var/keep.txt"]
    assert context["excluded"] == ["var/deposits"]


def test_record_of_a_context_without_escrow_folders_excludes_nothing(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "src.txt").write_text("source\n")
    monkeypatch.chdir(project)

    r = _record(cli)

    assert "left escrow's own folders" not in r.stderr
    context = _show(cli, r.json()["index"])["predicate"]["inputs"]["context"]
    assert [f["path"] for f in context["files"]] == ["src.txt"]
    assert "excluded" not in context


# --- escrow rebuild -q ---


@pytest.mark.docker
@pytest.mark.slow
def test_rebuild_quiet_prints_no_progress_but_still_errors(
    escrow_home: Path, cli: Any, tmp_path: Path, base_image: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY hello.txt /hello.txt\n")
    (ctx / "hello.txt").write_text("hello\n")
    repo = f"escrow-test/output-fixes-{uuid.uuid4().hex[:10]}"
    try:
        built = cli(["build", str(ctx), "-t", f"{repo}:1", "-q", "--json"])
        assert built.exit_code == 0, built.stderr
        index = built.json()["index"]

        r = cli(["rebuild", str(index), "-q", "--rm", "-t", f"{repo}:rebuilt"])

        assert r.exit_code == 0, r.stderr
        assert "Rebuild of entry" in r.stdout
        assert "restored the context" not in r.stderr
        assert "matches the record" not in r.stderr
        assert "comparing" not in r.stderr
        assert r.stderr.strip() == ""

        missing = cli(["rebuild", "99", "-q"])
        assert missing.exit_code == 2, missing.stderr
        assert missing.stderr.startswith("escrow: error: ") and "no entry 99" in missing.stderr
    finally:
        for tag in (f"{repo}:1", f"{repo}:rebuilt"):
            subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)


# --- escrow ledger verify ---


def test_ledger_verify_names_each_tampered_entry_once(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    index = _record(cli).json()["index"]
    _record(cli)
    db = sqlite3.connect(escrow_home / "ledger.db")
    with db:
        (data,) = db.execute("SELECT envelope FROM ledger_entry WHERE idx = ?", (index,)).fetchone()
        data = bytes(data)
        pos = data.index(b'"payload":"') + 40
        flipped = data[:pos] + (b"A" if data[pos : pos + 1] != b"A" else b"B") + data[pos + 1 :]
        db.execute("UPDATE ledger_entry SET envelope = ? WHERE idx = ?", (flipped, index))
    db.close()

    r = cli(["ledger", "verify"])

    assert r.exit_code == 1, r.stderr  # tampering found: a failed check
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL")]
    assert fails, r.stdout
    edited = [line for line in fails if line.split()[1] == "edited"]
    assert edited, r.stdout
    for line in fails:  # an entry is named at most once on its line
        assert len(re.findall(r"\bentry \d+\b", line, flags=re.IGNORECASE)) <= 1, line
    assert len(re.findall(rf"\bentry {index}\b", edited[0], flags=re.IGNORECASE)) == 1


# --- escrow tokens list ---


def test_tokens_list_has_a_header_and_aligned_columns(escrow_home: Path, cli: Any) -> None:
    for role, name in (("pipeline", "ci-nightly"), ("auditor", "a longer name"), ("admin", "x")):
        assert cli(["tokens", "create", "--role", role, "--name", name]).exit_code == 0
    assert cli(["tokens", "revoke", "ci-nightly"]).exit_code == 0
    tokens = {t["name"]: t for t in cli(["tokens", "list", "--json"]).json()["tokens"]}

    r = cli(["tokens", "list"])

    assert r.exit_code == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    columns = header.split()
    assert columns == ["ID", "ROLE", "STATUS", "CREATED", "REVOKED", "NAME"]
    starts = [header.index(c) for c in columns]
    assert len(rows) == 3
    for line in rows:
        name = line[starts[-1] :]
        token = tokens[name]
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:], strict=False)]
        created = token["created_at"][:19] + "Z"
        revoked = token["revoked_at"][:19] + "Z" if token["revoked_at"] else "-"
        status = "active" if token["active"] else "revoked"
        assert cells == [token["id"], token["role"], status, created, revoked], line
        # each cell begins at its header's column
        for start, cell in zip(starts, cells, strict=False):
            assert line[start:].startswith(cell) and (start == 0 or line[start - 1] == " ")


# --- escrow log: a hint when there is a next page ---


def test_log_says_how_to_get_the_next_page_when_more_entries_exist(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    for _ in range(3):
        _record(cli)  # entries 1..3 (0 is the build key's key event)

    page = cli(["log", "--limit", "3"])
    assert page.exit_code == 0, page.stderr
    assert len(page.stdout.splitlines()) == 4  # the header and three entries
    assert "--after 2" in page.stderr

    last = cli(["log", "--limit", "3", "--after", "2"])
    assert last.exit_code == 0, last.stderr
    assert "--after" not in last.stderr

    whole = cli(["log", "--limit", "4"])  # a full page, and nothing after it
    assert "--after" not in whole.stderr

    as_json = cli(["log", "--limit", "3", "--json"])
    assert "--after" not in as_json.stderr
    assert [e["index"] for e in as_json.json()["entries"]] == [0, 1, 2]


# --- escrow build: escrow's keys and ledger are never sent to the engine -----------------


def test_build_leaves_escrow_home_in_the_context_out_of_what_it_sends_records_and_deposits(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, base_image: str
) -> None:
    """Regression: with ESCROW_HOME inside the build context, `escrow build` sent its
    private keys and ledger to the engine (a `COPY . /` put them in the image), and
    recorded and deposited them as inputs."""
    ctx = tmp_path / "app"
    ctx.mkdir()
    home = ctx / ".escrow"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_SERVER", "ESCROW_DEPOSIT_STORE"):
        monkeypatch.delenv(var, raising=False)
    assert cli(["init"]).exit_code == 0
    (ctx / "app.txt").write_text("the app\n")
    (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nCOPY . /ctx/\n")
    tag = f"escrow-test/home-in-context:{uuid.uuid4().hex[:8]}"
    r = cli(["build", str(ctx), "-t", tag, "--json"])
    try:  # the image is removed however the test ends
        assert r.exit_code == 0, r.stderr
        assert "left escrow's own folders out of the build context: .escrow/" in r.stderr
        index = r.json()["index"]
        context = _show(cli, index)["predicate"]["inputs"]["context"]
        assert context["excluded"] == [".escrow"]
        assert sorted(f["path"] for f in context["files"]) == ["Dockerfile", "app.txt"]
        listing = subprocess.run(
            ["docker", "run", "--rm", tag, "sh", "-c", "find /ctx | sort"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert listing == ["/ctx", "/ctx/Dockerfile", "/ctx/app.txt"]
        # the deposit made from the folder, and the rebuild, leave the same folders out
        check = cli(["deposit", "check", str(index), "--verify"])
        assert check.exit_code == 0, check.stderr + check.stdout
        redo = cli(["rebuild", str(index), "--context", str(ctx), "-q", "--json", "--rm"])
        assert redo.exit_code == 0, redo.stderr
        assert redo.json()["verdict"] in ("identical", "equivalent")
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
