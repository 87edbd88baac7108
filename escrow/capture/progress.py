"""Step-by-step progress on stderr: a live display on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def start(self, title: str) -> None: ...
    def step(self, index: int, total: int | None, text: str) -> None: ...
    def output(self, text: str) -> None: ...
    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None: ...
    def finish(self, message: str) -> None: ...


class NoProgress:
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


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class PlainProgress:
    """One line per step start and end (for logs and pipes); output lines indented."""

    def __init__(self, stream: TextIO | None = None, *, show_output: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.show_output = show_output

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def start(self, title: str) -> None:
        self._write(title)

    def step(self, index: int, total: int | None, text: str) -> None:
        of = f"/{total}" if total else ""
        self._write(f"step {index}{of}: {_short(text)}")

    def output(self, text: str) -> None:
        if self.show_output:
            for line in text.splitlines():
                self._write(f"  | {line}")

    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None:
        status = (
            "ok"
            if exit_code == 0
            else "failed" + (f" with exit code {exit_code}" if exit_code is not None else "")
        )
        self._write(f"step {index} {status} in {duration_ms / 1000:.2f}s")

    def finish(self, message: str) -> None:
        self._write(message)


#: output lines of a failed step shown under it on a terminal (its whole log: `escrow logs`)
FAILED_TAIL_LINES = 10


class LiveProgress:
    """A rich live display: the current step with its elapsed time, finished steps above;
    a step that fails is followed by the last lines it printed."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console

        self.console = Console(file=stream or sys.stderr, highlight=False)
        self._live: Any = None
        self._current: tuple[int, int | None, str, float] | None = None
        self._last_output = ""
        self._tail: list[str] = []

    def _render(self) -> Any:
        from rich.text import Text

        if self._current is None:
            return Text("")
        index, total, text, started = self._current
        of = f"/{total}" if total else ""
        line = Text(f"⠿ step {index}{of} ", style="bold cyan")
        line.append(_short(text, 70))
        line.append(f"  {time.monotonic() - started:5.1f}s", style="yellow")
        if self._last_output:
            line.append("\n  " + _short(self._last_output, 90), style="dim")
        return line

    def start(self, title: str) -> None:
        from rich.live import Live

        self.console.print(title, style="bold")
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

    def output(self, text: str) -> None:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            self._last_output = lines[-1]
            self._tail = (self._tail + lines)[-FAILED_TAIL_LINES:]

    def step_done(self, index: int, duration_ms: int, exit_code: int | None) -> None:
        if self._current is None:
            return
        _, total, text, _ = self._current
        tail, self._current, self._tail = self._tail, None, []  # the live line goes now
        of = f"/{total}" if total else ""
        mark, style = ("✔", "green") if exit_code == 0 else ("✘", "red")
        self.console.print(
            f"[{style}]{mark}[/] step {index}{of} {_escape(_short(text, 80))} "
            f"[dim]{duration_ms / 1000:.2f}s[/]"
        )
        if exit_code != 0 and tail:
            from rich.text import Text

            from escrow.text import printable

            for line in tail:  # what the step said before it failed, as text
                self.console.print(Text(f"  | {printable(line)}", style="dim"))

    def finish(self, message: str) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.console.print(_escape(message))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def make_progress(stream: TextIO | None = None, *, quiet: bool = False) -> Progress:
    """Live display when ``stream`` (stderr) is a terminal, plain lines otherwise."""
    stream = stream or sys.stderr
    if quiet:
        return NoProgress()
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return LiveProgress(stream)
    return PlainProgress(stream)
