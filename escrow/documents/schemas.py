"""JSON Schema (draft 2020-12) validation of escrow's documents.

Schemas live in ``schemas/<name>.schema.json`` (package data); each ``$id``
is its document's type URI, as listed once in :data:`escrow.documents.types.SCHEMA_IDS`.
Schemas may ``$ref`` one another by ``$id``; nothing is fetched from the network.

Errors name the JSON Pointer (RFC 6901) of the bad field and what was expected.

Valid documents take a fast path: ``jsonschema_rs`` (Rust), compiled once per process
against the same schemas, registry and format checks.  Its verdict is trusted only when
it says *valid* and the document is plain JSON whose strings are printable ASCII (where
Python's and Rust's regular expressions agree, e.g. on ``\\s``); anything else goes
through ``jsonschema``, which decides and words every error exactly as before.
Meta-schema checks of the shipped schemas run in the test suite, not on every load.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import TYPE_CHECKING, Any

from escrow._resources import data_dir
from escrow.documents.types import DOCUMENT_SCHEMAS, SCHEMA_IDS, SCHEMA_NAMES, STATEMENT_TYPE
from escrow.errors import InputError, SchemaError

if TYPE_CHECKING:  # jsonschema is imported only to decide and explain what the fast path cannot
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

_MAX_SHOWN = 80  # characters of an offending value quoted in a message


@dataclass(frozen=True)
class SchemaProblem:
    """One way a document fails its schema."""

    pointer: str  # JSON Pointer of the bad field ("" = the document root)
    message: str  # what was expected, one sentence without a final period

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def schema_names() -> list[str]:
    """Names of the schemas shipped in ``schemas/``."""
    return sorted(p.name.removesuffix(".schema.json") for p in data_dir("schemas").glob("*.json"))


def resolve_name(name_or_uri: str) -> str:
    """Schema name for a name (``build-manifest``), file name or type URI."""
    n = name_or_uri.strip().removesuffix(".json").removesuffix(".schema")
    if n in SCHEMA_IDS or n in schema_names():
        return n
    for name, uri in SCHEMA_IDS.items():
        if uri == name_or_uri.strip():
            return name
    raise _no_schema(name_or_uri)


def _no_schema(name: str) -> InputError:
    return InputError(
        f"There is no schema named {name!r}.",
        hint=f"Known schemas: {', '.join(schema_names())}.",
    )


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name``; its ``$id`` must be the type URI of :data:`SCHEMA_IDS`."""
    path = data_dir("schemas") / f"{name}.schema.json"
    if not path.is_file():
        raise _no_schema(name)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise InputError(f"The schema file {path} is not valid JSON: {e}.") from e
    if not isinstance(schema, dict):
        raise InputError(f"The schema file {path} does not hold a JSON object.")
    expected = SCHEMA_IDS.get(name)
    if expected is not None and schema.get("$id") != expected:
        raise InputError(
            f"The schema file {path} declares $id {schema.get('$id')!r}, not {expected!r}.",
            hint="Each schema's $id must be its document type URI (escrow/documents/types.py).",
        )
    return schema


@cache
def _registry() -> Registry:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for name in schema_names():
        schema = load_schema(name)
        if isinstance(schema.get("$id"), str):
            resources.append((schema["$id"], Resource.from_contents(schema, DRAFT202012)))
    return Registry().with_resources(resources)


#: RFC 3339 §5.6 ``date-time`` (the separator, ``Z`` and ``T`` in either case, §5.6 NOTE)
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.\d+)?"
    r"(?:[Zz]|[+-](\d{2}):(\d{2}))",
    re.ASCII,
)


def is_date_time(value: object) -> bool:
    """JSON Schema's ``date-time`` format (RFC 3339 §5.6): a real date, hours up to 23,
    minutes up to 59, seconds up to 60 (a leap second), an offset of at most 23:59.

    jsonschema checks this format only with the optional ``rfc3339-validator`` installed,
    and passed every string otherwise: ``2026-13-45T25:61:99Z`` was a valid ``startedOn``
    (which ``jsonschema_rs`` refuses), and went on into SLSA provenance as is."""
    if not isinstance(value, str):
        return True  # the format applies to strings only
    m = _DATE_TIME.fullmatch(value)
    if m is None:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    oh, om = m.group(7), m.group(8)
    if hour > 23 or minute > 59 or second > 60:
        return False
    if oh is not None and (int(oh) > 23 or int(om) > 59):
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


@cache
def _format_checker() -> FormatChecker:
    """The draft 2020-12 format checks, with ``date-time`` always checked."""
    from jsonschema import FormatChecker

    checker = FormatChecker()
    checker.checks("date-time")(is_date_time)
    return checker


