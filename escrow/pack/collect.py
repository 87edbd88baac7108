"""Collect: ledger entries → the pack's view model and the evidence to embed.

This is the only part of the pack that reads the ledger.  It re-checks what it
shows — each envelope's signature against the key registered for it, each
inclusion proof against the checkpoint, the checkpoint's own signature, and
the consistency proof from the auditor's previous checkpoint — so the pack
states what was verified when it was made, not what the database claims.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from escrow import __version__
from escrow.documents.canonical import canonical_bytes
from escrow.documents.types import AUDIT_PACK, BUILD_MANIFEST, KEY_EVENT, REBUILD_VERIFICATION
from escrow.errors import CheckFailed, EscrowError, InputError, SignatureError
from escrow.pack.model import (
    CURRENT_RULES,
    FAILED_VERDICT,
    FINDING_KINDS,
    Anomaly,
    BaseImageRow,
    BuildArgRow,
    BuildView,
    ConsistencyView,
    KeyEventRow,
    KeyView,
    LayerRow,
    LedgerView,
    PackView,
    RebuildView,
    ScopeView,
    SignerView,
    StepRow,
    SummaryView,
    SupportingBuildView,
    Verdict,
    VerdictRules,
    standing_verdict,
)
from escrow.signing.dsse import Envelope
from escrow.signing.keys import PublicKey
from escrow.text import cut_tail

PAGE = 500  # entries fetched per ledger query

#: the most builds one pack renders unless asked for more (``--max-builds``): each takes
#: about two pages.  The pack is laid out a few builds at a time (escrow/pack/render.py),
#: so its memory grows by some 0.25 MB a page (bench/pack_memory.py: 200 builds, 417
#: pages, 274 MB), not the 3 MB a page of a layout kept whole (900 builds took 1,870
#: pages, 5.4 GB); 5,000 builds are some 10,500 pages, 3 GB and most of an hour
MAX_BUILDS = 5000


class EntryLike(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def leaf_hash(self) -> str: ...
    @property
    def envelope(self) -> bytes: ...
    @property
    def predicate_type(self) -> str: ...
    @property
    def signer(self) -> str: ...
    @property
    def integrated_at(self) -> datetime: ...
    def statement(self) -> dict[str, Any]: ...


class CheckpointLike(Protocol):
    @property
    def origin(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def root(self) -> bytes: ...
    @property
    def note(self) -> str: ...


class LedgerReader(Protocol):
    """What the pack needs from :class:`escrow.ledger.store.Ledger`."""

    def get(self, index: int) -> Any: ...
    def entries(self, **filters: Any) -> Sequence[Any]: ...
    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]: ...
    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]: ...
    def checkpoint(self, tree_size: int | None = None) -> Any: ...
    def key_events_checkpoint(self, tree_size: int | None = None) -> Any: ...
    def verifier_key(self) -> str: ...


@dataclass(frozen=True)
class PackRequest:
    """What the auditor asked for."""

    generated_at: datetime
    projects: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    entries: tuple[int, ...] = ()
    entries_text: str = ""
    requester: str = ""
    since_checkpoint: str | None = None  # the auditor's previous checkpoint note
    tree_size: int | None = None  # the ledger as of its first N entries (default: all)
    max_builds: int = MAX_BUILDS  # a larger scope is refused before anything is rendered


@dataclass(frozen=True)
class ProofRecord:
    index: int
    leaf_hash: str
    hashes: tuple[str, ...]
    integrated_at: str | None = None  # when the ledger appended the entry (RFC 3339)


@dataclass(frozen=True)
class Evidence:
    """Everything embedded in the PDF so that it alone suffices to verify."""

    envelopes: tuple[tuple[int, bytes], ...]  # (index, exact leaf bytes), ascending
    proofs: tuple[ProofRecord, ...]
    checkpoint_note: str
    tree_size: int
    root_hex: str
    verifier_key: str
    keys: tuple[KeyView, ...]
    consistency: dict[str, Any] | None = None


@dataclass(frozen=True)
class Collected:
    view: PackView
    evidence: Evidence
    predicate: dict[str, Any] = field(default_factory=dict)


# -- small helpers -------------------------------------------------------------


def rfc3339(t: datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone(UTC)
    if t.microsecond:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_entry_list(text: str) -> tuple[int, ...]:
    """``"3,5,7-9"`` → ``(3, 5, 7, 8, 9)``."""
    out: set[int] = set()
    hint = "Give ledger indexes and ranges like 3,5,7-9."

    def number(x: str) -> int:
        if not (x.isascii() and x.isdigit()):  # int() also takes "1_0" and other digits
            raise InputError(f"The entry list {text!r} is not valid.", hint=hint)
        return int(x)

    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if part.startswith("-") or "--" in part:
            raise InputError(f"The entry list {text!r} holds a negative index.")
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            lo, hi = number(lo_text), number(hi_text)
            if hi < lo:
                raise InputError(
                    f"The range {part} in the entry list ends before it starts.", hint=hint
                )
            if hi - lo > 1_000_000:
                raise InputError(
                    f"The range {part} in the entry list is longer than 1,000,000 entries.",
                    hint="Give a time range (--since/--until) instead.",
                )
            out.update(range(lo, hi + 1))
        else:
            out.add(number(part))
    if not out:
        raise InputError(f"The entry list {text!r} names no index.", hint=hint)
    return tuple(sorted(out))


def _s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _i(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _d(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pairs(mapping: Mapping[str, Any], skip: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    skipped = set(skip)
    out: list[tuple[str, str]] = []
    for k, v in mapping.items():
        if k in skipped or v is None or v == "" or v == {} or v == []:
            continue
        if isinstance(v, dict):
            out.extend((f"{k}.{k2}", v2) for k2, v2 in _pairs(v))
        else:
            out.append((k, _s(v)))
    return tuple(out)


def _ms_between(start: str, end: str) -> int | None:
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((b - a).total_seconds() * 1000)


# -- one build ------------------------------------------------------------------


def verdict_of(predicate: Mapping[str, Any]) -> tuple[Verdict, tuple[str, ...]]:
    """Overall verdict and the differences of a rebuild-verification predicate."""
    raw = _d(predicate.get("verdict"))
    details: list[str] = []
    for layer in _l(raw.get("layers")):
        ld = _d(layer)
        lv = _s(ld.get("verdict"))
        if lv == "equivalent":
            norms = ", ".join(_s(n) for n in _l(ld.get("normalisations")))
            details.append(
                f"layer {_s(ld.get('index'))}: equivalent after {norms or 'normalising'}"
            )
        elif lv and lv != "identical":
            details.append(f"layer {_s(ld.get('index'))}: {lv}")
        diffs = _l(ld.get("differences"))
        details.extend(f"  {_s(_d(d).get('kind'))}: {_s(_d(d).get('path'))}" for d in diffs[:40])
        total = _i(ld.get("differenceCount")) or len(diffs)
        if total > min(len(diffs), 40):
            details.append(f"  … {total - min(len(diffs), 40)} more differences")
    details.extend(f"config {_s(_d(c).get('field'))} differs" for c in _l(raw.get("config")))
    failure = _d(raw.get("failure"))
    if failure:
        details.append(
            f"failed at step {_s(failure.get('step'))} {_s(failure.get('instruction'))}"
            f" (exit {_s(failure.get('exitCode'))}) {_s(failure.get('message'))}".rstrip()
        )
    details.extend(
        f"missing {_s(_d(m).get('kind'))}: {_s(_d(m).get('name'))}" for m in _l(raw.get("missing"))
    )
    try:
        verdict = Verdict(_s(raw.get("overall")))
    except ValueError:
        verdict = Verdict.UNKNOWN
    if verdict in (Verdict.NOT_CHECKED, Verdict.NOT_APPLICABLE):  # not a rebuild's verdict
        verdict = Verdict.UNKNOWN
    return verdict, tuple(details)


def original_index(predicate: Mapping[str, Any]) -> int | None:
    """The ledger index of the build a rebuild-verification predicate is about."""
    return _i(_d(predicate.get("original")).get("index"))


def _arg_rows(records: Any) -> tuple[BuildArgRow, ...]:
    """Build arguments or ``--label`` labels as recorded (secrets: salted digest only)."""
    return tuple(
        BuildArgRow(
            name=_s(_d(a).get("name")),
            value=None
            if _d(a).get("secret") or _d(a).get("value") is None
            else _s(_d(a).get("value")),
            secret=bool(_d(a).get("secret")),
            salt=_s(_d(a).get("salt")),
            sha256=_s(_d(a).get("sha256")),
        )
        for a in _l(records)
    )


def build_view(
    *,
    index: int,
    leaf_hash: str,
    integrated_at: str,
    statement: Mapping[str, Any],
    signer: str,
    signer_name: str = "",
    algorithm: str = "",
    signature_verified: bool = False,
    signature_problem: str = "",
    inclusion_proof: Sequence[str] = (),
    inclusion_verified: bool = False,
    rebuilds: Sequence[RebuildView] = (),
    anomalies: Sequence[str] = (),
    notes: Sequence[str] = (),
    made: Mapping[str, tuple[int, str]] | None = None,
    outside: Collection[int] = (),
) -> BuildView:
    """The view of one build-manifest statement (tolerant of missing fields); ``made``:
    ``image ID -> (index, project)`` of the builds the pack traces bases to
    (:attr:`Assessment.made`), which name the build that made a base image (an earlier
    one); ``outside``: those of them that are supporting builds, not in scope."""
    p = _d(statement.get("predicate"))
    build = _d(p.get("build"))
    builder = _d(p.get("builder"))
    inputs = _d(p.get("inputs"))
    recipe = _d(inputs.get("recipe"))
    context = _d(inputs.get("context"))
    image = _d(p.get("image"))
    config = _d(image.get("config"))
    started, finished = _s(build.get("startedOn")), _s(build.get("finishedOn"))
    subjects = tuple(
        (_s(_d(s).get("name")), _s(_d(_d(s).get("digest")).get("sha256")))
        for s in _l(statement.get("subject"))
    )
    build_args = _arg_rows(inputs.get("buildArgs"))
    input_labels = _arg_rows(inputs.get("labels"))
    base_images = tuple(
        BaseImageRow(
            stage=_s(_d(b).get("stageName") or _d(b).get("stage")),
            reference=_s(_d(b).get("reference")),
            image_id=_s(_d(b).get("imageId")),
            repo_digest=_s(_d(b).get("repoDigest")),
            built_by=(maker := _maker(made, _s(_d(b).get("imageId")), index)),
            built_outside=maker is not None and maker[0] in outside,
        )
        for b in _l(inputs.get("baseImages"))
    )
    copy_images = tuple(
        BaseImageRow(
            stage=f"{_s(_d(c).get('stage'))}, line {_s(_d(c).get('line'))}",
            reference=_s(_d(c).get("reference")),
            image_id=_s(_d(c).get("imageId")),
            repo_digest=_s(_d(c).get("repoDigest")),
            built_by=(maker := _maker(made, _s(_d(c).get("imageId")), index)),
            built_outside=maker is not None and maker[0] in outside,
        )
        for c in _l(inputs.get("copyFromImages"))
    )
    steps = tuple(
        StepRow(
            index=_i(_d(s).get("index")) or n + 1,
            instruction=_s(_d(s).get("instruction") or _d(s).get("command")),
            image_id=_s(_d(s).get("imageId")),
            exit_code=_i(_d(s).get("exitCode")),
            started_on=_s(_d(s).get("startedOn")),
            duration_ms=_i(_d(s).get("durationMs")),
            log_sha256=_s(_d(_d(s).get("log")).get("sha256")),
            log_size=_i(_d(_d(s).get("log")).get("size")),
        )
        for n, s in enumerate(_l(p.get("steps")))
    )
    layers = tuple(
        LayerRow(
            index=_i(_d(la).get("index")) if _i(_d(la).get("index")) is not None else n,  # type: ignore[arg-type]
            diff_id=_s(_d(la).get("diffId")),
            size=_i(_d(la).get("size")),
            created_by=_s(_d(la).get("createdBy")),
        )
        for n, la in enumerate(_l(p.get("layers")))
    )
    platform = "/".join(x for x in (_s(image.get("os")), _s(image.get("architecture"))) if x)
    return BuildView(
        anchor=f"entry-{index}",
        index=index,
        leaf_hash=leaf_hash,
        integrated_at=integrated_at,
        project=_s(build.get("project")),
        build_id=_s(build.get("id")),
        kind=_s(build.get("kind")),
        status=_s(build.get("status")) or "unknown",
        started_on=started,
        finished_on=finished,
        duration_ms=_ms_between(started, finished) if started and finished else None,
        image_id=_s(image.get("id")),
        subjects=subjects,
        tags=tuple(_s(t) for t in _l(image.get("tags"))),
        builder=_pairs(builder),
        phoenix=_pairs(_d(build.get("phoenix"))),
        recipe_path=_s(recipe.get("path")),
        recipe_sha256=_s(recipe.get("sha256")),
        recipe_size=_i(recipe.get("size")),
        recipe_text=_s(recipe.get("text")),
        context_digest=_s(context.get("treeDigest")),
        context_archive_digest=_s(context.get("archiveDigest")),
        context_size=_i(context.get("totalSize")),
        context_files=_i(context.get("fileCount")),
        build_args=build_args,
        input_labels=input_labels,
        source=_pairs(_d(inputs.get("source"))),
        base_images=base_images,
        copy_images=copy_images,
        steps=steps,
        layers=layers,
        image_size=_i(image.get("size")),
        platform=platform,
        labels=tuple((k, _s(v)) for k, v in sorted(_d(config.get("Labels")).items())),
        signer=signer,
        signer_name=signer_name,
        algorithm=algorithm,
        signature_verified=signature_verified,
        signature_problem=signature_problem,
        inclusion_proof=tuple(inclusion_proof),
        inclusion_verified=inclusion_verified,
        rebuilds=tuple(rebuilds),
        anomalies=tuple(anomalies),
        notes=tuple(notes),
        failure=_failure_pairs(_d(build.get("failure"))),
        # cut as escrow cuts it now: the tail an older escrow signed whole (a megabyte
        # line) is not laid out in full; the envelope, embedded, still holds all of it
        failure_log=cut_tail(_s(_d(build.get("failure")).get("logTail"))),
        command=_command_pairs(_d(p.get("command"))),
    )


def _failure_pairs(failure: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    labels = (("step", "step"), ("instruction", "instruction"), ("exitCode", "exit code"))
    rows = [(label, _s(failure.get(k))) for k, label in labels if failure.get(k) is not None]
    if failure.get("message"):
        rows.append(("message", _s(failure.get("message"))))
    return tuple(rows)


def _command_pairs(command: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The recorded build command of ``escrow record``."""
    if not command:
        return ()
    argv = " ".join(_s(a) for a in _l(command.get("argv")))
    paths = [_s(x) for x in _l(command.get("changedPaths"))]
    rows = [
        ("command", argv),
        ("working directory", _s(command.get("cwd"))),
        ("exit code", _s(command.get("exitCode"))),
        ("duration (ms)", _s(command.get("durationMs"))),
        ("context before", _s(command.get("contextBefore"))),
        ("context after", _s(command.get("contextAfter"))),
        ("inputs changed during the build", _s(bool(command.get("inputsChanged")))),
    ]
    if paths:
        more = f" … and {len(paths) - 20} more" if len(paths) > 20 else ""
        rows.append(("changed paths", ", ".join(paths[:20]) + more))
    return tuple(rows)


