"""`escrow pack` shows its progress on stderr, as `escrow build` shows its steps: a live
line on a terminal, plain lines otherwise, none with -q; stdout keeps the result alone.
A pack of 5,000 builds takes about half an hour, and said nothing until it was done."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from tsakit import TsaFiles, closed_port_url, openssl_tsa

from escrow.cli import pack_cmd
from escrow.pack import render
from escrow.pack.render import render_pdf

from .conftest import PackLedger, example_view

if TYPE_CHECKING:
    from escrow.pack.render import Stage

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

WHEN = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _pack(cli: Any, out: Path, *args: str) -> Any:
    return cli(["pack", "--project", "example", "-o", str(out), *args])


def _steps(stderr: str) -> list[str]:
    """The progress lines of plain output, their times left out."""
    return [
        re.sub(r" in \d+\.\d\ds$", "", line)
        for line in stderr.splitlines()
        if line.startswith(("step ", "  | "))
    ]


def test_the_renderer_tells_each_part_and_renders_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stage for the front matter, each part of builds (which, of how many, pages so
    far), the back matter, the cover, the furniture and the PDF; the bytes are those
    rendered without a progress callback."""
    monkeypatch.setattr(render, "CHUNK", 2)
    view = example_view(5)
    told: list[Stage] = []
    with_progress = render_pdf(view, [], WHEN, strict=True, progress=told.append)
    without = render_pdf(view, [], WHEN, strict=True)
    assert with_progress.pdf == without.pdf

    assert [(s.phase, s.part, s.first, s.last) for s in told] == [
        ("render", "front", 0, 0),
        ("render", "builds", 1, 2),
        ("render", "builds", 3, 4),
        ("render", "builds", 5, 5),
        ("render", "back", 0, 0),
        ("render", "cover", 0, 0),
        ("render", "furniture", 0, 0),
        ("render", "pdf", 0, 0),
    ]
    assert all(s.builds == 5 for s in told)
    pages = [s.pages for s in told]
    assert pages[0] == 0 and pages == sorted(pages) and pages[1] > 0  # the front matter's
    assert told[-1].pages == told[-2].pages == without.pages
    assert told[1].text == f"laying out builds 1–2 of 5 ({told[1].pages} pages so far)"
    assert told[3].text == f"laying out build 5 of 5 ({told[3].pages} pages so far)"
    assert told[-1].text == f"assembling the PDF of {without.pages} pages"


