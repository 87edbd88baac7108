"""The jsonschema_rs fast path gives the same verdicts and messages as jsonschema."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from escrow.documents import schemas
from escrow.errors import SchemaError

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    return data


def test_shipped_schemas_are_valid_against_the_meta_schema() -> None:
    schemas.check_schemas()  # raises jsonschema.SchemaError on a bad schema


@pytest.mark.parametrize("name", schemas.schema_names())
def test_every_schema_compiles_for_the_fast_path(name: str) -> None:
    assert schemas._fast_validator(name) is not None


def test_a_valid_manifest_is_accepted_by_the_fast_path_alone() -> None:
    st = _manifest()
    assert schemas._fast_valid(st, ("statement", "build-manifest"), None)
    raw = json.dumps(st).encode()
    assert schemas.plain_json_text(raw)
    assert schemas.validate_statement(st, source=raw) == st["predicateType"]


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/a\x1cb",  # Python's \s matches U+001C, Rust's does not
        "https://example.com/a\x85b",  # likewise U+0085
    ],
)
def test_regex_differences_fall_back_to_jsonschema(value: str) -> None:
    st = _manifest()
    # Find a field whose schema pattern is ^[a-z][a-z0-9+.-]*:[^\s]+$ by trying each string.
    rejected = None
    for path, old in _strings(st):
        if not old.startswith("https://"):
            continue
        doc = copy.deepcopy(st)
        _set(doc, path, value)
        try:
            schemas.validate_statement(doc)
        except SchemaError as e:
            rejected = e
            break
    assert rejected is not None, "no URI field rejects a URI holding Python whitespace"
    assert not schemas._plain_json(doc)
    assert not schemas.plain_json_text(json.dumps(doc).encode())


def test_a_tuple_is_not_an_array_for_the_fast_path() -> None:
    st = _manifest()
    st["subject"] = tuple(st["subject"])
    assert not schemas._plain_json(st)
    with pytest.raises(SchemaError, match="/subject"):
        schemas.validate_statement(st)


def test_an_invalid_manifest_gets_the_jsonschema_message() -> None:
    st = _manifest()
    st["subject"][0]["digest"]["sha256"] = "xyz"
    with pytest.raises(SchemaError) as caught:
        schemas.validate_statement(st, source=json.dumps(st).encode())
    assert caught.value.pointer == "/subject/0/digest/sha256"
    assert "does not match the pattern ^[0-9a-f]{64}$" in str(caught.value)


def test_a_date_time_the_rust_formats_reject_is_still_decided_by_jsonschema() -> None:
    """A 30 February passes the schema's pattern; the Rust date-time format rejects it, so
    jsonschema decides, and words the error (it checks date-time itself, without the
    optional rfc3339-validator: tests/test_hunt_interop.py)."""
    st = _manifest()
    path = next(p for p, v in _strings(st) if v[:2] == "20" and v.endswith("Z"))
    _set(st, path, "2024-02-30T00:00:00Z")
    fast = schemas._fast_validator("build-manifest")
    assert fast is not None and not fast.is_valid(st)
    with pytest.raises(SchemaError, match="'2024-02-30T00:00:00Z' is not a 'date-time'"):
        schemas.validate_statement(st)


def _strings(x: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    if isinstance(x, str):
        return [(path, x)]
    if isinstance(x, dict):
        return [s for k, v in x.items() for s in _strings(v, (*path, k))]
    if isinstance(x, list):
        return [s for i, v in enumerate(x) for s in _strings(v, (*path, i))]
    return []


def _set(doc: Any, path: tuple[Any, ...], value: str) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value
