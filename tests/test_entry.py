"""The ``escrow`` console script sets the collector for a short command, then runs the CLI."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_console_script_is_the_entry_module() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["escrow"] == "escrow.cli.entry:main"


def test_the_entry_raises_the_collector_threshold_before_the_cli_is_imported() -> None:
    script = (
        "import gc, sys\n"
        "sys.argv = ['escrow', '--version']\n"
        "from escrow.cli.entry import main\n"
        "assert 'click' not in sys.modules\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, gc.get_threshold()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    from escrow import __version__

    assert done.stdout.splitlines() == [f"escrow, version {__version__}", "exit 0 200000"]
