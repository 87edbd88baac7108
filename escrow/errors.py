"""Errors raised by escrow, and the exit code each maps to.

Every error escrow raises on purpose derives from :class:`EscrowError`; the CLI
catches only that class, prints :meth:`EscrowError.diagnostics` (one sentence
saying what failed and what to do) and exits with :attr:`EscrowError.exit_code`.
Anything else that reaches the top level is a bug and keeps its traceback.

Hierarchy::

    EscrowError                       (exit 2 unless a subclass says otherwise)
    ├── UsageError                    bad option or argument            exit 2
    ├── InputError                    a file or document we were given  exit 2
    │   └── SchemaError               document fails its JSON Schema    exit 2
    ├── CheckFailed                   a verification found a problem    exit 1
    │   ├── SignatureError            a signature does not verify
    │   ├── LedgerTamperError         the stored log disagrees with itself
    │   └── BuildFailed               the recorded build failed
    └── EnvironmentProblem            something outside escrow          exit 3
        ├── EngineUnavailable         Docker Engine unreachable
        ├── DatabaseUnavailable       ledger database unreachable
        └── KeyLocked                 key missing or passphrase wrong
"""

from __future__ import annotations

from collections.abc import Callable


class EscrowError(Exception):
    """Base of every error escrow raises deliberately."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """One or two sentences for a person: what failed, and what to do."""
        if self.hint:
            return f"{self.message.rstrip('.')}. {self.hint}"
        return self.message


class UsageError(EscrowError):
    exit_code = 2


class InputError(EscrowError):
    exit_code = 2


class SchemaError(InputError):
    """A document does not match its schema; ``pointer`` is the JSON Pointer of the bad field."""

    def __init__(self, message: str, *, pointer: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.pointer = pointer


class CheckFailed(EscrowError):
    exit_code = 1


class SignatureError(CheckFailed):
    pass


class LedgerTamperError(CheckFailed):
    """The ledger's stored data disagrees with itself; ``index`` is the first bad entry."""

    def __init__(
        self, message: str, *, index: int | None = None, kind: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.index = index
        self.kind = kind


class BuildFailed(CheckFailed):
    pass


class EnvironmentProblem(EscrowError):
    exit_code = 3


class EngineUnavailable(EnvironmentProblem):
    pass


class DatabaseUnavailable(EnvironmentProblem):
    pass


class KeyLocked(EnvironmentProblem):
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cancelled CI job, ``docker stop``, ``kill``) during work that must stop
    cleanly (``escrow build``): unwinds as Ctrl-C does; the command exits 143 (128 + 15),
    as a process ended by SIGTERM does."""


def sigterm_raises_terminated() -> Callable[[], None]:
    """Make SIGTERM raise :class:`Terminated` in the main thread, so that it stops the work
    as Ctrl-C does (what it was writing removed, a build's finished steps too) instead of
    ending the process where it stood; once (a second one, as a whole process group is
    signalled, does not cut short the clean-up the first started).  Returns what puts the
    previous handler back.  Off the main thread: nothing."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    fired = False

    def on_sigterm(signum: int, frame: object) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated

    previous = signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)

    return restore