# -- keys ----------------------------------------------------------------------


def _in_force(rec: Any, since: datetime | None, until: datetime | None) -> bool:
    """Whether the key was valid at some moment of ``[since, until)``."""
    ends = [t for t in (rec.revoked_at, rec.retired_at) if t is not None]
    ended = min(ends) if ends else None
    if until is not None and rec.added_at >= until:
        return False
    return not (since is not None and ended is not None and ended <= since)


def _in_force_at(rec: Any, entries: Sequence[Any]) -> bool:
    """Whether the key was valid at some moment from the first of ``entries`` (in log
    order) to the last: added before the last one, and not ended before the first (by
    the log's order, as :func:`escrow.verification.key_valid_at` decides it)."""
    first, last = entries[0], entries[-1]
    if rec.added_index > last.index:
        return False
    revoked = rec.revoked_at is not None and (
        rec.ended_index is None or rec.ended_index < first.index
    )
    return not (revoked or rec.retired_before(first.index, first.integrated_at))


def key_event_rows(key_entries: Iterable[Any]) -> dict[str, list[KeyEventRow]]:
    """Each key's events, one row per key-event entry, in log order: a key retired and
    later revoked has both, each with its own time, reason and index."""
    from escrow.ledger.store import parse_time

    rows: dict[str, list[KeyEventRow]] = {}
    for entry in key_entries:
        pred = entry.statement()["predicate"]
        event, when = str(pred["event"]), entry.integrated_at
        if event == "retired":
            when = max(parse_time(str(pred["effectiveFrom"])), when)
        reason = "" if event == "added" else _s(pred.get("reason"))
        rows.setdefault(str(pred["keyid"]), []).append(
            KeyEventRow(event, rfc3339(when), reason, entry.index)
        )
    return rows


