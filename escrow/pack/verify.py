"""``escrow pack verify``: check a pack offline, from the file alone.

Checks, in order, each reported by name:

1. the PDF signature: intact, valid, covering the whole file, its signature
   container padded only with zeros (so no byte of the file is unsigned), made
   by the certificate the pack names (and chaining to ``--trust`` when given, as of
   the time of its RFC 3161 timestamp when it carries one, else the signing time the
   signature states: a pack verifies after its certificate expired);
1a. the signature timestamp, when the signature carries one (``escrow pack --tsa``) or
   ``--tsa-trust`` asks for one: its message imprint is that of the signature value, its
   own CMS signature verifies, and with ``--tsa-trust`` the TSA certificate chains to it;
2. the checkpoint note's signature, with the embedded verifier key;
3. the signer keys: each one registered by a key-event envelope signed by the
   log's key and included in the checkpoint;
4. each embedded envelope: its leaf hash, its inclusion proof against the
   checkpoint, its signature by a key valid at its index;
5. the pack statement's predicate against the evidence (scope, checkpoint, signer), and
   its pack ID against the scope, requester, time and checkpoint it was derived from;
6. the consistency proof from the auditor's previous checkpoint, when present;
6a. with ``--project``/``--since``/``--until``/``--since-checkpoint`` (an
   :class:`Expected`): that the pack is of that scope, and that its checkpoint is the
   auditor's own or proven consistent with it (a pack of another period or project,
   or from a forked ledger, is refused);
7. the printed pages: the scope the statement states, and every image ID, diff ID
   and leaf hash of the builds in scope appear in the text, and every 64-hex digest
   printed is one found in the embedded evidence (text extracted with poppler's ``pdftotext``);
8. the verdict: the summary, overall verdict and anomalies, recomputed from the embedded
   evidence with the function ``escrow pack`` computes them with
   (:func:`escrow.pack.collect.assess`), are the ones the pack statement states and the
   cover and summary pages print, the anomalies counted as findings (which make the
   verdict "with findings") and notes, by the verdict rules the pack states
   (:class:`escrow.pack.model.VerdictRules`; rules 1 for a pack that states none); the
   operator holds the pack key, so a pack re-rendered as "Verified" over failed checks or
   findings is still validly signed.

Once a check fails, the checks that could not run are still listed, as skipped
(never ok), naming the failure that stopped them.  Without ``--trust`` the
report is not anchored, and its summary says so.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from escrow import __version__
from escrow.documents.types import BUILD_MANIFEST, KEY_EVENT, REBUILD_VERIFICATION
from escrow.errors import CheckFailed, EnvironmentProblem, EscrowError, InputError
from escrow.pack.collect import (
    SERIOUS_ANOMALIES,
    Assessment,
    BuildFacts,
    assess,
    original_index,
    signature_status,
    verdict_of,
)
from escrow.pack.evidence import CONSISTENCY, REQUIRED, EmbeddedEvidence, parse_attachments
from escrow.pack.model import VERDICT_RULES, Verdict, VerdictRules
from escrow.signing.dsse import Envelope
from escrow.signing.keys import PublicKey
from escrow.text import count
from escrow.times import rfc3339, to_the_second

HEX64 = re.compile(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")
_HEX_RUN = re.compile(r"[0-9a-f]{64,}")
_DIGEST_VALUE = re.compile(r"(sha256:)?([0-9a-f]{64})")


def _found_in(text: str, values: Iterable[str]) -> set[str]:
    """The ``values`` that occur in ``text`` (as ``value in text`` tells), in one pass over
    the text instead of one per value: each build's image ID, diff IDs and leaf hash are
    required, and searching a year's pages once for each made ``pack verify`` quadratic.

    A digest (64 hex digits, ``sha256:`` optional) lies in a run of hex digits: bare, it
    is one of the run's 64-digit windows; after ``sha256:`` (which ends in a non-hex
    ``:``), the start of a run that follows ``sha256:``.  Other values are searched."""
    windows: set[str] = set()  # every 64-digit window of the runs of hex digits
    after_algo: set[str] = set()  # the first 64 digits of each run printed after "sha256:"
    long_runs: list[str] = []  # runs too long to index window by window (not in a pack)
    for m in _HEX_RUN.finditer(text):
        run = m.group()
        if text.endswith("sha256:", 0, m.start()):
            after_algo.add(run[:64])
        if len(run) > 1024:
            long_runs.append(run)
        else:
            windows.update(run[i : i + 64] for i in range(len(run) - 63))
    found: set[str] = set()
    for value in set(values):
        digest = _DIGEST_VALUE.fullmatch(value)
        if digest is None:
            shown = value in text
        elif digest.group(1):
            shown = digest.group(2) in after_algo
        else:
            shown = value in windows or any(value in run for run in long_runs)
        if shown:
            found.add(value)
    return found


# Every check, in the order they run; "consistency" only when the pack holds a proof.
CHECK_NAMES = (
    "pdf signature",
    "timestamp",
    "attachments",
    "checkpoint",
    "inclusion proofs",
    "signer keys",
    "envelope signatures",
    "pack statement",
    "consistency",
    "requested scope",
    "printed digests",
    "verdict",
)


@dataclass(frozen=True)
class Expected:
    """What the auditor asked for, checked against the pack (``escrow pack verify
    --project/--since/--until/--since-checkpoint``); only what is given is checked."""

    projects: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None  # exclusive, as ``escrow pack --until`` stores it
    checkpoint_note: str | None = None

    def __bool__(self) -> bool:
        return bool(self.projects or self.since or self.until or self.checkpoint_note is not None)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False  # not run because an earlier check failed (never ok)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail}


@dataclass(frozen=True)
class Timestamp:
    """The signature's RFC 3161 timestamp, as checked: its time, the TSA that signed it
    (its certificate's subject), and whether that certificate chains to ``--tsa-trust``."""

    time: datetime
    tsa: str
    anchored: bool

    def to_json(self) -> dict[str, Any]:
        return {"time": rfc3339(self.time), "tsa": self.tsa, "anchored": self.anchored}


@dataclass
class PackReport:
    path: Path
    sha256: str
    pack_id: str = ""
    rendered_sha256: str = ""
    checks: list[Check] = field(default_factory=list)
    envelopes: int = 0
    builds: int = 0
    #: the builds outside the scope embedded as the builds of its base images (rules 3)
    supporting_builds: int = 0
    anchored: bool = False  # the signer certificate was checked against --trust
    scope: str = ""  # the scope the pack statement states, in the cover's words
    timestamp: Timestamp | None = None  # the signature's RFC 3161 timestamp, once checked
    #: the pack's verdict, once the "verdict" check recomputed it equal to the one stated:
    #: ``overall``, ``findings``, ``rebuilds_failed``, ``notes`` and the ``rules`` it was
    #: judged by
    verdict: dict[str, Any] | None = None
    #: a "timestamp" check is due: the signature carries a timestamp, or --tsa-trust was given
    timestamp_due: bool = False

    NOT_ANCHORED = "not anchored: give --trust CERT.pem to check who signed it"
    TIMESTAMP_NOT_ANCHORED = (
        "timestamp not anchored: give --tsa-trust CERT.pem to check who timestamped it"
    )

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        if not self.checks:
            return Check("pack", False, "nothing was checked")
        return next((c for c in self.checks if not c.ok), None)

    def summary(self) -> str:
        """Counts, and, when no ``--trust`` anchored the signer, that it is not anchored;
        then the timestamp's time, and whether ``--tsa-trust`` anchored it."""
        counts = (
            f"{count(len(self.checks), 'check')}, {count(self.envelopes, 'envelope')}, "
            f"{count(self.builds, 'build')}"
        )
        if self.supporting_builds:
            counts += f" and {count(self.supporting_builds, 'supporting build')}"
        if self.scope:
            counts = f"{counts}; scope: {self.scope}"
        if not self.anchored:  # before the timestamp's, which would read as its subject
            counts = f"{counts}; {self.NOT_ANCHORED}"
        if self.timestamp is not None:
            counts = f"{counts}; timestamped {to_the_second(self.timestamp.time)}"
            if not self.timestamp.anchored:
                counts = f"{counts}; {self.TIMESTAMP_NOT_ANCHORED}"
        return counts

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok

    def skip_the_rest(self, *, consistency: bool, expected: bool = False) -> None:
        """List each check that did not run, after the first failure, as skipped."""
        failed = self.first_failure
        if failed is None:
            return
        done = {c.name for c in self.checks}
        for name in CHECK_NAMES:
            if name in done or (name == "consistency" and not consistency):
                continue
            if name == "timestamp" and not self.timestamp_due:
                continue
            if name == "requested scope" and not expected:
                continue
            self.checks.append(
                Check(name, False, f"skipped: the {failed.name} check failed", skipped=True)
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": str(self.path),
            "sha256": self.sha256,
            "pack_id": self.pack_id,
            "rendered_sha256": self.rendered_sha256,
            "envelopes": self.envelopes,
            "builds": self.builds,
            "supporting_builds": self.supporting_builds,
            "anchored": self.anchored,
            "scope": self.scope,
            "timestamp": self.timestamp.to_json() if self.timestamp is not None else None,
            "verdict": self.verdict,
            "checks": [c.to_json() for c in self.checks],
        }


# -- PDF -----------------------------------------------------------------------------


def _name_tree(node: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if "/Names" in node:
        arr = node["/Names"]
        out.extend((str(arr[i]), arr[i + 1]) for i in range(0, len(arr) - 1, 2))
    if "/Kids" in node:
        for kid in node["/Kids"]:
            out.extend(_name_tree(kid.get_object()))
    return out


def embedded_files(reader: Any) -> dict[str, bytes]:
    root = reader.root
    try:
        tree = root["/Names"]["/EmbeddedFiles"]
    except KeyError:
        return {}
    files: dict[str, bytes] = {}
    for name, spec in _name_tree(tree.get_object()):
        spec = spec.get_object()
        fname = str(spec.get("/UF", spec.get("/F", name)))
        if fname in files:
            raise CheckFailed(f"The pack holds two attachments named {fname}.")
        try:
            files[fname] = spec["/EF"]["/F"].get_object().data
        except (KeyError, TypeError, AttributeError):
            raise CheckFailed(f"The attachment {_said(fname)} holds no embedded file.") from None
    return files


#: the attachments a pack holds (``consistency-proof.json`` only with ``--since-checkpoint``)
KNOWN_ATTACHMENTS = frozenset((*REQUIRED, CONSISTENCY))


def _foreign_attachments(files: dict[str, bytes]) -> str:
    """An attachment escrow never writes to a pack ("" when there is none): an auditor
    would take it as part of the evidence escrow signed."""
    unknown = sorted(set(files) - KNOWN_ATTACHMENTS)
    if unknown:
        return f"the pack holds an attachment escrow does not write: {_said(unknown[0])}"
    return ""


def _check_padding(data: bytes, byte_range: Any) -> str:
    """The signature /Contents hex string: DER then only zeros. Empty string when so."""
    _, len1, start2, _ = (int(x) for x in byte_range)
    gap = data[len1:start2]
    if len(gap) < 2 or gap[:1] != b"<" or gap[-1:] != b">":
        return "the signature contents are not a hex string"
    try:
        raw = bytes.fromhex(gap[1:-1].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return "the signature contents are not valid hex"
    if len(raw) < 2 or raw[0] != 0x30:
        return "the signature contents are not a DER SEQUENCE"
    first = raw[1]
    if first < 0x80:
        end = 2 + first
    else:
        n = first & 0x7F
        end = 2 + n + int.from_bytes(raw[2 : 2 + n], "big")
    if end > len(raw) or any(raw[end:]):
        return "the signature contents carry bytes outside the signed data"
    return ""


_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*0\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def _signed_end(data: bytes) -> int:
    """Where the bytes the pack's signature covers end: that of the first signature
    dictionary whose /ByteRange brackets a hex string and ends, within the file, just
    after an ``%%EOF``.  0 when there is none (not signed, or cut short).  Used only to
    say what was done to a file that fails: the verdict is pyHanko's."""
    for m in _BYTE_RANGE.finditer(data):
        len1, start2, len2 = (int(x) for x in m.groups())
        end = start2 + len2
        if (
            0 < len1 < start2 <= end <= len(data)
            and data[len1 : len1 + 1] == b"<"
            and data[start2 - 1 : start2] == b">"
            and data[:end].rstrip(b"\r\n").endswith(b"%%EOF")
        ):
            return end
    return 0


def _appended(added: int, signed_end: int) -> str:
    """What is wrong with a file that has ``added`` bytes, not an update a PDF reader can
    read, after the end of the signed file (byte ``signed_end``)."""
    return (
        f"{count(added, 'byte')} were appended after the end of the signed file (byte "
        f"{signed_end}, its %%EOF): the file is not the one escrow signed"
    )


def _bare(e: Exception) -> str:
    """An exception's text as it goes inside parentheses: without a closing full stop."""
    return str(e).strip().rstrip(".") or type(e).__name__


def _not_covered(reader: Any, sig: Any, added: int) -> str:
    """Why the signature does not cover the whole file: ``added`` bytes (an incremental
    update) after the bytes it signed, and, as far as they can be told, what they change."""
    if added <= 0:
        return "the signature does not cover the whole file"
    try:
        with _pyhanko_quiet():
            changes = _changes_after(reader, sig.signed_revision)
    except Exception:  # noqa: BLE001 - a damaged update: say that it is there
        changes = []
    what = f", which changes {_listed(changes)}" if changes else ""
    return (
        f"the signature does not cover the whole file: {count(added, 'byte')} were added after "
        f"it by an incremental update{what}, so the file was changed after escrow signed it"
    )


def _listed(items: list[str]) -> str:
    if len(items) > 4:
        items = [*items[:3], f"{count(len(items) - 3, 'other part')}"]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _serialised(obj: Any) -> bytes:
    """A PDF object's bytes as written (a stream: its dictionary and its data), to compare
    the object of two revisions."""
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils import generic

    buf = io.BytesIO()
    if isinstance(obj, generic.StreamObject):
        header: Any = generic.DictionaryObject(obj)  # type: ignore[no-untyped-call]
        header.write_to_stream(buf, None)
        buf.write(obj.encoded_data or b"")
    else:
        obj.write_to_stream(buf, None)
    return buf.getvalue()


def _changes_after(reader: Any, signed_revision: int) -> list[str]:
    """The parts of the document that the incremental updates after ``signed_revision``
    change (added or overwritten objects), in a few words each: the attachments, a page's
    content or annotations, the signature fields, the document information (/Info), the
    XMP metadata.  Only the objects the updates write are read, with the few the signed
    revision names them by (the catalog, its attachments, /Info): reading every page of a
    long pack from its object stream would take minutes."""
    from escrow.pack.sign import pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils import generic

    refs: set[Any] = set()
    for revision in range(signed_revision + 1, reader.total_revisions):
        refs |= reader.xrefs.explicit_refs_in_revision(revision)
    if not refs:
        return []
    old = reader.get_historical_resolver(signed_revision)

    def key(ref: Any) -> tuple[int, int]:
        return (ref.idnum, ref.generation)

    def deref(obj: Any) -> Any:
        return obj.get_object()

    def old_obj(ref: Any) -> Any:
        try:
            if reader.xrefs.get_introducing_revision(ref) > signed_revision:
                return None  # added after the signature
            return reader.get_object(ref, revision=signed_revision)
        except Exception:  # noqa: BLE001 - an object the signed revision does not have
            return None

    def differs(was: Any, now: Any) -> bool:
        return (was is None) != (now is None) or (
            was is not None and _serialised(was) != _serialised(now)
        )

    # the signed revision's attachments (name tree nodes, file specifications, embedded
    # files), /Info and /Metadata, by object
    part: dict[tuple[int, int], str] = {}

    def tree(node: Any) -> None:
        if isinstance(node, generic.IndirectObject):
            part[key(node.reference)] = "the attachments"
        obj: Any = node.get_object()
        for kid in obj.get("/Kids", []) if "/Kids" in obj else []:
            tree(kid)
        leaves: Any = obj.raw_get("/Names") if "/Names" in obj else []
        if isinstance(leaves, generic.IndirectObject):
            leaves = deref(leaves)
        for spec in list(leaves)[1::2]:
            if isinstance(spec, generic.IndirectObject):
                part[key(spec.reference)] = "the attachments"
            ef = spec.get_object().get("/EF") or {}
            for f in ef.values() if isinstance(ef, dict) else []:
                if isinstance(f, generic.IndirectObject):
                    part[key(f.reference)] = "the attachments"

    root = old.root
    catalog_names: Any = root.get("/Names") or {}
    if "/EmbeddedFiles" in catalog_names:
        tree(catalog_names.raw_get("/EmbeddedFiles"))
    info = old.trailer_view.raw_get("/Info") if "/Info" in old.trailer_view else None
    if isinstance(info, generic.IndirectObject):
        part[key(info.reference)] = "the document information (/Info)"
    metadata = root.raw_get("/Metadata") if "/Metadata" in root else None
    if isinstance(metadata, generic.IndirectObject):
        part[key(metadata.reference)] = "the XMP metadata"
    root_key = key(reader.root_ref)

    def page_number(ref: Any, page: Any) -> str:
        """``page N`` when its parent lists only pages (as a pack's does), else ``a page``."""
        try:
            parent = page["/Parent"]
            kids = [key(k.reference) for k in parent["/Kids"]]
            flat = int(parent.get("/Count", -1)) == len(kids) and "/Parent" not in parent
            return f"page {kids.index(key(ref)) + 1}" if flat else "a page"
        except Exception:  # noqa: BLE001 - a damaged page tree: no number
            return "a page"

    found: list[str] = []

    def say(what: str) -> None:
        if what not in found:
            found.append(what)

    for ref in sorted(refs, key=key):
        new = reader.get_object(ref)
        before = old_obj(ref)
        if key(ref) == root_key and isinstance(new, generic.DictionaryObject):
            for name, what in (
                ("/Names", "the attachments"),
                ("/AcroForm", "the signature fields"),
                ("/Metadata", "the XMP metadata"),
                ("/Pages", "the pages"),
            ):
                was = before.get(name) if isinstance(before, dict) else None
                if differs(was, new.get(name)):
                    say(what)
            continue
        if key(ref) in part:
            if differs(before, new):
                say(part[key(ref)])
            continue
        if before is not None and not differs(before, new):
            continue  # written again unchanged
        if isinstance(new, generic.DictionaryObject) and new.get("/Type") == "/Page":
            page = page_number(ref, new)
            for name, what in (
                ("/Annots", f"the annotations of {page}"),
                ("/Contents", f"the content of {page}"),
            ):
                was = before.get(name) if isinstance(before, dict) else None
                if differs(was, new.get(name)):
                    say(what)
            if isinstance(before, dict) and not any(x.endswith(page) for x in found):
                say(page)
            continue
        if isinstance(new, generic.StreamObject) and before is not None:
            say("the content of the pages")  # a content stream, image or font overwritten
            continue
        if not isinstance(new, generic.DictionaryObject):
            continue  # a part of something named by the objects that use it
        kind = str(new.get("/Type", ""))
        if new.get("/FT") == "/Sig" or kind in ("/Sig", "/AcroForm") or "/Fields" in new:
            say("the signature fields")
        elif kind in ("/Filespec", "/EmbeddedFile") or "/EF" in new:
            say("the attachments")
        elif kind == "/Annot" or ("/Subtype" in new and "/Rect" in new):
            say("the annotations")
    if any(x.startswith("the annotations of ") for x in found):
        found = [x for x in found if x != "the annotations"]
    # what the update was made to change first; the dates a PDF writer updates last
    last = ("the document information (/Info)", "the XMP metadata")
    return [x for x in found if x not in last] + [x for x in last if x in found]


def trusted_certificate(trust: Path, option: str = "--trust") -> Any:
    """The ``--trust`` (or ``--tsa-trust``) certificate (PEM or DER); one sentence when it
    cannot be one."""
    from escrow.pack.sign import load_certificate

    try:
        data = trust.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read the trusted certificate {trust}: {e.strerror}.") from e
    hint = (
        "--trust takes the X.509 certificate the packs are signed with, or the CA "
        "certificate it chains to (PEM or DER)."
        if option == "--trust"
        else f"{option} takes the X.509 certificate of the Time-Stamping Authority, or of "
        "the CA it chains to (PEM or DER)."
    )
    if b"PRIVATE KEY" in data or b"PUBLIC KEY" in data:
        raise InputError(f"{trust} holds a key, not a certificate.", hint=hint)
    try:
        return load_certificate(data)
    except InputError:
        raise InputError(f"{trust} is not an X.509 certificate.", hint=hint) from None


@contextmanager
def _pyhanko_quiet() -> Iterator[None]:
    """Keep pyhanko's own log records (a certificate that does not chain is logged as a
    "Validation error" with its whole traceback) off stderr: the outcome is read from the
    validation status and reported as the "pdf signature" check, in one sentence."""
    saved = []
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logger = logging.getLogger(name)
        quiet = logging.NullHandler()
        saved.append((logger, logger.propagate, quiet))
        logger.addHandler(quiet)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate, quiet in saved:
            logger.removeHandler(quiet)
            logger.propagate = propagate


def _check_pdf_signature(
    report: PackReport,
    data: bytes,
    trust: Path | None,
    trusted: Any = None,
    tsa_trust: Path | None = None,
    tsa_trusted: Any = None,
) -> tuple[Any, str | None]:
    """Returns the reader (for attachments) and the signer certificate's SHA-256; adds the
    "pdf signature" check, and the "timestamp" check when one is due (the signature
    carries a timestamp, or ``--tsa-trust`` asks for one)."""
    from escrow.pack.sign import certificate_sha256, load_certificate, pyhanko_imports

    with pyhanko_imports():
        from pyhanko.pdf_utils.misc import PdfReadError
        from pyhanko.pdf_utils.reader import PdfFileReader
        from pyhanko.sign.validation import validate_pdf_signature
        from pyhanko.sign.validation.status import SignatureCoverageLevel
        from pyhanko_certvalidator import ValidationContext

    report.timestamp_due = tsa_trust is not None
    if not data:
        report.add("pdf signature", False, "the file is empty (0 bytes), not a readable PDF")
        return None, None
    if b"%PDF-" not in data[:1024]:
        report.add("pdf signature", False, "the file is not a readable PDF: it has no %PDF- header")
        return None, None
    if not data.startswith(b"%PDF-"):
        before = data.index(b"%PDF-")
        report.add(
            "pdf signature",
            False,
            f"{count(before, 'byte')} come before the PDF's %PDF- header, where a pack has "
            "none: the file is not the one escrow signed",
        )
        return None, None
    signed_end = _signed_end(data)
    added = len(data) - signed_end if signed_end else 0
    if added > 0 and b"startxref" not in data[signed_end:]:
        report.add("pdf signature", False, _appended(added, signed_end))
        return None, None
    if not data.rstrip(b"\0\t\n\f\r ").endswith(b"%%EOF"):
        report.add(
            "pdf signature",
            False,
            "the file is cut short: it does not end as a PDF does (with %%EOF), as after an "
            "interrupted download or copy",
        )
        return None, None
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted:
            report.add(
                "pdf signature",
                False,
                "the PDF is encrypted, and escrow never encrypts a pack: the file is not the "
                "one escrow signed",
            )
            return None, None
        sigs = list(reader.embedded_signatures)
    except (PdfReadError, ValueError, KeyError, IndexError) as e:
        why = (
            _appended(added, signed_end)
            if added > 0
            else f"the file is not a readable PDF ({_bare(e)})"
        )
        report.add("pdf signature", False, why)
        return None, None
    except Exception as e:  # noqa: BLE001 - any parser failure means a damaged file
        why = (
            _appended(added, signed_end)
            if added > 0
            else f"the PDF cannot be parsed ({type(e).__name__}: {_bare(e)})"
        )
        report.add("pdf signature", False, why)
        return None, None
    if not sigs:
        report.add(
            "pdf signature",
            False,
            "the PDF is not signed: its signature was removed, or the file cut back to the "
            "rendering before it",
        )
        return reader, None
    if len(sigs) != 1:
        fields = ", ".join(str(x.field_name) for x in sigs)
        report.add(
            "pdf signature",
            False,
            f"the file holds {len(sigs)} signatures ({fields}), where a pack has escrow's one: "
            "it was signed again after escrow signed it",
        )
        return reader, None
    sig = sigs[0]
    stamp = _read_timestamp(sig, tsa_trust, tsa_trusted)
    report.timestamp_due = report.timestamp_due or stamp is not None
    try:
        from cryptography.hazmat.primitives.serialization import Encoding

        signer_der = sig.signer_cert.dump()
        cert = load_certificate(signer_der)
        fingerprint = certificate_sha256(cert)
        roots = [trusted] if trusted is not None else [cert]
        from asn1crypto import x509 as asn1_x509  # type: ignore[import-untyped]

        # The certificates are checked as of the time the pack was signed, not today: a
        # pack is verified months or years later, when its certificate may have expired.
        # That time is the timestamp's, when the signature carries a sound one (a TSA
        # vouches for it); else the signing time the signature states (the signer's clock).
        signed_at = sig.self_reported_timestamp
        moment = stamp.time if stamp is not None and stamp.sound else signed_at
        vc = ValidationContext(
            trust_roots=[asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in roots],
            allow_fetching=False,
            revocation_mode="soft-fail",
            moment=moment,
        )
        with _pyhanko_quiet():
            status = validate_pdf_signature(
                sig,
                signer_validation_context=vc,
                ts_validation_context=stamp.context if stamp is not None else None,
            )
    except Exception as e:  # noqa: BLE001 - damaged signature containers raise many types
        why = f"{stamp.problem}: {e}" if stamp is not None and stamp.problem else str(e)
        report.add("pdf signature", False, f"the signature cannot be validated ({why})")
        return reader, None
    _, _, start2, len2 = (int(x) for x in sig.byte_range)
    if start2 + len2 > len(data):  # every other problem follows from the missing bytes
        problems = [
            f"the file is cut short: it ends at byte {len(data)}, before the signed bytes "
            f"do ({start2 + len2})"
        ]
    else:
        problems = []
        if not status.intact:
            problems.append("the signed bytes were changed")
        if not status.valid:
            problems.append("the signature value does not verify")
        if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            problems.append(_not_covered(reader, sig, len(data) - (start2 + len2)))
        padding = _check_padding(data, sig.byte_range)
        if padding:
            problems.append(padding)
        # pyHanko calls a signature that does not verify untrusted too: its certificate is
        # then not what is wrong, and is not said to be
        if trust is not None and status.intact and status.valid and not status.trusted:
            problems.append(_untrusted(cert, trust, moment, stamp))
    if problems:
        report.add("pdf signature", False, "; ".join(problems))
        _check_timestamp(report, stamp, tsa_trust)  # the time the certificate failed at
        return reader, fingerprint
    who = cert.subject.rfc4514_string()
    anchor = (
        f"trusted via {trust.name}{_as_of(cert, moment, stamp)}"
        if trust
        else "not anchored: no --trust given"
    )
    report.add("pdf signature", True, f"valid, whole file, by {who} ({anchor})")
    _check_timestamp(report, stamp, tsa_trust)
    return reader, fingerprint


@dataclass(frozen=True)
class _Stamp:
    """The signature's RFC 3161 timestamp token as read and checked (:func:`_read_timestamp`):
    its time and TSA (the subject of the certificate that signed it), what is wrong with
    the token itself ("" when its imprint is the signature's and its signature verifies),
    whether its TSA chains to ``--tsa-trust``, and the validation context it was checked in."""

    time: datetime | None
    tsa: str
    problem: str
    chained: bool = False
    context: Any = None

    @property
    def sound(self) -> bool:
        return not self.problem and self.time is not None


def _read_timestamp(sig: Any, tsa_trust: Path | None, tsa_trusted: Any) -> _Stamp | None:
    """The signature timestamp (the unsigned attribute signature-time-stamp-token), checked
    as :func:`escrow.pack.sign.check_token` checks it: its message imprint against the
    signature value, its own CMS signature, and its certificate path to ``--tsa-trust``
    (when given) as of its own time.  None when the signature carries none."""
    import asyncio

    from escrow.pack.sign import check_token, pyhanko_imports

    with pyhanko_imports():
        from pyhanko.sign.validation.generic_cms import (
            extract_tst_data_iter,
            message_imprint_checker,
        )

    try:
        tokens = list(extract_tst_data_iter(sig.signer_info, signed=False))
    except Exception as e:  # noqa: BLE001 - a damaged attribute
        return _Stamp(None, "", f"the signature's timestamp cannot be read ({e})")
    if not tokens:
        return None
    if len(tokens) != 1:
        return _Stamp(None, "", f"the signature carries {len(tokens)} timestamps, not one")
    try:
        with _pyhanko_quiet():
            checked = asyncio.run(
                check_token(tokens[0], message_imprint_checker(sig.signer_info), tsa_trusted)
            )
    except Exception as e:  # noqa: BLE001 - damaged tokens raise many types
        return _Stamp(None, "", f"the signature's timestamp token cannot be read ({e})")
    problem = ""
    if not checked.intact:
        problem = (
            "the timestamp token is not for this signature or was changed (its message "
            "imprint or its signed content does not match)"
        )
    elif not checked.valid:
        problem = "the timestamp token's own signature does not verify"
    return _Stamp(
        checked.time,
        checked.tsa,
        problem,
        chained=tsa_trust is not None and checked.trusted,
        context=checked.context,
    )


def _check_timestamp(report: PackReport, stamp: _Stamp | None, tsa_trust: Path | None) -> None:
    """Check 1a: the signature timestamp, when one is due (see :func:`_read_timestamp`)."""
    if stamp is None:
        if tsa_trust is not None:
            report.add(
                "timestamp",
                False,
                f"the pack carries no timestamp (--tsa-trust {tsa_trust.name} asks for one)",
            )
        return
    if not stamp.sound:
        report.add("timestamp", False, stamp.problem)
        return
    assert stamp.time is not None
    said = f"RFC 3161, {to_the_second(stamp.time)} by {stamp.tsa}, for this signature"
    if tsa_trust is not None and not stamp.chained:
        report.add(
            "timestamp",
            False,
            f"{said}, but its TSA certificate does not chain to {tsa_trust} (as of the "
            "timestamp's time)",
        )
        return
    anchor = f"trusted via {tsa_trust.name}" if tsa_trust else "not anchored: no --tsa-trust given"
    report.timestamp = Timestamp(stamp.time, stamp.tsa, anchored=tsa_trust is not None)
    report.add("timestamp", True, f"{said} ({anchor})")


def _as_of(cert: Any, moment: datetime | None, stamp: _Stamp | None = None) -> str:
    """The time the chain was checked at: the timestamp's, when the signature carries a
    sound one, else the signing time the signature states; and whether the certificate
    has expired since."""
    if moment is None:
        return ""
    if stamp is not None and stamp.sound:
        text = f" as of its timestamp's time {to_the_second(moment)} (RFC 3161, by {stamp.tsa})"
    else:
        text = f" as of its signing time {to_the_second(moment)}, as the signature states"
    if cert.not_valid_after_utc < datetime.now(UTC):
        text += f"; the certificate has expired since ({to_the_second(cert.not_valid_after_utc)})"
    return text


def _untrusted(cert: Any, trust: Path, moment: datetime | None, stamp: _Stamp | None = None) -> str:
    """Why the signer certificate is not trusted via ``trust``, in a few words."""
    if moment is not None and not (cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc):
        when = (
            f"at the pack's timestamp ({to_the_second(moment)}, by {stamp.tsa}"
            if stamp is not None and stamp.sound
            else f"when the pack was signed ({to_the_second(moment)}"
        )
        return (
            f"the signer certificate was not valid {when}; it is valid from "
            f"{to_the_second(cert.not_valid_before_utc)} to "
            f"{to_the_second(cert.not_valid_after_utc)})"
        )
    return f"the signer certificate does not chain to {trust}"


# -- text ----------------------------------------------------------------------------


def pdf_text(path: Path | bytes) -> str:
    """The text ``pdftotext`` extracts from the PDF at ``path`` (or of these bytes)."""
    exe = shutil.which("pdftotext")
    if exe is None:
        raise EnvironmentProblem(
            "pdftotext (poppler-utils) is needed to check the digests printed in the pack.",
            hint="Install poppler-utils.",
        )
    try:
        out = subprocess.run(
            [exe, "-enc", "UTF-8", "-" if isinstance(path, bytes) else str(path), "-"],
            input=path if isinstance(path, bytes) else None,
            capture_output=True,
            check=True,
            timeout=600,
        )
    except subprocess.CalledProcessError as e:
        what = "a PDF it made" if isinstance(path, bytes) else str(path)
        raise CheckFailed(
            f"pdftotext cannot read {what}: {e.stderr.decode(errors='replace')}"
        ) from e
    return out.stdout.decode("utf-8", errors="replace")


# -- evidence ------------------------------------------------------------------------


@dataclass
class _Checked:
    """What checks 2–6 found: the digests the evidence vouches for, the embedded
    envelopes by index, the signer keys the log registered (:data:`_Key`), and when the
    pack states each entry was appended (``integratedAt`` of its proof; else no later
    than the pack's generation, ``appended_by``)."""

    vouched: set[str] = field(default_factory=set)
    envelopes: dict[int, tuple[bytes, dict[str, Any], Envelope]] = field(default_factory=dict)
    registered: dict[str, _Key] = field(default_factory=dict)
    #: the index of each revoked key's revocation
    revoked: dict[str, int] = field(default_factory=dict)
    appended: dict[int, datetime] = field(default_factory=dict)
    appended_by: datetime | None = None
    #: the embedded key events, ``(index, leaf hash)`` in log order
    key_events: list[tuple[int, bytes]] = field(default_factory=list)

    def appended_at(self, index: int) -> datetime | None:
        return self.appended.get(index, self.appended_by)


#: a registered signer key: the key, the index of the event that added it, the index of
#: the event that ended it (revoked or retired), and for a retirement the time it takes
#: effect (entries appended before it stay valid: ``keys retire --from`` a later date);
#: a retired key revoked later keeps its retirement, the revocation in ``_Checked.revoked``
_Key = tuple[PublicKey, int, int | None, datetime | None]


def _verify_evidence(
    report: PackReport,
    ev: EmbeddedEvidence,
    cert_sha: str | None,
    expected: Expected | None = None,
) -> _Checked:
    """Run checks 2–6; return what they found (:class:`_Checked`)."""
    from escrow.ledger import checkpoint as cpmod
    from escrow.ledger import merkle

    checked = _Checked()
    vouched = checked.vouched
    # 2. checkpoint
    try:
        cp = cpmod.verify_checkpoint(ev.checkpoint_note, ev.verifier_key)
        _, _, log_key = cpmod.parse_verifier_key(ev.verifier_key)
    except EscrowError as e:
        report.add("checkpoint", False, e.diagnostics())
        return checked
    root_hex = cp.root.hex()
    vouched.add(root_hex)
    proofs = ev.proofs
    ok = proofs.get("treeSize") == cp.size and proofs.get("rootHash") == root_hex
    report.add(
        "checkpoint",
        ok,
        f"signed by {ev.verifier_key.split('+')[0]}, size {cp.size}"
        if ok
        else "the inclusion proofs are not against the embedded checkpoint",
    )
    if not ok:
        return checked

    # 4 (first pass). envelopes: leaf hashes and inclusion
    records = proofs.get("proofs")
    if not isinstance(records, list) or len(records) != len(ev.envelopes):
        report.add("inclusion proofs", False, "there is not one proof per embedded envelope")
        return checked
    envelopes = checked.envelopes
    checked.appended_by = _moment((ev.pack_statement.get("predicate") or {}).get("generatedAt"))
    bad_inclusion: list[str] = []
    for raw, rec in zip(ev.envelopes, records, strict=True):
        try:
            index = int(rec["index"])
            hashes = [bytes.fromhex(h) for h in rec["hashes"]]
            env = Envelope.from_bytes(raw)
            st = env.statement()
        except (KeyError, TypeError, ValueError, EscrowError) as e:
            bad_inclusion.append(f"a malformed envelope or proof ({e})")
            continue
        leaf = merkle.leaf_hash(raw)
        if leaf.hex() != rec.get("leafHash"):
            bad_inclusion.append(
                f"entry {index}: the envelope's leaf hash differs from the proof's"
            )
        elif not merkle.verify_inclusion(leaf, index, cp.size, hashes, cp.root):
            bad_inclusion.append(f"entry {index}: the inclusion proof does not verify")
        vouched.add(leaf.hex())
        vouched.update(h.hex() for h in hashes)
        envelopes[index] = (raw, st, env)
        stated_at = _moment(rec.get("integratedAt"))
        if stated_at is not None:
            checked.appended[index] = stated_at
        elif rec.get("integratedAt") is not None:
            bad_inclusion.append(f"entry {index}: its integratedAt is not an RFC 3339 time")
    # the ledger's integration times never decrease: stated ones that go back are forged
    # (they alone would let an entry after a retirement claim a time before its date)
    last: tuple[int, datetime] | None = None
    for index, at in sorted(checked.appended.items()):
        if last is not None and at < last[1]:
            bad_inclusion.append(
                f"entry {index}: stated as appended at {rfc3339(at)}, before entry {last[0]} "
                f"({rfc3339(last[1])}); the ledger's append times never go back"
            )
            break
        last = (index, at)
    report.add(
        "inclusion proofs",
        not bad_inclusion,
        bad_inclusion[0]
        if bad_inclusion
        else f"{count(len(envelopes), 'envelope')} included in checkpoint {cp.size}",
    )
    report.envelopes = len(envelopes)

    # 3. keys: registered by key events signed by the log key
    registered = checked.registered  # key, added, ended, retirement in effect from
    key_problems: list[str] = []
    for index, (_, st, env) in sorted(envelopes.items()):
        if st.get("predicateType") != KEY_EVENT:
            continue
        try:
            env.verify([log_key])
        except EscrowError:
            key_problems.append(f"entry {index}: the key event is not signed by the log key")
            continue
        p = st.get("predicate") or {}
        keyid = str(p.get("keyid", ""))
        if p.get("event") == "added":
            try:
                pub = PublicKey.from_pem(str(p.get("publicKey", "")))
            except InputError:
                key_problems.append(f"entry {index}: the key event holds no valid public key")
                continue
            if pub.keyid != keyid:
                key_problems.append(f"entry {index}: the key event's key ID is not its key's")
                continue
            # a key is added once (the ledger refuses to add a key again, a revoked one
            # above all): a second "added" event changes nothing, as in `ledger verify`
            registered.setdefault(keyid, (pub, index, None, None))
        elif p.get("event") in ("revoked", "retired") and keyid in registered:
            pub, added, ended, until = registered[keyid]
            if keyid in checked.revoked:
                continue  # the ledger changes nothing of a revoked key
            if p.get("event") == "revoked":
                # a retired key revoked later (its private key leaked since) keeps its
                # retirement: entries after it stay invalid, whatever the revocation says
                checked.revoked[keyid] = index
                if ended is None:
                    registered[keyid] = (pub, added, index, None)
            elif ended is None:  # a retirement is never moved
                # In force from the later of its signed effectiveFrom and its append; every
                # entry after the event was appended after it (append times never go back),
                # so the signed date alone decides.  signer-keys.json states the event's
                # time, but the operator writes it: it never keeps the key signing longer.
                until = _moment(p.get("effectiveFrom")) or _EARLIEST
                registered[keyid] = (pub, added, index, until)
    # all of the log's key events below the checkpoint, none left out: the checkpoint
    # commits to their count and digest (its key-events line)
    checked.key_events = [
        (index, merkle.leaf_hash(raw))
        for index, (raw, st, _) in sorted(envelopes.items())
        if st.get("predicateType") == KEY_EVENT
    ]
    key_problems.extend(_key_events_problems(ev.checkpoint_note, checked.key_events, cp.size))
    # what signer-keys.json must say of each key: its events and its status when the pack
    # was made, from the key events (signed by the log key, all of them in the pack)
    events_of: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, (_, st, _) in sorted(envelopes.items()):
        if st.get("predicateType") == KEY_EVENT:
            p = st.get("predicate") or {}
            events_of.setdefault(str(p.get("keyid", "")), []).append((index, p))
    generated_at = _moment((ev.pack_statement.get("predicate") or {}).get("generatedAt"))
    statuses = _key_statuses(ev, checked, generated_at) if generated_at is not None else None
    for k in ev.signer_keys:
        keyid = str(k.get("keyid", "")) if isinstance(k, dict) else ""
        vouched.add(keyid)
        if keyid not in registered:
            key_problems.append(f"signer key {keyid[:16]}… has no key event in the evidence")
        elif _pem_keyid(k.get("publicKey")) != keyid:
            key_problems.append(f"signer key {keyid[:16]}…: its PEM is not that key")
        else:
            key_problems.extend(_signer_key_problems(k, keyid, events_of.get(keyid, []), statuses))
    report.add(
        "signer keys",
        not key_problems,
        key_problems[0]
        if key_problems
        else f"{count(len(registered), 'key')} registered by the log key; every key event "
        f"below entry {cp.size} is in the pack ({len(checked.key_events)})",
    )

    # 4 (second pass). envelope signatures by a key valid at that index
    sig_problems: list[str] = []
    for index, (_, st, env) in sorted(envelopes.items()):
        if st.get("predicateType") == KEY_EVENT:
            continue
        usable: list[Any] = []
        for s in env.signatures:
            for _, key in _keys_for(s.keyid, index, checked):
                if key[0] not in usable:
                    usable.append(key[0])
        if not usable:
            sig_problems.append(f"entry {index}: no signer key valid at this index")
            continue
        try:
            env.verify(usable)
        except EscrowError:
            sig_problems.append(f"entry {index}: the envelope signature does not verify")
    report.add(
        "envelope signatures",
        not sig_problems,
        sig_problems[0]
        if sig_problems
        else f"{count(len(envelopes), 'envelope')}, each signed by a key valid when appended",
    )

    # 5. the pack statement
    pred = ev.pack_statement.get("predicate")
    stmt_problems: list[str] = []
    if not isinstance(pred, dict):
        stmt_problems.append("pack-statement.json has no predicate")
        pred = {}
    report.pack_id = str(pred.get("packId", ""))
    cpd = pred.get("checkpoint") or {}
    if cpd.get("size") != cp.size or cpd.get("rootHash") != root_hex:
        stmt_problems.append("its checkpoint is not the embedded one")
    if sorted(pred.get("evidence") or []) != sorted(envelopes):
        stmt_problems.append("its evidence list differs from the embedded envelopes")
    scope_doc = _scope_doc(pred)
    scope = [int(i) for i in (scope_doc.get("entries") or [])]
    scope_projects = [str(x) for x in scope_doc.get("projects") or []]
    for i in scope:
        if i not in envelopes or envelopes[i][1].get("predicateType") != BUILD_MANIFEST:
            stmt_problems.append(f"build {i} in scope has no embedded build manifest")
            break
        project = _build_project(envelopes[i][1])
        if scope_projects and project not in scope_projects:
            stmt_problems.append(
                f"build {i} is of project {project or '(none)'}, which is not in its scope "
                f"({', '.join(scope_projects)})"
            )
            break
    supporting = _supporting(checked, scope)
    if sorted(pred.get("supportingBuilds") or []) != supporting:
        stmt_problems.append(
            "its supporting builds are not the build manifests embedded outside its scope "
            f"({', '.join(map(str, supporting)) or 'none'})"
        )
    if report.pack_id and report.pack_id != _pack_id_of(pred):
        stmt_problems.append(
            f"its pack ID {report.pack_id} is not the one its scope, requester, time and "
            "checkpoint give"
        )
    report.scope = _scope_text(scope_doc, cp.size)
    signer_sha = (pred.get("signer") or {}).get("certificateSha256")
    if cert_sha is not None and signer_sha != cert_sha:
        stmt_problems.append("the PDF is signed by another certificate than the pack names")
    if signer_sha:
        vouched.add(str(signer_sha))
    report.builds = len(scope)
    report.supporting_builds = len(supporting)
    report.add(
        "pack statement",
        not stmt_problems,
        stmt_problems[0]
        if stmt_problems
        else f"pack {report.pack_id}, {count(len(scope), 'build')}"
        + (f" and {count(len(supporting), 'supporting build')}" if supporting else ""),
    )

    # 6. consistency
    if ev.consistency is not None:
        c = ev.consistency
        try:
            old = cpmod.verify_checkpoint(str(c.get("oldCheckpoint", "")), ev.verifier_key)
            proof = [bytes.fromhex(h) for h in c.get("proof", [])]
            ok = (
                c.get("newSize") == cp.size
                and c.get("newRootHash") == root_hex
                and merkle.verify_consistency(old.size, cp.size, old.root, cp.root, proof)
            )
            detail = (
                f"checkpoint {old.size} → {cp.size}: the log only grew"
                if ok
                else "the consistency proof does not verify"
            )
            if ok and (problem := _key_events_since(old.note, checked.key_events)):
                ok, detail = False, problem
            elif ok and (named := cpmod.parse_key_events(cpmod.parse_note(old.note)[0])):
                named_events = count(named[0], "key event")
                detail += f"; the pack's key events begin with the {named_events} it names"
            vouched.add(old.root.hex())
            vouched.update(h.hex() for h in proof)
        except (EscrowError, ValueError, TypeError) as e:
            ok, detail = False, f"the previous checkpoint does not verify ({e})"
        report.add("consistency", ok, detail)

    if expected:
        _check_expected(report, ev, cp, expected, checked.key_events)

    # every 64-hex digest anywhere in the signed evidence is vouched for
    for raw, _, env in envelopes.values():
        vouched.update(HEX64.findall(env.payload.decode("utf-8", errors="replace")))
        vouched.update(HEX64.findall(raw.decode("utf-8", errors="replace")))
    return checked


def _scope_doc(pred: Any) -> dict[str, Any]:
    scope = pred.get("scope") if isinstance(pred, dict) else None
    return scope if isinstance(scope, dict) else {}


def _build_project(statement: dict[str, Any]) -> str:
    build = (statement.get("predicate") or {}).get("build")
    return str(build.get("project") or "") if isinstance(build, dict) else ""


def _pack_id_of(pred: dict[str, Any]) -> str:
    """The pack ID ``escrow pack`` derives from the statement's scope, requester, generation
    time and checkpoint (:func:`escrow.pack.collect.pack_id_for`)."""
    from escrow.pack.collect import pack_id_for

    cpd = pred.get("checkpoint") or {}
    core = {
        "scope": pred.get("scope"),
        "requester": pred.get("requester"),
        "generatedAt": pred.get("generatedAt"),
        "checkpoint": {k: cpd.get(k) for k in ("origin", "size", "rootHash")},
    }
    try:
        return pack_id_for(core)
    except (TypeError, ValueError):
        return ""


def _scope_view(scope_doc: dict[str, Any]) -> Any:
    from escrow.pack.model import ScopeView

    return ScopeView(
        projects=tuple(str(x) for x in scope_doc.get("projects") or []),
        since=str(scope_doc.get("since") or ""),
        until=str(scope_doc.get("until") or ""),
        entries=(),
        requested_entries="",
    )


def _scope_text(scope_doc: dict[str, Any], size: int) -> str:
    """The scope as the cover words it (projects and period), and the checkpoint size."""
    return f"{_scope_view(scope_doc).describe()}; checkpoint {size}"


def _moment(value: Any) -> datetime | None:
    from escrow.times import parse_time

    if not value:
        return None
    try:
        return parse_time(str(value), "scope")
    except EscrowError:
        return None


def _key_events_problems(note: str, events: list[tuple[int, bytes]], size: int) -> list[str]:
    """What is wrong with the embedded key events against the count and digest the
    pack's checkpoint commits to (none: all of the log's key events are in the pack)."""
    from escrow.ledger import checkpoint as cpmod

    try:
        committed = cpmod.parse_key_events(cpmod.parse_note(note)[0])
    except InputError as e:
        return [e.message.rstrip(".")[:1].lower() + e.message.rstrip(".")[1:]]
    if committed is None:
        return [
            "the checkpoint commits to no list of key events, so a key event left out of "
            "the pack (a revocation) could not be told"
        ]
    if cpmod.key_events_digest(events) == committed:
        return []
    n, want = len(events), committed[0]
    if n < want:
        return [
            f"the pack holds {count(n, 'key event')} of the {want} below entry {size} that its "
            "checkpoint commits to: a key event was left out"
        ]
    if n > want:
        return [
            f"the pack holds {count(n, 'key event')}, more than the {want} below entry {size} "
            "that its checkpoint commits to"
        ]
    return [
        f"the pack's {count(n, 'key event')} are not the {want} below entry {size} that its "
        "checkpoint commits to"
    ]


def _key_events_since(note: str, events: list[tuple[int, bytes]]) -> str:
    """Why the pack's key events do not extend those an earlier checkpoint (``note``)
    commits to ("" when they do, or when it commits to none)."""
    from escrow.ledger import checkpoint as cpmod

    try:
        committed = cpmod.parse_key_events(cpmod.parse_note(note)[0])
    except InputError:
        return "the previous checkpoint's key-events line is malformed"
    if committed is None:
        return ""
    if cpmod.key_events_digest(events[: committed[0]]) != committed:
        return (
            f"the pack's key events do not begin with the {count(committed[0], 'key event')} "
            "that the previous checkpoint commits to: the log's key history was rewritten"
        )
    return ""


def _check_expected(
    report: PackReport,
    ev: EmbeddedEvidence,
    cp: Any,
    expected: Expected,
    key_events: list[tuple[int, bytes]],
) -> None:
    """The pack is of the scope the auditor asked for, and its checkpoint is theirs or
    proven consistent with theirs (``escrow pack verify --project/--since/--until/
    --since-checkpoint``)."""
    from escrow.ledger import checkpoint as cpmod

    pred = ev.pack_statement.get("predicate") or {}
    scope_doc = _scope_doc(pred)
    problems: list[str] = []
    if expected.projects:
        have = sorted({str(x) for x in scope_doc.get("projects") or []})
        want = sorted(set(expected.projects))
        if have != want:
            problems.append(
                f"it is a pack of {'projects ' + ', '.join(have) if have else 'all projects'}, "
                f"not of {'projects ' + ', '.join(want)}"
            )
    since_ok = expected.since is None or _moment(scope_doc.get("since")) == expected.since
    until_ok = expected.until is None or _moment(scope_doc.get("until")) == expected.until
    if not (since_ok and until_ok):
        from escrow.pack.collect import rfc3339 as _iso

        def period(since: str, until: str) -> str:
            text = _scope_view({"since": since, "until": until}).describe()
            return text.split("; ", 1)[1] if "; " in text else "all time"

        have_period = period(str(scope_doc.get("since") or ""), str(scope_doc.get("until") or ""))
        want_period = period(
            _iso(expected.since) if expected.since else str(scope_doc.get("since") or ""),
            _iso(expected.until) if expected.until else str(scope_doc.get("until") or ""),
        )
        problems.append(f"its period is {have_period}, not {want_period}")
    if expected.checkpoint_note is not None:
        try:
            mine = cpmod.verify_checkpoint(expected.checkpoint_note, ev.verifier_key)
        except EscrowError:
            problems.append(
                "your previous checkpoint is not signed by this pack's log "
                f"({ev.verifier_key.split('+')[0]})"
            )
        else:
            c = ev.consistency or {}
            try:
                proven = cpmod.verify_checkpoint(str(c.get("oldCheckpoint", "")), ev.verifier_key)
            except EscrowError:
                proven = None
            since = _key_events_since(mine.note, key_events)
            if since:
                problems.append(since.replace("the previous", "your previous"))
            elif mine.size == cp.size:
                if mine.root != cp.root:
                    problems.append(
                        f"its checkpoint (size {cp.size}) has another root than your previous "
                        "checkpoint of that size: the log was forked or rewritten"
                    )
            elif mine.size > cp.size:
                problems.append(
                    f"its checkpoint (size {cp.size}) is older than your previous checkpoint "
                    f"(size {mine.size}), so it cannot prove the log only grew since"
                )
            elif proven is not None and proven.size == mine.size and proven.root != mine.root:
                problems.append(
                    f"its log had another root at size {mine.size} than your previous "
                    "checkpoint: the log was forked or rewritten"
                )
            elif proven is None or (proven.size, proven.root) != (mine.size, mine.root):
                problems.append(
                    f"it proves no consistency with your previous checkpoint (size {mine.size}): "
                    "ask for a pack made with --since-checkpoint and that checkpoint"
                )
    report.add(
        "requested scope",
        not problems,
        problems[0] if problems else f"the pack is of the scope asked for: {report.scope}",
    )


def _pem_keyid(pem: Any) -> str:
    """The key ID of a signer key's PEM; empty when it is no public key."""
    try:
        return PublicKey.from_pem(str(pem or "")).keyid
    except InputError:
        return ""


def _valid_at(key: _Key, index: int, appended: datetime | None, revoked: int | None = None) -> bool:
    """Whether a key added at ``key[1]`` and ended at ``key[2]`` may sign entry ``index``,
    appended at ``appended`` (or before): after a retirement, until it takes effect; never
    after its revocation (at entry ``revoked``)."""
    _, added, ended, until = key
    if added >= index or (revoked is not None and revoked < index):
        return False
    if ended is None or index < ended:
        return True
    return until is not None and appended is not None and appended < until


def _check_text(report: PackReport, text: str, ev: EmbeddedEvidence, vouched: set[str]) -> None:
    required: list[tuple[str, str]] = []
    pred = ev.pack_statement.get("predicate") or {}
    scope = {int(i) for i in ((pred.get("scope") or {}).get("entries") or [])}
    rebuild_of: set[int] = set()
    for raw, rec in zip(ev.envelopes, ev.proofs.get("proofs") or [], strict=False):
        try:
            st = Envelope.from_bytes(raw).statement()
        except EscrowError:
            continue
        index = int(rec.get("index", -1))
        if st.get("predicateType") == REBUILD_VERIFICATION:
            rebuild_of.add(index)
        if index not in scope or st.get("predicateType") != BUILD_MANIFEST:
            continue
        p = st.get("predicate") or {}
        image = (p.get("image") or {}).get("id")
        if image:
            required.append((f"entry {index} image ID", str(image)))
        required.extend(
            (f"entry {index} diff ID", str(layer["diffId"]))
            for layer in p.get("layers") or []
            if isinstance(layer, dict) and layer.get("diffId")
        )
        required.append((f"entry {index} leaf hash", str(rec.get("leafHash"))))
    if report.pack_id:
        required.append(("pack ID", report.pack_id))
    shown = _found_in(text, (value for _, value in required))
    missing = [f"{what} {value}" for what, value in required if value not in shown]
    scope_doc = _scope_doc(pred)
    printed_scope = _scope_view(scope_doc).describe()
    if not missing and not _shows(text, printed_scope, _scope_view(scope_doc)):
        missing.append(f"scope the pack statement states ({printed_scope})")
    printed = set(HEX64.findall(text))
    unvouched = sorted(printed - vouched)
    if missing:
        report.add("printed digests", False, f"the pages do not show the {missing[0]}")
    elif unvouched:
        report.add(
            "printed digests",
            False,
            f"the pages show {unvouched[0]}, found in no embedded evidence",
        )
    else:
        report.add(
            "printed digests",
            True,
            f"{len(required)} required values shown; "
            f"all {len(printed)} printed digests are in the evidence",
        )


# -- the verdict ---------------------------------------------------------------------

_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _KeyEventEntry:
    """An embedded key-event envelope, as :func:`replay_key_events` reads a ledger entry."""

    index: int
    integrated_at: datetime
    doc: dict[str, Any]

    def statement(self) -> dict[str, Any]:
        return self.doc


def _signer_key_problems(
    k: dict[str, Any],
    keyid: str,
    events: list[tuple[int, dict[str, Any]]],
    statuses: Mapping[str, str] | None,
) -> list[str]:
    """What ``signer-keys.json`` says of a key that its key events (``events``: index and
    predicate, in log order) do not: its name and algorithm (those its ``added`` event
    gives), its events (each one, at its index, with its reason), and its status when the
    pack was made (``statuses``, :func:`_key_statuses`; None when the pack gives no time).
    The verdict is computed from the events, never from this file; but an auditor reads
    the file, and a pack that describes a key otherwise than its log was not made by
    escrow."""
    who = f"signer key {keyid[:16]}…"
    added = next((p for _, p in events if p.get("event") == "added"), {})
    for name in ("name", "algorithm"):
        if k.get(name) != added.get(name):
            return [
                f"{who}: signer-keys.json gives its {name} as {_said(k.get(name))}, its key "
                f"event {_said(added.get(name))}"
            ]
    signed = [
        (str(p.get("event", "")), index, "" if p.get("event") == "added" else _text(p, "reason"))
        for index, p in events
    ]
    stated = [
        (str(e.get("event", "")), e.get("index"), _text(e, "reason"))
        if isinstance(e, dict)
        else ("", None, "")
        for e in k.get("events") or []
    ]
    if stated != signed:
        return [
            f"{who}: signer-keys.json lists its events as "
            f"{_events_text(stated)}, its key events are {_events_text(signed)}"
        ]
    if statuses is not None and k.get("status") != statuses.get(keyid, ""):
        return [
            f"{who}: signer-keys.json gives its status as {_said(k.get('status'))}, its "
            f"key events {_said(statuses.get(keyid, ''))} when the pack was made"
        ]
    return []


def _text(doc: Mapping[str, Any], name: str) -> str:
    """``doc[name]`` as text, "" when it is missing or null."""
    value = doc.get(name)
    return "" if value is None else str(value)


def _events_text(events: list[tuple[str, Any, str]]) -> str:
    return (
        ", ".join(f"{e or '?'} at {i}" + (f" ({_said(r)})" if r else "") for e, i, r in events)
        or "none"
    )


def _stated_event_times(ev: EmbeddedEvidence) -> dict[tuple[str, int], datetime]:
    """``(key ID, event index) -> effectiveFrom`` as ``signer-keys.json`` states each key
    event (for a retirement: the later of its signed date and its append)."""
    stated: dict[tuple[str, int], datetime] = {}
    for k in ev.signer_keys:
        for e in k.get("events") or []:
            if not isinstance(e, dict) or not isinstance(e.get("index"), int):
                continue
            when = _moment(e.get("effectiveFrom"))
            if when is not None:
                stated[(str(k.get("keyid", "")), int(e["index"]))] = when
    return stated


def _key_statuses(
    ev: EmbeddedEvidence, checked: _Checked, generated_at: datetime
) -> dict[str, str]:
    """Each key's status at the pack's generation time, as ``escrow pack`` gave it: the
    embedded key events replayed (:func:`escrow.ledger.store.replay_key_events`).

    The time the ledger appended a key event is in no log-signed evidence; it matters only
    for a retirement, in force from the later of its (signed) ``effectiveFrom`` and that
    time.  It is read from ``signer-keys.json``, where ``escrow pack`` writes it as the
    event's ``effectiveFrom``; a retirement is never taken as later than the pack states,
    nor earlier than the time the log signed."""
    from escrow.ledger.store import replay_key_events

    stated = _stated_event_times(ev)
    entries: list[Any] = []  # read as ledger entries: index, integrated_at, statement()
    for index, (_, st, _) in sorted(checked.envelopes.items()):
        if st.get("predicateType") != KEY_EVENT:
            continue
        keyid = str((st.get("predicate") or {}).get("keyid", ""))
        entries.append(_KeyEventEntry(index, stated.get((keyid, index), _EARLIEST), st))
    return {r.keyid: r.status for r in replay_key_events(entries, generated_at)}


def _signer_of(index: int, env: Envelope, checked: _Checked) -> str:
    """The key that signed entry ``index``: the first whose signature verifies, of a key
    registered and valid at that index (as the ledger chose it when appending)."""
    for s in env.signatures:
        for keyid, key in _keys_for(s.keyid, index, checked):
            try:
                env.verify([key[0]])
            except EscrowError:
                continue
            return keyid
    return env.signatures[0].keyid if env.signatures else ""


def _keys_for(keyid: str, index: int, checked: _Checked) -> list[tuple[str, _Key]]:
    """The registered keys valid at entry ``index`` that a signature naming ``keyid`` may
    be by: that key, or, for a signature without a key ID (DSSE makes it optional), every
    key, as the append tried them."""
    registered = checked.registered
    named = (keyid,) if keyid else tuple(registered)
    return [
        (k, registered[k])
        for k in named
        if k in registered
        and _valid_at(registered[k], index, checked.appended_at(index), checked.revoked.get(k))
    ]


def _recompute(
    ev: EmbeddedEvidence, checked: _Checked, generated_at: datetime, rules: VerdictRules
) -> Assessment:
    """The pack's :class:`~escrow.pack.collect.Assessment`, from its evidence alone, judged
    by ``rules`` (those the pack states)."""
    pred = ev.pack_statement.get("predicate") or {}
    scope = sorted({int(i) for i in (_scope_doc(pred).get("entries") or [])})
    rebuilds: dict[int, list[Verdict]] = {}
    for _, (_, st, _) in sorted(checked.envelopes.items()):
        rp = st.get("predicate")
        if st.get("predicateType") != REBUILD_VERIFICATION or not isinstance(rp, dict):
            continue
        original = original_index(rp)
        if original is not None:
            rebuilds.setdefault(original, []).append(verdict_of(rp)[0])
    statuses = _key_statuses(ev, checked, generated_at)

    def facts_of(index: int) -> BuildFacts:
        raw, st, env = checked.envelopes[index]
        signer = _signer_of(index, env, checked)
        key = checked.registered.get(signer)
        verified, _ = signature_status(raw, key[0] if key else None)
        return BuildFacts(
            index=index,
            statement=st,
            signer=signer,
            signer_status=statuses.get(signer, ""),
            signature_verified=verified,
            inclusion_verified=True,  # the "inclusion proofs" check passed for each
            rebuilds=tuple(rebuilds.get(index, ())),
        )

    facts = [facts_of(index) for index in scope]
    supporting = [facts_of(index) for index in _supporting(checked, scope)]
    # the checkpoint (and any consistency proof) verified: this runs only when they did
    return assess(facts, note_ok=True, consistency_ok=True, rules=rules, supporting=supporting)


def _supporting(checked: _Checked, scope: Iterable[int]) -> list[int]:
    """The embedded build manifests outside the scope: the supporting builds (rules 3)."""
    inside = set(scope)
    return [
        index
        for index, (_, st, _) in sorted(checked.envelopes.items())
        if st.get("predicateType") == BUILD_MANIFEST and index not in inside
    ]


def _flat(text: str) -> str:
    """Text compared however the pages wrapped it: without whitespace, soft hyphens or
    hyphens (``pdftotext`` drops a hyphen where a line broke after it)."""
    return re.sub(r"[\s\u00ad-]", "", text)


def _said(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


def _check_verdict(report: PackReport, ev: EmbeddedEvidence, text: str, checked: _Checked) -> None:
    """Check 8: the summary, verdict and anomalies the pack states are those its evidence
    gives, recomputed with :func:`escrow.pack.collect.assess`."""
    pred = ev.pack_statement.get("predicate") or {}
    generated_at = _moment(pred.get("generatedAt"))
    if generated_at is None:
        report.add("verdict", False, "the pack statement states no generation time")
        return
    # packs made before the rules were versioned state none: they were judged by rules 1
    stated_rules = pred.get("verdictRules", 1)
    rules = VERDICT_RULES.get(stated_rules) if type(stated_rules) is int else None
    if rules is None:
        report.add(
            "verdict",
            False,
            f"the pack statement states verdict rules {_said(stated_rules)}, which this "
            f"escrow ({__version__}) does not know: verify it with the escrow that made it "
            f"({_said(pred.get('escrowVersion'))}) or a later one",
        )
        return
    a = _recompute(ev, checked, generated_at, rules)
    want = a.summary_doc()
    n = len(a.summary.anomalies)
    anomalies = count(n, "anomaly", "anomalies")
    findings, notes = len(a.summary.findings), len(a.summary.notes)
    tally = f"{count(findings, 'finding')} and {count(notes, 'note')}"
    # the first anomaly that makes the verdict "with findings", else the first
    serious_first = sorted(a.summary.anomalies, key=lambda x: x.kind not in SERIOUS_ANOMALIES)
    first = f" ({serious_first[0].text})" if serious_first else ""
    stated = pred.get("summary")
    stated = stated if isinstance(stated, dict) else {}
    problem = ""
    if stated.get("overall") != want["overall"]:
        problem = (
            f"the pack statement states the verdict {_said(stated.get('overall'))}, "
            f"but its evidence gives {_said(want['overall'])}"
        )
    elif stated.get("anomalies") != want["anomalies"]:
        problem = (
            f"the pack statement states {_said(stated.get('anomalies'))} anomalies, "
            f"but its evidence gives {anomalies}{first}"
        )
    else:
        for name, value in want.items():
            if stated.get(name) != value:
                problem = (
                    f"the pack statement's summary states {name} {_said(stated.get(name))}, "
                    f"but its evidence gives {_said(value)}"
                )
                break
        else:
            extra = sorted(set(stated) - set(want))
            if extra:
                problem = f"the pack statement's summary states {extra[0]}, which no check gives"
    flat = _flat(text)
    if not problem and _flat(f"Overall verdict: {a.overall} Signatures verified:") not in flat:
        shown = re.search(r"Overall verdict:[ \t]*(\S[^\n]*)", text)
        problem = (
            f"the cover states the verdict {_said(shown.group(1).strip())}, "
            f"but its evidence gives {_said(a.overall)}"
            if shown
            else f"the cover does not show the verdict its evidence gives ({_said(a.overall)})"
        )
    # the cover counts them as findings and notes (secret values recorded as digests)
    if not problem and _flat(f"; {a.summary.counts()}.") not in flat:
        problem = f"the cover does not count the {tally} its evidence gives{first}"
    failed_line = a.summary.failed_line()  # by rules 4: the cover names the failed builds
    if not problem and failed_line and _flat(failed_line) not in flat:
        problem = f"the cover does not name the failed builds its evidence gives ({failed_line})"
    if not problem and _flat(f"Failed builds {a.summary.failed} Signatures") not in flat:
        failed = count(a.summary.failed, "failed build")
        problem = f"the summary page does not show the {failed} its evidence gives"
    if not problem and (
        _flat(f"Findings {findings} Notes {notes} ({rules.notes_what}, not findings)") not in flat
    ):
        problem = f"the summary page does not count the {tally} its evidence gives{first}"
    if not problem:
        missing = next((x.text for x in a.summary.anomalies if _flat(x.text) not in flat), "")
        if missing:
            problem = f"the summary does not list the finding or note its evidence gives: {missing}"
    if report.add(
        "verdict",
        not problem,
        problem or f"{a.overall}, {tally}: as recomputed from the evidence",
    ):
        report.verdict = {
            "overall": a.overall,
            "findings": findings,
            "rebuilds_failed": a.summary.rebuilds_failed,  # different or not reproduced
            "notes": notes,
            "rules": rules.version,
        }


def _shows(text: str, phrase: str, scope: Any) -> bool:
    """Whether the extracted ``text`` shows ``phrase`` as the pages print it, however
    they wrapped it: whitespace aside, and a hyphen where a line broke after it
    (``pdftotext`` joins such lines and drops their hyphen).  The pages print a direction
    control in a name as ``[U+202E]`` (:func:`~escrow.pack.render.shown_controls`).
    ``pdftotext`` wraps each right-to-left run in controls of its own, and takes the
    separators beside the run into it (``projects مشروع; from`` comes out as
    ``projects \u202b ;مشروع\u202c from``): the controls and the separators ``;`` and ``,``
    are left out on both sides."""
    from escrow.pack.render import COVER_ROW_END, RTL_LETTER, cover_row_pdf, shown_controls

    text = _PAGE_FURNITURE.sub("\n", text)  # a scope the cover's pages split goes on
    if RTL_LETTER.search(phrase):
        # pdftotext turns back only the runs of right-to-left letters: words with a hyphen,
        # a dot or a digit between them come out in another order (and a name with two
        # words swapped would read as the phrase): it is compared as pdftotext reads it
        # laid out as the cover's row lays it out (``scope``, the ScopeView it describes)
        row = pdf_text(cover_row_pdf(scope)).split(COVER_ROW_END)[0].strip()
        row = row.removeprefix("Scope").strip()
        return _SEPARATORS.sub("", row) in _SEPARATORS.sub("", text)
    printed = _SEPARATORS.sub("", shown_controls(phrase))
    pattern = "".join("-?" if c == "-" else re.escape(c) for c in printed)
    return re.search(pattern, _SEPARATORS.sub("", text)) is not None


#: what ``pdftotext`` puts where a page breaks (reports/pack.css): the footer's page number,
#: the form feed, and the running header of the pages that have one (title and pack ID);
#: :func:`_shows` reads a phrase across it (a long scope runs from the cover onto a second page)
_PAGE_FURNITURE = re.compile(
    r"\n[ \t]*Page \d+ of \d+[ \t]*\n*\f"
    r"(?:[ \t]*escrow audit pack[ \t]*\n\s*EP(?:-[0-9A-F]{4})+[ \t]*\n)?"
)

#: what :func:`_shows` leaves out of the phrase and the page: whitespace, the separators
#: of a scope's lists, and the direction controls ``pdftotext`` adds around right-to-left text
_SEPARATORS = re.compile("[\\s;,\u202a-\u202e\u2066-\u2069]")


def verify_pack(
    path: Path,
    *,
    trust: Path | None = None,
    expected: Expected | None = None,
    tsa_trust: Path | None = None,
) -> PackReport:
    """Verify the pack at ``path``; the report lists every check (fail closed).

    With ``expected``, also that it is the pack the auditor asked for (:class:`Expected`);
    with ``tsa_trust``, that the signature carries a timestamp by a TSA chaining to it.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read the pack {path}: {e.strerror}.") from e
    trusted = trusted_certificate(trust) if trust is not None else None
    tsa_trusted = trusted_certificate(tsa_trust, "--tsa-trust") if tsa_trust is not None else None
    report = PackReport(path=path, sha256=hashlib.sha256(data).hexdigest())
    reader, cert_sha = _check_pdf_signature(report, data, trust, trusted, tsa_trust, tsa_trusted)
    report.anchored = trust is not None and report.ok
    if reader is None:
        report.skip_the_rest(consistency=False, expected=bool(expected))
        return report
    try:
        files = embedded_files(reader)
        ev = parse_attachments(files)
        foreign = _foreign_attachments(files)
    except CheckFailed as e:
        detail = e.message.rstrip(".")
        report.add("attachments", False, detail[:1].lower() + detail[1:])
        report.skip_the_rest(consistency=False, expected=bool(expected))
        return report
    except Exception as e:  # noqa: BLE001 - a damaged object tree
        report.add("attachments", False, f"the attachments cannot be read ({_bare(e)})")
        report.skip_the_rest(consistency=False, expected=bool(expected))
        return report
    if foreign:
        report.add("attachments", False, foreign)
        report.skip_the_rest(consistency=False, expected=bool(expected))
        return report
    report.add(
        "attachments", True, f"{count(len(files), 'attachment')}: {', '.join(sorted(files))}"
    )
    try:
        checked = _verify_evidence(report, ev, cert_sha, expected)
        if report.ok:
            text = pdf_text(path)
            _check_text(report, text, ev, checked.vouched)
            if report.ok:
                _check_verdict(report, ev, text, checked)
    except EscrowError:
        raise  # pdftotext missing or unable to read the file: said in one sentence
    except Exception as e:  # noqa: BLE001 - crafted evidence of a shape no pack has
        done = {c.name for c in report.checks}
        running = next(n for n in (*CHECK_NAMES, "pack") if n not in done)
        report.add(running, False, f"the evidence cannot be read ({type(e).__name__})")
    report.skip_the_rest(consistency=ev.consistency is not None, expected=bool(expected))
    # The PDF as rendered (before the signature's incremental update), for comparing
    # with a re-rendering made with --render-only.
    first = _first_revision_end(data)
    if first:
        report.rendered_sha256 = hashlib.sha256(data[:first]).hexdigest()
    return report


def _first_revision_end(data: bytes) -> int:
    """End of the rendered PDF: the last ``%%EOF`` before the signature's contents.

    The signature is an incremental update appended to the rendered file, so the
    revision it extends ends at the last end-of-file marker before its /Contents.
    """
    m = re.search(rb"/ByteRange\s*\[\s*0\s+(\d+)\s+\d+\s+\d+\s*\]", data)
    if m is None:
        return 0
    marker = data.rfind(b"%%EOF", 0, int(m.group(1)))
    if marker < 0:
        return 0
    end = marker + len(b"%%EOF")
    while end < len(data) and data[end : end + 1] in (b"\r", b"\n"):
        end += 1
    return end
