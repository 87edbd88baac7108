"""``escrow pack``: render a signed PDF audit pack; ``escrow pack verify``: check one offline."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from escrow.cli.app import App, Integer, file_in_the_way, json_option, pass_app
from escrow.errors import UsageError
from escrow.text import count
from escrow.times import check_period, parse_time, to_the_second

if TYPE_CHECKING:
    from escrow.capture.progress import Progress
    from escrow.pack.collect import PackRequest
    from escrow.pack.render import Stage

#: in plain lines (stderr not a terminal), a part of builds laid out is said at most this
#: often: its first part always, then the one begun this many seconds or more after the
#: last line; at 0.16 s a page, every 6th part or so: some 55 lines for 5,000 builds
PLAIN_EVERY_S = 30.0


def _read_checkpoint(path: Path) -> str:
    """The previous checkpoint note given with ``--since-checkpoint`` (InputError, exit 2,
    when the file cannot be read or holds no checkpoint note)."""
    from escrow.ledger.checkpoint import read_checkpoint_file

    return read_checkpoint_file(
        path,
        hint="Give the checkpoint.txt of an earlier pack, or the output of "
        "`escrow ledger checkpoint`.",
    )


@click.group(invoke_without_command=True)
@click.option(
    "--project", "projects", multiple=True, metavar="NAME", help="Project in scope (repeatable)."
)
@click.option(
    "--since",
    metavar="DATE|TIME",
    help="First date or time in scope (integration time; UTC unless it gives an offset; a "
    "week 2026-W49, month 2026-12, quarter 2026-Q3 or year 2026 from its start).",
)
@click.option(
    "--until",
    metavar="DATE|TIME",
    help="End of the scope, exclusive (a bare date, week, month, quarter or year includes "
    "that whole period; UTC unless it gives an offset).",
)
@click.option("--entries", "entries", help="Ledger indexes in scope, e.g. 3,5,7-9.")
@click.option("--requester", default="", help="Who asked for the pack (shown on the cover).")
@click.option(
    "--since-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The auditor's previous checkpoint note: the pack proves the log only grew since.",
)
@click.option(
    "--generated-at",
    metavar="TIME",
    help="Generation time to print (RFC 3339); the same ledger, options and time "
    "give a byte-identical PDF before it is signed.",
)
@click.option(
    "--tree-size",
    type=Integer(min=1),
    metavar="N",
    help="The ledger as of its first N entries [default: all]: their signed checkpoint, "
    "builds and key history. With --generated-at, a pack rendered earlier renders again "
    "byte for byte however much the ledger grew since.",
)
@click.option(
    "--max-builds",
    type=Integer(min=1),
    default=None,
    metavar="N",
    help="Refuse a scope of more than N builds before rendering it [default: 5000; each "
    "build takes about two pages, and the pack some 0.25 MB of memory a page].",
)
@click.option(
    "--render-only",
    is_flag=True,
    help="Write the PDF as rendered, unsigned, and record nothing (to compare a re-rendering).",
)
@click.option(
    "--tsa",
    metavar="URL",
    help="An RFC 3161 Time-Stamping Authority: the signature carries its timestamp, which "
    "`pack verify` checks the signer certificate at [default: ESCROW_TSA_URL].",
)
@click.option(
    "-o",
    "--output",
    metavar="FILE.pdf",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The PDF to write (also with --render-only and through a server).  [required]",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress on stderr (warnings, errors and the result still).",
)
@json_option
@click.pass_context
def pack(
    ctx: click.Context,
    projects: tuple[str, ...],
    since: str | None,
    until: str | None,
    entries: str | None,
    requester: str,
    since_checkpoint: Path | None,
    generated_at: str | None,
    tree_size: int | None,
    max_builds: int | None,
    render_only: bool,
    tsa: str | None,
    output: Path | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Render a signed PDF audit pack of recorded builds.

    \b
    escrow pack --project NAME [--since DATE] [--until DATE] [--tsa URL]
        -o pack.pdf
    escrow pack verify pack.pdf [--trust CERT.pem] [--tsa-trust CERT.pem]
        [--project NAME] [--since DATE] [--until DATE] [--since-checkpoint FILE]

    -o is required to make a pack (exit 2 without it). The PDF embeds every
    envelope, inclusion proof, the checkpoint and the public keys, is signed
    (PAdES, ECDSA P-256) and its statement is appended to the ledger. Exit 1
    when the pack's own checks fail (its cover says "Verification failed"): it
    is written and recorded all the same.

    Progress goes to stderr as it renders (not with -q): a live line on a
    terminal, plain lines otherwise.
    """
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    if output is None:
        raise UsageError("Say where to write the pack with -o FILE.pdf.")
    if not output.name or output.name in (".", ".."):  # -o "" is Path("."): no file name
        raise UsageError(
            "The -o path names no file to write the pack to.",
            hint="Give -o a file name, e.g. -o pack.pdf.",
        )
    try:  # before rendering: a pack that cannot be written is not rendered or recorded
        output.parent.mkdir(parents=True, exist_ok=True)
        _probe_writable(output.parent)
    except OSError as e:
        blocking = file_in_the_way(output)
        reason = f"{blocking} is a file, not a folder" if blocking else (e.strerror or str(e))
        denied = blocking is None and isinstance(e, PermissionError)
        raise UsageError(
            f"Cannot write the pack to {output}: {reason}.",
            hint="Give -o a path in a folder you may write to."
            if denied
            else "Give -o a path whose folders can be created.",
        ) from e
    from escrow.pack.collect import MAX_BUILDS, PackRequest, parse_entry_list
    from escrow.pack.render import render_pack

    old_note = _read_checkpoint(since_checkpoint) if since_checkpoint is not None else None
    when = (
        parse_time(generated_at, "--generated-at")
        if generated_at is not None
        else datetime.now(UTC).replace(microsecond=0)
    )
    request = PackRequest(
        generated_at=when,
        projects=tuple(dict.fromkeys(projects)),
        since=parse_time(since, "--since") if since is not None else None,
        until=parse_time(until, "--until", end_of_day=True) if until is not None else None,
        # an empty list ("", ",") is refused there, not read as every build
        entries=parse_entry_list(entries) if entries is not None else (),
        entries_text=entries or "",
        requester=requester,
        since_checkpoint=old_note,
        tree_size=tree_size,
        max_builds=max_builds if max_builds is not None else MAX_BUILDS,
    )
    check_period(request.since, request.until, since, until)
    if app.settings.server:
        if (
            render_only
            or generated_at is not None
            or requester
            or max_builds is not None
            or tsa is not None
        ):
            raise UsageError(
                "--render-only, --generated-at, --requester, --tsa and --max-builds work only "
                "on a local ledger.",
                hint="Through a server, the server renders, signs and records the pack (with "
                "the Time-Stamping Authority its own ESCROW_TSA_URL names).",
            )
        _pack_through_server(app, request, output, as_json, quiet)
        return
    from escrow.capture.progress import make_progress

    ledger = app.local_ledger()
    shown = _PackProgress(
        make_progress(sys.stderr, quiet=quiet),
        f"escrow: audit pack of {_scope_words(request)} to {output}",
        steps=3 if render_only else 4,
    )
    try:
        result = render_pack(
            app.settings,
            ledger,
            request,
            output,
            sign=not render_only,
            record=not render_only,
            tsa=tsa,
            progress=shown,
        )
    except BaseException:
        shown.close(ok=False)
        raise
    else:
        shown.close(ok=True)
    finally:
        ledger.close()
    for w in result.warnings:
        app.say(f"escrow: warning: the renderer said: {w}")
    if as_json:
        app.emit_json(result.to_json())
    else:
        app.say(
            f"Pack {result.pack_id}: {count(len(result.entries), 'build')}, "
            f"{count(result.pages, 'page')}, {result.overall.lower()}."
        )
        if result.timestamp is not None:
            when, tsa = result.timestamp
            app.say(f"Timestamped {to_the_second(when)} by {tsa or 'the TSA'} (RFC 3161).")
        if result.index is not None:
            app.say(f"Recorded as ledger entry {result.index} (leaf {result.leaf_hash}).")
        elif render_only:
            app.say("Rendered only: not signed, not recorded.")
        app.say(f"SHA-256 {result.sha256}")
        app.out(str(result.path))
    _fail_if_unverified(result.overall, result.path, result.index)


