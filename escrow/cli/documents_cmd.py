"""``escrow sign``, ``escrow schema`` and ``escrow export``: documents for pipeline authors.

* ``escrow sign [FILE|-]`` validates in-toto Statements (one JSON document, or
  JSON Lines) and prints one DSSE envelope per line.  If any statement is
  invalid, each bad one gets one error line and nothing is signed (exit 2).
* ``escrow schema list|show NAME|validate FILE...`` exposes the JSON Schemas.
* ``escrow export --slsa INDEX`` writes the SLSA Provenance v1 Statement of a
  recorded build (docs/slsa.md describes its build type).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from escrow.cli.app import (
    App,
    Integer,
    complete_paths,
    json_option,
    pass_app,
    passphrase_prompt_option,
)
from escrow.errors import CheckFailed, EscrowError, InputError, UsageError

# -- shared helpers --------------------------------------------------------------


def _source(path: str) -> str:
    """How a message names the input ``path`` ('-' is standard input)."""
    return "Standard input" if path == "-" else f"The file {path}"


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"The file {path} does not exist.") from e
    except IsADirectoryError as e:
        raise InputError(f"{path} is a directory, not a file.") from e
    except OSError as e:
        raise InputError(f"The file {path} cannot be read: {e.strerror}.") from e


def _write_output(path: str, text: str) -> None:
    """Write ``text`` to stdout ('-') or atomically to ``path`` (temporary file, then rename),
    as UTF-8 either way: a document is the same bytes whatever the locale."""
    if path == "-":
        App.exact(text)
        return
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    except OSError as e:  # name the user's path, not the temporary file's
        raise OSError(e.errno, e.strerror, str(target)) from e
    try:
        # mkstemp makes the file private (0600): give it the mode open() would, as the
        # document is meant to be shared (an existing file keeps its own mode).
        os.fchmod(fd, _new_file_mode(target))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0o022)
        os.umask(umask)
        return 0o666 & ~umask


#: what ``json.dumps(..., ensure_ascii=False)`` leaves raw that a terminal takes for a
#: control: DEL and the C1 controls (U+009B is a one-character CSI).  In JSON text they
#: can only be inside strings, where ``\u00XX`` is the same character.
_RAW_CONTROLS = {c: f"\\u{c:04x}" for c in (0x7F, *range(0x80, 0xA0))}


def _json_text(document: Any) -> str:
    """``document`` as indented JSON, non-ASCII text as it is (readable names) but with
    every control character escaped: a name recorded by someone else (a project, a
    command) must not drive the terminal the document is printed on."""
    return json.dumps(document, indent=2, ensure_ascii=False).translate(_RAW_CONTROLS)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is too large for a 64-bit float")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _loads(text: str) -> Any:
    """``json.loads``, refusing what JSON parsers read differently: a member named twice in
    one object, NaN/Infinity, numbers out of range; nesting too deep is a ValueError too."""
    from escrow.signing.dsse import DuplicateMember, too_long_number, unique_members

    try:
        return json.loads(
            text,
            object_pairs_hook=unique_members,
            parse_constant=_no_constant,
            parse_float=_finite_float,
        )
    except RecursionError as e:
        raise ValueError("it is nested too deeply") from e
    except ValueError as e:
        if not isinstance(e, DuplicateMember) and too_long_number(e):
            raise ValueError("a number has more than 4300 digits") from e
        if isinstance(e, DuplicateMember):
            raise ValueError(
                f"the member {e.args[0]!r} appears twice in one object, "
                "and JSON parsers disagree on which one counts"
            ) from e
        raise


def _json_lines(lines: list[tuple[int, str]]) -> bool:
    """Whether ``lines`` (the non-blank lines of an input that is not one JSON document)
    are JSON Lines rather than one document with an error: the first line is a JSON
    document of its own, or most of the others are JSON objects of their own (the first
    line is the bad one) — a document spread over lines has no such lines."""

    def one_object(line: str) -> bool:
        try:
            return isinstance(_loads(line), dict)
        except ValueError:
            return False

    try:
        _loads(lines[0][1])
    except ValueError:
        others = lines[1:]
        return 2 * sum(one_object(ln) for _, ln in others) > len(others)
    return True


@dataclass
class Parsed:
    """One document of the input: where it came from, and it or why it is not JSON."""

    where: str  # "line 3", or "" for a single document
    document: Any = None
    error: str | None = None


def parse_documents(data: bytes, *, source: str = "The input") -> list[Parsed]:
    """One JSON document, or JSON Lines (one document per non-blank line)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{source} is not UTF-8 text ({e.reason}).") from e
    if not text.strip():
        raise InputError(f"{source} is empty; expected a Statement or JSON Lines of Statements.")
    try:
        return [Parsed("", _loads(text))]
    except ValueError as whole:
        lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
        if not _json_lines(lines):
            raise InputError(f"{source} is not valid JSON ({whole}).") from whole
    out: list[Parsed] = []
    for n, line in lines:
        try:
            out.append(Parsed(f"line {n}", _loads(line)))
        except ValueError as e:
            out.append(Parsed(f"line {n}", error=f"not valid JSON ({e})"))
    return out