def key_views(
    records: Iterable[Any], events: Mapping[str, list[KeyEventRow]] | None = None
) -> dict[str, KeyView]:
    """Keys and their events from :meth:`Ledger.keys` records (the events from
    :func:`key_event_rows` when given, else from the records' last state)."""
    out: dict[str, KeyView] = {}
    for rec in records:
        if events is not None and rec.keyid in events:
            rows = events[rec.keyid]
        else:
            rows = [KeyEventRow("added", rfc3339(rec.added_at), "", rec.added_index)]
            for event, when in (("revoked", rec.revoked_at), ("retired", rec.retired_at)):
                if when is not None:
                    rows.append(KeyEventRow(event, rfc3339(when), _s(rec.reason), rec.ended_index))
        out[rec.keyid] = KeyView(
            keyid=rec.keyid,
            name=_s(rec.name),
            algorithm=_s(rec.algorithm),
            status=_s(rec.status),
            public_key_pem=_s(rec.public_pem),
            events=tuple(rows),
        )
    return out


# -- the verdict -----------------------------------------------------------------

#: anomalies that make the overall verdict "Verified, with findings" (the pages call them
#: findings, and the others, secret values recorded as salted digests, notes)
SERIOUS_ANOMALIES = FINDING_KINDS


def signature_status(envelope: bytes, key: PublicKey | None) -> tuple[bool, str]:
    """Whether ``envelope`` verifies with its signer's registered ``key``, and why not."""
    if key is None:
        return False, "the signing key is not registered in the ledger"
    try:
        Envelope.from_bytes(envelope).verify([key])
    except Exception as e:  # noqa: BLE001 - recorded as a failed check
        return False, str(e)
    return True, ""


