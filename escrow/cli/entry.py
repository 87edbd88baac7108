"""The ``escrow`` console script: set the garbage collector for a short-lived command,
run the click group (:func:`escrow.cli.main.main`), and end the process without the
interpreter's teardown.

Importing allocates hundreds of thousands of objects that live as long as the process
(modules, functions, classes); with CPython's default threshold (700) the collector
runs through them over a hundred times before ``escrow build`` can send its build to
the engine.  A higher first-generation threshold, as mypy sets, makes that ~4 ms
(7%) less; cyclic garbage is still collected, less often.  Set here, before the CLI
is imported, and not in :mod:`escrow.cli.main`, which tests and servers import too.

When the command is over, what is left to do is the same as at any exit: stop the
thread pools and wait for the threads that are not daemons, run the exit handlers,
flush stdout and stderr.
This module does exactly that and then ends the process with :func:`os._exit`, as
mypy does: the interpreter's own teardown (freeing every module and object, the
libraries' clean-up) is ~5 ms of every command, after its output is written.
"""

from __future__ import annotations

import gc
import os
import sys


def main() -> None:
    gc.set_threshold(200_000, 30, 30)
    from escrow.cli.main import main as cli_main

    try:
        cli_main()
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    hard_exit(code)


def exit_status(code: object) -> int:
    """The status :class:`SystemExit` gives the process for ``code`` (a message: 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def hard_exit(code: object) -> None:
    """End the process as a normal exit would, without the interpreter's teardown."""
    import atexit
    import threading

    status = exit_status(code)
    # what the interpreter's exit runs first: the threads' exit hooks (thread pools
    # told to stop), then a join of every thread that is not a daemon
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (`>&-`): nothing to flush
            continue
        try:
            stream.flush()
        except OSError as e:  # a closed pipe (`| head -1`) or a full disk (`> /dev/full`)
            if status == 0:
                status = _flush_failed_status(stream is sys.stdout, e)
        except ValueError:  # a closed stream: as at a normal exit
            status = status or 120
    os._exit(status)


def _flush_failed_status(is_stdout: bool, error: OSError) -> int:
    """141 when stdout's reader went away (:mod:`escrow.cli.stdout`), else Python's 120."""
    from escrow.cli.stdout import STATUS, is_closed_stdout

    return STATUS if is_stdout and is_closed_stdout(error) else 120
