"""Step-by-step progress on stderr: a live display on a terminal, plain lines otherwise."""

from __future__ import annotations

import os
import sys
import time
from typing import IO, Any, NamedTuple, Protocol, TextIO


class Progress(Protocol):
    def start(self, title: str) -> None: ...
    def step(self, index: int, total: int | None, text: str) -> None: ...
    def output(self, text: str) -> None: ...
    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None: ...
    def finish(self, message: str) -> None: ...


class NoProgress:
    #: whether :meth:`output` shows anything (a build's output lines are scrubbed for it
    #: only when it does: ``StepParser``)
    shows_output = False

    def start(self, title: str) -> None:
        pass

    def step(self, index: int, total: int | None, text: str) -> None:
        pass

    def output(self, text: str) -> None:
        pass

    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None:
        pass

    def finish(self, message: str) -> None:
        pass


def _short(text: str, width: int = 100, ellipsis: str = "…") -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - len(ellipsis)] + ellipsis


class _Marks(NamedTuple):
    running: str
    ok: str
    failed: str
    ellipsis: str


_UNICODE_MARKS = _Marks("⠿", "✔", "✘", "…")
#: for a stream that cannot encode the others (``LANG=C``, a Latin-1 terminal): written
#: as ``\u2714`` they would be six columns where one was counted, and lines would wrap
_ASCII_MARKS = _Marks("*", "+", "x", "...")


