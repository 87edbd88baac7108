"""``escrow record -- COMMAND…``: run any build command and record it.

Records the argv, working directory, exit code, duration and output log
(stdout and stderr merged, to the blob store), the context digest before and
after (a command that changes its own inputs is flagged, with the changed
paths), and — when ``--image`` is given and the command succeeded — the
image it produced.  The caller exits with the command's own exit code.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from escrow.blobs import BlobStore
from escrow.capture.build import default_project
from escrow.capture.capture import check_image_ref, image_not_found
from escrow.capture.context import ContextArchive, escrow_folders_in, left_out_note, make_context
from escrow.capture.engine import Engine
from escrow.capture.logs import LogBuffer
from escrow.capture.manifest import (
    build_section,
    builder_section,
    capture_image_facts,
    image_subject,
    log_tail,
    statement,
    utf8_document,
    utf8_text,
)
from escrow.capture.secrets import Redactor, url_userinfo
from escrow.capture.source import builder_id, ci_facts, git_source
from escrow.documents.canonical import canonical_bytes
from escrow.errors import EscrowError, UsageError
from escrow.times import utc_now

#: changed paths listed in ``command.changedPaths`` (at most)
MAX_CHANGED_PATHS = 100


@dataclass
class RecordOutcome:
    statement: dict[str, Any]
    exit_code: int
    status: str
    #: the signal that killed the command (``SIGTERM``), when one did
    signal: str | None = None


def signal_name(number: int) -> str:
    """``15`` → ``SIGTERM`` (``signal 99`` for a number Python does not name)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _snapshot(context: Path, excluded: Sequence[str]) -> ContextArchive:
    """The context's file list and tree digest (no archive kept), without the paths
    ``excluded`` (escrow's own folders): those are neither read nor hashed."""
    return make_context(
        context,
        None,
        require_dockerfile=False,
        embed_dockerfile=False,
        keep_archive=False,
        leave_out=excluded,
    )


