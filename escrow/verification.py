"""Verify one ledger entry: signature, inclusion under the latest checkpoint, and the image.

Used by ``escrow verify``; every check is reported, and a verification with
nothing to check is an error (fail closed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from escrow.blobs import digest_prefix
from escrow.documents.types import BUILD_MANIFEST, KEY_EVENT, REBUILD_VERIFICATION
from escrow.errors import CheckFailed, EscrowError, InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from escrow.ledger.store import Entry, Ledger
    from escrow.pack.collect import LedgerReader
    from escrow.server.client import RemoteLedger


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    #: not run (``ok`` stays true: nothing was found wrong), ``detail`` says why
    skipped: bool = False


@dataclass
class EntryVerification:
    index: int
    leaf_hash: str
    project: str | None
    image_id: str | None
    predicate_type: str
    checks: list[Check] = field(default_factory=list)
    rebuild_verdict: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def _key_history(ledger: Ledger | RemoteLedger) -> list[Any]:
    """The keys as the ledger's own key events left them (each event checked against the
    log key), never the key table or the server's key list, which a database edit or a
    server could change: a revoked key shown active again must not make an entry valid."""
    from datetime import UTC, datetime

    from escrow.ledger import checkpoint as cp
    from escrow.ledger.store import replay_key_events
    from escrow.signing.dsse import Envelope

    _, _, log_key = cp.parse_verifier_key(ledger.verifier_key())
    events = []
    after: int | None = None
    while True:
        page = ledger.entries(predicate_type=KEY_EVENT, after=after, limit=1000)
        for e in page:
            try:
                Envelope.from_bytes(e.envelope).verify([log_key])
                if e.statement().get("predicateType") == KEY_EVENT:
                    events.append(e)
            except EscrowError:
                continue  # not a key event of this log: `escrow ledger verify` names it
        if len(page) < 1000:
            break
        after = page[-1].index
    return replay_key_events(events, datetime.now(UTC))


def key_valid_at(keys: list[Any], keyid: str, entry: Entry) -> tuple[bool, str]:
    """Whether the key ``keyid`` (of ``keys``, replayed from the log's key events) could
    sign ``entry``, and why.  Decided by the entry's position in the log, as the append
    decided it and as `escrow ledger verify`, `pack verify` and a deposit's import decide
    it: the key was added by an event before the entry, and neither revoked nor retired
    by one before it — except that after a retirement it signs until the time the
    retirement takes effect (:meth:`~escrow.ledger.models.KeyRecord.retired_before`)."""
    for rec in keys:
        if rec.keyid != keyid:
            continue
        if rec.added_index >= entry.index:
            return False, f"key {keyid[:16]}… was added after the entry was appended"
        if rec.revoked_at is not None and (
            rec.ended_index is None or rec.ended_index < entry.index
        ):
            return False, f"key {keyid[:16]}… was revoked before the entry was appended"
        if rec.retired_before(entry.index, entry.integrated_at):
            return False, f"key {keyid[:16]}… was retired before the entry was appended"
        note = f" (since {rec.status})" if rec.status != "active" else ""
        return True, f"signed by {rec.name} key {keyid[:16]}…{note}"
    return False, f"key {keyid[:16]}… is not registered in the ledger"


def verify_entry(
    ledger: Ledger | RemoteLedger,
    entry: Entry,
    *,
    engine: Any | None = None,
    engine_unavailable: str | None = None,
) -> EntryVerification:
    """Run every check on ``entry``; never raises for a failed check, only records it."""
    from escrow.ledger import checkpoint as cp
    from escrow.ledger import merkle
    from escrow.ledger.store import edited_fields, signed_fields
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

    # What the signed statement says, not the ledger's query columns (or a server's
    # answer), which can be edited without breaking any signature or proof.
    ptype, project, image_id = signed_fields(entry)
    result = EntryVerification(
        index=entry.index,
        leaf_hash=entry.leaf_hash,
        project=project,
        image_id=image_id,
        predicate_type=ptype or entry.predicate_type,
    )
    add = result.checks.append

    # 1. signature: a key event by the ledger's log key (it alone registers, revokes and
    #    retires keys); anything else by a registered key valid when it was appended
    try:
        env = Envelope.from_bytes(entry.envelope)
        if ptype == KEY_EVENT:
            _, _, log_key = cp.parse_verifier_key(ledger.verifier_key())
            env.verify([log_key])
            add(Check("signature", True, f"signed by the ledger's log key {log_key.keyid[:16]}…"))
        else:
            history = _key_history(ledger)
            keys = {k.keyid: PublicKey.from_pem(k.public_pem) for k in history}
            # one signer valid when the entry was appended is enough, as for the append
            verdicts = [key_valid_at(history, k, entry) for k in env.verify(keys)]
            add(Check("signature", *next((v for v in verdicts if v[0]), verdicts[0])))
    except EscrowError as e:
        add(Check("signature", False, e.diagnostics()))

    # 2. inclusion of the exact stored bytes under the latest signed checkpoint
    try:
        checkpoint = cp.verify_checkpoint(ledger.checkpoint().note, ledger.verifier_key())
        leaf = merkle.leaf_hash(entry.envelope)
        proof = ledger.inclusion_proof(entry.index, checkpoint.size)
        included = merkle.verify_inclusion(
            leaf, entry.index, checkpoint.size, proof, checkpoint.root
        )
        add(
            Check(
                "inclusion",
                included,
                f"included in the signed checkpoint of size {checkpoint.size}"
                if included
                else f"the stored bytes do not hash into checkpoint {checkpoint.size}'s root",
            )
        )
    except EscrowError as e:
        add(Check("inclusion", False, e.diagnostics()))

    # the ledger's query columns must say what the envelope says
    which = edited_fields(entry)
    if which:
        verb = "disagree" if "," in which else "disagrees"
        add(
            Check(
                "record",
                False,
                f"the ledger's indexed {which} {verb} with the signed envelope "
                "(the database was edited; run `escrow ledger verify`)",
            )
        )

    # 3. the image a build manifest records, against the engine's, when it is there
    has_image = bool(image_id) and ptype == BUILD_MANIFEST
    if has_image and engine is None and engine_unavailable:
        reason = engine_unavailable.rstrip(".")
        add(Check("image", True, f"not compared: {reason[:1].lower()}{reason[1:]}", skipped=True))
    if has_image and engine is not None:
        try:
            statement = entry.statement()
            recorded = [layer["diffId"] for layer in statement["predicate"].get("layers", [])]
            found = engine.image_facts(image_id)
        except (EscrowError, KeyError, TypeError) as e:
            add(Check("image", False, f"cannot compare the image: {e}"))
        else:
            if found is None:
                add(Check("image", True, "image not in the engine; not compared", skipped=True))
            else:
                same = found["id"] == image_id and found["diff_ids"] == recorded
                add(
                    Check(
                        "image",
                        same,
                        "engine's image ID and diff IDs equal the recorded ones"
                        if same
                        else "the engine's image differs from the recorded image ID or diff IDs",
                    )
                )

    # 4. each base image that a recorded build of this ledger made (a phoenix rebuild of the
    #    base, before this entry): that build's own entry verified, its bases in turn
    if ptype == BUILD_MANIFEST:
        for check in _base_checks(ledger, entry):
            add(check)

    # 5. the rebuild verdict a build stands by, when there is one: its latest conclusive one
    #    (a later rebuild that could not be made, "unknown", does not undo it), as packs do
    if ptype == BUILD_MANIFEST:
        from escrow.pack.model import Verdict, standing_verdict

        rebuilds: list[Verdict] = []
        try:
            for rb in _every_entry(ledger, predicate_type=REBUILD_VERIFICATION, image_id=image_id):
                pred = rb.statement().get("predicate", {})
                if pred.get("original", {}).get("index") == entry.index:
                    rebuilds.append(Verdict(str(pred.get("verdict", {}).get("overall"))))
        except (EscrowError, AttributeError, TypeError, ValueError):
            pass
        standing = standing_verdict(rebuilds)
        if standing is not None:
            result.rebuild_verdict = standing.value

    if not result.checks:
        raise InputError(f"Entry {entry.index} has nothing that can be verified.")
    return result


def _base_checks(ledger: Ledger | RemoteLedger, entry: Entry) -> list[Check]:
    """One "base" check for each base image of the build ``entry`` records: made by an
    earlier build of this ledger, whose entry verifies (signature, inclusion, record, and
    its own bases); else skipped, saying the image is no build of this ledger."""
    try:
        inputs = (entry.statement().get("predicate") or {}).get("inputs") or {}
        bases = [b for b in inputs.get("baseImages") or [] if isinstance(b, dict)]
    except (EscrowError, AttributeError, TypeError):
        return []
    checks: list[Check] = []
    seen: set[tuple[str, str]] = set()
    for base in bases:
        ref, image = str(base.get("reference") or ""), str(base.get("imageId") or "")
        if not image or (ref, image) in seen:
            continue  # FROM scratch, or a base two stages share
        seen.add((ref, image))
        what = f"{ref} ({image[:19]})" if ref else image[:19]
        try:
            maker = built_by(ledger, image, entry.index)
            if maker is None:
                skipped = f"{what}: not built in this ledger; not verified"
                checks.append(Check("base", True, skipped, skipped=True))
                continue
            made = verify_entry(ledger, ledger.get(maker["index"]))
        except EscrowError as e:
            checks.append(Check("base", False, f"{what}: {e.diagnostics()}"))
            continue
        by = f"entry {maker['index']}" + (f" ({maker['project']})" if maker["project"] else "")
        failed = made.failed()
        checks.append(
            Check(
                "base",
                not failed,
                f"{what} is the image of {by}, verified"
                if not failed
                else f"{what} is the image of {by}, whose {failed[0].name} check fails: "
                f"{failed[0].detail}",
            )
        )
    return checks


def built_by(
    ledger: Ledger | RemoteLedger | LedgerReader, image_id: str, before: int
) -> dict[str, Any] | None:
    """The first succeeded build in the ledger that made ``image_id``, before entry
    ``before``: ``{"index", "project"}``; through the image-ID index, which also lists the
    builds that used the image as a base, so each is read to find the one that made it."""
    for entry in _every_entry(ledger, image_id=image_id, predicate_type=BUILD_MANIFEST):
        if entry.index >= before:
            return None
        p = entry.statement().get("predicate") or {}
        build = p.get("build") or {}
        if (p.get("image") or {}).get("id") == image_id and build.get("status") == "succeeded":
            return {"index": entry.index, "project": str(build.get("project") or "")}
    return None


def _every_entry(ledger: Ledger | RemoteLedger | LedgerReader, **filters: Any) -> Iterator[Entry]:
    """Every entry matching ``filters``, oldest first, page after page (the latest build of
    an image, or its latest rebuild verdict, may lie beyond any one page)."""
    after: int | None = None
    while True:
        page = ledger.entries(**filters, after=after, limit=_PAGE)
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].index


_PAGE = 1000


def sha256_id(text: str) -> str | None:
    """``sha256:`` and 64 hex digits, given in either form; ``None`` for anything else."""
    digits = digest_prefix(text)
    return "sha256:" + digits if digits is not None and len(digits) == 64 else None


def recorded_image_id(
    ledger: Ledger | RemoteLedger, short: str, *, engine_asked: bool = True
) -> str | None:
    """The one recorded image ID that begins with ``short`` (hex digits, as `escrow log`
    prints the first 12; ``sha256:`` optional), or ``None`` when ``short`` is no hex.

    :class:`InputError` when no recorded image or several begin with it (``engine_asked``:
    whether the Docker Engine was asked first, for the message).
    """
    digits = digest_prefix(short)
    if digits is None:
        return None
    found = ledger.image_ids_starting(digits, limit=3)
    if len(found) == 1:
        return found[0]
    if not found:
        _no_image_with(short, ledger, engine_asked)
    listed = ", ".join(i.removeprefix("sha256:")[:16] for i in found[:2])
    raise InputError(
        f"The short ID {short} is the beginning of {'several' if len(found) > 2 else 'two'} "
        f"recorded image IDs ({listed}{', …' if len(found) > 2 else ''}).",
        hint="Give more of its digits, or the entry's index (`escrow log --image` with more "
        "digits lists it).",
    )


def _refuse_ambiguous_in_engine(ledger: Ledger | RemoteLedger, engine: Any, target: str) -> None:
    """:class:`InputError` when the short ID ``target`` begins several of the engine's
    image IDs: the engine then finds none, and the ledger's own index (which knows only
    recorded images) must not pick one of them as if it were the image meant (when
    several recorded IDs begin with it too, :func:`recorded_image_id` says so)."""
    digits = digest_prefix(target)
    starting = getattr(engine, "image_ids_starting", None)
    if digits is None or len(digits) == 64 or starting is None:
        return
    found = starting(digits)
    if len(found) < 2 or len(ledger.image_ids_starting(digits, limit=2)) > 1:
        return  # none (the ledger may know it), one the engine could not read, or see above
    listed = ", ".join(i.removeprefix("sha256:")[:16] for i in found[:2])
    raise InputError(
        f"The short ID {target} is the beginning of {'several' if len(found) > 2 else 'two'} "
        f"image IDs in the Docker Engine ({listed}{', …' if len(found) > 2 else ''}).",
        hint="Give more of its digits, or the entry's index (`escrow log` lists them).",
    )


def _no_image_with(short: str, ledger: Ledger | RemoteLedger, engine_asked: bool) -> NoReturn:
    from escrow.server.client import RemoteLedger

    where = (
        "the server's ledger is searched by full image IDs only"
        if isinstance(ledger, RemoteLedger)
        else "no image ID recorded in the ledger begins with it"
    )
    raise InputError(
        f"No image in the Docker Engine has the short ID {short}, and {where}."
        if engine_asked
        else f"{short} is not a full image ID, {where}, and the Docker Engine, which "
        "could expand a short ID of an image it holds, is not reachable.",
        hint="Give the entry's index or the full image ID (sha256: and 64 hex digits), "
        "which `escrow log --json` shows.",
    )


def _plain_http(registry: str) -> bool:
    from escrow.registry.reference import is_insecure

    return is_insecure(registry)


def resolve_target(ledger: Ledger | RemoteLedger, target: str, engine: Any | None = None) -> Entry:
    """An index, an image ID (``sha256:…`` or hex, full or prefix of ≥12) or an image reference."""
    return resolve_targets(ledger, target, engine)[-1]


def resolve_targets(
    ledger: Ledger | RemoteLedger, target: str, engine: Any | None = None
) -> list[Entry]:
    """The entries :func:`resolve_target` chooses from, oldest first: the one of an index;
    every recorded build of an image (captured twice, or rebuilt to the same ID), of which
    the latest is verified."""

    if target.isdigit():
        return [ledger.get(int(target))]
    image_id = sha256_id(target)
    in_engine = False  # the name or short ID was resolved by the engine
    if image_id is None and engine is not None:
        facts = engine.image_facts(target)
        if facts is not None:
            image_id, in_engine = str(facts["id"]), True
        else:
            _refuse_ambiguous_in_engine(ledger, engine, target)
    if image_id is None:
        # a short ID as `escrow log` shows it, of an image the engine no longer holds
        image_id = recorded_image_id(ledger, target, engine_asked=engine is not None)
    if image_id is None:
        first = target.split("/", 1)[0]
        in_a_registry = "/" in target and ("." in first or ":" in first or first == "localhost")
        # a registry reached over plain HTTP (loopback, or listed as insecure): skopeo
        # must be told, or it fails on TLS before it prints anything
        plain = " --tls-verify=false" if in_a_registry and _plain_http(first) else ""
        raise InputError(
            f"{target!r} is neither a ledger index, an image ID nor an image in the engine.",
            hint=(
                "To check the image in its registry, name it by digest, "
                f"{target.rsplit(':', 1)[0] if ':' in target.split('/')[-1] else target}"
                f"@sha256:… (`skopeo inspect{plain} docker://{target}` prints the digest)."
                if in_a_registry and "@" not in target
                else "Use `escrow log` to list entries."
            ),
        )
    from escrow.ledger.store import signed_fields

    found = [  # those whose signed statement records that image, whatever the index says
        e
        for e in _every_entry(ledger, image_id=image_id, predicate_type=BUILD_MANIFEST)
        if signed_fields(e)[::2] == (BUILD_MANIFEST, image_id)
    ]
    if not found:
        digest_given = sha256_id(target) is not None  # typed as a digest, not a name
        named = in_engine and digest_prefix(target) is None  # a name, not a short ID
        raise CheckFailed(  # the answer to "is this image recorded?": no (exit 1)
            f"{target} is image {image_id} in the Docker Engine, and no build of that image "
            "is recorded in the ledger."
            if named
            else f"No build of image {image_id} is recorded in the ledger.",
            hint=(
                "If escrow recorded a build under that name, the name was since given to an "
                "image built without escrow (rebuilt, pulled or re-tagged): verify the recorded "
                "build by its index (`escrow log` lists them)."
                if named
                else "`escrow log --image` lists what is; an image built without escrow has no "
                "record to verify."
            )
            + (
                " If this is the manifest digest a registry gave (`docker push` prints it), "
                "it is not the image ID: name the image as HOST/REPO@" + image_id + " to "
                "check it in its registry, or give its image ID "
                "(`docker image inspect --format '{{.Id}}' IMAGE`)."
                if digest_given
                else ""
            ),
        )
    return found
