"""JSON Schema (draft 2020-12) validation of escrow's documents.

Schemas live in ``schemas/<name>.schema.json`` (package data); each ``$id``
is its document's type URI.  Errors name the JSON Pointer of the bad field.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from escrow._resources import data_dir
from escrow.documents.types import SCHEMA_NAMES, STATEMENT_TYPE
from escrow.errors import InputError, SchemaError


def schema_names() -> list[str]:
    return sorted(p.name.removesuffix(".schema.json") for p in data_dir("schemas").glob("*.json"))


@cache
def load_schema(name: str) -> dict[str, Any]:
    path = data_dir("schemas") / f"{name}.schema.json"
    if not path.is_file():
        raise InputError(
            f"There is no schema named {name!r}.",
            hint=f"Known schemas: {', '.join(schema_names())}.",
        )
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate(document: Any, name: str) -> None:
    """Raise :class:`SchemaError` naming the JSON Pointer of the first bad field."""
    error = best_match(_validator(name).iter_errors(document))
    if error is None:
        return
    pointer = "/" + "/".join(str(p) for p in error.absolute_path) if error.absolute_path else ""
    where = pointer or "/ (the document root)"
    raise SchemaError(
        f"The {name} document is invalid at {where}: {error.message}.",
        pointer=pointer,
    )


def predicate_schema_name(predicate_type: str) -> str:
    try:
        return SCHEMA_NAMES[predicate_type]
    except KeyError:
        raise SchemaError(
            f"Unknown predicate type {predicate_type!r}.",
            pointer="/predicateType",
            hint=f"escrow records: {', '.join(sorted(SCHEMA_NAMES))}.",
        ) from None


def validate_statement(statement: Any) -> str:
    """Validate an in-toto Statement v1 and its escrow predicate; return the predicate type."""
    if not isinstance(statement, dict):
        raise SchemaError("The statement is not a JSON object.", pointer="")
    if statement.get("_type") != STATEMENT_TYPE:
        raise SchemaError(
            f"The document is not an in-toto Statement v1 (_type must be {STATEMENT_TYPE!r}).",
            pointer="/_type",
        )
    validate(statement, "statement")
    ptype = str(statement["predicateType"])
    validate(statement, predicate_schema_name(ptype))
    return ptype