def changed_paths(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    """Paths added, removed or changed between two context file lists."""
    a = {str(f["path"]): f for f in before}
    b = {str(f["path"]): f for f in after}
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def _secret_name(name: str, redactor: Redactor) -> bool:
    """Whether ``name`` (an option's name, dashes stripped, or a variable's) is secret;
    an option spelled with dashes counts as with underscores (``api-key`` as ``API_KEY``)."""
    return redactor.is_secret(name) or redactor.is_secret(name.replace("-", "_"))


#: what may precede ``=`` in ``NAME=value`` or ``--NAME=value``: a variable's or an
#: option's name, not a script that holds ``=`` (``sh -c 'echo token=$X'``)
_NAME = re.compile(r"^-{0,2}[A-Za-z_][A-Za-z0-9_.-]*$")
#: an HTTP credential given as a header (``curl -H 'Authorization: Bearer …'``)
_AUTH_HEADER = re.compile(
    r"^(?P<prefix>\s*(?:proxy-)?authorization\s*:\s*(?:[A-Za-z][A-Za-z0-9._-]*\s+)?)"
    r"(?P<value>\S.*?)\s*$",
    re.I | re.S,
)


def _argv_secret(word: str, redactor: Redactor) -> tuple[str, str, str] | None:
    """``(prefix, NAME, value)`` when ``word`` gives a secret-named value: ``NAME=value``,
    ``--NAME=value`` (``--password=…``) or an option's ``NAME=value`` joined to it with
    ``=`` (``--build-arg=TOKEN=…``, ``--env=TOKEN=…``); ``prefix`` is what precedes the
    value; and an ``Authorization:`` header's credential.  ``None`` otherwise."""
    auth = _AUTH_HEADER.match(word)
    if auth is not None:
        return auth.group("prefix"), "Authorization", auth.group("value")
    name, eq, value = word.partition("=")
    if not eq or not _NAME.match(name):
        return None
    if _secret_name(name.lstrip("-"), redactor):
        return f"{name}=", name.lstrip("-"), value
    if name.startswith("-"):  # an option whose own value is NAME=value
        inner, eq2, inner_value = value.partition("=")
        if eq2 and inner and _secret_name(inner, redactor):
            return f"{name}={inner}=", inner, inner_value
    return None


#: secret-named options whose next word names where the secret is, not the secret
#: (``--password-stdin``, ``--password-file PATH``, ``--token-env VAR``)
_NOT_VALUE_SUFFIXES = ("-stdin", "-file", "-path", "-env")


def _secret_option(word: str, redactor: Redactor) -> str | None:
    """``NAME`` when ``word`` is a secret-named option whose value is the next word
    (``--password VALUE``, ``-token VALUE``); ``None`` otherwise."""
    if not word.startswith("-") or "=" in word:
        return None
    name = word.lstrip("-")
    if not name or name.lower().endswith(_NOT_VALUE_SUFFIXES):
        return None
    return name if _secret_name(name, redactor) else None


#: the short option for the password of a ``login`` subcommand (``docker login -p``,
#: ``podman``, ``helm registry``, ``skopeo``, ``oras``, ``buildah``); elsewhere ``-p`` is
#: anything (``mkdir -p``, ``docker run -p 8080:80``, ``ssh -p 22``) and is kept
_LOGIN_PW_OPTION = "-p"


def _argv_secrets(argv: list[str], redactor: Redactor) -> list[tuple[str, str, str] | None]:
    """For each word of ``argv``, ``(prefix, NAME, value)`` when it is (or holds) a
    secret value, else ``None``: the joined forms of :func:`_argv_secret`, and the word
    after a secret-named option given alone (``--password VALUE``) unless that word is
    an option itself (starts with ``-``); after a ``login`` subcommand, ``-p`` is the
    password (``-p VALUE``, ``-p=VALUE``, ``-pVALUE``)."""
    found: list[tuple[str, str, str] | None] = []
    option: str | None = None
    login = False
    for word in argv:
        if option is not None and not word.startswith("-"):
            found.append(("", option, word))
            option = None
            continue
        option = None
        if login and word.startswith(_LOGIN_PW_OPTION) and not word.startswith("--"):
            rest = word[len(_LOGIN_PW_OPTION) :]
            if not rest:
                found.append(None)
                option = "password"
                continue
            prefix = _LOGIN_PW_OPTION + ("=" if rest.startswith("=") else "")
            found.append((prefix, "password", word[len(prefix) :]))
            continue
        login = login or word == "login"
        found.append(_argv_secret(word, redactor))
        option = _secret_option(word, redactor)
    return found


#: the name URL credentials given on the command line are hidden under
_URL_NAME = "URL_CREDENTIALS"


def _learn_argv(argv: list[str], redactor: Redactor) -> None:
    """Secret-named values given on the command line (``--build-arg TOKEN=…``,
    ``--build-arg=TOKEN=…``, ``--password=…``, ``--password …``): hidden wherever they
    appear."""
    for found in _argv_secrets(argv, redactor):
        if found is not None:
            redactor.learn(found[1], found[2])
    for words in _command_lines_within(argv):
        for found in _argv_secrets(words, redactor):
            # a shell expands ``$TOKEN`` there: a reference to the secret, not its value
            if found is not None and "$" not in found[2]:
                redactor.learn(found[1], found[2])
    # ``https://user:pw@host``: stripped from URLs anyway, but a command may print the
    # credentials without the URL (``user:pw``, the password alone, percent-decoded)
    for word in argv:
        for info in url_userinfo(word):
            password = info.partition(":")[2]
            for value in (info, password):
                if value:
                    redactor.learn(_URL_NAME, value)
                    redactor.learn(_URL_NAME, urllib.parse.unquote(value))


def _command_lines_within(argv: list[str], depth: int = 3) -> list[list[str]]:
    """The command lines given inside single words of ``argv`` (``sh -c "docker login -p
    PW …"``, ``ssh host 'tool --token T'``), split as a shell splits them, and those inside
    theirs (to ``depth``): their secrets are learnt as the command line's own are, and
    hidden in the script word (free text) and the log."""
    import shlex

    found: list[list[str]] = []
    for word in argv:
        if depth == 0 or not any(c.isspace() for c in word):
            continue
        try:
            words = shlex.split(word)
        except ValueError:  # not a command line a shell could split (an open quote)
            continue
        if len(words) > 1:
            found.append(words)
            found += _command_lines_within(words, depth - 1)
    return found


def _argv_record(argv: list[str], redactor: Redactor) -> list[str]:
    """The command line as recorded: a secret-named value is replaced by its placeholder
    whatever its length (free text only hides values of at least a few characters); bytes
    of a word that are not UTF-8 are shown as ``\\xNN``."""
    out: list[str] = []
    for word, found in zip(argv, _argv_secrets(argv, redactor), strict=True):
        if found is not None and found[2]:
            out.append(utf8_text(found[0] + redactor.placeholder(found[1])))
        else:
            out.append(utf8_text(redactor.text(word)))
    return out


def _message_log(msg: bytes) -> LogBuffer:
    """The log of a command that did not run: escrow's message why."""
    log = LogBuffer()
    log.write(msg)
    return log


def _not_runnable(
    argv: list[str], error: OSError, echo: TextIO | None
) -> tuple[int, LogBuffer, int, int | None]:
    """A shell's 126: ``argv[0]`` was found but cannot be run (permission denied, a
    script whose ``#!`` interpreter is missing, a file that is not a program)."""
    why = error.strerror or str(error)
    if error.errno == errno.EACCES and os.path.isdir(argv[0]):
        why = "it is a directory"  # what a shell says; exec says only "Permission denied"
    elif error.errno == errno.ENOENT:
        why = "its interpreter (the #! line) was not found"
    msg = f"escrow: cannot run {utf8_text(argv[0])}: {utf8_text(why)}\n".encode()
    if echo is not None:
        echo.write(msg.decode())
    return 126, _message_log(msg), 0, None


class _Terminated(Exception):
    """escrow received SIGTERM while the command it records was running."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


class _Signalled(Exception):
    """Ctrl-C or SIGTERM taken from escrow's blocked signals while the command runs:
    ``relay`` is false for one the terminal sent (Ctrl-C, which the command, in the
    terminal's foreground process group with escrow, got as well)."""

    def __init__(self, signo: int, relay: bool) -> None:
        super().__init__(signo)
        self.signo, self.relay = signo, relay


#: the signals passed on to the command
_INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})
#: ``si_code`` of a signal the kernel sent: the terminal's Ctrl-C (``SI_KERNEL``)
_SI_KERNEL = 0x80
#: how often a wait for the command looks for a signal escrow received (seconds)
_SIGNAL_POLL = 0.05


