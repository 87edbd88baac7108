"""SLSA export of an ``escrow record`` entry: the command line is in externalParameters.

``escrow record`` keeps the command at ``predicate.command`` (not under ``inputs``); the export
read ``inputs.command`` and so left it out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import escrow.documents.slsa as slsa
from escrow.documents.schemas import validate_document
from escrow.documents.types import SLSA_PROVENANCE

from .conftest import ASSETS, load

REPO = Path(__file__).resolve().parents[2]
ORACLE = Draft202012Validator(load(ASSETS / "slsa-provenance-v1.schema.json"))


@pytest.fixture
def recorded_command(
    cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> int:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "input.txt").write_text("hello\n")
    monkeypatch.chdir(ctx)
    r = cli(["record", "--context", ".", "--json", "--", "sh", "-c", "echo built; exit 0"])
    assert r.exit_code == 0, r.stderr
    index: int = r.json()["index"]
    return index


def test_export_of_a_record_entry_has_its_command(cli: Any, recorded_command: int) -> None:
    r = cli(["export", "--slsa", str(recorded_command)])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert sorted(e.message for e in ORACLE.iter_errors(doc)) == []
    assert validate_document(doc) == SLSA_PROVENANCE
    ext = doc["predicate"]["buildDefinition"]["externalParameters"]
    assert ext["kind"] == "command"
    assert ext["command"] == ["sh", "-c", "echo built; exit 0"]
    assert ext["cwd"] == os.path.realpath(os.getcwd())

    shown = cli(["show", str(recorded_command), "--json"]).json()
    statement = shown.get("statement") or shown
    log = statement["predicate"]["command"]["log"]
    byproducts = {b["name"]: b for b in doc["predicate"]["runDetails"]["byproducts"]}
    assert byproducts["command.log"]["digest"] == {"sha256": log["sha256"]}


def test_kinds_named_in_docstring_and_docs_are_the_schemas() -> None:
    schema = json.loads((REPO / "schemas" / "build-manifest.schema.json").read_text())
    kinds = schema["$defs"]["build"]["properties"]["kind"]["enum"]
    assert sorted(kinds) == ["command", "dockerfile", "image"]
    doc = slsa.__doc__ or ""
    md = (REPO / "docs" / "slsa.md").read_text()
    for kind in kinds:
        assert f"``{kind}``" in doc, kind
        assert f"`{kind}`" in md, kind
    for stale in ("``capture``/", "/``record``"):
        assert stale not in doc
    assert "`externalParameters.command`" in md
