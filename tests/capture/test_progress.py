"""The build's progress at a terminal (escape sequences, width, encodings)."""

from __future__ import annotations

import io
import re

import pytest

from escrow.capture.progress import LiveProgress, PlainProgress, make_progress

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, with the encoding a locale would give it."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


class AsciiTerminal(FakeTerminal):
    encoding = "ascii"


@pytest.fixture(autouse=True)
def _terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")


def _live(stream: io.StringIO, columns: int = 80) -> LiveProgress:
    progress = LiveProgress(stream)
    progress.console.width = columns
    return progress


def test_the_live_display_shows_a_builds_control_characters_as_text() -> None:
    """A step's text and its last output line were written to the terminal as they came:
    a `\\x1b[2J` cleared the screen, an escape sequence left open (its BEL was dropped)
    swallowed the display. They are shown escaped, as the failed step's tail already was."""
    stream = FakeTerminal()
    progress = _live(stream)
    progress.start("escrow: phoenix build of ctx as app:1")
    try:
        progress.step(1, 1, "RUN printf '\x1b[2J'")
        progress.output("hello \x1b]0;title\x07 \x1b[1A\x1b[2Kwiped\n")
        progress._live.refresh()
        progress.step_done(1, 5, 0)
    finally:
        progress.finish("escrow: built \x1b[31m")
    out = stream.getvalue()
    for sent in ("\x1b[2J", "\x1b]0;", "\x1b[1A\x1b[2Kwiped", "\x1b[31m"):
        assert sent not in out
    assert "RUN printf '\\x1b[2J'" in out
    assert "hello \\x1b]0;title\\x07 \\x1b[1A\\x1b[2Kwiped" in out
    assert "escrow: built \\x1b[31m" in out


def test_live_lines_are_cut_to_the_terminal_width() -> None:
    """At 40 columns the current step (70 characters of text) and its output line (90)
    wrapped over up to six rows, redrawn on every refresh; each is one row now, with the
    elapsed time kept at its end."""
    stream = FakeTerminal()
    progress = _live(stream, columns=40)
    progress.start("escrow: phoenix build")
    try:
        progress.step(3, 9, "RUN " + "make all " * 20)
        progress.output("line 1 " + "x" * 150 + "\n")
        lines = progress.console.render_lines(progress._render(), pad=False)
    finally:
        progress.finish("done")
    rows = ["".join(segment.text for segment in line) for line in lines]
    assert len(rows) == 2, rows
    assert all(len(row) <= 40 for row in rows), rows
    assert rows[0].startswith("⠿ step 3/9 RUN make all")
    assert re.search(r"… +\d+\.\ds$", rows[0]), rows[0]
    assert rows[1].startswith("  line 1 xxx") and rows[1].endswith("…")


def test_a_finished_step_is_not_redrawn_as_running() -> None:
    """The live line was redrawn with the step it showed last after each line printed
    above it: `✔ step 1/2` was followed by `⠿ step 1/2 … 0.0s` until the next refresh."""
    stream = FakeTerminal()
    progress = _live(stream)
    progress.start("escrow: phoenix build")
    try:
        progress.step(1, 2, "FROM base")
        progress._live.refresh()  # as the display's timer does
        progress.step_done(1, 5, 0)
        after = stream.getvalue().split("✔", 1)[1]
    finally:
        progress.finish("done")
    assert "step 1/2 FROM base" in after  # the finished line itself
    assert "⠿ step 1/2" not in after


def test_a_terminal_that_cannot_encode_the_marks_gets_ascii_ones() -> None:
    """With LANG=C (and no UTF-8 mode) stderr is ASCII: ✔, ⠿ and … were written as
    `\\u2714` (six columns where rich counted one), so lines wrapped and the live
    display left rows behind. ASCII marks now; a build's own characters are written as
    the stream writes them, and counted so."""
    stream = AsciiTerminal()
    progress = _live(stream, columns=60)
    progress.start("escrow: phoenix build")
    try:
        progress.step(1, 1, "RUN echo → " + "y" * 80)
        progress.output("done → … —\n")
        lines = progress.console.render_lines(progress._render(), pad=False)
        progress.step_done(1, 5, 3)
    finally:
        progress.finish("escrow: step 1 failed — exit code 3")
    out = stream.getvalue()
    out.encode("ascii")  # nothing the stream would have to escape
    rows = ["".join(segment.text for segment in line) for line in lines]
    assert all(len(row) <= 60 for row in rows), rows
    assert rows[0].startswith("* step 1/1 RUN echo \\u2192 yyy") and "..." in rows[0]
    assert "  | done \\u2192 \\u2026 \\u2014" in out  # the failed step's tail
    assert "x step 1/1 RUN echo \\u2192" in _ANSI.sub("", out)
    assert "escrow: step 1 failed \\u2014 exit code 3" in out


def test_a_dumb_terminal_gets_a_line_per_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """TERM=dumb (no cursor movement): the live display showed nothing while a step ran,
    only each finished step. A line as each step starts now, its output as text."""
    monkeypatch.setenv("TERM", "dumb")
    stream = FakeTerminal()
    progress = make_progress(stream)
    assert isinstance(progress, PlainProgress)
    progress.start("escrow: phoenix build")
    progress.step(1, 1, "RUN make")
    progress.output("\x1b[31mred\x1b[0m\n")
    progress.step_done(1, 5, 0)
    progress.finish("done")
    out = stream.getvalue()
    assert "step 1/1: RUN make\n" in out
    assert "  | \\x1b[31mred\\x1b[0m\n" in out
    assert "\x1b" not in out


def test_plain_lines_to_a_pipe_keep_the_output_as_it_is() -> None:
    """Not a terminal: the output is written as it came (as `escrow logs` to a pipe)."""
    stream = io.StringIO()
    progress = make_progress(stream)
    assert isinstance(progress, PlainProgress)
    progress.step(1, 1, "RUN make")
    progress.output("\x1b[31mred\x1b[0m\n")
    assert "  | \x1b[31mred\x1b[0m\n" in stream.getvalue()


def test_the_final_line_is_not_cut_into_rows() -> None:
    """`escrow: built sha256:… (tag)` was broken with hard newlines at the terminal's
    width (the image ID in two rows, not selectable as one); the terminal wraps it now."""
    stream = FakeTerminal()
    progress = _live(stream, columns=40)
    progress.start("escrow: phoenix build")
    image = "sha256:" + "ab" * 32
    progress.finish(f"escrow: built {image} (app:1)")
    assert f"escrow: built {image} (app:1)\n" in _ANSI.sub("", stream.getvalue())