def _take_signal() -> None:
    """Raise :class:`_Signalled` for a Ctrl-C or SIGTERM pending for escrow (blocked while
    the command runs, so that where it came from can be told)."""
    info = signal.sigtimedwait(_INTERRUPTS, 0)
    if info is not None:
        raise _Signalled(info.si_signo, info.si_code != _SI_KERNEL)


#: what is read at most, once the command has exited, of the output still in the pipe:
#: more than a pipe holds (the command's own output is all there), so that a process it
#: left running that writes on and on cannot hold escrow
_DRAIN_LIMIT = 4 << 20


class _Output:
    """The command's merged output: kept for the log (:class:`LogBuffer`: in memory while
    small, scrubbed into the blob store as it comes when large), echoed line by line (each
    line redacted whole, as it is recorded)."""

    def __init__(self, echo: TextIO | None, redactor: Redactor, log: LogBuffer) -> None:
        self.log = log
        self.echo, self.redactor = echo, redactor
        self._pending = bytearray()

    def add(self, chunk: bytes) -> None:
        self.log.write(chunk)
        if self.echo is None:
            return
        self._pending += chunk
        end = self._pending.rfind(b"\n")
        if end < 0:
            return
        done = bytes(self._pending[: end + 1])
        del self._pending[: end + 1]
        for line in done.split(b"\n")[:-1]:
            text = (line + b"\n").decode("utf-8", errors="replace")
            self.echo.write(self.redactor.text(text))
        self.echo.flush()

    def finish(self) -> None:
        if self.echo is not None and self._pending:
            text = self._pending.decode("utf-8", errors="replace")
            self.echo.write(self.redactor.text(text))
            self._pending.clear()


