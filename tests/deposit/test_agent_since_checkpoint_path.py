"""`--since-checkpoint` given something that is not a regular file: a FIFO was read until a
writer closed it (forever, when none ever came), a device without end; each is now refused
with one sentence, exit 2, before anything else is done."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A FIFO whose writer (a thread) closes it at once if escrow ever opens it to read: an
    escrow that reads it then sees an empty file instead of hanging the test."""
    path = tmp_path / "saved.fifo"
    os.mkfifo(path)
    writer = threading.Thread(target=lambda: open(path, "wb").close(), daemon=True)
    writer.start()
    yield path
    # a reader held open until the writer is done lets its open return, whether it has
    # reached it yet or not (closing the reader at once could come before, and leave it
    # blocked for ever)
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer.join(timeout=60)
    finally:
        os.close(reader)
    assert not writer.is_alive()


@pytest.mark.parametrize("command", ["import", "export"])
def test_since_checkpoint_fifo_is_refused_in_one_sentence(
    escrow_home: Path, tmp_path: Path, fifo: Path, command: str
) -> None:
    target = ["import", str(tmp_path / "d.tar")] if command == "import" else ["export", "0"]
    extra = ["-o", str(tmp_path / "out.tar")] if command == "export" else []
    r = run_cli(["deposit", *target, *extra, "--since-checkpoint", str(fifo)])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip() == (
        f"escrow: error: The saved checkpoint {fifo} is a FIFO, not a file holding a "
        "checkpoint note."
    )
    assert not (tmp_path / "out.tar").exists()


def test_since_checkpoint_device_and_empty_file(escrow_home: Path, tmp_path: Path) -> None:
    r = run_cli(["deposit", "import", str(tmp_path / "d.tar"), "--since-checkpoint", "/dev/null"])
    assert r.exit_code == 2, r.stderr
    assert "The saved checkpoint /dev/null is a device, not a file" in r.stderr
    empty = tmp_path / "saved.txt"
    empty.write_text("")
    r = run_cli(["deposit", "import", str(tmp_path / "d.tar"), "--since-checkpoint", str(empty)])
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip() == (
        f"escrow: error: The saved checkpoint {empty} is empty, not a checkpoint note."
    )
