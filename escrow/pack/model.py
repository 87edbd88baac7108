"""The view model of an audit pack: plain, frozen dataclasses.

:mod:`escrow.pack.collect` fills it from the ledger; :mod:`escrow.pack.render`
turns it into HTML and PDF.  Nothing here touches the ledger, the network or
WeasyPrint, so the templates can be developed and tested against a model
built from a fixture.  Every string in it may come from a build and is
untrusted: the templates autoescape all of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum

from escrow.text import count

#: the cover's overall verdict of a pack whose own checks failed (``escrow pack`` exits 1)
FAILED_VERDICT = "Verification failed"


class Verdict(StrEnum):
    """Rebuild verdicts (DESIGN.md, rebuild verification) plus "not checked"."""

    IDENTICAL = "identical"
    EQUIVALENT = "equivalent"
    DIFFERENT = "different"
    NOT_REPRODUCED = "not-reproduced"
    UNKNOWN = "unknown"
    NOT_CHECKED = "not checked"
    #: a failed build: it made no image, so there is nothing to rebuild (verdict rules 4;
    #: by earlier rules a failed build counted as "not checked")
    NOT_APPLICABLE = "not applicable"


def standing_verdict(verdicts: Sequence[Verdict], conclusive: bool = True) -> Verdict | None:
    """The rebuild verdict a build stands by, of its rebuilds' ``verdicts`` in log order
    (``None``: no rebuild).  ``conclusive`` (verdict rules 4): the latest that is not
    ``unknown`` — a rebuild that could not be made (a secret build arg not given again,
    a base image gone) says nothing against an earlier identical one, and a later
    ``different`` still overrides it; ``unknown`` only when every rebuild was.  By earlier
    rules: the latest, whatever it was."""
    if not verdicts:
        return None
    if conclusive:
        for v in reversed(verdicts):
            if v is not Verdict.UNKNOWN:
                return v
    return verdicts[-1]


@dataclass(frozen=True)
class LayerRow:
    index: int
    diff_id: str
    size: int | None
    created_by: str


@dataclass(frozen=True)
class StepRow:
    index: int
    instruction: str
    image_id: str
    exit_code: int | None
    started_on: str
    duration_ms: int | None
    log_sha256: str
    log_size: int | None


@dataclass(frozen=True)
class BuildArgRow:
    name: str
    value: str | None
    secret: bool
    salt: str
    sha256: str


@dataclass(frozen=True)
class BaseImageRow:
    stage: str
    reference: str
    image_id: str
    repo_digest: str
    #: the earlier build that made this image: its index and project
    built_by: tuple[int, str] | None = None
    #: that build is not in the pack's scope, but embedded as a supporting build
    built_outside: bool = False


@dataclass(frozen=True)
class RebuildView:
    index: int
    verdict: Verdict
    rebuilt_on: str
    image_id: str
    differences: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildView:
    anchor: str
    index: int
    leaf_hash: str
    integrated_at: str
    project: str
    build_id: str
    kind: str
    status: str
    started_on: str
    finished_on: str
    duration_ms: int | None
    image_id: str
    subjects: tuple[tuple[str, str], ...]
    tags: tuple[str, ...]
    builder: tuple[tuple[str, str], ...]
    phoenix: tuple[tuple[str, str], ...]
    recipe_path: str
    recipe_sha256: str
    recipe_size: int | None
    recipe_text: str
    context_digest: str
    context_archive_digest: str
    context_size: int | None
    context_files: int | None
    build_args: tuple[BuildArgRow, ...]
    input_labels: tuple[BuildArgRow, ...]  # `escrow build --label`, as recorded
    source: tuple[tuple[str, str], ...]
    base_images: tuple[BaseImageRow, ...]
    #: images a ``COPY --from=IMAGE`` copied files from (``stage`` reads "1, line 4")
    copy_images: tuple[BaseImageRow, ...]
    steps: tuple[StepRow, ...]
    layers: tuple[LayerRow, ...]
    image_size: int | None
    platform: str
    labels: tuple[tuple[str, str], ...]
    signer: str
    signer_name: str
    algorithm: str
    signature_verified: bool
    signature_problem: str
    inclusion_proof: tuple[str, ...]
    inclusion_verified: bool
    rebuilds: tuple[RebuildView, ...] = ()
    anomalies: tuple[str, ...] = ()  # its findings
    notes: tuple[str, ...] = ()  # its notes, but a secret value's (in the summary)
    failure: tuple[tuple[str, str], ...] = ()
    failure_log: str = ""
    command: tuple[tuple[str, str], ...] = ()

    @property
    def verdict(self) -> Verdict:
        """The verdict the build stands by (:func:`standing_verdict`, current rules)."""
        standing = standing_verdict([r.verdict for r in self.rebuilds])
        if standing is not None:
            return standing
        return Verdict.NOT_APPLICABLE if self.status == "failed" else Verdict.NOT_CHECKED


@dataclass(frozen=True)
class SupportingBuildView:
    """A build outside the pack's scope that made base images of builds in it, embedded as
    evidence (verdict rules 3) so that the pack itself shows where those bases came from."""

    index: int
    leaf_hash: str
    integrated_at: str
    project: str
    build_id: str
    image_id: str
    tags: tuple[str, ...]
    finished_on: str
    signer: str
    signer_name: str
    signature_verified: bool
    inclusion_verified: bool
    #: the builds in scope that used its image as a base
    used_by: tuple[int, ...]
    #: why it does not count as the bases' provenance ("" when it does)
    not_counted: str = ""

    @property
    def anchor(self) -> str:
        return f"entry-{self.index}"


@dataclass(frozen=True)
class KeyEventRow:
    event: str
    effective_from: str
    reason: str
    index: int | None


@dataclass(frozen=True)
class KeyView:
    keyid: str
    name: str
    algorithm: str
    status: str
    public_key_pem: str
    events: tuple[KeyEventRow, ...]
    entries_signed: int = 0  # builds in scope and supporting builds it signed


@dataclass(frozen=True)
class ConsistencyView:
    old_size: int
    old_root_hex: str
    new_size: int
    new_root_hex: str
    proof: tuple[str, ...]
    old_note_verified: bool
    verified: bool
    problem: str = ""


@dataclass(frozen=True)
class LedgerView:
    origin: str
    size: int
    root_hex: str
    root_b64: str
    note: str
    verifier_key: str
    note_verified: bool
    consistency: ConsistencyView | None = None
    #: the key events below the checkpoint (its ``key-events`` line), all in the pack
    key_events: int | None = None


#: the anomalies that are findings (they make the overall verdict "Verified, with
#: findings"): an entry signed by a key revoked since (or, under verdict rules 1, retired
#: since), a base image changed under the same reference (under rules 2: unless an earlier
#: build in the pack made the new one), an input changed during the build, and (rules 4)
#: a build that failed.  The other kinds are notes: ``secret`` (a value recorded as a
#: salted digest), ``base-rebuilt`` and ``key-retired`` (rules 2).
FINDING_KINDS = ("key", "inputs", "base", "failed")


@dataclass(frozen=True)
class VerdictRules:
    """Which anomalies of a pack are findings, and how its pages name the notes.

    A pack states the rules it was judged by (``verdictRules`` in its statement) and
    ``escrow pack verify`` recomputes its verdict by those very rules, so a pack made
    before a change of rules still verifies as made.  Version 1 (packs without the field)
    made every base image changed under its reference, and every entry signed by a key
    retired since, a finding; version 2 makes them notes when the pack itself shows they
    are routine: the new base image is the image of an earlier build in the pack (a
    phoenix rebuild of the base), the key was retired (routine rotation, not a
    revocation) after it signed.  Version 3 also traces a base to a *supporting build*:
    the build outside the pack's scope (another project's, such as the base image's own)
    that made it, embedded in the pack with its inclusion proof, so that a pack of the
    application alone shows where its rebuilt bases came from.  Version 4 makes each
    failed build in scope a finding that names it (the cover names them too), and counts
    its rebuild as "not applicable" rather than "not checked": it made no image, so there
    is nothing to rebuild (by earlier rules a failed build was only counted, on the
    summary page, and its rebuild read "not checked"); and a build stands by its latest
    conclusive rebuild verdict, so that a later rebuild that could not be made (``unknown``:
    a secret build arg not given again) does not undo an earlier ``identical`` (by earlier
    rules the latest verdict counted, whatever it was)."""

    version: int
    #: what the pages call the notes (printed, and looked for by ``pack verify``)
    notes_what: str
    #: a base image changed to the image of an earlier build in the pack is a note
    traced_bases: bool
    #: an entry signed by a key retired (not revoked) since is a note
    retired_keys_noted: bool
    #: a base image may also be traced to a supporting build: one outside the scope,
    #: embedded because it made that base (its signature and inclusion verified, its key
    #: not revoked)
    traced_outside: bool = False
    #: a failed build is a finding, and its rebuild "not applicable" (no image to rebuild)
    failed_builds_found: bool = False
    #: a build stands by its latest conclusive rebuild verdict, not a later ``unknown``
    #: (:func:`standing_verdict`)
    conclusive_rebuilds: bool = False


VERDICT_RULES = {
    1: VerdictRules(1, "secret values recorded as salted digests", False, False),
    2: VerdictRules(
        2,
        "base images rebuilt by builds in this pack, retired signing keys, "
        "secret values recorded as salted digests",
        True,
        True,
    ),
    3: VerdictRules(
        3,
        "base images rebuilt by builds this pack shows, retired signing keys, "
        "secret values recorded as salted digests",
        True,
        True,
        True,
    ),
    4: VerdictRules(
        4,
        "base images rebuilt by builds this pack shows, retired signing keys, "
        "secret values recorded as salted digests",
        True,
        True,
        True,
        True,
        True,
    ),
}

#: the rules ``escrow pack`` judges new packs by
CURRENT_RULES = VERDICT_RULES[4]


@dataclass(frozen=True)
class Anomaly:
    kind: str
    text: str
    anchor: str = ""

    @property
    def finding(self) -> bool:
        return self.kind in FINDING_KINDS


#: the failed builds the cover names, at most (the others are counted, and listed in the
#: findings of section 2)
COVER_FAILED = 20


@dataclass(frozen=True)
class SummaryView:
    builds: int
    failed: int
    signatures_verified: int
    signatures_total: int
    inclusion_verified: int
    verdicts: tuple[tuple[str, int], ...]
    anomalies: tuple[Anomaly, ...]  # findings and notes, in log order
    rules: VerdictRules = CURRENT_RULES

    @property
    def findings(self) -> tuple[Anomaly, ...]:
        """The anomalies that make the verdict "Verified, with findings"."""
        return tuple(a for a in self.anomalies if a.finding)

    @property
    def notes(self) -> tuple[Anomaly, ...]:
        """The anomalies that are no finding (:attr:`VerdictRules.notes_what`)."""
        return tuple(a for a in self.anomalies if not a.finding)

    @property
    def failed_builds(self) -> tuple[int, ...]:
        """The entries of the failed builds the findings name (verdict rules 4), in log
        order."""
        return tuple(
            int(a.anchor.removeprefix("entry-")) for a in self.anomalies if a.kind == "failed"
        )

    def failed_line(self) -> str:
        """What the cover says of the failed builds (verdict rules 4; ``pack verify`` looks
        for these words): "Failed builds, each a finding: entries 2, 5." — the first
        :data:`COVER_FAILED` of them, and how many more section 2 lists; "" when none."""
        failed = self.failed_builds
        if not failed:
            return ""
        shown = ", ".join(str(i) for i in failed[:COVER_FAILED])
        more = len(failed) - COVER_FAILED
        rest = f" and {more:,} more (section 2)" if more > 0 else ""
        which = "entry" if len(failed) == 1 else "entries"
        what = "Failed build, a finding" if len(failed) == 1 else "Failed builds, each a finding"
        return f"{what}: {which} {shown}{rest}."

    @property
    def rebuilds_failed(self) -> int:
        """Builds whose last rebuild was different or not reproduced (also findings)."""
        bad = (Verdict.DIFFERENT.value, Verdict.NOT_REPRODUCED.value)
        return sum(n for name, n in self.verdicts if name in bad)

    def counts(self) -> str:
        """The findings and notes as the cover counts them (``pack verify`` looks for
        these words): ``2 findings; 40 notes (secret values recorded as salted digests,
        not findings)`` (the notes named by the pack's rules), with the rebuilds that
        differ or were not reproduced, if any."""
        parts = [count(len(self.findings), "finding")]
        if self.rebuilds_failed:
            parts.append(f"{count(self.rebuilds_failed, 'rebuild')} different or not reproduced")
        what = self.rules.notes_what
        parts.append(f"{count(len(self.notes), 'note')} ({what}, not findings)")
        return "; ".join(parts)


def _midnight(when: str) -> date | None:
    """The date of an RFC 3339 UTC time that is exactly midnight, else None."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T00:00:00(?:\.0+)?Z", when)
    if m is None:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def _day_of_midnight(when: str) -> str:
    day = _midnight(when)
    return day.isoformat() if day else ""