def _pidfd(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (Linux 5.3+), else None."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _read_output(
    proc: subprocess.Popen[bytes],
    fd: int,
    pidfd: int | None,
    out: _Output,
    signals: bool = False,
) -> None:
    """Read the command's output until every writer has closed the pipe -- or until the
    command has exited and the output it left in the pipe is read: a process it started
    and left running (``nohup server &``, a daemon) may hold the pipe open for hours, and
    what it writes after the command ended is not the command's output.

    ``signals``: escrow's Ctrl-C and SIGTERM are blocked; one pending raises
    :class:`_Signalled` (:func:`_take_signal`)."""
    import select

    drained = 0
    while True:
        exited = proc.poll() is not None
        if exited:
            ready, _, _ = select.select([fd], [], [], 0)
        elif pidfd is not None:
            ready, _, _ = select.select([fd, pidfd], [], [], _SIGNAL_POLL if signals else None)
        else:
            ready, _, _ = select.select([fd], [], [], _SIGNAL_POLL if signals else 0.2)
        if signals and not exited:
            _take_signal()
        if fd not in ready:
            if exited:
                return  # it has exited, and nothing of its output is left to read
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return  # every writer has closed the pipe
        out.add(chunk)
        if exited:
            drained += len(chunk)
            if drained >= _DRAIN_LIMIT:
                return


