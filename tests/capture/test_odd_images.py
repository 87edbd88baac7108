"""Odd images, builds and commands recorded as exactly what went in."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.capture.conftest import inspect, show, write_tree
from tests.conftest import BASE_TAG, run_cli

TAG = "escrow-test/review12"


def _last_index() -> int:
    r = run_cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    data = r.json()
    entries = data["entries"] if isinstance(data, dict) else data
    return int(entries[-1]["index"])


@pytest.fixture(scope="module")
def made_tags(module_home: Path, base_ref: str) -> Iterator[list[str]]:
    """Tags the tests of this module build; removed at its end."""
    tags: list[str] = []
    yield tags
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, timeout=300)


def _build(tmp_path: Path, made_tags: list[str], name: str, dockerfile: str) -> int:
    ctx = write_tree(tmp_path / name, {"Dockerfile": dockerfile})
    tag = f"{TAG}:{name}"
    made_tags.append(tag)
    r = run_cli(["build", "-q", "-t", tag, str(ctx)])
    assert r.exit_code == 0, r.stderr
    return _last_index()


def test_run_output_that_looks_like_the_builders_own_lines_is_output(
    tmp_path: Path, made_tags: list[str]
) -> None:
    """A RUN that prints ``Step 7/9 : …`` or `` ---> ID`` (a nested build's log) made a
    step that never ran, left the real step without its image and dropped its log."""
    lines = [
        "Step 7/9 : RUN fake step",
        " ---> Running in 0123456789ab",
        " ---> deadbeefcafe",
        "Successfully built 0123456789ab",
        "Removing intermediate container 0123456789ab",
        "real output",
    ]
    run = "; ".join(f"echo '{line}'" for line in lines)
    index = _build(tmp_path, made_tags, "spoof", f"FROM {BASE_TAG}\nRUN {run}\nRUN echo second\n")
    steps = show(index)["predicate"]["steps"]
    assert [s["index"] for s in steps] == [1, 2, 3]
    image = inspect(f"{TAG}:spoof")
    parent = subprocess.run(
        ["docker", "history", "-q", "--no-trunc", f"{TAG}:spoof"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert steps[1]["imageId"] == parent
    assert steps[2]["imageId"] == image["Id"]
    r = run_cli(["logs", str(index), "2"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[-len(lines) :] == lines


def test_colour_codes_a_run_writes_to_stdout_are_kept_in_its_log(
    tmp_path: Path, made_tags: list[str]
) -> None:
    """The red the builder wraps stderr in is removed; a reset the command printed on
    its stdout is the command's output, not the builder's, and stays."""
    index = _build(
        tmp_path,
        made_tags,
        "colour",
        f"FROM {BASE_TAG}\nRUN printf '\\033[1mbold\\033[0m plain\\n'; echo to-stderr >&2\n",
    )
    r = run_cli(["logs", str(index), "2"])
    assert r.exit_code == 0, r.stderr
    assert "\x1b[1mbold\x1b[0m plain\n" in r.stdout
    assert "to-stderr\n" in r.stdout
    assert "\x1b[91m" not in r.stdout


def test_a_command_word_that_is_not_utf8_is_recorded(
    tmp_path: Path, module_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command ran, then recording it failed ("cannot be canonicalised"), exit 2:
    the run was lost.  The word is recorded with the byte shown as ``\\xff``."""
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"f": "x"}))
    marker = tmp_path / "ran"
    word = os.fsdecode(b"a\xffb")
    r = run_cli(["record", "--", "sh", "-c", f"touch {marker}; printf %s '{word}'"])
    assert r.exit_code == 0, r.stderr
    assert marker.exists()
    command = show(_last_index())["predicate"]["command"]
    assert command["argv"][2].endswith("printf %s 'a\\xffb'")
    r = run_cli(["logs", str(_last_index())])
    assert r.exit_code == 0, r.stderr


def test_a_command_not_found_whose_name_is_not_utf8_is_recorded(
    tmp_path: Path, module_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It raised UnicodeEncodeError (a traceback) instead of recording exit 127."""
    monkeypatch.chdir(write_tree(tmp_path / "ctx", {"f": "x"}))
    r = run_cli(["record", "--", os.fsdecode(b"no-such-command-\xfe")])
    assert r.exit_code == 127, r.stderr
    statement = show(_last_index())
    assert statement["predicate"]["command"]["argv"] == ["no-such-command-\\xfe"]
    assert statement["subject"][0]["name"] == "command:no-such-command-\\xfe"


def test_record_in_a_folder_whose_name_is_not_utf8(
    tmp_path: Path, module_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The working directory and the default project (the folder's name) are recorded."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/build-\xfe"))
    folder.mkdir()
    monkeypatch.chdir(folder)
    r = run_cli(["record", "--", "true"])
    assert r.exit_code == 0, r.stderr
    predicate = show(_last_index())["predicate"]
    assert predicate["command"]["cwd"].endswith("/build-\\xfe")
    assert predicate["build"]["project"] == "build-\\xfe"


def test_capture_with_a_recipe_whose_path_is_not_utf8(
    tmp_path: Path, module_home: Path, base_ref: str
) -> None:
    recipe = Path(os.fsdecode(bytes(tmp_path) + b"/script-\xfe.sh"))
    recipe.write_text("docker commit ...\n")
    r = run_cli(["capture", "-f", str(recipe), base_ref])
    assert r.exit_code == 0, r.stderr
    inputs = show(_last_index())["predicate"]["inputs"]
    assert inputs["recipe"]["path"].endswith("/script-\\xfe.sh")
    assert inputs["recipe"]["text"] == "docker commit ...\n"