def _day_before_midnight(when: str) -> str:
    day = _midnight(when)
    if day is None or day == date.min:
        return ""
    return (day - timedelta(days=1)).isoformat()


@dataclass(frozen=True)
class ScopeView:
    projects: tuple[str, ...]
    since: str
    until: str
    entries: tuple[int, ...]
    requested_entries: str

    def describe(self) -> str:
        """The scope in the user's terms, for the cover.

        ``since`` is inclusive and ``until`` exclusive (both RFC 3339, as the pack
        statement stores them).  A midnight is shown as a date: ``since`` as that
        day, ``until`` as the day before it, "inclusive" (``--until 2026-12-31``
        is stored as ``2027-01-01T00:00:00Z``); any other ``until`` is shown as
        the exclusive time it is.
        """
        parts = []
        parts.append("projects " + ", ".join(self.projects) if self.projects else "all projects")
        if self.since or self.until:
            start = _day_of_midnight(self.since) or self.since or "the start"
            last_day = _day_before_midnight(self.until)
            if last_day:
                end = f"to {last_day} (inclusive)"
            elif self.until:
                end = f"until {self.until} (exclusive)"
            else:
                end = "up to the checkpoint of the pack"
            parts.append(f"from {start} {end}")
        if self.requested_entries:
            parts.append(f"entries {self.requested_entries}")
        return "; ".join(parts)


@dataclass(frozen=True)
class SignerView:
    """The certificate that will sign the PDF (known before rendering)."""

    subject: str
    sha256: str
    key_algorithm: str


@dataclass(frozen=True)
class PackView:
    pack_id: str
    title: str
    requester: str
    generated_at: str
    scope: ScopeView
    ledger: LedgerView
    summary: SummaryView
    builds: tuple[BuildView, ...]
    keys: tuple[KeyView, ...]
    signer: SignerView
    overall: str
    overall_ok: bool
    escrow_version: str
    attachments: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: builds outside the scope that made base images of builds in it (rules 3)
    supporting: tuple[SupportingBuildView, ...] = ()