def _run(
    argv: list[str], echo: TextIO | None, redactor: Redactor, blobs: BlobStore | None = None
) -> tuple[int, LogBuffer, int, int | None]:
    """Run ``argv``; return ``(exit code, merged output, duration ms, signal)``: a command
    killed by a signal has the exit code a shell gives it (128 + the signal's number).
    Output past :data:`~escrow.capture.logs.MEMORY_LIMIT` goes on, scrubbed, to a
    temporary file in ``blobs``.

    Ctrl-C is passed on to the command (SIGINT), and SIGTERM (a cancelled CI job) as
    SIGTERM, and the run recorded as it ends; a second one while it still runs kills it
    (SIGKILL), so that no command is left running unrecorded behind escrow.  The run ends
    when the command exits, even if a process it left running still holds its output."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError as e:
        if "/" in argv[0] and os.path.exists(argv[0]):
            return _not_runnable(argv, e, echo)
        msg = f"escrow: command not found: {utf8_text(argv[0])}\n".encode()
        if echo is not None:
            echo.write(msg.decode())
        return 127, _message_log(msg), 0, None
    except OSError as e:
        return _not_runnable(argv, e, echo)
    out = _Output(echo, redactor, LogBuffer(blobs, redactor))
    interrupts = 0
    pidfd = _pidfd(proc.pid)
    # SIGTERM (a cancelled CI job) is passed on as Ctrl-C is: escrow stays to record the run
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if on_main_thread else None
    # Blocked while the command runs, and taken with their sender (:func:`_take_signal`):
    # the terminal's Ctrl-C reaches the whole foreground process group, the command too,
    # and passing it on as well gave the command a second SIGINT -- which many tools take
    # as "stop at once, without cleaning up" (one that keeps state, a terraform or a
    # compose, left it half-written).  A signal that reached escrow otherwise (a thread
    # that does not block it) raises as before, and is passed on.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS) if on_main_thread else None
    try:
        with proc:
            assert proc.stdout is not None
            while True:
                try:
                    if interrupts < 2:  # after a SIGKILL, what it left running may hold the pipe
                        _read_output(
                            proc, proc.stdout.fileno(), pidfd, out, signals=blocked is not None
                        )
                    code = _wait(proc, signals=blocked is not None)
                    break
                except (KeyboardInterrupt, _Terminated, _Signalled) as e:
                    interrupts += 1
                    if isinstance(e, _Signalled):
                        first, relay = signal.Signals(e.signo), e.relay
                    else:
                        first = signal.SIGTERM if isinstance(e, _Terminated) else signal.SIGINT
                        relay = True
                    if interrupts > 1:
                        proc.send_signal(signal.SIGKILL)
                    elif relay:
                        proc.send_signal(first)
    finally:
        if pidfd is not None:
            os.close(pidfd)
        if blocked is not None:
            # a signal that came as the command ended is the run's, not the recording's
            while signal.sigtimedwait(_INTERRUPTS, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    out.finish()
    log = out.log
    if echo is not None and log.size and not log.ends_with_newline():
        echo.write("\n")  # escrow's own message starts on a line of its own
    duration = round((time.monotonic() - started) * 1000)
    if code < 0:  # killed by a signal: report it the way a shell does
        return 128 - code, log, duration, -code
    return code, log, duration, None


def _wait(proc: subprocess.Popen[bytes], *, signals: bool) -> int:
    """The command's exit code, once it has exited; ``signals``: escrow's Ctrl-C and SIGTERM
    are blocked, and looked for while it waits (:func:`_take_signal`)."""
    if not signals:
        return proc.wait()
    while True:
        try:
            return proc.wait(timeout=_SIGNAL_POLL)
        except subprocess.TimeoutExpired:
            _take_signal()


def _context_after(
    context: Path,
    excluded: Sequence[str],
    before_digest: str,
    before_files: list[dict[str, Any]],
    echo: TextIO | None,
) -> tuple[str | None, str | None, list[str]]:
    """The context once the command has run: ``(tree digest, why it could not be read,
    the paths that changed)``.  One that cannot be read is recorded as unknown (its
    digest ``None``, so its inputs count as changed), with a warning on ``echo``."""
    try:
        with _snapshot(context, excluded) as after:
            if after.tree_digest == before_digest:
                return after.tree_digest, None, []
            return after.tree_digest, None, changed_paths(before_files, after.files)
    except EscrowError as e:
        # the command has run: record it all the same, its inputs counted as changed
        if echo is not None:
            echo.write(
                f"escrow: warning: {e.message.rstrip('.')}; the context after the command is "
                "recorded as unknown.\n"
            )
        return None, e.message, []


def record_command(
    argv: list[str],
    *,
    image: str | None = None,
    context: Path | None = None,
    project: str | None = None,
    engine: Engine | None = None,
    blobs: BlobStore,
    redactor: Redactor | None = None,
    echo: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> RecordOutcome:
    """Run ``argv`` and make its build manifest.  escrow's own folders (ESCROW_HOME, a
    folder deposit store) are left out of the recorded context when they lie inside it,
    and listed in ``inputs.context.excluded``."""
    if not argv:
        raise UsageError("No command to record.", hint="Write: escrow record -- COMMAND [ARGS]…")
    if not argv[0]:
        # ``escrow record -- "$BUILD_TOOL" …`` with the variable unset: exec would fail
        # with "Permission denied" (126), which names neither the cause nor the command
        raise UsageError(
            "The name of the command to record is empty.",
            hint="Check the variable that names it: write escrow record -- COMMAND [ARGS]…",
        )
    if image is not None:
        check_image_ref(image)  # before the command runs: a bad name must not lose its record
        if engine is None:
            raise UsageError("Recording an image needs the Docker Engine.")
    env = os.environ if environ is None else environ
    redactor = redactor or Redactor()
    redactor.learn_env(env)
    _learn_argv(argv, redactor)
    context = context or Path.cwd()
    engine_facts = engine.facts() if engine is not None else None
    excluded = escrow_folders_in(context, blobs.root.parent)
    if excluded and echo is not None:
        echo.write(left_out_note(excluded, "recorded context") + "\n")
    started_on = utc_now()
    with _snapshot(context, excluded) as before:
        context_doc = before.to_manifest(blobs)
        before_files = before.files
        before_digest = before.tree_digest
    source = git_source(Path(context), leave_out=excluded, environ=env)
    # the image the name gives before the command runs: the same one after it means the
    # command did not make it (or made the very same image, a build all from cache)
    image_before: str | None = None
    if image is not None and engine is not None:
        before_inspect = engine.inspect_image(image)
        image_before = str(before_inspect["Id"]) if before_inspect is not None else None

    exit_code, log, duration, killed_by = _run(argv, echo, redactor, blobs)

    after_digest, after_error, changed = _context_after(
        context, excluded, before_digest, before_files, echo
    )
    finished_on = utc_now()
    stored_log = log.store(blobs, redactor)
    command: dict[str, Any] = {
        "argv": _argv_record(argv, redactor),
        "cwd": utf8_text(str(Path.cwd())),
        "exitCode": exit_code,
        "durationMs": duration,
        "log": stored_log,
        "contextBefore": before_digest,
        "contextAfter": after_digest,
        "inputsChanged": after_digest != before_digest,
    }
    if image is not None:
        command["imageBefore"] = image_before
    if after_error is not None:
        command["contextAfterError"] = redactor.text(after_error)
    if changed:
        command["changedPaths"] = [redactor.text(p) for p in changed[:MAX_CHANGED_PATHS]]
    ci = ci_facts(env)
    builder = builder_section(engine_facts or {}, ci, builder_id(ci))
    if engine_facts is None:
        builder.pop("engine")
    inputs: dict[str, Any] = {"context": context_doc, "buildArgs": [], "baseImages": []}
    if source is not None:
        inputs["source"] = source
    predicate: dict[str, Any] = {
        "build": build_section(
            build_id=str(uuid.uuid4()),
            project=project or default_project(context),
            kind="command",
            status="succeeded" if exit_code == 0 else "failed",
            started_on=started_on,
            finished_on=finished_on,
            source=source,
        ),
        "builder": builder,
        "inputs": inputs,
        "steps": [],
        "command": command,
    }
    subject = _command_subject(command["argv"])
    failure_message: str | None = None
    if exit_code == 0 and image is not None and engine is not None:
        facts = capture_image_facts(engine, image, redactor)
        if facts is None:
            failure_message = str(image_not_found(image).message)
        else:
            image_doc, layers, history = facts
            predicate.update({"image": image_doc, "layers": layers, "history": history})
            subject = image_subject(image_doc, image if image in image_doc["tags"] else None)
    elif killed_by is not None:
        failure_message = (
            f"The command was killed by {signal_name(killed_by)} (exit code {exit_code})."
        )
    elif exit_code != 0:
        failure_message = f"The command exited with code {exit_code}."
    if failure_message is not None:
        predicate["build"]["status"] = "failed"
        predicate["build"]["failure"] = {
            "step": None,
            "instruction": " ".join(command["argv"]),
            "exitCode": exit_code,
            "message": failure_message,
            "logTail": log_tail(log.scrubbed_end(redactor)),
        }
    # a folder or project name that is not UTF-8 is recorded with ``\xNN`` escapes
    doc = dict(utf8_document(redactor.document(statement(subject, predicate))))
    log.close()  # a large log's temporary file (it has no name: nothing is left of it)
    return RecordOutcome(
        doc,
        exit_code,
        predicate["build"]["status"],
        signal_name(killed_by) if killed_by is not None else None,
    )


def _command_subject(argv: list[str]) -> list[dict[str, Any]]:
    """A command's subject: ``command:<argv0>`` with the SHA-256 of its canonical argv."""
    digest = hashlib.sha256(canonical_bytes(argv)).hexdigest()
    return [{"name": f"command:{Path(argv[0]).name}", "digest": {"sha256": digest}}]