def _encodes(stream: IO[str], text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _as_written(stream: IO[str], text: str) -> str:
    """``text`` as the stream writes it: a character its encoding lacks becomes the
    ``\\uXXXX`` that Python's stderr writes (so that its width is counted right)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)
    except LookupError:
        pass
    return text


def _dumb_terminal() -> bool:
    return os.environ.get("TERM", "").lower() in ("dumb", "unknown")


class PlainProgress:
    """One line per step start and end (for logs and pipes); output lines indented.

    On a terminal (``TERM=dumb``: no cursor movement) a build's output is shown as text:
    its control characters escaped, as ``escrow logs`` does; to a file or a pipe it is
    written as it is."""

    def __init__(
        self, stream: TextIO | None = None, *, show_output: bool = True, terminal: bool = False
    ) -> None:
        self.stream = stream or sys.stderr
        self.show_output = show_output
        self.terminal = terminal
        self._ellipsis = "…" if _encodes(self.stream, "…") else "..."

    @property
    def shows_output(self) -> bool:
        return self.show_output

    def _write(self, *lines: str) -> None:
        if self.terminal:
            from escrow.text import printable

            lines = tuple(printable(line) for line in lines)
        # one write and one flush for a command's many lines
        self.stream.write(lines[0] + "\n" if len(lines) == 1 else "\n".join(lines) + "\n")
        self.stream.flush()

    def start(self, title: str) -> None:
        self._write(title)

    def step(self, index: int, total: int | None, text: str) -> None:
        of = f"/{total}" if total else ""
        self._write(f"step {index}{of}: {_short(text, ellipsis=self._ellipsis)}")

    def output(self, text: str) -> None:
        if self.show_output:
            lines = text.splitlines()
            if lines:
                self._write(*(f"  | {line}" for line in lines))

    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None:
        status = (
            "ok"
            if exit_code == 0
            else "failed" + (f" with exit code {exit_code}" if exit_code is not None else "")
        )
        self._write(f"step {index} {status} in {duration_ms / 1000:.2f}s")

    def finish(self, message: str) -> None:
        if message:  # none: the command's own error or result says how it ended
            self._write(message)


#: output lines of a failed step shown under it on a terminal (its whole log: `escrow logs`)
FAILED_TAIL_LINES = 10


class LiveProgress:
    """A rich live display: the current step with its elapsed time, finished steps above;
    a step that fails is followed by the last lines it printed.

    What the build says (step texts, output, the engine's messages) is shown as text: a
    control character in it is escaped, never sent (it would move the cursor under the
    display, or an escape sequence left open would swallow it). The live lines are cut
    to the terminal's width, so that none wraps and the display is redrawn in place."""

    shows_output = True

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False)
        self._marks = (
            _UNICODE_MARKS if _encodes(self.console.file, "".join(_UNICODE_MARKS)) else _ASCII_MARKS
        )
        self._live: Any = None
        self._current: tuple[int, int | None, str, float] | None = None
        self._last_output = ""
        self._tail: list[str] = []

    def _text(self, text: str) -> str:
        """``text`` as the terminal is to show it: one line of printable characters."""
        from escrow.text import printable

        return _as_written(self.console.file, printable(" ".join(text.split())))

    def _fit(self, text: str, room: int) -> str:
        from rich.cells import cell_len, set_cell_size

        if cell_len(text) <= room:
            return text
        ellipsis = self._marks.ellipsis
        if room <= len(ellipsis):
            return set_cell_size(text, max(room, 0))
        return set_cell_size(text, room - len(ellipsis)).rstrip() + ellipsis

    def _render(self) -> Any:
        from rich.cells import cell_len
        from rich.text import Text

        if self._current is None:
            return Text("")
        index, total, text, started = self._current
        width = self.console.width
        of = f"/{total}" if total else ""
        head = f"{self._marks.running} step {index}{of} "
        elapsed = f"  {time.monotonic() - started:5.1f}s"
        line = Text(no_wrap=True, overflow="crop", end="")
        line.append(head, style="bold cyan")
        line.append(self._fit(self._text(text), width - cell_len(head) - len(elapsed)), "cyan")
        line.append(elapsed, style="yellow")
        if self._last_output:
            line.append("\n")
            line.append("  " + self._fit(self._text(self._last_output), width - 2), "dim")
        return line

    def _redraw(self) -> None:
        """The live lines drawn now, not at the next refresh: a line printed above them
        would otherwise be followed by the step that was current before."""
        if self._live is not None:
            self._live.refresh()

    def _print(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        from escrow.text import printable

        # soft-wrapped: a long line (an image ID) is wrapped by the terminal, not cut in two
        self.console.print(
            Text(_as_written(self.console.file, printable(text)), style=style or ""),
            soft_wrap=True,
        )

    def start(self, title: str) -> None:
        from rich.live import Live

        self._print(title, "bold")
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            refresh_per_second=8,
            transient=True,
        )
        self._live.start()

    def step(self, index: int, total: int | None, text: str) -> None:
        self._current = (index, total, text, time.monotonic())
        self._last_output = ""
        self._tail = []
        self._redraw()

    def output(self, text: str) -> None:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            self._last_output = lines[-1]
            self._tail = (self._tail + lines)[-FAILED_TAIL_LINES:]

    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None:
        if self._current is None:
            return
        from rich.text import Text

        _, total, text, _ = self._current
        tail, self._current, self._tail = self._tail, None, []  # the live line goes now
        self._redraw()
        of = f"/{total}" if total else ""
        mark, style = (self._marks.ok, "green") if exit_code == 0 else (self._marks.failed, "red")
        line = Text()
        line.append(mark, style=style)
        line.append(f" step {index}{of} {self._text(_short(text, 80, self._marks.ellipsis))} ")
        line.append(f"{duration_ms / 1000:.2f}s", style="dim")
        self.console.print(line, soft_wrap=True)
        if exit_code != 0 and tail:
            for out in tail:  # what the step said before it failed, as text
                self._print(f"  | {out}", "dim")

    def finish(self, message: str) -> None:
        if self._live is not None:
            self._current = None
            self._live.stop()
            self._live = None
        if message:  # none: the command's own error or result says how it ended
            self._print(message)


def make_progress(stream: TextIO | None = None, *, quiet: bool = False) -> Progress:
    """Live display when ``stream`` (stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if quiet:
        return NoProgress()
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        if _dumb_terminal():  # no cursor movement: no live line, a line per step
            return PlainProgress(stream, terminal=True)
        return LiveProgress(stream)
    return PlainProgress(stream)