def signed_in_force(entry: Any, key: PublicKey | None, records: Sequence[Any]) -> tuple[bool, str]:
    """:func:`signature_status` of the ledger entry ``entry``, and whether its signer's key
    could sign it when it was appended (``records``: the keys as the pack's key events left
    them), as ``escrow verify`` and ``pack verify`` judge it: an entry signed by a key
    retired or revoked before it (written into the database, not appended) is no evidence."""
    from escrow.verification import key_valid_at

    verified, problem = signature_status(entry.envelope, key)
    if not verified:
        return verified, problem
    valid, why = key_valid_at(list(records), str(entry.signer), entry)
    return (True, "") if valid else (False, why)


@dataclass(frozen=True)
class BuildFacts:
    """What a pack's verdict and anomalies are computed from, for one build in scope:
    :func:`collect` reads them from the ledger, ``escrow pack verify`` from the evidence
    embedded in the pack; both then call :func:`assess`."""

    index: int
    statement: Mapping[str, Any]  # the build manifest's in-toto statement
    signer: str  # the key ID that signed it
    signer_status: str  # that key's status at the pack's generation time ("" if unknown)
    signature_verified: bool
    inclusion_verified: bool
    rebuilds: tuple[Verdict, ...] = ()  # the rebuild verdicts pointing at it, in log order


@dataclass(frozen=True)
class Assessment:
    """A pack's summary, overall verdict and anomalies (:func:`assess`)."""

    summary: SummaryView
    #: each build's own findings and notes (but a secret value's), shown on its page
    notes: Mapping[int, tuple[Anomaly, ...]]
    overall: str
    checks_ok: bool
    #: ``image ID -> (index, project)``: the build that made each image, as the rules
    #: trace a base (:func:`makers`), named on the pages beside each base image
    made: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def summary_doc(self) -> dict[str, Any]:
        """The pack statement's ``summary``."""
        s = self.summary
        return {
            "builds": s.builds,
            "failed": s.failed,
            "signaturesVerified": s.signatures_verified,
            "inclusionVerified": s.inclusion_verified,
            "rebuilds": {name.replace(" ", "-"): n for name, n in s.verdicts},
            "anomalies": len(s.anomalies),  # findings and notes
            "findings": len(s.findings),
            "notes": len(s.notes),
            "overall": self.overall,
        }


def _maker(
    made: Mapping[str, tuple[int, str]] | None, image_id: str, index: int
) -> tuple[int, str] | None:
    """The build of ``made`` that made ``image_id`` before entry ``index``, if any."""
    maker = (made or {}).get(image_id) if image_id else None
    return maker if maker is not None and maker[0] < index else None


def _built_images(builds: Sequence[BuildFacts]) -> dict[str, tuple[int, str]]:
    """``image ID -> (index, project)`` of the builds that succeeded, the first of each."""
    out: dict[str, tuple[int, str]] = {}
    for b in sorted(builds, key=lambda b: b.index):
        p = _d(b.statement.get("predicate"))
        build = _d(p.get("build"))
        iid = _s(_d(p.get("image")).get("id"))
        if iid and _s(build.get("status")) == "succeeded":
            out.setdefault(iid, (b.index, _s(build.get("project"))))
    return out


def not_counted(build: BuildFacts) -> str:
    """Why a supporting build is not taken as the provenance of the bases it made (verdict
    rules 3), or "" when it is: its signature and inclusion verified, and the key that
    signed it is not revoked (a revoked key's entries prove nothing)."""
    if not build.signature_verified:
        return "its signature did not verify"
    if not build.inclusion_verified:
        return "its inclusion proof did not verify"
    if build.signer_status == "revoked":
        return f"it is signed by key {build.signer[:16]}…, revoked since"
    return ""


def makers(
    builds: Sequence[BuildFacts], supporting: Sequence[BuildFacts], rules: VerdictRules
) -> dict[str, tuple[int, str]]:
    """``image ID -> (index, project)``: the first succeeded build that made each image,
    of those ``rules`` trace a base to — the builds in scope (rules 2), and the supporting
    builds that count (rules 3, :func:`not_counted`); none by rules 1."""
    if not rules.traced_bases:
        return {}
    counted = [b for b in supporting if not not_counted(b)] if rules.traced_outside else []
    return _built_images([*builds, *counted])


def failed_finding(index: int, predicate: Mapping[str, Any]) -> str:
    """The finding of the failed build of entry ``index`` (verdict rules 4): where it
    failed and with what exit code, as its manifest records them (numbers only: what the
    build printed is on its page, under "Failure"), and that it made no image."""
    build = _d(predicate.get("build"))
    failure = _d(build.get("failure"))
    step, code = _i(failure.get("step")), _i(failure.get("exitCode"))
    what = "the recorded command" if _s(build.get("kind")) == "command" else "the build"
    where = f" at step {step}" if step is not None else ""
    how = f" with exit code {code}" if code is not None else ""
    return f"entry {index}: {what} failed{where}{how} and produced no image"


