"""The ``escrow`` console script sets the collector for a short command, then runs the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_python(script: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """``python -c script args…`` in the checkout; its output captured unless redirected."""
    kwargs.setdefault("capture_output", "stdout" not in kwargs)
    return subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, timeout=60, **kwargs)


def test_the_console_script_is_the_entry_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["escrow"] == "escrow.cli.entry:main"


def test_the_entry_raises_the_collector_threshold_before_the_cli_is_imported() -> None:
    script = (
        "import atexit, gc, sys\n"
        "sys.argv = ['escrow', '--version']\n"
        "from escrow.cli.entry import main\n"
        "assert 'click' not in sys.modules\n"
        "atexit.register(lambda: print('exit', gc.get_threshold()[0]))\n"
        "main()\n"
    )
    done = run_python(script, text=True)
    assert done.returncode == 0, done.stderr
    from escrow import __version__

    assert done.stdout.splitlines() == [f"escrow, version {__version__}", "exit 200000"]


def test_exit_status_is_the_one_system_exit_gives() -> None:
    from escrow.cli.entry import exit_status

    assert exit_status(None) == 0
    assert exit_status(0) == 0
    assert exit_status(3) == 3
    assert exit_status(256 + 2) == 2  # as the kernel keeps it


def test_the_hard_exit_does_what_a_normal_exit_does_first() -> None:
    """Thread pools stop, threads that are not daemons are waited for, exit handlers
    run and buffered output is written before the process ends with the status."""
    script = (
        "import atexit, sys, threading, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pathlib import Path\n"
        "from escrow.cli.entry import hard_exit\n"
        "out = Path(sys.argv[1])\n"
        "pool = ThreadPoolExecutor(1)  # never shut down: its worker must not hang the exit\n"
        "pool.submit(time.sleep, 0.01)\n"
        "def late():\n"
        "    time.sleep(0.3)\n"
        "    (out / 'thread').write_text('done')\n"
        "threading.Thread(target=late).start()\n"
        "atexit.register(lambda: (out / 'atexit').write_text('ran'))\n"
        "sys.stdout.write('x' * 100000)  # buffered, no newline\n"
        "sys.stderr.write('to stderr')\n"
        "hard_exit(5)\n"
        "print('never')\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        done = run_python(script, d)
        assert done.returncode == 5
        assert done.stdout == b"x" * 100000
        assert done.stderr == b"to stderr"
        assert (Path(d) / "thread").read_text() == "done"
        assert (Path(d) / "atexit").read_text() == "ran"


def test_a_message_given_to_system_exit_is_printed_and_exits_1() -> None:
    script = (
        "import sys\n"
        "sys.argv = ['escrow', '--version']\n"
        "import escrow.cli.main as m\n"
        "def boom(): raise SystemExit('escrow: stopped')\n"
        "m.main = boom\n"
        "from escrow.cli.entry import main\n"
        "main()\n"
    )
    done = run_python(script, text=True)
    assert done.returncode == 1
    assert done.stderr == "escrow: stopped\n"


def _with_reader_gone(script: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """Run ``script`` with stdout a pipe whose reader has gone (``| head -1`` that has quit)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(kwargs.pop("env", {}))
    try:
        return run_python(script, *args, env=env, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)


def test_output_to_a_closed_pipe_ends_quietly() -> None:
    """The final flush finds stdout's reader gone: no traceback, status 141 (as git's)."""
    script = (
        "import sys\n"
        "from escrow.cli.entry import hard_exit\n"
        "sys.stdout.write('line\\n')\n"
        "hard_exit(0)\n"
    )
    done = _with_reader_gone(script)
    assert done.returncode == 141
    assert done.stderr == b""


def test_a_full_disk_at_the_final_flush_is_still_python_s_120() -> None:
    script = "import sys\nfrom escrow.cli.entry import hard_exit\nprint('x')\nhard_exit(0)\n"
    with open("/dev/full", "wb") as full:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        done = run_python(script, env=env, stdout=full, stderr=subprocess.PIPE)
    assert done.returncode == 120


ENTRY = (
    "import sys\nfrom escrow.cli.entry import main\nsys.argv = ['escrow', *sys.argv[1:]]\nmain()\n"
)


def test_a_command_whose_reader_went_away_ends_with_141_not_1(escrow_home: Path) -> None:
    """``escrow log | head -1``: click ended it with status 1 ("a check failed")."""
    for args in (["log"], ["log", "--json"], ["ledger", "checkpoint"], ["keys", "list"]):
        done = _with_reader_gone(ENTRY, *args)
        assert (done.returncode, done.stderr) == (141, b""), args


def test_help_and_version_to_a_reader_gone_end_with_141() -> None:
    for args in (["--help"], ["--version"], ["ledger", "--help"]):
        done = _with_reader_gone(ENTRY, *args)
        assert (done.returncode, done.stderr) == (141, b""), args


def test_a_broken_pipe_that_is_not_stdout_is_said_as_an_environment_error() -> None:
    """A connection that breaks (a socket's EPIPE) is not a reader gone: click ended the
    command silently with status 1."""
    script = (
        "import errno, sys, click\n"
        "from escrow.cli.main import cli, main\n"
        "@cli.command('boom')\n"
        "def boom():\n"
        "    raise BrokenPipeError(errno.EPIPE, 'Broken pipe')\n"
        "import escrow.cli.main as m\n"
        "m.COMMANDS['boom'] = 'escrow.cli.main:boom'\n"
        "m.boom = boom\n"
        "main(['boom'])\n"
    )
    done = run_python(script, text=True)
    assert done.returncode == 3
    assert done.stderr.startswith("escrow: error: ") and "Broken pipe" in done.stderr