def test_plain_progress_when_stderr_is_no_terminal(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line per phase and part on stderr; the parts of builds after the first only when
    PLAIN_EVERY_S has passed since the last line (here: not). stdout: the path alone."""
    monkeypatch.setattr(render, "CHUNK", 1)
    for i in range(3):
        pack_ledger.add(i)
    out = tmp_path / "pack.pdf"
    r = _pack(cli, out)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{out}\n"
    lines = r.stderr.splitlines()
    assert lines[0] == f"escrow: audit pack of project example to {out}"
    steps = _steps(r.stderr)
    furniture = next(s for s in steps if "headers and page numbers" in s)
    pages = re.search(r"of (\d+) pages$", furniture)
    assert pages is not None, steps
    first = next(s for s in steps if "build 1 of 3" in s)
    assert re.fullmatch(r"  \| laying out build 1 of 3 \(\d+ pages so far\)", first), first
    assert steps == [
        "step 1/4: collecting the builds",
        "step 1 ok",
        "step 2/4: rendering 3 builds",
        "  | laying out the front matter",
        first,  # builds 2 and 3 came within 30 s of it
        "  | laying out the back matter",
        "  | drawing the cover",
        f"  | drawing the headers and page numbers of {pages[1]} pages",
        f"  | assembling the PDF of {pages[1]} pages",
        "step 2 ok",
        "step 3/4: signing",
        "step 3 ok",
        "step 4/4: recording the pack in the ledger",
        "step 4 ok",
    ]
    took = next(i for i, line in enumerate(lines) if line.startswith("escrow: the pack took "))
    assert lines[took - 1].startswith("step 4 ok in "), lines
    assert re.fullmatch(r"escrow: the pack took [0-9.]+ s\.", lines[took]), lines
    assert lines[took + 1].startswith("Pack EP-") and f", {pages[1]} pages, " in lines[took + 1]


def test_every_part_of_builds_is_said_when_its_time_has_come(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to wait between lines, each part of builds has its line (and with
    --render-only the last step writes the file: three steps, no signing)."""
    monkeypatch.setattr(render, "CHUNK", 1)
    monkeypatch.setattr(pack_cmd, "PLAIN_EVERY_S", 0.0)
    for i in range(3):
        pack_ledger.add(i)
    out = tmp_path / "pack.pdf"
    r = _pack(cli, out, "--render-only")
    assert r.exit_code == 0, r.stderr
    steps = _steps(r.stderr)
    said = [s for s in steps if "laying out build " in s]
    assert [re.sub(r" \(.*", "", s) for s in said] == [
        f"  | laying out build {i} of 3" for i in (1, 2, 3)
    ], steps
    so_far = [int(re.findall(r"\((\d+) pages so far\)", s)[0]) for s in said]
    assert so_far == sorted(so_far) and len(set(so_far)) == 3
    assert steps[0] == "step 1/3: collecting the builds"
    assert steps[-2:] == [f"step 3/3: writing {out}", "step 3 ok"]
    assert not any("sign" in s or "record" in s for s in steps), steps


def test_json_keeps_stdout_to_its_one_document(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    r = _pack(cli, out, "--json")
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)  # the whole of stdout is one JSON document
    assert result["path"] == str(out) and r.stdout.startswith("{")
    assert "step 2/4: rendering 1 build\n" in r.stderr
    assert "step 4 ok in " in r.stderr


def test_quiet_says_no_progress(pack_ledger: PackLedger, cli: Any, tmp_path: Path) -> None:
    """-q: the result alone, as without progress (`escrow build -q` likewise)."""
    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    r = _pack(cli, out, "-q")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{out}\n"
    lines = r.stderr.splitlines()
    assert [line.split(" ")[0] for line in lines] == ["Pack", "Recorded", "SHA-256"], lines


def test_a_failed_step_is_marked_and_followed_by_the_error_alone(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, tsa_files: TsaFiles
) -> None:
    """A TSA that answers the first request (asked before rendering) and fails the
    signature's: the signing step failed, then the one-sentence error (exit 3); no "took"
    line, no blank line, nothing written."""
    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    with openssl_tsa(tsa_files, "once") as tsa:
        url = tsa.url
        r = _pack(cli, out, "--tsa", url)
    assert r.exit_code == 3, r.stderr
    lines = r.stderr.splitlines()
    assert f"step 3/4: signing and timestamping with {url}" in lines
    at = lines.index(f"step 3/4: signing and timestamping with {url}")
    assert re.fullmatch(r"step 3 failed in \d+\.\d\ds", lines[at + 1]), lines
    assert lines[at + 2].startswith(f"escrow: error: The Time-Stamping Authority {url} ")
    assert len(lines) == at + 3, lines
    assert not out.exists()


def test_a_tsa_that_is_down_stops_the_pack_before_it_is_rendered(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The TSA is asked once the builds are collected, before anything is rendered: nothing
    answering there fails the first step, then the error alone (exit 3)."""
    pack_ledger.add(0)
    url = closed_port_url()
    out = tmp_path / "pack.pdf"
    r = _pack(cli, out, "--tsa", url)
    assert r.exit_code == 3, r.stderr
    lines = r.stderr.splitlines()
    assert lines[1:3] == [
        "step 1/4: collecting the builds",
        f"  | asking the Time-Stamping Authority {url}",
    ], lines
    assert re.fullmatch(r"step 1 failed in \d+\.\d\ds", lines[3]), lines
    assert lines[4].startswith(f"escrow: error: The Time-Stamping Authority {url} cannot be")
    assert len(lines) == 5, lines
    assert not out.exists()


def test_an_error_before_the_first_step_shows_no_progress(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """A TSA URL that is no URL is refused at once: the error alone, as before."""
    pack_ledger.add(0)
    r = _pack(cli, tmp_path / "pack.pdf", "--tsa", "ftp://tsa.example/")
    assert r.exit_code == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("escrow: error: "), r.stderr


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``escrow ARGS`` with its stderr on a pseudo-terminal (stdout a pipe): the exit code,
    stdout and what the terminal was sent."""
    main, terminal = os.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "escrow.cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
            env=env,
        )
        os.close(terminal)
        terminal = -1
        sent = b""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # EIO: the terminal's last writer is gone
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                sent += chunk
            elif proc.poll() is not None:
                break
        assert proc.stdout is not None
        with proc.stdout:
            stdout = proc.stdout.read().decode()
        return proc.wait(timeout=30), stdout, sent.decode("utf-8", "replace")
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(main)


def test_a_terminal_gets_the_live_display(pack_ledger: PackLedger, tmp_path: Path) -> None:
    """On a terminal: the current step redrawn in place (cursor movement) with the part
    being laid out under it, each finished step ticked, stdout the path alone."""
    for i in range(2):
        pack_ledger.add(i)
    out = tmp_path / "pack.pdf"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    }
    env.update(TERM="xterm-256color", COLUMNS="100", LANG="C.UTF-8", PYTHONIOENCODING="utf-8")
    code, stdout, sent = _run_on_a_terminal(["pack", "--project", "example", "-o", str(out)], env)
    assert code == 0, sent
    assert stdout == f"{out}\n"
    assert "\x1b[" in sent  # drawn in place, not line by line
    shown = _ANSI.sub("", sent)
    assert "escrow: audit pack of project example to " in shown
    assert "⠿ step 2/4 rendering 2 builds" in shown
    assert "laying out " in shown  # the part, under the running step
    for done in (
        "✔ step 1/4 collecting the builds ",
        "✔ step 2/4 rendering 2 builds ",
        "✔ step 3/4 signing ",
        "✔ step 4/4 recording the pack in the ledger ",
    ):
        assert done in shown, shown
    assert "step 1/4:" not in shown  # no plain lines
    assert re.search(r"escrow: the pack took [0-9.]+ s\.", shown), shown
    assert "Pack EP-" in shown and out.is_file()