def _complete_schema(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from escrow.documents.schemas import schema_names

    return [n for n in schema_names() if n.startswith(incomplete)]


def _passphrase(app: App, prompt: bool, what: str) -> str | None:
    if prompt:
        from escrow.cli.keys_cmd import ask_passphrase

        return ask_passphrase(what, confirm=False)
    return app.settings.passphrase


# -- escrow sign -----------------------------------------------------------------


def _is_envelope(doc: Any) -> bool:
    """Whether ``doc`` is a DSSE envelope rather than a Statement."""
    return isinstance(doc, dict) and "payloadType" in doc and "signatures" in doc


def _statement_error(doc: Any) -> str | None:
    from escrow.documents.schemas import validate_document

    if _is_envelope(doc):
        return "this is a DSSE envelope, not a Statement; escrow sign takes Statements"
    try:
        validate_document(doc)
    except EscrowError as e:
        return e.diagnostics()
    return None


@click.command()
@click.argument(
    "file", default="-", required=False, metavar="[FILE|-]", shell_complete=complete_paths
)
@click.option(
    "--key",
    "key_paths",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Private key (PKCS#8 PEM) to sign with; repeat for a multi-signature envelope. "
    "Default: the build key (ESCROW_KEY).",
)
@passphrase_prompt_option
@click.option(
    "-o",
    "--output",
    default="-",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write the envelopes here (atomically, one per line) instead of stdout; with "
    "--json, stdout then gets the summary.",
)
@json_option
@pass_app
def sign(
    app: App,
    file: str,
    key_paths: tuple[str, ...],
    passphrase_prompt: bool,
    output: str,
    as_json: bool,
) -> None:
    """Validate and sign in-toto Statements from FILE (or stdin): one JSON document or
    JSON Lines.  Prints one DSSE envelope per line.

    Every statement is checked against its schema first; if any is invalid, each
    one gets an error line, nothing is signed and the exit code is 2.
    """
    from escrow.signing.dsse import sign_statement

    if passphrase_prompt and file == "-" and not sys.stdin.isatty():
        raise UsageError(
            "--passphrase-prompt reads the passphrase from standard input, "
            "so the statements must come from a FILE."
        )
    docs = parse_documents(_read_input(file), source=_source(file))
    errors: list[str] = []
    for p in docs:
        problem = p.error or _statement_error(p.document)
        if problem:
            errors.append(f"{p.where}: {problem}" if p.where else problem)
    if errors:
        if len(docs) == 1:
            raise InputError(f"Nothing was signed: {errors[0]}")
        for e in errors:
            app.say(f"escrow: error: {e}")
        raise InputError(
            f"{len(errors)} of {len(docs)} statements are invalid; nothing was signed."
        )
    paths = [Path(k) for k in key_paths] or [app.settings.key_path]
    from escrow.cli.keys_cmd import load_key

    passphrase = _passphrase(app, passphrase_prompt, "the signing key")
    keys = [load_key(p, passphrase, prompted=passphrase_prompt) for p in paths]
    envelopes = [sign_statement(p.document, keys) for p in docs]
    summary: dict[str, Any] = {
        "envelopes": [e.to_dict() for e in envelopes],
        "count": len(envelopes),
        "keyids": [k.keyid for k in keys],
    }
    if as_json and output == "-":
        _write_output(output, json.dumps(summary, indent=2) + "\n")
    else:  # a file always holds the envelopes, one per line, as `post` and `verify` read them
        _write_output(output, "".join(e.to_bytes().decode("utf-8") + "\n" for e in envelopes))
        if as_json:
            app.emit_json({**summary, "output": output})
    from escrow.text import count

    signers = ", ".join(k.keyid[:16] for k in keys)
    app.say(f"Signed {count(len(envelopes), 'statement')} with {signers}.")


# -- escrow schema ---------------------------------------------------------------


@click.group()
def schema() -> None:
    """The JSON Schemas (draft 2020-12) of escrow's documents."""


@schema.command("list")
@json_option
@pass_app
def schema_list(app: App, as_json: bool) -> None:
    """List the schemas: name, $id (the document type URI) and title."""
    from escrow.documents.schemas import load_schema, schema_names

    rows = [
        {"name": n, "id": load_schema(n).get("$id"), "title": load_schema(n).get("title")}
        for n in schema_names()
    ]
    if as_json:
        app.emit_json({"schemas": rows})
        return
    for r in rows:
        app.out(f"{r['name']:<22} {r['id']:<44} {r['title']}")


@schema.command("show")
@click.argument("name", shell_complete=_complete_schema)
@json_option
@pass_app
def schema_show(app: App, name: str, as_json: bool) -> None:
    """Print the schema NAME (a name such as build-manifest, or a type URI)."""
    from escrow.documents.schemas import load_schema, resolve_name

    app.emit_json(load_schema(resolve_name(name)))


def _file_report(path: str, forced: str | None) -> dict[str, Any]:
    from escrow.documents.schemas import SchemaProblem, problems, statement_problems
    from escrow.documents.types import SCHEMA_IDS
    from escrow.signing.dsse import Envelope

    report: dict[str, Any] = {"file": path, "valid": False, "schema": None, "id": None}
    try:
        parsed = parse_documents(_read_input(path), source=_source(path))
    except InputError as e:
        return {**report, "unreadable": True, "errors": [{"pointer": "", "message": e.message}]}
    results: list[dict[str, Any]] = []
    for p in parsed:
        if p.error is not None:
            results.append({"where": p.where, "schema": None, "errors": [("", p.error)]})
            continue
        doc, via = p.document, None
        if _is_envelope(doc):
            try:
                doc = Envelope.from_dict(doc).statement(unique=True)  # as `escrow post` reads it
                via = "envelope payload"
            except InputError as e:
                results.append({"where": p.where, "schema": None, "errors": [("", e.message)]})
                continue
        found: list[SchemaProblem]
        if forced:
            name: str | None = forced
            found = problems(doc, forced)
        else:
            name, found = statement_problems(doc)
        results.append(
            {
                "where": p.where,
                "schema": name,
                "via": via,
                "errors": [(x.pointer, x.message) for x in found],
            }
        )
    names = {r["schema"] for r in results if r["schema"]}
    name = names.pop() if len(names) == 1 else None
    return {
        **report,
        "valid": not any(r["errors"] for r in results),
        "schema": name,
        "id": SCHEMA_IDS.get(name) if name else None,
        "documents": len(results),
        "errors": [
            {"pointer": ptr, "message": msg, **({"where": r["where"]} if r["where"] else {})}
            for r in results
            for ptr, msg in r["errors"]
        ],
    }


@schema.command("validate")
@click.argument("files", nargs=-1, required=True, metavar="FILE...", shell_complete=complete_paths)
@click.option(
    "--schema",
    "schema_name",
    metavar="NAME",
    shell_complete=_complete_schema,
    help="Validate against this schema instead of the one named by each predicateType.",
)
@json_option
@pass_app
def schema_validate(
    app: App, files: tuple[str, ...], schema_name: str | None, as_json: bool
) -> None:
    """Validate each FILE ('-' = stdin): Statements, DSSE envelopes (their payload) or JSON Lines.

    Exit 0 when all are valid, 1 when any is invalid, 2 when a file cannot be read.
    Every problem names the JSON Pointer of the bad field.
    """
    from escrow.documents.schemas import resolve_name

    forced = resolve_name(schema_name) if schema_name else None
    reports = [_file_report(f, forced) for f in files]
    if as_json:
        app.emit_json({"valid": all(r["valid"] for r in reports), "files": reports})
    else:
        for r in reports:
            if r["valid"]:
                app.out(f"{r['file']}: valid {r['schema']} ({r['id']})")
                continue
            kind = f" {r['schema']}" if r.get("schema") else ""
            app.out(f"{r['file']}: invalid{kind}")
            for e in r["errors"]:
                where = f"{e['where']}: " if e.get("where") else ""
                app.out(f"  {where}{e['pointer'] or '/'}: {e['message']}")
    if any(r.get("unreadable") for r in reports):
        raise InputError("Some files could not be read as JSON; see above.")
    bad = [r["file"] for r in reports if not r["valid"]]
    if bad:
        from escrow.text import count

        raise CheckFailed(
            f"{len(bad)} of {count(len(reports), 'file')} "
            + ("is" if len(bad) == 1 else "are")
            + f" invalid: {', '.join(bad)}."
        )


# -- escrow export ---------------------------------------------------------------


@click.command()
@click.option(
    "--slsa",
    "index",
    type=Integer(min=0),
    metavar="INDEX",
    required=True,
    help="Ledger index of a build manifest: export it as SLSA Provenance v1.",
)
@click.option(
    "--sign",
    "do_sign",
    is_flag=True,
    help="Give a DSSE envelope of it signed with the build key (ESCROW_KEY) instead.",
)
@passphrase_prompt_option
@click.option(
    "-o",
    "--output",
    default="-",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write here (atomically) instead of stdout; with --json, stdout then says what "
    "was written (index, output, signed, sha256).",
)
@json_option
@pass_app
def export(
    app: App, index: int, do_sign: bool, passphrase_prompt: bool, output: str, as_json: bool
) -> None:
    """Export the build recorded at the ledger index given with --slsa as an in-toto
    Statement with the SLSA Provenance v1 predicate, for tools that speak SLSA
    (`escrow schema show slsa-provenance` describes it).
    """
    from escrow.documents.schemas import validate_document, validate_statement
    from escrow.documents.slsa import provenance_statement
    from escrow.documents.types import BUILD_MANIFEST
    from escrow.signing.dsse import sign_statement

    ledger = app.ledger(readonly=True)
    entry = ledger.get(index)
    manifest = entry.statement()
    ptype = validate_statement(manifest)
    if ptype != BUILD_MANIFEST:
        raise InputError(
            f"Ledger entry {index} is a {ptype} document, not a build manifest.",
            hint="Pick the index of a build (escrow log).",
        )
    status = (manifest["predicate"].get("build") or {}).get("status")
    if status != "succeeded":  # name the entry, not the build ID the manifest holds
        raise InputError(
            f"Ledger entry {index} is a {status or 'unfinished'} build: SLSA provenance "
            "describes the artifacts of a succeeded build.",
            hint=f"`escrow logs {index}` shows its steps' output." if status == "failed" else None,
        )
    statement = provenance_statement(
        manifest,
        envelope=entry.envelope,
        ledger={
            "ledgerIndex": entry.index,
            "leafHash": entry.leaf_hash,
            "origin": ledger.origin,  # the log's own, as its checkpoints name it
        },
    )
    validate_document(statement)
    if do_sign:
        from escrow.cli.keys_cmd import load_key

        key = load_key(
            app.settings.key_path,
            _passphrase(app, passphrase_prompt, "the signing key"),
            prompted=passphrase_prompt,
        )
        env = sign_statement(statement, key)
        pretty = as_json and output == "-"  # --json to stdout: one indented JSON document
        text = (json.dumps(env.to_dict(), indent=2) if pretty else env.to_bytes().decode()) + "\n"
    else:
        text = _json_text(statement) + "\n"
    _write_output(output, text)
    if output != "-":  # the file holds the document; with --json, stdout says what was written
        app.say(f"Wrote the SLSA provenance of entry {index} to {output}.")
        if as_json:
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            app.emit_json({"index": index, "output": output, "signed": do_sign, "sha256": digest})