def _scope_words(request: PackRequest) -> str:
    """The scope asked for, for the progress title: "project app", "entries 3,5"."""
    words = []
    if request.projects:
        words.append(f"{'project' if len(request.projects) == 1 else 'projects'} ")
        words[-1] += ", ".join(request.projects)
    if request.entries_text:
        words.append(f"entries {request.entries_text}")
    return ", ".join(words) or "every project"


class _PackProgress:
    """The making of a pack on stderr (a local one, or a server's pack job as the job
    document tells it), as `escrow build` shows its steps
    (:mod:`escrow.capture.progress`): a step for each phase of :func:`render_pack` —
    collecting the builds, rendering them, signing (and timestamping), recording (with
    ``--render-only``: writing) — its time when it ends, and under "rendering" the part
    being laid out ("laying out builds 17–32 of 364 (39 pages so far)").

    On a terminal the live line shows each part as it begins, under the step and its
    running time. In plain lines (a pipe, a log, ``TERM=dumb``) every other part is said
    as it begins, but a part of builds only when it is the first, or begins
    :data:`PLAIN_EVERY_S` seconds or more after the last line: a line a part would be
    some 300 lines for 5,000 builds, and the live line needs no such limit.

    Called with each :class:`~escrow.pack.render.Stage`; :meth:`close` at the end marks
    the last step done, or failed (the error follows)."""

    _STEPS = {"collect": 1, "render": 2, "sign": 3, "record": 4, "write": 3}

    def __init__(self, progress: Progress, title: str, steps: int) -> None:
        from escrow.capture.progress import LiveProgress

        self.progress = progress
        self.title = title
        self.steps = steps
        self.every = 0.0 if isinstance(progress, LiveProgress) else PLAIN_EVERY_S
        self._started: float | None = None
        self._step: tuple[int, float] | None = None  # the current step and when it began
        self._said = 0.0  # when the last line of a part was said
        self._parts_of_builds = 0
        self._text = ""  # what the current step said last

    def begin(self) -> None:
        """Show the title now, before the first step (a pack job waiting on a server)."""
        if self._started is None:
            self._started = time.monotonic()
            self.progress.start(self.title)

    def __call__(self, stage: Stage) -> None:
        now = time.monotonic()
        index = self._STEPS[stage.phase]
        if self._step is None or self._step[0] != index:
            self.begin()
            self._end_step(0)
            text = stage.text
            if stage.phase == "render":
                text = f"rendering {count(stage.builds, 'build')}"
            self.progress.step(index, self.steps, text)
            self._step = (index, now)
            self._text = stage.text
        if stage.phase != "render":
            if stage.text != self._text:  # more of the same step (the TSA asked, collecting)
                self.progress.output(stage.text + "\n")
            self._text = stage.text
            return
        if stage.part == "builds":
            self._parts_of_builds += 1
            if self._parts_of_builds > 1 and now - self._said < self.every:
                return
        self.progress.output(stage.text + "\n")
        self._said = now

    def _end_step(self, exit_code: int | None) -> None:
        if self._step is not None:
            index, began = self._step
            self.progress.step_done(index, round((time.monotonic() - began) * 1000), exit_code)
            self._step = None

    def close(self, *, ok: bool) -> None:
        """The last step done (``ok``) or failed; the display ended, saying how long the
        pack took (nothing when it failed: its error says why)."""
        if self._started is None:  # stopped before the first step: nothing was shown
            return
        self._end_step(0 if ok else None)
        took = round((time.monotonic() - self._started) * 1000)
        from escrow.pack.render import human_ms

        self.progress.finish(f"escrow: the pack took {human_ms(took)}." if ok else "")