def assess(
    builds: Sequence[BuildFacts],
    *,
    note_ok: bool,
    consistency_ok: bool = True,
    rules: VerdictRules = CURRENT_RULES,
    supporting: Sequence[BuildFacts] = (),
) -> Assessment:
    """The summary, overall verdict and anomalies of a pack of ``builds`` (in log order),
    judged by ``rules``: the one computation behind the cover of ``escrow pack`` and the
    "verdict" check of ``escrow pack verify``.  ``supporting``: the builds outside the
    scope embedded because they made base images of ``builds`` (judged by nothing, only
    traced to, by rules 3)."""
    seen_base: dict[str, tuple[str, int, str]] = {}
    made = makers(builds, supporting, rules)
    anomalies: list[Anomaly] = []
    notes: dict[int, tuple[Anomaly, ...]] = {}
    counts: dict[str, int] = {v.value: 0 for v in Verdict}
    for b in builds:
        p = _d(b.statement.get("predicate"))
        mine: list[Anomaly] = []
        anchor = f"entry-{b.index}"
        failed = _s(_d(p.get("build")).get("status")) == "failed"
        if failed and rules.failed_builds_found:
            mine.append(Anomaly("failed", failed_finding(b.index, p), anchor))
        if b.signer_status == "retired" and rules.retired_keys_noted:
            text = (
                f"entry {b.index} is signed by key {b.signer[:16]}…, retired since "
                "(not revoked: in force when it signed)"
            )
            mine.append(Anomaly("key-retired", text, anchor))
        elif b.signer_status in ("revoked", "retired"):
            text = f"entry {b.index} is signed by key {b.signer[:16]}…, now {b.signer_status}"
            mine.append(Anomaly("key", text, anchor))
        for base in _l(_d(p.get("inputs")).get("baseImages")):
            ref, iid = _s(_d(base).get("reference")), _s(_d(base).get("imageId"))
            dig = _s(_d(base).get("repoDigest"))
            if not ref or not iid:
                continue
            prev = seen_base.get(ref)
            moved = prev is not None and bool(dig) and bool(prev[2]) and prev[2] != dig
            if prev is not None and (prev[0] != iid or moved):
                text = f"base image {ref} changed between entry {prev[1]} and entry {b.index}"
                if moved:
                    text += (
                        ": the tag now points to another digest ("
                        f"{prev[2].rsplit('@', 1)[-1]} -> {dig.rsplit('@', 1)[-1]})"
                    )
                maker = _maker(made, iid, b.index) if prev[0] != iid else None
                if maker is not None:
                    text += f", rebuilt by entry {maker[0]}"
                    text += f" (project {maker[1]})" if maker[1] else ""
                    mine.append(Anomaly("base-rebuilt", text, anchor))
                else:
                    mine.append(Anomaly("base", text, anchor))
            seen_base[ref] = (iid, b.index, dig)
        anomalies.extend(mine)
        secrets = [
            _s(_d(a).get("name"))
            for a in _l(_d(p.get("inputs")).get("buildArgs"))
            if _d(a).get("secret")
        ]
        if secrets:
            text = f"entry {b.index}: secret build args recorded as salted digests: " + (
                ", ".join(secrets)
            )
            anomalies.append(Anomaly("secret", text, anchor))
        if _d(p.get("command")).get("inputsChanged"):
            text = f"entry {b.index}: the build context changed while it was being built"
            mine.append(Anomaly("inputs", text, anchor))
            anomalies.append(mine[-1])
        notes[b.index] = tuple(mine)
        standing = standing_verdict(b.rebuilds, rules.conclusive_rebuilds)
        if standing is not None:
            verdict = standing
        elif failed and rules.failed_builds_found:  # no image: nothing to rebuild
            verdict = Verdict.NOT_APPLICABLE
        else:
            verdict = Verdict.NOT_CHECKED
        counts[verdict.value] += 1
    status = (_s(_d(_d(b.statement.get("predicate")).get("build")).get("status")) for b in builds)
    summary = SummaryView(
        builds=len(builds),
        failed=sum(1 for s in status if s == "failed"),
        signatures_verified=sum(1 for b in builds if b.signature_verified),
        signatures_total=len(builds),
        inclusion_verified=sum(1 for b in builds if b.inclusion_verified),
        verdicts=tuple(
            (v.value, counts[v.value])
            for v in Verdict
            if v is not Verdict.NOT_APPLICABLE or rules.failed_builds_found
        ),
        anomalies=tuple(anomalies),
        rules=rules,
    )
    checks_ok = (
        note_ok
        and summary.signatures_verified == len(builds)
        and summary.inclusion_verified == len(builds)
        and consistency_ok
    )
    bad_rebuilds = counts[Verdict.DIFFERENT.value] + counts[Verdict.NOT_REPRODUCED.value]
    serious = [a for a in anomalies if a.kind in SERIOUS_ANOMALIES]
    if not checks_ok:
        overall = FAILED_VERDICT
    elif bad_rebuilds or serious:
        overall = "Verified, with findings"
    else:
        overall = "Verified"
    return Assessment(summary=summary, notes=notes, overall=overall, checks_ok=checks_ok, made=made)


# -- the whole pack --------------------------------------------------------------


def _all_entries(ledger: LedgerReader, **filters: Any) -> list[Any]:
    out: list[Any] = []
    after: int | None = None
    while True:
        page = list(ledger.entries(**filters, after=after, limit=PAGE))
        out.extend(page)
        if len(page) < PAGE:
            return out
        after = page[-1].index


def pack_id_for(predicate_core: Mapping[str, Any]) -> str:
    h = hashlib.sha256(canonical_bytes(dict(predicate_core))).hexdigest()[:16].upper()
    return "EP-" + "-".join(h[i : i + 4] for i in range(0, 16, 4))


def _too_many(builds: int, limit: int) -> InputError:
    """The refusal of a scope of ``builds`` builds, over the ``limit`` a pack holds."""
    return InputError(
        f"The scope of this pack holds {builds:,} builds, more than the {limit:,} a pack "
        "holds (each takes about two pages, and the pack needs some 0.25 MB of memory a "
        "page).",
        hint="Make one pack per project (--project) or per quarter (--since/--until), "
        "or raise the limit with --max-builds N on a machine with the memory.",
    )