@cache
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(
        load_schema(name), registry=_registry(), format_checker=_format_checker()
    )


def check_schemas() -> None:
    """Check every shipped schema against its meta-schema (the test suite runs this)."""
    from jsonschema import Draft202012Validator

    for name in schema_names():
        Draft202012Validator.check_schema(load_schema(name))


# -- the fast path ---------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x07\x0b\x0e-\x1f\x7f]")


@cache
def _fast_registry() -> Any:
    import jsonschema_rs

    resources = [(load_schema(n).get("$id"), load_schema(n)) for n in schema_names()]
    return jsonschema_rs.Registry(
        [(u, s) for u, s in resources if isinstance(u, str)], retriever=_offline
    )


def _offline(uri: str) -> Any:
    """Nothing is fetched: every ``$ref`` must name one of escrow's own ``$id`` s."""
    raise ValueError(f"escrow schemas do not fetch {uri!r}")


@cache
def _fast_validator(name: str) -> Any:
    """The ``jsonschema_rs`` validator of ``name``; None when it cannot be compiled."""
    try:
        import jsonschema_rs

        return jsonschema_rs.Draft202012Validator(
            load_schema(name),
            registry=_fast_registry(),
            retriever=_offline,
            validate_formats=True,
        )
    except Exception:  # noqa: BLE001 - no fast path; jsonschema decides everything
        return None


def _plain_json(document: Any) -> bool:
    """True for plain JSON values (no tuples, NaN, non-str keys) with printable-ASCII strings."""
    strings: list[str] = []
    add, add_all = strings.append, strings.extend
    stack = [document]
    pop, push_all = stack.pop, stack.extend
    while stack:
        x = pop()
        t = type(x)
        if t is str:
            add(x)
        elif t is dict:
            add_all(x)
            push_all(x.values())
        elif t is list:
            push_all(x)
        elif t is float:
            if not math.isfinite(x):
                return False
        elif not (t is int or t is bool or x is None):
            return False
    try:
        text = "".join(strings)
    except TypeError:  # a key that is not a string
        return False
    return text.isascii() and _CONTROL.search(text) is None


def plain_json_text(source: bytes | str) -> bool:
    """True when ``json.loads(source)`` can only give what :func:`_plain_json` accepts."""
    raw = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    if not raw.isascii() or b"\x7f" in raw or b"\\u" in raw:
        return False
    return b"NaN" not in raw and b"Infinity" not in raw


def _fast_valid(document: Any, names: tuple[str, ...], plain: bool | None) -> bool:
    """True only when the document is certainly valid against every schema in ``names``."""
    if plain is None:
        plain = _plain_json(document)
    if not plain:
        return False
    for name in names:
        fast = _fast_validator(name)
        if fast is None:
            return False
        try:
            if not fast.is_valid(document):
                return False
        except Exception:  # noqa: BLE001 - let jsonschema decide and explain
            return False
    return True


def _escape(token: object) -> str:
    return str(token).replace("~", "~0").replace("/", "~1")


def _pointer(path: Any) -> str:
    return "".join("/" + _escape(p) for p in path)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}


_BOUNDS = {
    "minItems": ("at least", " item(s)"),
    "maxItems": ("at most", " item(s)"),
    "minLength": ("at least", " character(s)"),
    "maxLength": ("at most", " character(s)"),
    "minimum": ("a number ≥", ""),
    "maximum": ("a number ≤", ""),
    "minProperties": ("at least", " propert(y/ies)"),
}


def _problem(error: ValidationError) -> SchemaProblem:
    pointer = _pointer(error.absolute_path)
    v, expected, inst = error.validator, error.validator_value, error.instance
    got = _JSON_TYPES.get(type(inst), type(inst).__name__)
    if v == "required" and isinstance(inst, dict):
        missing = [p for p in expected if p not in inst]
        if missing:
            return SchemaProblem(
                f"{pointer}/{_escape(missing[0])}", "a required property is missing"
            )
    if v == "type":
        want = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return SchemaProblem(pointer, f"expected {want}, got {got} {_show(inst)}")
    if v == "enum":
        return SchemaProblem(
            pointer, f"expected one of {', '.join(_show(x) for x in expected)}; got {_show(inst)}"
        )
    if v == "const":
        return SchemaProblem(pointer, f"expected {_show(expected)}, got {_show(inst)}")
    if v == "pattern":
        return SchemaProblem(pointer, f"{_show(inst)} does not match the pattern {expected}")
    if v == "additionalProperties" and isinstance(inst, dict):
        return SchemaProblem(pointer, error.message)
    if v in _BOUNDS:
        what, unit = _BOUNDS[v]
        return SchemaProblem(pointer, f"expected {what} {expected}{unit}, got {_show(inst)}")
    if v == "contains":
        return SchemaProblem(pointer, "no item matches what this field must contain")
    if v == "not":
        return SchemaProblem(pointer, "this combination of fields is not allowed")
    message = error.message
    if len(message) > 2 * _MAX_SHOWN:
        message = f"{got} {_show(inst)} fails the {v!r} rule of the schema"
    return SchemaProblem(pointer, message)