def _probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder`` (OSError when it cannot be written): checked
    before the pack is rendered, so that the error names the -o path, not a temporary file."""
    import tempfile

    with tempfile.NamedTemporaryFile(dir=folder, prefix=".escrow-pack-probe."):
        pass


def _fail_if_unverified(overall: str | None, path: Path, index: int | None) -> None:
    """Exit 1 for a pack whose own checks failed (its cover says so): written and recorded
    all the same, as evidence, the way a failed build is recorded."""
    from escrow.pack.model import FAILED_VERDICT

    if overall != FAILED_VERDICT:
        return
    from escrow.errors import CheckFailed

    recorded = f" and recorded as ledger entry {index}" if index is not None else ""
    raise CheckFailed(
        f"The pack {path} is written{recorded}, but its own checks failed: its cover says "
        f"{FAILED_VERDICT!r}.",
        hint="Its Summary and Ledger checkpoint sections name the failed check (a signature, "
        "an inclusion proof, or consistency with the previous checkpoint).",
    )


def _pack_through_server(
    app: App, request: object, output: Path, as_json: bool, quiet: bool = False
) -> None:
    """Ask the server for the pack, wait for it, check it is the pack the log recorded
    (:func:`_recorded_pack`) and write it atomically.

    While it waits, the job's progress is shown as a local pack shows its own
    (:class:`_PackProgress`, not with ``quiet``), under the line saying the job is queued:
    each step as the server says it has begun (``progress`` of the job document: a step
    it began and ended between two questions is not shown), its time as the client saw it."""
    import hashlib
    import os
    import tempfile

    from escrow.capture.progress import make_progress
    from escrow.pack.collect import PackRequest
    from escrow.server.client import RemoteLedger, progress_stages
    from escrow.text import printable

    assert isinstance(request, PackRequest)
    with RemoteLedger.open(app.settings) as remote:
        job = remote.request_pack(
            projects=request.projects,
            since=request.since,
            until=request.until,
            entries=request.entries,
            since_checkpoint=request.since_checkpoint,
            tree_size=request.tree_size,
        )
        title = f"Pack job {job['id']} queued on {app.settings.server}; waiting for it."
        shown = _PackProgress(make_progress(sys.stderr, quiet=quiet), printable(title), steps=4)
        shown.begin()
        said: list[object] = [None]  # the last progress shown
        last: list[dict[str, Any]] = [job]  # the last job document read: the final one

        def follow(doc: dict[str, Any]) -> None:
            last[0] = doc
            progress = doc.get("progress")
            if progress == said[0]:
                return
            said[0] = progress
            for stage in progress_stages(progress):
                shown(stage)

        try:
            pdf = remote.wait_pack(str(job["id"]), on_job=follow)
        except BaseException:
            shown.close(ok=False)
            raise
        shown.close(ok=True)
        final = last[0]  # read by wait_pack as the job succeeded: not asked again
        digest = hashlib.sha256(pdf).hexdigest()
        entry, statement = _recorded_pack(remote, final, digest)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pdf)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    predicate = statement.get("predicate") or {}
    subject = (statement.get("subject") or [{}])[0]
    overall = (predicate.get("summary") or {}).get("overall")
    result = {
        "path": str(output),
        "pack_id": predicate.get("packId"),
        "overall": overall,  # the cover's verdict, as a local pack's --json gives it
        "sha256": digest,
        "rendered_sha256": (subject.get("annotations") or {}).get("renderedSha256"),
        "entries": list((predicate.get("scope") or {}).get("entries") or []),
        "index": entry.index,
        "leaf_hash": entry.leaf_hash,
        "job": final.get("id"),
        "server": app.settings.server,
    }
    if as_json:
        app.emit_json(result)
    else:
        app.say(f"SHA-256 {digest}; check it with `escrow pack verify {output}`.")
        app.out(str(output))
    _fail_if_unverified(overall if isinstance(overall, str) else None, output, entry.index)


def _recorded_pack(remote: Any, job: dict[str, Any], digest: str) -> tuple[Any, dict[str, Any]]:
    """The pack's own ledger entry (its inclusion checked against the server's signed
    checkpoint) and statement, once it is shown to record this very file: its subject's
    SHA-256 is ``digest``.  A server that hands out another PDF than the one it recorded
    (or a download damaged on the way) is :class:`CheckFailed`, and nothing is written."""
    from escrow.documents.types import AUDIT_PACK
    from escrow.errors import CheckFailed

    index = job.get("entry_index")
    if not isinstance(index, int):
        raise CheckFailed(f"The server's pack job {job.get('id')} names no ledger entry for it.")
    entry = remote.get(index)
    statement = entry.statement()
    subjects = statement.get("subject") or []
    recorded = {str((s.get("digest") or {}).get("sha256")) for s in subjects}
    if statement.get("predicateType") != AUDIT_PACK or digest not in recorded:
        raise CheckFailed(
            f"The pack the server sent (SHA-256 {digest[:16]}…) is not the pack recorded as "
            f"ledger entry {index}: nothing was written.",
            hint="Ask for the pack again; if it happens again, the server is not to be trusted.",
        )
    return entry, statement


@pack.command("verify")
@click.argument("pdf", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="CERT.pem",
    help="Certificate (PEM) the pack signature must chain to.",
)
@click.option(
    "--tsa-trust",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="CERT.pem",
    help="Certificate (PEM) of the Time-Stamping Authority, or its CA: the signature must "
    "carry a timestamp by it (escrow pack --tsa).",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    metavar="NAME",
    help="The project(s) the pack must be of (repeatable; exactly these).",
)
@click.option(
    "--since",
    metavar="DATE|TIME",
    help="The start the pack's period must have, as given to `escrow pack --since` (a week, "
    "month, quarter or year from its start; UTC unless it gives an offset).",
)
@click.option(
    "--until",
    metavar="DATE|TIME",
    help="The end the pack's period must have, as given to `escrow pack --until` "
    "(a bare date, week, month, quarter or year includes that whole period; UTC unless it "
    "gives an offset).",
)
@click.option(
    "--since-checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Your previous checkpoint note (e.g. the checkpoint.txt of the last pack): the "
    "pack's checkpoint must be it or be proven consistent with it.",
)
@json_option
@pass_app
def verify(
    app: App,
    pdf: Path,
    trust: Path | None,
    tsa_trust: Path | None,
    projects: tuple[str, ...],
    since: str | None,
    until: str | None,
    since_checkpoint: Path | None,
    as_json: bool,
) -> None:
    """Check a pack offline, from the file alone; exit 1 naming what failed.

    With --project, --since, --until or --since-checkpoint, also that it is the pack
    asked for: of that scope, and of a ledger that only grew since your checkpoint.

    A signature that carries an RFC 3161 timestamp (escrow pack --tsa) has it checked,
    and --trust then checks the signer certificate as of the timestamp's time.
    """
    from escrow.errors import CheckFailed
    from escrow.pack.verify import Expected, verify_pack

    note: str | None = None
    if since_checkpoint is not None:
        note = _read_checkpoint(since_checkpoint)
    expected = Expected(
        projects=tuple(dict.fromkeys(projects)),
        since=parse_time(since, "--since") if since is not None else None,
        until=parse_time(until, "--until", end_of_day=True) if until is not None else None,
        checkpoint_note=note,
    )
    check_period(expected.since, expected.until, since, until)
    report = verify_pack(pdf, trust=trust, expected=expected, tsa_trust=tsa_trust)
    if as_json:
        app.emit_json(report.to_json())
    else:
        for check in report.checks:
            mark = "skip" if check.skipped else "ok  " if check.ok else "FAIL"
            app.say(f"{mark} {check.name}: {check.detail}")
    if not report.ok:
        failed = report.first_failure
        assert failed is not None
        raise CheckFailed(f"The pack {pdf} fails verification: {failed.name}: {failed.detail}.")
    if not as_json:
        app.out(f"{pdf}: pack {report.pack_id} verified ({report.summary()}).")
