"""`escrow build` and a deposit store that fails: before the build, nothing is built; during
it, the build is recorded all the same and the deposit can be made later."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG

from .conftest import write_tree

pytestmark = pytest.mark.docker

TAG = "escrow-test/deposit-store-errors:1"


def _builds(cli: Any) -> list[dict[str, Any]]:
    r = cli(["log", "--kind", "build-manifest", "--json"])
    assert r.exit_code == 0, r.stderr
    return list(r.json()["entries"])


@pytest.fixture
def context(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "app", {"Dockerfile": f"FROM {BASE_TAG}\nRUN echo built > /built\n"}
    )


@pytest.mark.parametrize("where", ["under-a-file", "unreachable-registry"])
def test_a_store_that_cannot_be_opened_stops_the_build_before_it_starts(
    escrow_home: Path, cli: Any, base_image: str, context: Path, tmp_path: Path, where: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = str(blocker / "deposits") if where == "under-a-file" else "oci://127.0.0.1:1/x/y"
    r = cli(["build", str(context), "-t", TAG, "--deposit-store", store])
    assert r.exit_code == 3, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one sentence, no step ran
    assert ("deposit store" in r.stderr) if where == "under-a-file" else ("127.0.0.1:1" in r.stderr)
    assert _builds(cli) == []


def test_a_store_that_fails_during_the_build_leaves_the_build_recorded(
    escrow_home: Path, cli: Any, base_image: str, context: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "tmp").write_text("in the way of the store's spool folder")
    r = cli(["build", str(context), "-t", TAG, "--deposit-store", str(store), "--json"])
    assert r.exit_code == 3, r.stderr
    result = r.json()
    assert result["status"] == "succeeded" and result["image_id"].startswith("sha256:")
    assert result["deposit"]["complete"] is False
    assert "Cannot write to the deposit store" in result["deposit"]["error"]
    message = r.stderr.strip().splitlines()[-1]
    assert f"Cannot write to the deposit store {store}" in message
    assert f"recorded as ledger entry {result['index']}, without a deposit" in message
    assert [e["index"] for e in _builds(cli)] == [result["index"]]
    shown = cli(["show", str(result["index"]), "--json"]).json()["statement"]
    assert shown["predicate"]["layers"]  # the config came from the engine instead
    (store / "tmp").unlink()
    # the command the message gives, as it gives it (it said only `escrow deposit N`, which
    # then lacked the context and the store)
    later = re.search(r"\(`(escrow deposit [^`]+)` makes it later\)", message)
    assert later is not None, message
    words = shlex.split(later.group(1))
    assert words[:3] == ["escrow", "deposit", str(result["index"])]
    done = cli(words[1:])
    assert done.exit_code == 0, done.stderr
    check = cli(["deposit", "check", str(result["index"]), "--deposit-store", str(store)])
    assert check.exit_code == 0, check.stderr
