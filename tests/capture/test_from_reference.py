"""A ``FROM`` whose variables leave a malformed image reference
(``FROM base:${TAG}`` with ``ARG TAG`` and no ``--build-arg TAG``) is one sentence
naming the empty variable, before the build (exit 2) -- not an attempt to pull
``base:`` from a registry (the engine itself says only "invalid reference format")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from escrow.capture import dockerfile as dfparse
from escrow.errors import InputError
from tests.conftest import BASE_TAG

from .conftest import write_tree


def test_an_empty_tag_variable_is_named() -> None:
    with pytest.raises(InputError) as e:
        dfparse.parse("ARG TAG\nFROM escrow-test/base:${TAG}\nRUN true\n")
    assert e.value.message == (
        "The FROM on line 2 of the Dockerfile expands to 'escrow-test/base:', which is not "
        "an image reference ($TAG is empty)."
    )
    assert e.value.hint is not None and "--build-arg" in e.value.hint


def test_a_variable_given_with_build_arg_or_a_default_is_fine() -> None:
    df = dfparse.parse("ARG TAG\nFROM escrow-test/base:${TAG}\n", {"TAG": "latest"})
    assert df.stages[0].reference == "escrow-test/base:latest"
    image_id = "sha256:" + "ab" * 32
    df = dfparse.parse(f"ARG B={image_id}\nFROM $B AS x\nFROM x\n")
    assert df.stages[0].reference == image_id and df.stages[1].from_stage == 0
    df = dfparse.parse("ARG R=127.0.0.1:5000/team/app@sha256:" + "c" * 64 + "\nFROM ${R}\n")
    assert df.stages[0].is_image


def test_two_empty_variables_are_both_named() -> None:
    with pytest.raises(InputError) as e:
        dfparse.parse("ARG REG\nARG TAG\nFROM ${REG}/app:${TAG}\n")
    assert "($REG, $TAG are empty)" in e.value.message


@pytest.mark.docker
def test_escrow_build_stops_before_the_build_with_exit_2(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    base = BASE_TAG.split(":")[0]
    ctx = write_tree(tmp_path / "c", {"Dockerfile": f"ARG V\nFROM {base}:${{V}}\nRUN true\n"})
    before = cli(["log", "--json"]).stdout
    r = cli(["build", str(ctx), "-t", "escrow-test/review10-from:1", "--no-deposit"])
    assert r.exit_code == 2, r.stderr
    assert "which is not an image reference ($V is empty)" in r.stderr
    assert "pulled" not in r.stderr and "Traceback" not in r.stderr
    assert cli(["log", "--json"]).stdout == before  # nothing recorded


def test_a_reference_with_an_empty_tag_is_malformed() -> None:
    import pytest

    from escrow.errors import InputError
    from escrow.registry.reference import Reference

    with pytest.raises(InputError, match="empty tag"):
        Reference.parse("escrow-test/base:")
    assert Reference.parse("localhost:5000/team/app").tag is None
    assert Reference.parse("localhost:5000/team/app:1.0").tag == "1.0"