def _runs(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """``[start, end)`` ranges covering ``indexes`` (``3,5,6,7`` → ``(3, 4), (5, 8)``)."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _scope_count(ledger: LedgerReader, request: PackRequest, size: int) -> int | None:
    """How many builds the scope of ``request`` holds among the first ``size`` entries,
    counted through the ledger's query index without loading one (``None`` for a reader
    that cannot count: they are then counted once loaded)."""
    counter = getattr(ledger, "count_entries", None)
    if counter is None:
        return None
    ranges = _runs(request.entries) if request.entries else [(0, size)]
    return sum(
        int(
            counter(
                project=project,
                since=request.since,
                until=request.until,
                predicate_type=BUILD_MANIFEST,
                ranges=[(a, min(b, size)) for a, b in ranges if a < size],
            )
        )
        for project in (tuple(dict.fromkeys(request.projects)) or (None,))
    )


def collect(ledger: LedgerReader, request: PackRequest, signer: SignerView) -> Collected:
    """Read the ledger and build the view model and evidence of one pack."""
    from escrow.ledger import checkpoint as cpmod
    from escrow.ledger import merkle
    from escrow.ledger.store import replay_key_events

    # the checkpoint signed again with the count and digest of the log's key events below
    # it (an extension line), so that a pack leaving one out fails `pack verify`
    cp = ledger.key_events_checkpoint(request.tree_size)
    verifier = ledger.verifier_key()
    try:
        cpmod.verify_checkpoint(cp.note, verifier)
        note_ok = True
    except Exception:  # noqa: BLE001 - shown as "not verified" in the pack
        note_ok = False
    size, root = int(cp.size), bytes(cp.root)

    # builds in scope
    missing = [i for i in request.entries if i >= size]
    if missing:
        raise InputError(
            f"The ledger has no entry {missing[0]} (it holds {size} entries).",
            hint="Check the --entries list against `escrow log`.",
        )
    counted = _scope_count(ledger, request, size)
    if counted is not None and counted > request.max_builds:  # before loading any of them
        raise _too_many(counted, request.max_builds)
    if request.entries:
        chosen = [ledger.get(i) for i in request.entries]
        scoped = [
            e
            for e in chosen
            if e.predicate_type == BUILD_MANIFEST
            and (not request.projects or e.project in request.projects)
            and (request.since is None or e.integrated_at >= request.since)
            and (request.until is None or e.integrated_at < request.until)
        ]
    else:
        filters: dict[str, Any] = {"predicate_type": BUILD_MANIFEST}
        if request.since:
            filters["since"] = request.since
        if request.until:
            filters["until"] = request.until
        if request.projects:
            scoped = []
            for project in request.projects:
                scoped.extend(_all_entries(ledger, project=project, **filters))
        else:
            scoped = _all_entries(ledger, **filters)
    scoped = sorted({e.index: e for e in scoped if e.index < size}.values(), key=lambda e: e.index)
    if not scoped:  # fail closed: a pack that evidences nothing must not read "verified"
        raise InputError(
            "No recorded build is in the scope of this pack.",
            hint="Check --project, --since, --until and --entries against `escrow log`.",
        )
    if len(scoped) > request.max_builds:  # a reader that could not count them first
        raise _too_many(len(scoped), request.max_builds)

    # keys and their history (key events are ledger entries, embedded as evidence)
    key_entries = [e for e in _all_entries(ledger, predicate_type=KEY_EVENT) if e.index < size]
    # as the key events up to the checkpoint left them (later ones are not in the pack)
    key_records = replay_key_events(key_entries, request.generated_at)
    key_states = key_views(key_records, key_event_rows(key_entries))
    public_keys: dict[str, PublicKey] = {}
    for keyid, k in key_states.items():
        if k.public_key_pem:
            try:
                public_keys[keyid] = PublicKey.from_pem(k.public_key_pem)
            except InputError:
                continue

    # rebuild verdicts pointing at the builds in scope
    wanted = {e.index for e in scoped}
    rebuilds: dict[int, list[tuple[Any, RebuildView]]] = {}
    for r in _all_entries(ledger, predicate_type=REBUILD_VERIFICATION):
        if r.index >= size:
            continue
        rp = _d(r.statement().get("predicate"))
        original = original_index(rp)
        if original is None or original not in wanted:
            continue
        verdict, diffs = verdict_of(rp)
        rebuild = _d(rp.get("rebuild"))
        rebuilds.setdefault(original, []).append(
            (
                r,
                RebuildView(
                    index=r.index,
                    verdict=verdict,
                    rebuilt_on=_s(rebuild.get("finishedOn") or rebuild.get("startedOn"))
                    or rfc3339(r.integrated_at),
                    image_id=_s(rebuild.get("imageId")),
                    differences=diffs,
                ),
            )
        )

    proofs: dict[int, ProofRecord] = {}

    def prove(entry: Any) -> tuple[tuple[str, ...], bool]:
        hashes = ledger.inclusion_proof(entry.index, size)
        leaf = merkle.leaf_hash(entry.envelope)
        ok = leaf.hex() == entry.leaf_hash and merkle.verify_inclusion(
            leaf, entry.index, size, hashes, root
        )
        hexes = tuple(h.hex() for h in hashes)
        proofs[entry.index] = ProofRecord(
            entry.index, entry.leaf_hash, hexes, rfc3339(entry.integrated_at)
        )
        return hexes, ok

    # each build's facts (its signature checked again, its inclusion proved), then the
    # verdict and anomalies computed from them (:func:`assess`, as ``pack verify`` does)
    facts: list[BuildFacts] = []
    # what the build's page shows besides its facts: the entry, its signer's key (as
    # registered, and as parsed), why its signature did not verify, its inclusion proof
    shown: list[tuple[Any, KeyView | None, PublicKey | None, str, tuple[str, ...]]] = []
    signed_count: dict[str, int] = {}
    for entry in scoped:
        st = entry.statement()
        key = key_states.get(entry.signer)
        pub = public_keys.get(entry.signer)
        verified, problem = signed_in_force(entry, pub, key_records)
        signed_count[entry.signer] = signed_count.get(entry.signer, 0) + 1
        hexes, inc_ok = prove(entry)
        rb = rebuilds.get(entry.index, [])
        for r, _ in rb:
            prove(r)
        facts.append(
            BuildFacts(
                index=entry.index,
                statement=st,
                signer=entry.signer,
                signer_status=key.status if key is not None else "",
                signature_verified=verified,
                inclusion_verified=inc_ok,
                rebuilds=tuple(v.verdict for _, v in rb),
            )
        )
        shown.append((entry, key, pub, problem, hexes))
    for entry in key_entries:
        prove(entry)
    # the builds outside the scope that made base images of builds in it (verdict rules
    # 3), embedded with their inclusion proofs: the pack itself shows where a rebuilt base
    # came from.  One whose signature or inclusion does not verify is left out (it could
    # never be evidence); one signed by a key revoked since is shown, and not counted
    supporting: list[BuildFacts] = []
    supporting_entries: dict[int, Any] = {}
    for entry in _base_makers(ledger, facts, size):
        key = key_states.get(entry.signer)
        verified, _ = signed_in_force(entry, public_keys.get(entry.signer), key_records)
        if not verified:
            continue
        if not prove(entry)[1]:
            del proofs[entry.index]
            continue
        supporting_entries[entry.index] = entry
        supporting.append(
            BuildFacts(
                index=entry.index,
                statement=entry.statement(),
                signer=entry.signer,
                signer_status=key.status if key is not None else "",
                signature_verified=True,
                inclusion_verified=True,
            )
        )

    consistency_view: ConsistencyView | None = None
    consistency_doc: dict[str, Any] | None = None
    if request.since_checkpoint is not None:
        consistency_view, consistency_doc = _consistency(
            ledger, request.since_checkpoint, verifier, size, root
        )
    assessment = assess(
        facts,
        note_ok=note_ok,
        consistency_ok=consistency_view is None or consistency_view.verified,
        supporting=supporting,
    )
    summary, overall, checks_ok = assessment.summary, assessment.overall, assessment.checks_ok
    outside = {b.index for b in supporting}
    builds: list[BuildView] = []
    for (entry, key, pub, problem, hexes), fact in zip(shown, facts, strict=True):
        builds.append(
            build_view(
                index=entry.index,
                leaf_hash=entry.leaf_hash,
                integrated_at=rfc3339(entry.integrated_at),
                statement=fact.statement,
                signer=entry.signer,
                signer_name=key.name if key else "",
                algorithm=(key.algorithm if key else "") or (pub.type.value if pub else ""),
                signature_verified=fact.signature_verified,
                signature_problem=problem,
                inclusion_proof=hexes,
                inclusion_verified=fact.inclusion_verified,
                rebuilds=[v for _, v in rebuilds.get(entry.index, [])],
                anomalies=[a.text for a in assessment.notes.get(entry.index, ()) if a.finding],
                notes=[a.text for a in assessment.notes.get(entry.index, ()) if not a.finding],
                made=assessment.made,
                outside=outside,
            )
        )
    supporting_views = tuple(
        supporting_view(b, supporting_entries[b.index], key_states.get(b.signer), facts)
        for b in supporting
    )

    # keys in force during the period (valid at some time in it), and any key that
    # signed an entry in scope, whatever its state now (with all its events: a revocation
    # after the entries is what makes them a finding).  The period of an --entries pack is
    # that of its entries, from the first to the last: a key added after them, or ended
    # before them, could not have signed them (the pack still embeds every key event of
    # the log below its checkpoint, which the checkpoint's key-events line commits to)
    if request.entries:
        in_period = {rec.keyid for rec in key_records if _in_force_at(rec, scoped)}
    else:
        in_period = {
            rec.keyid for rec in key_records if _in_force(rec, request.since, request.until)
        }
    for b in supporting:  # builds embedded in the pack too, and their keys' history
        signed_count[b.signer] = signed_count.get(b.signer, 0) + 1
    in_force = in_period | {keyid for keyid, n in signed_count.items() if n}
    keys = tuple(
        replace(k, entries_signed=signed_count.get(k.keyid, 0))
        for k in sorted(key_states.values(), key=lambda k: k.events[0].index or 0)
        if k.keyid in in_force
    )

    scope = ScopeView(
        projects=tuple(request.projects),
        since=rfc3339(request.since) if request.since else "",
        until=rfc3339(request.until) if request.until else "",
        entries=tuple(b.index for b in builds),
        requested_entries=request.entries_text,
    )
    checkpoint_doc: dict[str, Any] = {"origin": cp.origin, "size": size, "rootHash": root.hex()}
    core: dict[str, Any] = {
        "scope": {
            "projects": list(scope.projects),
            "since": scope.since or None,
            "until": scope.until or None,
            "entries": list(scope.entries),
        },
        "requester": request.requester or None,
        "generatedAt": rfc3339(request.generated_at),
        "checkpoint": checkpoint_doc,
    }
    pack_id = pack_id_for(core)
    envelope_entries = {e.index: e.envelope for e in scoped}
    for rb_list in rebuilds.values():
        for r, _ in rb_list:
            envelope_entries[r.index] = r.envelope
    for k_entry in key_entries:
        envelope_entries[k_entry.index] = k_entry.envelope
    for s_entry in supporting_entries.values():
        envelope_entries[s_entry.index] = s_entry.envelope
    predicate: dict[str, Any] = {
        "packId": pack_id,
        **core,
        "checkpoint": {**checkpoint_doc, "note": cp.note},
        "evidence": sorted(envelope_entries),
        "signer": {"certificateSha256": signer.sha256, "subject": signer.subject},
        "summary": assessment.summary_doc(),
        "verdictRules": assessment.summary.rules.version,
        "supportingBuilds": sorted(outside),
        "escrowVersion": __version__,
    }
    if consistency_view is not None:
        predicate["sinceCheckpoint"] = {
            "size": consistency_view.old_size,
            "rootHash": consistency_view.old_root_hex,
            "verified": consistency_view.verified,
        }
    ledger_view = LedgerView(
        origin=cp.origin,
        size=size,
        root_hex=root.hex(),
        root_b64=base64.b64encode(root).decode("ascii"),
        note=cp.note,
        verifier_key=verifier,
        note_verified=note_ok,
        consistency=consistency_view,
        key_events=len(key_entries),
    )
    view = PackView(
        pack_id=pack_id,
        title=f"Audit pack {pack_id}",
        requester=request.requester,
        generated_at=rfc3339(request.generated_at),
        scope=scope,
        ledger=ledger_view,
        summary=summary,
        builds=tuple(builds),
        keys=keys,
        signer=signer,
        overall=overall,
        overall_ok=checks_ok,
        escrow_version=__version__,
        supporting=supporting_views,
    )
    evidence = Evidence(
        envelopes=tuple(sorted(envelope_entries.items())),
        proofs=tuple(proofs[i] for i in sorted(proofs)),
        checkpoint_note=cp.note,
        tree_size=size,
        root_hex=root.hex(),
        verifier_key=verifier,
        keys=keys,
        consistency=consistency_doc,
    )
    return Collected(view=view, evidence=evidence, predicate=predicate)


def _input_images(statement: Mapping[str, Any]) -> list[str]:
    """The image IDs a build took as input: its base images, and the images its
    ``COPY --from`` copied files from."""
    inputs = _d(_d(statement.get("predicate")).get("inputs"))
    images = [*_l(inputs.get("baseImages")), *_l(inputs.get("copyFromImages"))]
    return [iid for iid in (_s(_d(x).get("imageId")) for x in images) if iid]


def _base_makers(ledger: LedgerReader, builds: Sequence[BuildFacts], size: int) -> list[Any]:
    """The entries outside the scope (``builds``) that made input images of builds in it
    (base images and ``COPY --from`` images): for each, the first succeeded build of it in
    the ledger below the checkpoint (:func:`escrow.verification.built_by`), when that is
    earlier than a build in scope that used the image and not itself in scope."""
    from escrow.verification import built_by

    first: dict[str, int | None] = {}  # image ID -> the first build that made it
    inside = {b.index for b in builds}
    wanted: set[int] = set()
    for build in builds:
        for iid in _input_images(build.statement):
            if iid not in first:
                maker = built_by(ledger, iid, size)
                first[iid] = int(maker["index"]) if maker is not None else None
            index = first[iid]
            if index is not None and index < build.index and index not in inside:
                wanted.add(index)
    return [ledger.get(i) for i in sorted(wanted)]


def supporting_view(
    build: BuildFacts, entry: Any, key: KeyView | None, users: Sequence[BuildFacts]
) -> SupportingBuildView:
    """The view of a supporting build (:class:`SupportingBuildView`); ``users``: the
    builds in scope, of which those after it that took its image as input are named."""
    p = _d(build.statement.get("predicate"))
    b = _d(p.get("build"))
    image_id = _s(_d(p.get("image")).get("id"))
    used_by = tuple(
        u.index for u in users if u.index > build.index and image_id in _input_images(u.statement)
    )
    return SupportingBuildView(
        index=build.index,
        leaf_hash=entry.leaf_hash,
        integrated_at=rfc3339(entry.integrated_at),
        project=_s(b.get("project")),
        build_id=_s(b.get("id")),
        image_id=image_id,
        tags=tuple(_s(t) for t in _l(_d(p.get("image")).get("tags"))),
        finished_on=_s(b.get("finishedOn")),
        signer=build.signer,
        signer_name=key.name if key is not None else "",
        signature_verified=build.signature_verified,
        inclusion_verified=build.inclusion_verified,
        used_by=used_by,
        not_counted=not_counted(build),
    )


def _consistency(
    ledger: LedgerReader, old_note: str, verifier: str, size: int, root: bytes
) -> tuple[ConsistencyView, dict[str, Any]]:
    from escrow.ledger import checkpoint as cpmod
    from escrow.ledger import merkle

    # a note of another log, or one this log does not extend, is a check that failed
    # (exit 1, as `escrow ledger consistency --from` and `deposit export --since-checkpoint`
    # say of the same file), refused before anything is rendered or recorded; a file that
    # is no checkpoint note at all was refused as input when it was read (exit 2)
    problem = ""
    nothing = "nothing was written or recorded"
    latest = ledger.checkpoint()
    claimed = old_note.split("\n", 1)[0]
    if claimed != latest.origin:  # another log's: say so, not that its signature fails
        raise CheckFailed(
            f"The previous checkpoint is for the log {claimed[:100]!r}, not this one.",
            hint=f"Give a checkpoint note this ledger issued; {nothing}.",
        )
    try:
        old = cpmod.verify_checkpoint(old_note, verifier)
        note_ok = True
    except EscrowError as e:
        why = e.message.rstrip(".")
        raise SignatureError(
            f"The previous checkpoint does not verify with this ledger's key "
            f"({why[:1].lower() + why[1:]}).",
            hint=f"Give the checkpoint note this ledger issued earlier; {nothing}.",
        ) from e
    old_size, old_root = int(old.size), bytes(old.root)
    if old_size > size and old_size <= int(latest.size):  # --tree-size below it: input
        raise InputError(
            f"The previous checkpoint has {old_size} entries, more than the {size} of --tree-size.",
            hint=f"Give --tree-size {old_size} or more, or an earlier checkpoint; {nothing}.",
        )
    if old_size > size:
        raise CheckFailed(
            f"The previous checkpoint has {old_size} entries, more than the ledger's {size}: "
            "the log does not extend it.",
            hint="The log was cut back or rewritten after the checkpoint was saved (restored "
            "from an older backup, or forked): keep the checkpoint and the database as they "
            f"are; {nothing}.",
        )
    proof = ledger.consistency_proof(old_size, size) if 0 < old_size < size else []
    if old_size == size:
        ok = old_root == root
    elif old_size == 0:
        ok = True
    else:
        ok = merkle.verify_consistency(old_size, size, old_root, root, proof)
    if not ok:
        problem = "the consistency proof does not verify, so the log was rewritten or forked"
    view = ConsistencyView(
        old_size=old_size,
        old_root_hex=old_root.hex(),
        new_size=size,
        new_root_hex=root.hex(),
        proof=tuple(h.hex() for h in proof),
        old_note_verified=note_ok,
        verified=ok,
        problem=problem,
    )
    doc = {
        "oldCheckpoint": old_note,
        "oldSize": old_size,
        "oldRootHash": old_root.hex(),
        "newSize": size,
        "newRootHash": root.hex(),
        "proof": list(view.proof),
    }
    return view, doc


AUDIT_PACK_TYPE = AUDIT_PACK
