"""Schemas: one per document type, $id = type URI defined once, errors that name the field."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from escrow._resources import data_dir
from escrow.documents import types
from escrow.documents.canonical import canonical_bytes
from escrow.documents.schemas import (
    load_schema,
    problems,
    resolve_name,
    schema_names,
    statement_problems,
    validate_document,
    validate_statement,
)
from escrow.errors import InputError, SchemaError
from escrow.signing.dsse import Envelope, sign_statement
from escrow.signing.keys import SigningKey

from .conftest import DOCS, fixture_files, load

ESCROW_SRC = Path(__file__).parent.parent.parent / "escrow"


@pytest.mark.parametrize("name", sorted(types.SCHEMA_IDS))
def test_every_document_type_has_a_schema_whose_id_is_its_type_uri(name: str) -> None:
    path = data_dir("schemas") / f"{name}.schema.json"
    assert path.is_file(), f"schemas/{name}.schema.json is missing"
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == types.SCHEMA_IDS[name]
    assert resolve_name(types.SCHEMA_IDS[name]) == name


def test_every_shipped_schema_is_a_known_document_type() -> None:
    assert set(schema_names()) <= set(types.SCHEMA_IDS)


@pytest.mark.parametrize("uri", sorted(set(types.SCHEMA_IDS.values())))
def test_type_uris_are_defined_once(uri: str) -> None:
    """Only escrow/documents/types.py spells a document type URI out."""
    spelled = [
        str(p.relative_to(ESCROW_SRC))
        for p in ESCROW_SRC.rglob("*.py")
        if p.name != "types.py" and uri in p.read_text(encoding="utf-8")
    ]
    assert spelled == []


def test_a_schema_with_the_wrong_id_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(types.SCHEMA_IDS, "statement", "https://example.com/other")
    load_schema.cache_clear()
    try:
        with pytest.raises(InputError, match=r"declares \$id"):
            load_schema("statement")
    finally:
        monkeypatch.undo()
        load_schema.cache_clear()


# -- fixtures: valid, canonical, and round-trip unchanged ----------------------
@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_fixture_validates_and_round_trips(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    doc = json.loads(text)
    ptype = validate_document(doc)
    assert ptype == doc["predicateType"]
    assert statement_problems(doc) == (types.DOCUMENT_SCHEMAS[ptype], [])
    # dump/load through the canonical form and through a signed envelope: unchanged
    canonical = canonical_bytes(doc)
    assert json.loads(canonical) == doc
    assert canonical_bytes(json.loads(canonical)) == canonical
    assert json.loads(json.dumps(doc, indent=2)) == doc
    env = sign_statement(doc, SigningKey.generate())
    assert Envelope.from_bytes(env.to_bytes()).read_statement() == doc


# -- bad statements: one clear error naming the JSON Pointer -------------------
def _set(doc: dict[str, Any], pointer: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = pointer.strip("/").split("/")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


_DELETE = object()

BAD = [
    ("not-a-statement", "/_type", _DELETE, "/_type", "not an in-toto Statement v1"),
    (
        "wrong-statement-type",
        "/_type",
        "https://in-toto.io/Statement/v0.1",
        "/_type",
        "Statement v1",
    ),
    (
        "unknown-predicate-type",
        "/predicateType",
        "https://example.com/x/v1",
        "/predicateType",
        "Unknown predicate type",
    ),
    ("predicate-type-not-uri", "/predicateType", "not a uri", "/predicateType", "pattern"),
    (
        "subject-without-digest",
        "/subject/0/digest",
        _DELETE,
        "/subject/0/digest",
        "a required property is missing",
    ),
    (
        "subject-digest-without-sha256",
        "/subject/0/digest",
        {"sha512": "ab"},
        "/subject/0/digest/sha256",
        "a required property is missing",
    ),
    (
        "subject-digest-not-hex",
        "/subject/0/digest/sha256",
        "sha256:" + "a" * 64,
        "/subject/0/digest/sha256",
        "does not match",
    ),
    ("no-subject", "/subject", [], "/subject", "expected at least 1 item(s)"),
    ("no-predicate", "/predicate", _DELETE, "/predicate", "a required property is missing"),
    (
        "verdict-not-an-enum",
        "/predicate/verdict/overall",
        "same",
        "/predicate/verdict/overall",
        'expected one of "identical", "equivalent", "different"',
    ),
    (
        "time-not-rfc3339-utc",
        "/predicate/rebuild/startedOn",
        "2027-03-01 09:00:00+01:00",
        "/predicate/rebuild/startedOn",
        "does not match",
    ),
    (
        "size-a-float",
        "/predicate/rebuild/layers/0/size",
        1.5,
        "/predicate/rebuild/layers/0/size",
        "expected integer, got a number 1.5",
    ),
    (
        "size-beyond-2**53",
        "/predicate/rebuild/layers/0/size",
        2**53,
        "/predicate/rebuild/layers/0/size",
        "expected a number ≤ 9007199254740991",
    ),
    (
        "leaf-hash-missing",
        "/predicate/original/leafHash",
        _DELETE,
        "/predicate/original/leafHash",
        "a required property is missing",
    ),
    (
        "difference-kind-unknown",
        "/predicate/verdict/layers/2/differences/0/kind",
        "renamed",
        "/predicate/verdict/layers/2/differences/0/kind",
        "expected one of",
    ),
    (
        "different-without-differences",
        "/predicate/verdict/layers/2/differences",
        _DELETE,
        "/predicate/verdict/layers/2/differences",
        "a required property is missing",
    ),
]


@pytest.mark.parametrize(
    ("pointer", "value", "expected_pointer", "fragment"),
    [b[1:] for b in BAD],
    ids=[b[0] for b in BAD],
)
def test_bad_statements_get_one_error_naming_the_field(
    rebuild_doc: dict[str, Any], pointer: str, value: Any, expected_pointer: str, fragment: str
) -> None:
    bad = _set(rebuild_doc, pointer, value)
    with pytest.raises(SchemaError) as e:
        validate_statement(bad)
    assert e.value.pointer == expected_pointer
    message = e.value.diagnostics()
    assert fragment in message
    assert "\n" not in message
    assert e.value.exit_code == 2
    # and signing refuses it: nothing is signed
    with pytest.raises(SchemaError):
        sign_statement(bad, SigningKey.generate())


VERDICT_RULES = [
    (
        "equivalent-layer-without-normalisations",
        "equivalent",
        2,
        {"verdict": "equivalent"},
        "/predicate/verdict/layers/2/normalisations",
    ),
    (
        "identical-overall-with-a-different-layer",
        "identical",
        2,
        {"verdict": "different", "differences": []},
        "/predicate/verdict/layers/2/verdict",
    ),
    ("not-reproduced-without-failure", "not-reproduced", None, None, "/predicate/verdict/failure"),
    ("unknown-without-missing-inputs", "unknown", None, None, "/predicate/verdict/missing"),
]


@pytest.mark.parametrize(
    ("overall", "layer", "change", "pointer"),
    [v[1:] for v in VERDICT_RULES],
    ids=[v[0] for v in VERDICT_RULES],
)
def test_verdict_rules(
    rebuild_doc: dict[str, Any], overall: str, layer: int | None, change: Any, pointer: str
) -> None:
    doc = copy.deepcopy(rebuild_doc)
    v = doc["predicate"]["verdict"]
    v["overall"] = overall
    v.pop("config", None)
    if layer is not None:
        for i, lv in enumerate(v["layers"]):
            if i == layer:
                lv.pop("differences", None)
                lv.update(change)
            else:
                lv.update({"verdict": "identical"})
    found = problems(doc, "rebuild-verification")
    assert [p.pointer for p in found] == [pointer], found


def test_different_needs_something_different(rebuild_doc: dict[str, Any]) -> None:
    doc = copy.deepcopy(rebuild_doc)
    v = doc["predicate"]["verdict"]
    v["config"] = []
    for lv in v["layers"]:
        lv.pop("differences", None)
        lv["verdict"] = "identical"
    found = problems(doc, "rebuild-verification")
    assert [p.pointer for p in found] == ["/predicate/verdict/config"], found
    v["config"] = [{"field": "Cmd", "original": ["a"], "rebuilt": ["b"]}]
    assert problems(doc, "rebuild-verification") == []


def test_problems_lists_every_bad_field(rebuild_doc: dict[str, Any]) -> None:
    doc = _set(rebuild_doc, "/subject/0/digest", _DELETE)
    doc = _set(doc, "/predicate/project", 7)
    name, found = statement_problems(doc)
    assert name == "rebuild-verification"
    assert [p.pointer for p in found] == ["/predicate/project", "/subject/0/digest"]


def test_pointers_escape_slash_and_tilde() -> None:
    doc = load(DOCS / "rebuild-verification.different.json")
    doc["predicate"]["verdict"]["config"][0]["field"] = ""
    doc["predicate"]["rebuild"]["builder"]["engine"] = {"a/b~c": 1}
    assert [p.pointer for p in problems(doc, "rebuild-verification")] == [
        "/predicate/verdict/config/0/field"
    ]
    assert re.sub(r"~1", "/", "a~1b~0c").replace("~0", "~") == "a/b~c"


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"a": {"b/c": [1, 2**53]}}, "at /a/b~1c/1: the integer 9007199254740992"),
        ({"t": float("inf")}, "at /t: inf is not a JSON number"),
        ({"ns": -(2**60)}, "at /ns:"),
    ],
    ids=["integer-2**53", "infinity", "nanoseconds"],
)
def test_canonical_json_refuses_what_jcs_cannot_carry(document: Any, fragment: str) -> None:
    with pytest.raises(InputError) as e:
        canonical_bytes(document)
    assert fragment in e.value.diagnostics()


def test_canonical_json_is_rfc8785() -> None:
    # keys sorted by UTF-16 code units (U+20AC before the surrogate pair of U+1F600),
    # no whitespace, ES6 number form, minimal escapes
    doc = {"b": [1, 1.5, 1e21, -0.0], "a": "é\u2028\n", "\u20ac": 1, "\U0001f600": 2}
    assert canonical_bytes(doc) == (
        '{"a":"é\u2028\\n","b":[1,1.5,1e+21,0],"\u20ac":1,"\U0001f600":2}'.encode()
    )
