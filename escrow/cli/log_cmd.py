"""``escrow log`` and ``escrow show``: list and print ledger entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from escrow.cli.app import App, Integer, json_option, pass_app
from escrow.documents.types import REBUILD_VERIFICATION, SCHEMA_NAMES
from escrow.errors import UsageError
from escrow.times import check_period, parse_time
from escrow.verification import sha256_id

if TYPE_CHECKING:
    from escrow.ledger.store import Ledger
    from escrow.server.client import RemoteLedger


def _kind(predicate_type: str) -> str:
    return SCHEMA_NAMES.get(predicate_type, predicate_type)


def _status(predicate_type: str, predicate: Any) -> str | None:
    """The STATUS column: a build's status, a rebuild verification's overall verdict."""
    if not isinstance(predicate, dict):
        return None
    part, field = (
        ("verdict", "overall") if predicate_type == REBUILD_VERIFICATION else ("build", "status")
    )
    section = predicate.get(part)
    value = section.get(field) if isinstance(section, dict) else None
    return value if isinstance(value, str) else None


def entry_summary(entry: Any) -> dict[str, Any]:
    status: str | None = None
    try:
        status = _status(entry.predicate_type, entry.statement().get("predicate"))
    except Exception:  # noqa: BLE001 - a damaged entry is still listed; `verify` explains it
        status = "unreadable"
    return {
        "index": entry.index,
        "leaf_hash": entry.leaf_hash,
        "kind": _kind(entry.predicate_type),
        "project": entry.project,
        "image_id": entry.image_id,
        "status": status,
        "signer": entry.signer,
        "integrated_at": entry.integrated_at.isoformat().replace("+00:00", "Z"),
    }


@click.command()
@click.option("--project", metavar="NAME", help="Only entries of this project.")
@click.option(
    "--image",
    "image_id",
    metavar="ID",
    help="Only entries of this image: its full ID (sha256: optional), a name the Docker "
    "Engine resolves, or a short ID (such as the 12 digits the IMAGE column shows), which "
    "the ledger expands once the engine no longer holds the image.",
)
@click.option("--diff-id", metavar="ID", help="Only builds with this layer diff ID (sha256:…).")
@click.option(
    "--signer",
    metavar="KEYID",
    help="Only entries signed by this key: its ID, whole or a unique prefix such as the "
    "16 digits `escrow keys list` shows.",
)
@click.option(
    "--kind",
    type=click.Choice(sorted(SCHEMA_NAMES.values())),
    help="Only entries of this kind (the predicate type).",
)
@click.option(
    "--since",
    metavar="DATE|TIME",
    help="From this date or RFC 3339 time (integration time, inclusive; UTC unless it "
    "gives an offset; a week 2026-W49, month 2026-12, quarter 2026-Q3 or year 2026 from "
    "its start).",
)
@click.option(
    "--until",
    metavar="DATE|TIME",
    help="Before this time, exclusive (a bare date, week, month, quarter or year includes "
    "that whole period; UTC unless it gives an offset).",
)
@click.option(
    "--limit",
    type=Integer(min=1),
    metavar="N",
    default=100,
    show_default=True,
    help="Entries per page at most; the next page starts with --after LAST_INDEX.",
)
@click.option(
    "--after",
    type=Integer(min=-1),
    default=None,
    metavar="INDEX",
    help="Cursor: entries after this index.",
)
@json_option
@pass_app
def log(
    app: App,
    project: str | None,
    image_id: str | None,
    diff_id: str | None,
    signer: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    after: int | None,
    as_json: bool,
) -> None:
    """List ledger entries, oldest first, filtered by indexed columns.

    Filters combine (all must match). Pages: pass the last index printed as --after.
    """
    if diff_id is not None:
        diff_id = _diff_id(diff_id)
    if signer is not None:
        signer = _hex_prefix(signer, "--signer")
    # an empty value (`--since "$UNSET"`) is refused, as the server's `since=` is, not
    # taken for no filter
    start = parse_time(since, "--since") if since is not None else None
    end = parse_time(until, "--until", end_of_day=True) if until is not None else None
    check_period(start, end, since, until)
    ledger = app.ledger(readonly=True)
    if image_id is not None:
        image_id = _image_id(image_id, ledger)
    if signer is not None and len(signer) != 64:
        signer = _signer(ledger, signer)
    filters: dict[str, Any] = {
        "project": project,
        "image_id": image_id,
        "diff_id": diff_id,
        "signer": signer,
        "predicate_type": next((t for t, n in SCHEMA_NAMES.items() if n == kind), None),
        "since": start,
        "until": end,
    }
    entries = ledger.entries(**filters, after=after, limit=limit)
    rows = [entry_summary(e) for e in entries]
    if as_json:
        app.emit_json({"entries": rows, "size": ledger.size()})
        return
    if not rows:
        app.say("No entries.")
        return
    head = ("INDEX", "INTEGRATED (UTC)", "KIND", "PROJECT", "IMAGE")
    app.out(f"{head[0]:>6}  {head[1]:<19}  {head[2]:<20} {head[3]:<16} {head[4]:<12}  STATUS")
    from escrow.text import padded

    for r in rows:
        image = (r["image_id"] or "-").removeprefix("sha256:")[:12]
        # padded by terminal columns: a CJK or emoji project name takes two per character
        app.out(
            f"{r['index']:>6}  {r['integrated_at'][:19]}  {r['kind']:<20} "
            f"{padded(r['project'] or '-', 16)} {image:<12}  {r['status'] or ''}".rstrip()
        )
    last = rows[-1]["index"]
    if len(rows) == limit and ledger.entries(**filters, after=last, limit=1):
        app.say(f"More entries follow: add --after {last} for the next page.")


def _image_id(text: str, ledger: Ledger | RemoteLedger) -> str:
    """A full image ID for ``--image``: given whole, what the Docker Engine calls a short
    ID or a name (as `escrow log` prints the first 12 digits), or else the one recorded
    image ID a short ID begins (the engine may no longer hold the image)."""
    full = sha256_id(text)
    if full is not None:
        return full
    from escrow.cli.verify_cmd import DockerFacts
    from escrow.errors import InputError
    from escrow.verification import recorded_image_id

    engine = DockerFacts.probe()
    if isinstance(engine, DockerFacts):
        facts = engine.image_facts(text)
        if facts is not None:
            return str(facts["id"])
    try:
        recorded = recorded_image_id(ledger, text, engine_asked=isinstance(engine, DockerFacts))
    except InputError as e:
        raise UsageError(f"--image: {e.message}", hint=e.hint) from None
    if recorded is not None:
        return recorded
    if not isinstance(engine, DockerFacts):
        raise engine  # only the engine knows its names
    raise UsageError(
        f"--image {text!r} is not a full image ID, and no image in the Docker Engine has "
        "that short ID or name.",
        hint="Give sha256: and the 64 hex digits (`escrow log --json` shows them).",
    )


def _diff_id(text: str) -> str:
    full = sha256_id(text)
    if full is None:
        raise UsageError(
            f"--diff-id {text!r} is not a layer diff ID: give sha256: and its 64 hex digits."
        )
    return full


def _hex_prefix(text: str, option: str) -> str:
    """``text`` in lower case when it is hex digits; a :class:`UsageError` otherwise."""
    hexpart = text.strip().lower()
    if not hexpart or any(c not in "0123456789abcdef" for c in hexpart) or len(hexpart) > 64:
        raise UsageError(
            f"{option} {text!r} is not a key ID: give the hex digits `escrow keys list` shows, "
            "or as many of them as are unique."
        )
    return hexpart


def _signer(ledger: Ledger | RemoteLedger, prefix: str) -> str:
    """The one key ID of ``ledger`` (a registered key, or the log key that signs key
    events) beginning with ``prefix``; a :class:`UsageError` when none or several do."""
    from escrow.ledger.checkpoint import parse_verifier_key

    keyids = {k.keyid for k in ledger.keys()}
    keyids.add(parse_verifier_key(ledger.verifier_key())[2].keyid)
    matches = sorted(k for k in keyids if k.startswith(prefix))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(
            f"No key ID of this ledger begins with {prefix!r}.",
            hint="List the keys with `escrow keys list`.",
        )
    raise UsageError(
        f"The key ID prefix {prefix!r} is ambiguous ({len(matches)} keys begin with it).",
        hint="Give more of its hex digits (`escrow keys list --json` shows them whole).",
    )


@click.command()
@click.argument("index", type=Integer(min=0))
@json_option
@pass_app
def show(app: App, index: int, as_json: bool) -> None:
    """Print entry INDEX: its envelope and the decoded statement."""
    import json

    ledger = app.ledger(readonly=True)
    entry = ledger.get(index)
    statement = entry.statement()  # stored bytes that do not decode: LedgerTamperError
    envelope = json.loads(entry.envelope)
    doc = {**entry_summary(entry), "envelope": envelope, "statement": statement}
    if as_json:
        app.emit_json(doc)
        return
    app.out(json.dumps(doc, indent=2))
