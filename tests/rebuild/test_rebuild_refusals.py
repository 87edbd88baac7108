"""``escrow rebuild`` of an entry it cannot rebuild says what to do instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from escrow.errors import UsageError
from escrow.rebuild.verify import check_build_args

from .conftest import Recorder
from .test_rebuild import BASE, rebuild


def test_a_recorded_command_is_refused_with_what_to_do(cli: Any, escrow_home: Path) -> None:
    r = cli(["record", "--json", "--", "true"])
    assert r.exit_code == 0, r.stderr
    index = r.json()["index"]
    out = cli(["rebuild", str(index), "--context", str(escrow_home.parent), "-q"])
    assert out.exit_code == 2, out.stderr
    assert f"Entry {index} was recorded by `escrow record`" in out.stderr, out.stderr
    assert f"`escrow diff {index} NEW`" in out.stderr, out.stderr
    assert "Run the command again with `escrow record`" in out.stderr, out.stderr


def test_a_plain_build_arg_given_with_another_value_says_to_leave_it_out() -> None:
    predicate = {"inputs": {"buildArgs": [{"name": "GREETING", "value": "bye"}]}}
    with pytest.raises(UsageError) as e:
        check_build_args(predicate, {"GREETING": "hello"})
    assert "Leave out --build-arg GREETING" in e.value.diagnostics()


@pytest.mark.docker
@pytest.mark.slow
def test_a_rebuild_verdict_is_refused_naming_the_build_it_verified(
    cli: Any, recorder: Recorder
) -> None:
    built = recorder.build({"Dockerfile": BASE + "ENV A=1\n"})
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    verdict = r.json()["entry"]["index"]
    again = cli(["rebuild", str(verdict), "--context", str(built.context), "-q"])
    assert again.exit_code == 2, again.stderr
    assert f"Entry {verdict} is the rebuild verdict of entry {built.index}" in again.stderr
    assert f"`escrow rebuild {built.index}`" in again.stderr, again.stderr
