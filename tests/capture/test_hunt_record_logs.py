"""``escrow logs``: binary output exactly in ``--json``, a step that printed nothing
said so, and a captured image's entry named for what it is."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tests.capture.conftest import write_tree
from tests.conftest import BASE_TAG


def _record(cli: Any, *argv: str) -> int:
    r = cli(["record", "-q", "--json", "--", *argv])
    assert r.exit_code == 0, r.stderr
    return int(r.json()["index"])


def test_json_gives_binary_output_exactly(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    data = bytes(range(256)) + b"\xff\xfe no newline"
    (tmp_path / "out.bin").write_bytes(data)
    index = _record(cli, "cat", str(tmp_path / "out.bin"))
    r = cli(["logs", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    (item,) = r.json()["logs"]
    assert item["exact"] is False
    assert base64.b64decode(item["base64"]) == data
    assert item["text"] == data.decode("utf-8", errors="replace")


def test_json_text_of_a_utf8_log_is_exact(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    index = _record(cli, "printf", "h\u00e9llo")
    (item,) = cli(["logs", str(index), "--json"]).json()["logs"]
    assert item["exact"] is True and item["text"] == "h\u00e9llo"
    assert "base64" not in item


def test_a_step_that_printed_nothing_is_said_so(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    index = _record(cli, "true")
    for args in ([str(index)], [str(index), "1"]):
        r = cli(["logs", *args])
        assert r.exit_code == 0, r.stderr
        assert r.stdout == ""
        assert "step 1 printed nothing" in r.stderr


def test_a_step_that_printed_something_is_not_said_empty(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"a.txt": "a\n"}))
    index = _record(cli, "echo", "hello")
    r = cli(["logs", str(index), "1"])
    assert r.stdout == "hello\n"
    assert "printed nothing" not in r.stderr


@pytest.mark.docker
def test_logs_of_a_captured_image_say_it_was_captured(
    escrow_home: Path, cli: Any, base_image: str
) -> None:
    r = cli(["capture", BASE_TAG, "--json"])
    assert r.exit_code == 0, r.stderr
    r = cli(["logs", str(r.json()["index"])])
    assert r.exit_code == 2
    assert "escrow capture" in r.stderr
    assert "not a build" not in r.stderr
    assert r.stdout == ""
    assert os.linesep not in r.stderr.strip()


def test_a_directory_given_as_the_command_is_named_a_directory(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a shell does (126, "Is a directory"), not exec's bare "Permission denied"."""
    ctx = write_tree(tmp_path / "ctx", {"tools/a.txt": "a\n"})
    monkeypatch.chdir(ctx)
    r = cli(["record", "--json", "--", "./tools"])
    assert r.exit_code == 126
    assert "escrow: cannot run ./tools: it is a directory" in r.stderr
    assert "Permission denied" not in r.stderr
    log = cli(["logs", str(r.json()["index"]), "1"]).stdout
    assert log == "escrow: cannot run ./tools: it is a directory\n"