def problems(document: Any, name: str) -> list[SchemaProblem]:
    """Every way ``document`` fails the schema ``name`` (empty when valid), by pointer."""
    if _fast_valid(document, (name,), None):
        return []
    from jsonschema.exceptions import best_match

    found = {_problem(best_match([e])): None for e in _validator(name).iter_errors(document)}
    return sorted(found, key=lambda p: p.pointer)


def prepare(*names: str) -> None:
    """Compile the fast validators of ``names`` now (e.g. in a thread while a build runs)."""
    for name in names:
        _fast_validator(name)


def _validate_slow(document: Any, name: str) -> None:
    """Raise :class:`SchemaError` naming the JSON Pointer of the first bad field (the
    fast path could not vouch for ``document``)."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator(name).iter_errors(document))
    if error is None:
        return
    p = _problem(error)
    raise SchemaError(
        f"The {name} document is invalid at {p.pointer or '/ (the document root)'}: {p.message}.",
        pointer=p.pointer,
    )


def predicate_schema_name(predicate_type: str, *, known: dict[str, str] | None = None) -> str:
    table = SCHEMA_NAMES if known is None else known
    try:
        return table[predicate_type]
    except KeyError:
        raise SchemaError(
            f"Unknown predicate type {predicate_type!r}.",
            pointer="/predicateType",
            hint=f"escrow records: {', '.join(sorted(table))}.",
        ) from None


def _check_statement(statement: Any, known: dict[str, str], source: bytes | None = None) -> str:
    if not isinstance(statement, dict):
        raise SchemaError(
            "The document is not a JSON object, so not an in-toto Statement v1.", pointer=""
        )
    if statement.get("_type") != STATEMENT_TYPE:
        raise SchemaError(
            f"The document is not an in-toto Statement v1 (_type must be {STATEMENT_TYPE!r}).",
            pointer="/_type",
        )
    ptype = statement.get("predicateType")
    name = known.get(ptype) if isinstance(ptype, str) else None
    if name is not None:
        plain = plain_json_text(source) if source is not None else None
        if _fast_valid(statement, ("statement", name), plain):
            return str(ptype)
    _validate_slow(statement, "statement")
    ptype = str(statement["predicateType"])
    _validate_slow(statement, predicate_schema_name(ptype, known=known))
    return ptype


def validate_statement(statement: Any, *, source: bytes | None = None) -> str:
    """Validate an in-toto Statement v1 whose predicate the ledger records; return its type.

    ``source``: the JSON text ``statement`` was just parsed from (``json.loads``), if
    at hand; it lets the fast path skip walking the document.
    """
    return _check_statement(statement, SCHEMA_NAMES, source)


def validate_document(statement: Any, *, source: bytes | None = None) -> str:
    """Like :func:`validate_statement`, also accepting exports (SLSA Provenance v1)."""
    return _check_statement(statement, DOCUMENT_SCHEMAS, source)


def statement_problems(statement: Any) -> tuple[str | None, list[SchemaProblem]]:
    """(schema name, every problem) for a statement of any type :func:`validate_document` takes."""
    if not isinstance(statement, dict):
        return None, [SchemaProblem("", "expected a JSON object (an in-toto Statement v1)")]
    found = problems(statement, "statement")
    ptype = statement.get("predicateType")
    name = DOCUMENT_SCHEMAS.get(ptype) if isinstance(ptype, str) else None
    if name is None:
        if not any(p.pointer == "/predicateType" for p in found):
            found.append(
                SchemaProblem(
                    "/predicateType",
                    f"unknown predicate type {_show(ptype)}; expected one of "
                    + ", ".join(sorted(DOCUMENT_SCHEMAS)),
                )
            )
        return "statement", sorted(found, key=lambda p: p.pointer)
    seen = {(p.pointer, p.message) for p in found}
    found += [p for p in problems(statement, name) if (p.pointer, p.message) not in seen]
    return name, sorted(found, key=lambda p: p.pointer)
