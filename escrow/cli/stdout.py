"""Stdout whose reader went away (``escrow log | head -1``).

A command whose output nobody reads any more ends quietly with status 141, as a process
ended by ``SIGPIPE`` shows in the shell (``git log | head -1``, coreutils): not 1, which
says that a check failed, nor Python's 120.  ``escrow`` keeps ``SIGPIPE`` ignored (as
Python sets it) rather than dying on the signal: a recording command must finish its
append, whatever happens to its reader, before it ends.
"""

from __future__ import annotations

import errno
import os
import select
import sys

#: the exit status when stdout's reader went away: 128 + SIGPIPE, as the shell shows it
STATUS = 141


class Closed(Exception):
    """Stdout's reader went away: end quietly with :data:`STATUS`."""


def reader_gone(fd: int | None = None) -> bool:
    """Whether the reader of the pipe on ``fd`` (default: stdout) has gone away.

    Linux reports ``POLLERR`` on the write end of a pipe whose read end is closed
    (poll(2)); a ``Broken pipe`` from anything else (a socket) is not stdout's.
    """
    try:
        fd = sys.stdout.fileno() if fd is None else fd
    except (AttributeError, OSError, ValueError):
        return False  # not a file descriptor (an in-process capture)
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are reported without being asked for
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(ev & select.POLLERR for _, ev in events)


def is_closed_stdout(error: BaseException) -> bool:
    """``error`` is a ``Broken pipe`` because stdout's reader went away."""
    return isinstance(error, OSError) and error.errno == errno.EPIPE and reader_gone()


def discard() -> None:
    """Send whatever is still written to stdout (buffered text, the final flush) nowhere,
    once its reader is gone, as the interpreter would otherwise fail at exit."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a file descriptor (an in-process capture): nothing to redirect
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


# -- what is written, whatever the locale ------------------------------------------------
#
# Two kinds of output, two rules, for stdout and stderr in any encoding (a Latin-1 locale,
# ``PYTHONIOENCODING=ascii``):
#
# * an exact format (a signed checkpoint note, a verifier key, a leaf, an exported
#   document, a JSON document) is written as its UTF-8 bytes by :func:`write_bytes`: a
#   verifier given a checkpoint re-encoded to Latin-1 (or with its "—" escaped) fails;
# * human text (results, messages, help) is written in the stream's encoding, a character
#   it lacks readably (:data:`escrow.text.READABLE`: "…" as "...", "é" as "\xe9"), and
#   never ends the command in a ``UnicodeEncodeError``.


def readable_streams() -> None:
    """Make stdout and stderr write what their encoding lacks readably, as
    :data:`escrow.text.READABLE` does, instead of failing (stdout) or escaping it as
    ``\\u2026`` (stderr)."""
    from escrow.text import READABLE

    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:  # closed (`>&-`), or an in-process capture
            continue
        try:
            reconfigure(errors=READABLE)
        except (OSError, ValueError):  # its reader is gone, or it is closed: as it is
            pass


def write_bytes(data: bytes) -> None:
    """Write ``data`` to stdout as exactly these bytes, whatever its encoding; nothing when
    the command was started with stdout closed (`>&-`), as ``print`` does."""
    out = sys.stdout
    if out is None:
        return
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a text-only stdout (an in-process capture): it holds text
        out.write(data.decode("utf-8", "surrogateescape"))
        out.flush()
        return
    out.flush()  # what was written as text before goes first
    buffer.write(data)
    buffer.flush()
