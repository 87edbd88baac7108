"""Turn the classic builder's JSON stream into steps: text, image, exit code, times, log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from escrow.capture.logs import LogBuffer
from escrow.capture.progress import NoProgress, Progress
from escrow.times import utc_now

_STEP = re.compile(r"^Step (?P<n>\d+)/(?P<total>\d+) : (?P<text>.*)$")
_RUNNING = re.compile(r"^(?P<pre>.*) ---> Running in (?P<id>[0-9a-f]{12,64})$")
_IMAGE = re.compile(r"^(?P<pre>.*) ---> (?P<id>[0-9a-f]{12,64})$")
_REMOVING = re.compile(r"^(?P<pre>.*)Removing intermediate container (?P<id>[0-9a-f]{12,64})$")
_REMOVING_TEXT = "Removing intermediate container "
_CACHE = re.compile(r"^(?P<pre>.*) ---> Using cache$")
# `FROM scratch` has no image: the engine prints an empty arrow
_NO_IMAGE = re.compile(r"^(?P<pre>.*) ---> ?$")
_DONE = re.compile(r"^(Successfully built [0-9a-f]+|Successfully tagged .+)$")
_EXIT = re.compile(r"returned a non-zero code: (?P<code>\d+)")
# the classic builder wraps each write of a RUN's stderr in red (one message each)
_STDERR_ON, _STDERR_OFF = "\x1b[91m", "\x1b[0m"


def _unwrap_stderr(text: str) -> str:
    """A stream message without the red the builder wraps a stderr write in; colours the
    command wrote itself (a reset on its stdout) are its output and are kept."""
    if text.startswith(_STDERR_ON) and text.endswith(_STDERR_OFF):
        return text[len(_STDERR_ON) : -len(_STDERR_OFF)]
    return text


@dataclass
class StepRecord:
    index: int
    total: int | None
    instruction: str
    stage: int | None
    started_on: str
    started: float
    image_short: str | None = None
    container: str | None = None
    exit_code: int | None = 0
    duration_ms: int = 0
    #: the step's output as it comes (kept in memory while small)
    log: LogBuffer = field(default_factory=LogBuffer)


@dataclass
class StreamResult:
    steps: list[StepRecord]
    image_id: str | None  # full "sha256:…" of the last stage, from the aux message
    error: str | None
    error_code: int | None
    failed_step: StepRecord | None


class StepParser:
    """Feed :meth:`feed` every decoded JSON message of the engine's build stream
    (:meth:`~escrow.capture.engine.Engine.build`), then call :meth:`finish`."""

    def __init__(
        self,
        progress: Progress | None = None,
        scrub: Callable[[str], str] | None = None,
        on_step: Callable[[StepRecord], None] | None = None,
        new_log: Callable[[], LogBuffer] | None = None,
    ) -> None:
        self.progress = progress or NoProgress()
        #: where each step's log goes (``escrow build``'s go on to the blob store once large)
        self._new_log = new_log or LogBuffer
        self._scrub = scrub or (lambda text: text)
        self._on_step = on_step  # called as each step starts (the one before has its image)
        self.steps: list[StepRecord] = []
        self.stage_images: list[str] = []
        self.error: str | None = None
        self.error_code: int | None = None
        #: the line not ended yet, in the pieces it came in (joined once its newline comes:
        #: a long line over many messages is neither copied nor searched again each time)
        self._pending: list[str] = []
        #: characters searched for a newline (each message's text once)
        self.scanned = 0
        #: whether the progress shows a step's output: when it does not (``-q``), an output
        #: line is not scrubbed for it -- the stored log is scrubbed whole (:class:`LogBuffer`)
        self._shown = bool(getattr(self.progress, "shows_output", True))
        self._stage = -1
        #: the container a step runs in (``---> Running in ID``) until the builder removes
        #: it: what comes meanwhile is the command's output, even a line that looks like
        #: the builder's own (``Step 7/9 : …``, `` ---> ID``), never a step or an image
        self._running: str | None = None

    @property
    def current(self) -> StepRecord | None:
        return self.steps[-1] if self.steps else None

    def feed(self, msg: dict[str, Any]) -> None:
        if "stream" in msg:
            text = _unwrap_stderr(str(msg["stream"]))
            self.scanned += len(text)
            end = text.find("\n")
            if end < 0:
                if text:  # a piece of a line: held, neither joined nor searched again
                    self._pending.append(text)
            elif end == len(text) - 1 and not self._pending:
                self._line(text[:end])  # a line in a message of its own (most are)
            else:
                self._lines(text)
        if "aux" in msg and isinstance(msg["aux"], dict) and msg["aux"].get("ID"):
            self.stage_images.append(str(msg["aux"]["ID"]))
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            self.error = str(detail.get("message") or msg.get("error") or "the build failed")
            code = detail.get("code")
            if not isinstance(code, int):
                m = _EXIT.search(self.error)
                code = int(m.group("code")) if m else None
            self.error_code = code

    def _lines(self, text: str) -> None:
        """The lines ``text`` (which has a newline) ends, the first with the pieces held
        before it; what follows its last newline is held."""
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
            self._pending.clear()
        lines = text.split("\n")
        rest = lines.pop()
        if rest:
            self._pending.append(rest)
        self._line(lines[0])
        if len(lines) > 2 and self._running is not None:
            # a command's output, many lines at once: written to its log together, unless
            # a line may be the builder's (the step's end) or name build arguments
            body = "\n".join(lines[1:])
            if not (
                body.startswith(("Step ", "|"))
                or "\nStep " in body
                or "\n|" in body
                or _REMOVING_TEXT in body
            ):
                self._output(body, lines[1:])
                return
        for line in lines[1:]:
            self._line(line)

    def _output(self, body: str, lines: list[str]) -> None:
        """The output lines ``body`` (``lines`` joined) of the running step: as ``_log``
        of each line does (an empty line is shown as nothing)."""
        step = self.current
        assert step is not None  # a step runs
        step.log.write((body + "\n").encode("utf-8", errors="surrogateescape"))
        if self._shown:
            shown = "\n".join(line for line in lines if line)
            if shown:
                # scrubbed whole: as each line is (none starts ``|N``, which alone is
                # scrubbed by where it begins), and a value of many lines too
                self.progress.output(self._scrub(shown))

    def _log(self, text: str) -> None:
        step = self.current
        if step is None:
            return  # engine output before the first step (nothing normally): no step's log
        step.log.write((text + "\n").encode("utf-8", errors="surrogateescape"))
        if self._shown:
            self.progress.output(self._scrub(text))
        elif text.startswith("|"):
            # shown nowhere, but scrubbing learns the values of a ``|N NAME=value``
            # line (it alone can start so), which later text is scrubbed of
            self._scrub(text)

    def _line(self, line: str) -> None:
        if self._running is not None:
            # the patterns are tried only on a line that can match (most are output)
            m = _REMOVING.match(line) if _REMOVING_TEXT in line else None
            if m is not None and m.group("id") == self._running:
                self._running = None
                if m.group("pre"):
                    self._log(m.group("pre"))
                return
            if not self._next_step(line):
                self._log(line)
                return
            self._running = None  # the engine said nothing of the container's removal
        m = _STEP.match(line)
        if m:
            self._close_step()
            text = m.group("text")
            if text.split(" ", 1)[0].upper() == "FROM":
                self._stage += 1
            step = StepRecord(
                index=int(m.group("n")),
                total=int(m.group("total")),
                instruction=text,
                stage=self._stage if self._stage >= 0 else None,
                started_on=utc_now(),
                started=time.monotonic(),
                log=self._new_log(),
            )
            self.steps.append(step)
            self.progress.step(step.index, step.total, self._scrub(step.instruction))
            if self._on_step is not None:
                self._on_step(step)
            return
        current = self.current
        patterns = (
            (_RUNNING, "run"),
            (_REMOVING, "rm"),
            (_IMAGE, "img"),
            (_CACHE, ""),
            (_NO_IMAGE, ""),
        )
        for pattern, kind in patterns:
            m = pattern.match(line)
            if m and current is not None:
                if m.group("pre"):
                    self._log(m.group("pre"))
                if kind == "run":
                    current.container = self._running = m.group("id")
                elif kind == "img":
                    current.image_short = m.group("id")
                return
        if _DONE.match(line):
            return
        self._log(line)

    def _next_step(self, line: str) -> bool:
        """Whether ``line`` starts the step that follows the current one (same total)."""
        m = _STEP.match(line) if line.startswith("Step ") else None
        current = self.current
        return (
            m is not None
            and current is not None
            and int(m.group("n")) == current.index + 1
            and int(m.group("total")) == current.total
        )

    def _close_step(self) -> None:
        step = self.current
        if step is not None and step.duration_ms == 0:
            step.duration_ms = max(0, round((time.monotonic() - step.started) * 1000))
            self.progress.step_done(step.index, step.duration_ms, step.exit_code)

    def finish(self) -> StreamResult:
        if self._pending:
            line = "".join(self._pending)
            self._pending.clear()
            self._line(line)
        failed: StepRecord | None = None
        if self.error is not None and self.current is not None:
            failed = self.current
            failed.exit_code = self.error_code
            failed.log.write((self.error + "\n").encode("utf-8"))
        self._close_step()
        return StreamResult(
            steps=self.steps,
            image_id=self.stage_images[-1] if self.stage_images and not self.error else None,
            error=self.error,
            error_code=self.error_code,
            failed_step=failed,
        )
