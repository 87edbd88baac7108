"""The FastAPI application: the ledger, tokens and pack jobs under ``/v1``.

``create_app(ServerConfig(settings))`` builds it; ``app_from_env`` is the
factory ``escrow serve --workers N`` hands to Uvicorn (each worker process
builds its own app from the environment the command set).

Every handler calls :class:`escrow.ledger.store.Ledger` — the same code as the
CLI — and maps :class:`~escrow.errors.EscrowError` to HTTP in
:mod:`escrow.server.http`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from escrow import __version__
from escrow.config import Settings, load_settings
from escrow.documents.types import SCHEMA_NAMES
from escrow.errors import DatabaseUnavailable, EscrowError, InputError, UsageError
from escrow.server import models as m
from escrow.server.auth import Principal, Role, TokenNameTaken, TokenStore
from escrow.server.http import (
    ApiError,
    GuardMiddleware,
    JsonRoute,
    install_error_handlers,
    loads_unique,
    missing_body,
    missing_token,
    not_json_media,
    pointer_of,
    unknown_token,
)
from escrow.server.http import root_path as scope_root_path
from escrow.server.packs import DEFAULT_TIME_LIMIT_S, PackJobs, PackRunner
from escrow.text import count
from escrow.times import parse_time
from escrow.verification import sha256_id

if TYPE_CHECKING:
    from escrow.ledger.models import KeyRecord
    from escrow.ledger.store import Entry, Ledger, Prepared
    from escrow.signing.dsse import Envelope

_M = TypeVar("_M", bound=BaseModel)

log = logging.getLogger("escrow.server")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
EMPTY_ROOT = hashlib.sha256(b"").digest()


@dataclass(frozen=True)
class ServerConfig:
    settings: Settings
    max_body: int = DEFAULT_MAX_BODY
    #: Render pack jobs in this process (a child process per job); 0 queues them only.
    pack_workers: int = 1
    #: Seconds a job's renderer may run before it is killed and its job fails.
    pack_time_limit: float = DEFAULT_TIME_LIMIT_S


# -- responses -------------------------------------------------------------------


def _rfc3339(t: datetime) -> str:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat().replace("+00:00", "Z")


def entry_json(entry: Entry) -> dict[str, Any]:
    return {
        "index": entry.index,
        "leaf_hash": entry.leaf_hash,
        "predicate_type": entry.predicate_type,
        "project": entry.project,
        "image_id": entry.image_id,
        "signer": entry.signer,
        "integrated_at": _rfc3339(entry.integrated_at),
        "envelope": json.loads(entry.envelope),
    }


def checkpoint_json(ledger: Ledger) -> dict[str, Any]:
    cp = ledger.checkpoint()
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root.hex(),
        "note": cp.note,
        "verifier_key": ledger.verifier_key(),
    }


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": m.ErrorBody} for c in codes}


# -- authentication --------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `escrow tokens create --role pipeline|auditor|admin`.",
)


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise missing_token()
    _ready(request)
    known = getattr(request.state, "principal", None)  # a change request's, resolved by
    if isinstance(known, Principal):  # GuardMiddleware from this very Authorization header
        return known
    tokens: TokenStore = request.app.state.tokens
    principal = tokens.resolve(credentials.credentials)
    if principal is None:
        raise unknown_token()
    request.state.principal = principal
    return principal


def root_path(request: Request) -> str:
    """The path prefix a proxy publishes the server under, ``""`` for none: every path the
    server hands out begins with it, since clients reach the routes only through it."""
    return scope_root_path(request.scope)


def _ready(request: Request) -> None:
    """Connect to the database if the worker is not yet (503 while it is down)."""
    backend: _Backend | None = getattr(request.app.state, "backend", None)
    if backend is not None:
        backend.ready()


def require(*roles: Role) -> Callable[..., Principal]:
    allowed = ", ".join(r.value for r in (*roles, Role.ADMIN))

    def dependency(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
        if not principal.may(*roles):
            raise ApiError(
                403,
                f"The token {principal.name!r} has the role {principal.role.value}; "
                f"this needs one of: {allowed}.",
            )
        return principal

    return dependency


Reader = Annotated[Principal, Depends(require(Role.PIPELINE, Role.AUDITOR))]
Poster = Annotated[Principal, Depends(require(Role.PIPELINE))]
Auditor = Annotated[Principal, Depends(require(Role.AUDITOR))]
Admin = Annotated[Principal, Depends(require())]


def _known_query(request: Request, _: Reader) -> None:
    """Refuse a query parameter the route does not declare, or one given twice, naming it
    (after the token check).

    A misspelled filter (``kind=`` for ``predicate_type=``) would otherwise be ignored,
    and the answer would silently be the whole log; of a repeated one, FastAPI keeps
    only the last.
    """
    _utf8_query(request)
    route = request.scope.get("route")
    known = _query_names(getattr(route, "dependant", None))
    for name in request.query_params:
        if name in known:
            if len(request.query_params.getlist(name)) > 1:  # FastAPI would keep the last
                raise ApiError(
                    422,
                    f"The query parameter {name!r} is given more than once; give it once.",
                    location="query",
                    field=name,
                )
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = _QUERY_HINTS.get(name) or (close[0] if close else None)
        also = f" Did you mean {hint!r}?" if hint in known else ""
        takes = ", ".join(known) if known else "no query parameters"
        raise ApiError(
            422,
            f"The query parameter {name!r} is unknown; {request.method} {request.url.path} "
            f"takes: {takes}.{also}",
            location="query",
            field=name,
        )


def _utf8_query(request: Request) -> None:
    """Refuse a query string whose percent-decoded bytes are not UTF-8 (``?project=%F8``, a
    Latin-1 ``ø``): Starlette would make each bad byte a U+FFFD, and the filter would then
    match nothing, silently."""
    from urllib.parse import unquote_to_bytes

    raw: bytes = request.scope.get("query_string") or b""
    for part in raw.split(b"&"):
        name, _, value = part.replace(b"+", b" ").partition(b"=")
        for what in (name, value):
            try:
                unquote_to_bytes(what).decode("utf-8")
            except UnicodeDecodeError:
                field = unquote_to_bytes(name).decode("utf-8", "replace")
                raise ApiError(
                    422,
                    f"The query parameter {field!r} is not UTF-8 text once percent-decoded; "
                    "percent-encode the UTF-8 bytes of each character (ø is %C3%B8).",
                    location="query",
                    field=field,
                ) from None


#: `escrow log` option names, as one might write them on a query string.
_QUERY_HINTS = {"kind": "predicate_type", "image": "image_id", "diff-id": "diff_id"}


def _query_names(dependant: Any) -> list[str]:
    """The query parameters a route declares, its dependencies' included, in order."""
    names: list[str] = []
    stack = [dependant] if dependant is not None else []
    while stack:
        d = stack.pop(0)
        names.extend(str(f.alias) for f in d.query_params if f.alias not in names)
        stack.extend(d.dependencies)
    return names


KnownQuery = Depends(_known_query)


def _ledger(request: Request) -> Ledger:
    _ready(request)
    ledger: Ledger = request.app.state.ledger
    return ledger


LedgerDep = Annotated["Ledger", Depends(_ledger)]


# -- body parsing ----------------------------------------------------------------


def _validate(model: type[_M], doc: Any, prefix: Sequence[Any] = ()) -> _M:
    try:
        return model.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        ptr = pointer_of([*prefix, *first.get("loc", ())])
        raise ApiError(
            422,
            f"The request body is invalid at {ptr or '/'}: {first.get('msg', 'invalid')}.",
            location="body",
            pointer=ptr,
        ) from e


def _envelope(e: m.EnvelopeIn, prefix: str) -> Envelope:
    from escrow.signing.dsse import Envelope, Signature
    from escrow.signing.keys import b64decode_any

    def b64(text: str, where: str) -> bytes:
        try:
            return b64decode_any(text)
        except EscrowError as err:
            raise ApiError(
                422,
                f"The value at {where} is not valid base64.",
                location="body",
                pointer=where,
            ) from err

    payload = b64(e.payload, f"{prefix}/payload")
    sigs = tuple(
        Signature(keyid=s.keyid, sig=b64(s.sig, f"{prefix}/signatures/{i}/sig"))
        for i, s in enumerate(e.signatures)
    )
    return Envelope(payload=payload, payload_type=e.payloadType, signatures=sigs)


def _parse_entries(raw: bytes) -> tuple[list[Envelope], bool]:
    """The envelopes of a POST /v1/entries body, and whether it was a batch."""
    try:
        doc = loads_unique(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(
            422, f"The request body is not valid JSON ({e}).", location="body", pointer=""
        ) from e
    if isinstance(doc, dict) and "envelopes" in doc:
        batch = _validate(m.BatchIn, doc)
        return [_envelope(e, f"/envelopes/{i}") for i, e in enumerate(batch.envelopes)], True
    return [_envelope(_validate(m.EnvelopeIn, doc), "")], False


# -- the application -------------------------------------------------------------


class _Backend:
    """The ledger, token store and pack jobs of one worker, opened at start-up or, when
    the database was down then, by the first request after it is back."""

    def __init__(self, app: FastAPI, cfg: ServerConfig) -> None:
        self.app = app
        self.cfg = cfg
        self._lock = threading.Lock()
        self._closed = False
        # the last failed connection: (monotonic time, its message); requests that waited
        # for that attempt, or come within RECONNECT_S of it, get its 503 without a new one
        self._failed: tuple[float, str] | None = None
        app.state.ledger = None
        app.state.tokens = None
        app.state.jobs = None
        app.state.runner = None

    def ready(self) -> None:
        """Connect unless connected; :class:`DatabaseUnavailable` while the database is down."""
        if self.app.state.ledger is None:
            self.connect(False)

    def connect(self, first: bool) -> None:
        asked = time.monotonic()
        with self._lock:
            if self.app.state.ledger is not None or self._closed:
                return
            failed = self._failed
            if not first and failed is not None:
                at, message = failed
                # one attempt at a time, each up to the connect timeout: a request that
                # waited for a failed one, or comes right after it, is not a new attempt
                if at >= asked or time.monotonic() - at < self.RECONNECT_S:
                    raise DatabaseUnavailable(message)
            try:
                self._connect(first)
            except DatabaseUnavailable as e:
                self._failed = (time.monotonic(), e.message)
                raise
            self._failed = None

    #: seconds after a failed connection during which requests get its 503 at once
    RECONNECT_S = 2.0

    def _connect(self, first: bool) -> None:
        from escrow.ledger.store import Ledger, db_errors, make_engine

        # only `escrow init` makes a ledger: a database that holds none (a mistyped
        # ESCROW_DB_URL) is refused, at start-up as later, never made a new, empty log
        ledger = Ledger.open(self.cfg.settings, create=False)
        # The server's own tables (tokens, pack jobs) live in the ledger's database,
        # through an engine made the same way as the ledger's.
        engine = make_engine(self.cfg.settings.db_url)
        try:
            with db_errors(self.cfg.settings.db_url):
                TokenStore.create_tables(engine)
                PackJobs.create_tables(engine)
        except BaseException:
            engine.dispose()
            ledger.close()
            raise
        self._engine = engine
        state = self.app.state
        state.tokens = TokenStore(engine)
        state.jobs = PackJobs(engine)
        if self.cfg.pack_workers > 0:
            state.runner = PackRunner(
                state.jobs, self.cfg.settings, time_limit=self.cfg.pack_time_limit
            )
            state.runner.start()
        state.ledger = ledger
        if not first:
            log.info("the ledger database is back: serving again")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            state = self.app.state
            ledger, state.ledger = state.ledger, None
            if ledger is None:
                return
            if state.runner is not None:
                state.runner.stop()
            self._engine.dispose()
            ledger.close()


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The escrow API over the ledger that ``config.settings`` names."""
    cfg = config or ServerConfig(settings=load_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        backend = _Backend(app, cfg)
        app.state.backend = backend
        try:
            await run_in_threadpool(backend.connect, True)
        except DatabaseUnavailable as e:
            # A worker started (or restarted by Uvicorn after one died) while the database
            # is down: failing the start-up would make Uvicorn stop the whole server. Serve
            # 503 instead and connect on the first request once the database is back.
            log.warning(
                "the ledger database is unavailable at start-up; answering 503 until it is "
                "back: %s",
                e.message,
            )
        try:
            yield
        finally:
            await run_in_threadpool(backend.close)

    app = FastAPI(
        title="escrow",
        version=__version__,
        description=(
            "Record phoenix Docker builds as signed manifests in a tamper-evident ledger "
            "(RFC 9162 Merkle tree, C2SP signed checkpoints) and request signed PDF audit "
            "packs. Bearer tokens with roles: `pipeline` posts entries, `auditor` requests "
            "packs, both read; `admin` may do everything, including keys and tokens. "
            "Every error is a JSON `ErrorBody` naming the bad field or JSON Pointer."
        ),
        lifespan=lifespan,
        # no 307 to the path without its trailing slash: an empty body (curl printed nothing
        # and exited 0) and an absolute http:// Location, a downgrade behind a TLS proxy;
        # the JSON 404 names the path instead (escrow.server.http)
        redirect_slashes=False,
        # a body sent without a Content-Type is read as JSON, as POST /v1/entries reads it
        # (curl --data-binary @file sends none); FastAPI would otherwise validate its bytes
        strict_content_type=False,
    )
    app.state.config = cfg
    _document_entry_bodies(app)
    install_error_handlers(app)
    app.add_middleware(GuardMiddleware, max_body=cfg.max_body)
    app.include_router(_health_router())
    app.include_router(_v1_router())
    return app


def _document_entry_bodies(app: FastAPI) -> None:
    """Add EnvelopeIn and BatchIn (read by hand in POST /v1/entries) to the OpenAPI components."""
    from pydantic.json_schema import models_json_schema

    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = original()
        _, defs = models_json_schema(
            [(m.EnvelopeIn, "validation"), (m.BatchIn, "validation")],
            ref_template="#/components/schemas/{model}",
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in defs.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Uvicorn factory: settings from the environment ``escrow serve`` prepared."""
    max_body = int(os.environ.get("ESCROW_SERVER_MAX_BODY") or DEFAULT_MAX_BODY)
    workers = int(os.environ.get("ESCROW_SERVER_PACK_WORKERS") or 1)
    limit = float(os.environ.get("ESCROW_SERVER_PACK_TIME_LIMIT") or DEFAULT_TIME_LIMIT_S)
    _watch_supervisor(os.environ.get(SUPERVISOR_ENV, ""))
    return create_app(
        ServerConfig(
            load_settings(), max_body=max_body, pack_workers=workers, pack_time_limit=limit
        )
    )


#: The process ID of the `escrow serve` process that started Uvicorn (set by the command):
#: a worker whose parent it is watches it (:func:`_watch_supervisor`).
SUPERVISOR_ENV = "ESCROW_SERVER_SUPERVISOR_PID"
#: How often a worker looks whether its supervisor still lives, in seconds.
SUPERVISOR_CHECK_S = 1.0


def _watch_supervisor(pid_text: str) -> None:
    """In a worker process of `escrow serve --workers N`, stop the worker as SIGTERM does once
    the supervisor that started it is gone (killed with SIGKILL, say, which it cannot pass
    on): an orphaned worker would go on holding the port, so the server could not be started
    again ("another process is using the port"), and its pack job would stay claimed by a
    server nobody runs.  Stopped this way, it finishes its requests and queues its pack job
    again, as a worker stopped with the server does.  Nothing is watched in a process that
    is not the supervisor's child (``--workers 1`` serves in the supervisor itself)."""
    import signal

    try:
        supervisor = int(pid_text)
    except ValueError:
        return
    if supervisor <= 1 or os.getppid() != supervisor:
        return

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(SUPERVISOR_CHECK_S)
        log.warning(
            "the escrow serve process %d that started this worker is gone; stopping", supervisor
        )
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="escrow-supervisor-watch", daemon=True).start()


def _health_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/healthz",
        response_model=m.HealthOut,
        responses=_responses(503),
        tags=["health"],
        summary="Ready when the database answers",
    )
    def healthz(request: Request) -> dict[str, Any]:
        _ready(request)
        ledger = getattr(request.app.state, "ledger", None)
        if ledger is None:
            raise ApiError(503, "The server is starting.", error="unavailable")
        return {"status": "ok", "size": ledger.size()}

    return router


IndexPath = Annotated[int, Path(ge=0, le=m.MAX_INT, description="Ledger index (0-based).")]
Text = Annotated[str | None, Query(max_length=200, pattern=m.NO_NUL)]
KeyPath = Annotated[str, Path(pattern=r"^[0-9a-f]{4,64}$", description="Key ID or prefix")]
JobPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="Job ID")]


_KINDS = {name: uri for uri, name in SCHEMA_NAMES.items()}
_KIND_DOC = (
    f"Kind of entry, as `escrow log --kind`: {', '.join(f'`{k}`' for k in _KINDS)}, "
    "or its predicate type URI"
)
_IMAGE_DOC = (
    "Image ID: `sha256:` (optional) and the 64 hex digits. The server has no Docker Engine "
    "to resolve a short ID or an image name, so these are refused (422)"
)
_SINCE_DOC = (
    "From this time, inclusive: RFC 3339 (`Z` or an offset; no offset means UTC), "
    "or a bare date YYYY-MM-DD (its midnight UTC)"
)
_UNTIL_DOC = (
    "Before this time, exclusive: RFC 3339 (`Z` or an offset; no offset means UTC), "
    "or a bare date YYYY-MM-DD, which includes that whole day (UTC), as `escrow log --until`"
)


def _kind_query(value: str | None) -> str | None:
    """The predicate type URI of ``predicate_type``: a URI or a short name (`escrow log --kind`)."""
    if value is None or value in SCHEMA_NAMES:
        return value
    if value in _KINDS:
        return _KINDS[value]
    raise ApiError(
        422,
        f"The query parameter 'predicate_type' is {value!r}, not a kind the ledger holds: "
        f"give one of {', '.join(_KINDS)}, or its predicate type URI.",
        location="query",
        field="predicate_type",
    )


def _sha256_query(field: str, value: str | None, what: str) -> str | None:
    """The full ``sha256:`` ID the query parameter ``field`` gives, with or without
    ``sha256:``; a 422 naming it, ``what`` saying what to give instead, otherwise."""
    if value is None:
        return None
    full = sha256_id(value)
    if full is None:
        raise ApiError(
            422,
            f"The query parameter {field!r} is {value!r}, not {what}",
            location="query",
            field=field,
        )
    return full


_IMAGE_ID_WANTED = (
    "a full image ID: give sha256: and the 64 hex digits (`escrow log --json` shows them). "
    "The server has no Docker Engine to resolve a short ID or an image name."
)
_DIFF_ID_WANTED = "a layer diff ID: give sha256: and its 64 hex digits."


def _signer_query(ledger: Ledger, value: str | None) -> str | None:
    """The key ID of ``signer``: whole, or a unique prefix of a key of the ledger (a
    registered key, or the log key that signs key events), as `escrow log --signer`."""
    if value is None:
        return None
    prefix = value.strip().lower()
    if not prefix or len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise ApiError(
            422,
            f"The query parameter 'signer' is {value!r}, not a key ID: give the hex digits "
            "GET /v1/keys shows, or as many of them as are unique.",
            location="query",
            field="signer",
        )
    if len(prefix) == 64:
        return prefix
    from escrow.ledger.checkpoint import parse_verifier_key

    keyids = {k.keyid for k in ledger.keys()}
    keyids.add(parse_verifier_key(ledger.verifier_key())[2].keyid)
    matches = sorted(k for k in keyids if k.startswith(prefix))
    if len(matches) == 1:
        return matches[0]
    raise ApiError(
        422,
        f"No key ID of this ledger begins with {value!r}."
        if not matches
        else f"The key ID prefix {value!r} is ambiguous ({len(matches)} keys begin with it); "
        "give more of its hex digits.",
        location="query",
        field="signer",
    )


def _time_query(text: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """``since``/``until`` as `escrow log` reads them; a bare date's ``end_of_day`` is the
    next midnight (``until`` is exclusive, so the day is included)."""
    if text is None:
        return None
    try:
        return parse_time(text, name, end_of_day=end_of_day)
    except UsageError as e:  # not a date or time, or one outside the calendar
        message = e.diagnostics()
        if " " in text.strip() and "+" not in text:
            try:  # `?since=…T12:00:00+01:00` unencoded: the query string made the + a space
                parse_time(text.strip().replace(" ", "+"), name, end_of_day=end_of_day)
            except UsageError:
                pass
            else:
                message = (
                    f"{name} {text!r} is not a date or an RFC 3339 time: a + in a query "
                    "string stands for a space, so write the offset's + as %2B."
                )
        raise ApiError(422, message, location="query", field=name) from e


def _v1_router() -> APIRouter:  # noqa: C901 - one closure per route
    # Every route refuses a query parameter it does not take: a misspelled filter, or a
    # `?dry_run=1` on a POST, must not be silently ignored.
    # Any of them answers 503 (with Retry-After) while the ledger database is unavailable.
    v1 = APIRouter(
        prefix="/v1",
        dependencies=[KnownQuery],
        responses=_responses(503),
        route_class=JsonRoute,  # a JSON body giving a member twice is refused (422)
    )
    common = _responses(401, 403, 422)

    # -- entries -------------------------------------------------------------------

    @v1.post(
        "/entries",
        tags=["entries"],
        summary="Append a DSSE envelope, or a batch of them",
        status_code=201,
        responses={
            201: {"model": m.PostEntryOut | m.PostBatchOut, "description": "Appended."},
            200: {
                "model": m.PostEntryOut | m.PostBatchOut,
                "description": "Already in the log (idempotent): the existing entries.",
            },
            **_responses(401, 403, 413, 415, 422),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/EnvelopeIn"},
                                {"$ref": "#/components/schemas/BatchIn"},
                            ]
                        }
                    }
                },
            }
        },
    )
    async def post_entries(request: Request, principal: Poster) -> JSONResponse:
        not_json = not_json_media(request)  # as the routes whose body FastAPI reads
        if not_json is not None:
            raise not_json
        raw = await request.body()
        if not raw.strip():
            raise missing_body(request)
        envelopes, batch = _parse_entries(raw)
        ledger: Ledger = request.app.state.ledger
        result, created = await run_in_threadpool(_append, ledger, envelopes, batch)
        made = [e["entry"]["index"] for e in result.get("entries", [result]) if e["created"]]
        request.state.audit = (
            f"appended {', '.join(map(str, made))}" if made else "nothing new (already in the log)"
        )
        return JSONResponse(result, status_code=201 if created else 200)

    @v1.get(
        "/entries",
        response_model=m.EntryPage,
        responses=common,
        tags=["entries"],
        summary="List entries, oldest first, with filters and a cursor",
        description="The filters of `escrow log`; all given must match. "
        "An unknown query parameter is refused (422), never ignored.",
    )
    def list_entries(
        _: Reader,
        ledger: LedgerDep,
        project: Text = None,
        image_id: Annotated[
            str | None, Query(max_length=200, pattern=m.NO_NUL, description=_IMAGE_DOC)
        ] = None,
        diff_id: Annotated[
            str | None,
            Query(
                max_length=200, pattern=m.NO_NUL, description="Layer diff ID, `sha256:` optional"
            ),
        ] = None,
        signer: Annotated[
            str | None,
            Query(
                max_length=200,
                pattern=m.NO_NUL,
                description="Key ID of the signer (`GET /v1/keys`), whole or a unique prefix "
                "such as the 16 digits `escrow keys list` shows",
            ),
        ] = None,
        predicate_type: Annotated[
            str | None, Query(max_length=200, pattern=m.NO_NUL, description=_KIND_DOC)
        ] = None,
        since: Annotated[
            str | None, Query(max_length=64, pattern=m.NO_NUL, description=_SINCE_DOC)
        ] = None,
        until: Annotated[
            str | None, Query(max_length=64, pattern=m.NO_NUL, description=_UNTIL_DOC)
        ] = None,
        after: Annotated[
            int | None, Query(ge=-1, le=m.MAX_INT, description="Cursor: entries after this index")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=m.MAX_PAGE)] = 100,
    ) -> dict[str, Any]:
        start = _time_query(since, "since")
        end = _time_query(until, "until", end_of_day=True)
        if start is not None and end is not None and start > end:
            raise ApiError(
                422,
                f"since ({_rfc3339(start)}) is after until ({_rfc3339(end)}).",
                location="query",
                field="since",
            )
        entries = ledger.entries(
            project=project,
            image_id=_sha256_query("image_id", image_id, _IMAGE_ID_WANTED),
            diff_id=_sha256_query("diff_id", diff_id, _DIFF_ID_WANTED),
            signer=_signer_query(ledger, signer),
            predicate_type=_kind_query(predicate_type),
            since=start,
            until=end,
            after=after,
            limit=limit,
        )
        return {
            "entries": [entry_json(e) for e in entries],
            "size": ledger.size(),
            "next_cursor": entries[-1].index if len(entries) == limit else None,
        }

    @v1.get(
        "/entries/{index}",
        response_model=m.EntryOut,
        responses=_responses(401, 403, 404, 422),
        tags=["entries"],
        summary="One entry",
    )
    def get_entry(index: IndexPath, _: Reader, ledger: LedgerDep) -> dict[str, Any]:
        _check_index(ledger, index)
        return entry_json(ledger.get(index))

    @v1.get(
        "/entries/{index}/proof",
        response_model=m.InclusionProofOut,
        responses=_responses(401, 403, 404, 422),
        tags=["proofs"],
        summary="Inclusion proof of an entry (RFC 9162 §2.1.3)",
    )
    def get_proof(
        index: IndexPath,
        _: Reader,
        ledger: LedgerDep,
        tree_size: Annotated[
            int | None, Query(ge=1, le=m.MAX_INT, description="Default: the latest size")
        ] = None,
    ) -> dict[str, Any]:
        size = _check_index(ledger, index)
        n = size if tree_size is None else tree_size
        if n > size or n <= index:
            raise ApiError(
                422,
                f"tree_size must be between {index + 1} and the log's size {size}.",
                location="query",
                field="tree_size",
            )
        entry = ledger.get(index)
        return {
            "index": index,
            "tree_size": n,
            "leaf_hash": entry.leaf_hash,
            "root": ledger.root(n).hex(),
            "hashes": [h.hex() for h in ledger.inclusion_proof(index, n)],
        }

    @v1.get(
        "/checkpoint",
        response_model=m.CheckpointOut,
        responses=_responses(401, 403, 422),
        tags=["proofs"],
        summary="The latest signed checkpoint",
    )
    def get_checkpoint(_: Reader, ledger: LedgerDep) -> dict[str, Any]:
        return checkpoint_json(ledger)

    @v1.get(
        "/consistency",
        response_model=m.ConsistencyProofOut,
        responses=common,
        tags=["proofs"],
        summary="Consistency proof between two tree sizes (RFC 9162 §2.1.4)",
    )
    def get_consistency(
        _: Reader,
        ledger: LedgerDep,
        old: Annotated[int, Query(ge=0, le=m.MAX_INT)],
        new: Annotated[int | None, Query(ge=0, le=m.MAX_INT)] = None,
    ) -> dict[str, Any]:
        size = ledger.size()
        n = size if new is None else new
        if n > size:
            raise ApiError(
                422, f"new must be at most the log's size {size}.", location="query", field="new"
            )
        if old > n:
            raise ApiError(422, f"old must be at most new ({n}).", location="query", field="old")
        hashes = [] if old in (0, n) else ledger.consistency_proof(old, n)
        return {
            "old": old,
            "new": n,
            "old_root": (ledger.root(old) if old else EMPTY_ROOT).hex(),
            "new_root": (ledger.root(n) if n else EMPTY_ROOT).hex(),
            "hashes": [h.hex() for h in hashes],
        }

    # -- keys ------------------------------------------------------------------

    @v1.get(
        "/keys",
        response_model=m.KeysOut,
        responses=_responses(401, 403, 422),
        tags=["keys"],
        summary="Registered signing keys and their history, and the log's verifier key",
    )
    def get_keys(_: Reader, ledger: LedgerDep) -> dict[str, Any]:
        return {
            "verifier_key": ledger.verifier_key(),
            "keys": [k.to_dict() for k in ledger.keys()],
        }

    key_responses: dict[int | str, dict[str, Any]] = {
        201: {"model": m.PostEntryOut, "description": "The key event was appended."},
        **_responses(401, 403, 404, 413, 415, 422),
    }

    @v1.post(
        "/keys",
        status_code=201,
        responses={
            **{c: r for c, r in key_responses.items() if c != 404},  # no key to look up
            200: {"model": m.PostEntryOut, "description": "Known."},
        },
        tags=["keys"],
        summary="Register a signing key (a key event signed with the log key)",
    )
    def add_key(request: Request, body: m.KeyAddIn, _: Admin, ledger: LedgerDep) -> JSONResponse:
        from escrow.signing.keys import PublicKey

        try:
            public = PublicKey.from_pem(body.public_key.encode("ascii"))
        except EscrowError as e:
            message = e.diagnostics()
            if isinstance(e.__cause__, ValueError):  # the PEM parser's words and FAQ link
                message = (
                    "The public_key is not a PEM public key: give the whole -----BEGIN PUBLIC "
                    "KEY----- block of an Ed25519 or ECDSA P-256 key (a .pub.pem file)."
                )
            raise ApiError(422, message, location="body", pointer="/public_key") from e
        known = any(k.keyid == public.keyid for k in ledger.keys())
        entry = ledger.register_key(public, body.name)
        request.state.audit = f"registered key {public.keyid} as entry {entry.index}"
        return JSONResponse(_key_event_body(ledger, entry, not known), 200 if known else 201)

    @v1.post(
        "/keys/{keyid}/revoke",
        status_code=201,
        response_model=m.PostEntryOut,
        responses=key_responses,
        tags=["keys"],
        summary="Revoke a signing key: it signs nothing appended from now on",
    )
    def revoke_key(
        request: Request, keyid: KeyPath, body: m.KeyRevokeIn, _: Admin, ledger: LedgerDep
    ) -> dict[str, Any]:
        rec = _key_or_404(ledger, keyid)
        entry = ledger.revoke_key(rec.keyid, body.reason)
        request.state.audit = f"revoked key {rec.keyid} as entry {entry.index}"
        return _key_event_body(ledger, entry, True)

    @v1.post(
        "/keys/{keyid}/retire",
        status_code=201,
        response_model=m.PostEntryOut,
        responses=key_responses,
        tags=["keys"],
        summary="Retire a signing key, now or from a given time",
    )
    def retire_key(
        request: Request, keyid: KeyPath, body: m.KeyRetireIn, _: Admin, ledger: LedgerDep
    ) -> dict[str, Any]:
        rec = _key_or_404(ledger, keyid)
        effective = _utc_body(body.effective_from, "effective_from")
        entry = ledger.retire_key(rec.keyid, effective, body.reason or None)
        request.state.audit = f"retired key {rec.keyid} as entry {entry.index}"
        return _key_event_body(ledger, entry, True)

    # -- tokens ----------------------------------------------------------------

    @v1.get(
        "/token",
        response_model=m.OwnTokenOut,
        responses=_responses(401, 422),
        tags=["tokens"],
        summary="The token of this request: its name and role (what it may do), for any role",
    )
    def own_token(principal: Annotated[Principal, Depends(_principal)]) -> dict[str, Any]:
        return {"id": principal.token_id, "name": principal.name, "role": principal.role.value}

    @v1.get(
        "/tokens",
        response_model=m.TokensOut,
        responses=_responses(401, 403, 422),
        tags=["tokens"],
        summary="Tokens (never the secrets)",
    )
    def list_tokens(request: Request, _: Admin) -> dict[str, Any]:
        tokens: TokenStore = request.app.state.tokens
        return {"tokens": [t.to_dict() for t in tokens.list()]}

    @v1.post(
        "/tokens",
        status_code=201,
        response_model=m.TokenCreatedOut,
        responses=_responses(401, 403, 409, 413, 415, 422),
        tags=["tokens"],
        summary="Create a token; the response is the only time it is shown",
    )
    def create_token(request: Request, body: m.TokenIn, _: Admin) -> dict[str, Any]:
        tokens: TokenStore = request.app.state.tokens
        try:
            token, info = tokens.create(body.name, Role(body.role))
        except TokenNameTaken as e:  # the request is fine; the name is in use
            raise ApiError(409, e.diagnostics(), location="body", pointer="/name") from e
        except InputError as e:  # the name itself (blank, too long, control characters)
            raise ApiError(422, e.diagnostics(), location="body", pointer="/name") from e
        request.state.audit = f"created token {info.id} {info.name!r} ({info.role.value})"
        return {**info.to_dict(), "token": token}

    @v1.delete(
        "/tokens/{token_id}",
        response_model=m.TokenOut,
        responses=_responses(401, 403, 404, 422),
        tags=["tokens"],
        summary="Revoke a token",
    )
    def revoke_token(
        request: Request,
        token_id: Annotated[str, Path(max_length=200, pattern=m.NO_NUL)],
        _: Admin,
    ) -> dict[str, Any]:
        tokens: TokenStore = request.app.state.tokens
        if not any(t.id == token_id for t in tokens.list()):
            raise ApiError(404, f"There is no token with the ID {token_id!r}.")
        info = tokens.revoke(token_id)
        request.state.audit = f"revoked token {info.id} {info.name!r}"
        return info.to_dict()

    # -- packs -----------------------------------------------------------------

    @v1.post(
        "/packs",
        status_code=202,
        response_model=m.PackJobOut,
        responses=_responses(401, 403, 413, 415, 422),
        tags=["packs"],
        summary="Request a signed PDF audit pack; rendered in the background",
    )
    def request_pack(
        request: Request,
        response: Response,
        body: m.PackIn,
        principal: Auditor,
        ledger: LedgerDep,
    ) -> dict[str, Any]:
        _check_pack_scope(ledger, body)  # now, rather than as a failed job later
        scope = {
            "projects": body.projects,
            "since": _time_text(body.since, "since"),
            "until": _time_text(body.until, "until"),
            "entries": body.entries,
            "since_checkpoint": body.since_checkpoint,
            "tree_size": body.tree_size,
        }
        jobs: PackJobs = request.app.state.jobs
        job = jobs.submit(scope, principal.name)
        runner: PackRunner | None = request.app.state.runner
        if runner is not None:
            runner.wake()
        response.headers["Location"] = f"{root_path(request)}/v1/packs/{job.id}"
        request.state.audit = f"queued pack job {job.id}"
        return job.to_dict(root_path(request))

    @v1.get(
        "/packs/{job_id}",
        response_model=m.PackJobOut,
        responses={
            200: {
                "content": {"application/pdf": {}},
                "description": "The job's status; with `Accept: application/pdf`, once the job "
                "has succeeded, the signed PDF itself.",
            },
            **_responses(401, 403, 404, 422),
        },
        tags=["packs"],
        summary="A pack job's status, then the signed PDF (`Accept: application/pdf`)",
    )
    def get_pack(request: Request, job_id: JobPath, _: Auditor) -> Any:
        jobs: PackJobs = request.app.state.jobs
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"There is no pack job {job_id}.")
        accept = request.headers.get("accept", "")
        if job.status == "succeeded" and "application/pdf" in accept:
            return _pdf_response(jobs, job_id)
        return job.to_dict(root_path(request))

    @v1.get(
        "/packs/{job_id}/pdf",
        response_class=Response,
        responses={
            200: {"content": {"application/pdf": {}}, "description": "The signed PDF."},
            **_responses(401, 403, 404, 409, 422),
        },
        tags=["packs"],
        summary="The signed PDF of a finished pack job",
    )
    def get_pack_pdf(request: Request, job_id: JobPath, _: Auditor) -> Response:
        jobs: PackJobs = request.app.state.jobs
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, f"There is no pack job {job_id}.")
        if job.status != "succeeded":
            raise ApiError(409, f"The pack job {job_id} is {job.status}, not finished.")
        return _pdf_response(jobs, job_id)

    return v1


def _check_pack_scope(ledger: Ledger, body: m.PackIn) -> None:
    """What `escrow pack` refuses before it starts: 422 naming the field."""
    since, until = _utc_body(body.since, "since"), _utc_body(body.until, "until")
    if since is not None and until is not None and since > until:
        raise ApiError(
            422,
            f"since ({_rfc3339(since)}) is after until ({_rfc3339(until)}).",
            location="body",
            pointer="/since",
        )
    if body.since_checkpoint is not None:  # as `escrow pack --since-checkpoint` reads it
        from escrow.errors import InputError
        from escrow.ledger.checkpoint import parse_checkpoint_body, parse_note

        try:
            parse_checkpoint_body(parse_note(body.since_checkpoint)[0])
        except InputError as e:
            why = e.message[:1].lower() + e.message[1:]
            raise ApiError(
                422,
                f"since_checkpoint is not a checkpoint note: {why}",
                location="body",
                pointer="/since_checkpoint",
            ) from e
    size = ledger.size()
    if body.tree_size is not None and body.tree_size > size:
        raise ApiError(
            422,
            f"tree_size {body.tree_size} is more than the log's size {size}.",
            location="body",
            pointer="/tree_size",
        )
    limit = body.tree_size or size
    for i, index in enumerate(body.entries):
        if index >= limit:
            raise ApiError(
                422,
                f"The ledger has no entry {index} (it holds {count(limit, 'entry', 'entries')}"
                f"{' at tree_size' if body.tree_size else ''}).",
                location="body",
                pointer=f"/entries/{i}",
            )
    if not _has_build(ledger, body, since, until, limit):  # the job could only fail
        raise ApiError(
            422,
            "No recorded build is in the scope of this pack; check projects, since, until and "
            "entries against `escrow log`.",
            location="body",
            pointer="",
        )


def _has_build(
    ledger: Ledger, body: m.PackIn, since: datetime | None, until: datetime | None, limit: int
) -> bool:
    """Whether a build manifest among the first ``limit`` entries is in the pack's scope
    (its projects, ``since`` inclusive, ``until`` exclusive, its entries), as `escrow pack`
    selects them."""
    from escrow.documents.types import BUILD_MANIFEST

    def first(project: str | None, at_or_after: int) -> int | None:
        found = ledger.entries(
            project=project,
            since=since,
            until=until,
            predicate_type=BUILD_MANIFEST,
            after=at_or_after - 1 if at_or_after > 0 else None,
            limit=1,
        )
        return found[0].index if found and found[0].index < limit else None

    projects: list[str | None] = list(dict.fromkeys(body.projects)) or [None]
    wanted = sorted(set(body.entries))
    for project in projects:
        if not wanted:
            if first(project, 0) is not None:
                return True
            continue
        # walk the entries asked for, jumping to the next build of the project each time
        i = 0
        while i < len(wanted):
            index = first(project, wanted[i])
            if index is None:
                break
            if index == wanted[i]:
                return True
            while i < len(wanted) and wanted[i] < index:
                i += 1
            if i < len(wanted) and wanted[i] == index:
                return True
    return False


def _utc_body(t: datetime | None, name: str) -> datetime | None:
    """The request body's member ``name`` in UTC; a 422 naming it when UTC cannot hold it."""
    if t is None:
        return None
    try:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except (OverflowError, ValueError) as e:
        raise ApiError(
            422,
            f"The request body is invalid at /{name}: the time is outside the years 1 to 9999 "
            "in UTC.",
            location="body",
            pointer=f"/{name}",
        ) from e


def _pdf_response(jobs: PackJobs, job_id: str) -> Response:
    return Response(
        jobs.pdf(job_id) or b"",
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="pack-{job_id}.pdf"'},
    )


def _time_text(t: datetime | None, name: str) -> str | None:
    u = _utc_body(t, name)
    return _rfc3339(u) if u is not None else None


def _key_or_404(ledger: Ledger, keyid: str) -> KeyRecord:
    matches = [k for k in ledger.keys() if k.keyid.startswith(keyid)]
    if not matches:
        raise ApiError(404, f"No registered key has the ID {keyid!r}.")
    if len(matches) > 1:
        raise ApiError(
            422, f"The key ID prefix {keyid!r} is ambiguous.", location="path", field="keyid"
        )
    return matches[0]


def _key_event_body(ledger: Ledger, entry: Entry, created: bool) -> dict[str, Any]:
    cp = checkpoint_json(ledger)
    return {
        "created": created,
        "entry": entry_json(entry),
        "inclusion_proof": _inclusion(ledger, entry, cp),
        "checkpoint": cp,
    }


def _inclusion(ledger: Ledger, entry: Entry, cp: dict[str, Any]) -> dict[str, Any]:
    n = int(cp["size"])
    return {
        "index": entry.index,
        "tree_size": n,
        "leaf_hash": entry.leaf_hash,
        "root": cp["root"],
        "hashes": [h.hex() for h in ledger.inclusion_proof(entry.index, n)],
    }


def _check_index(ledger: Ledger, index: int) -> int:
    size = ledger.size()
    if index >= size:
        raise ApiError(
            404, f"There is no entry {index}; the log has {count(size, 'entry', 'entries')}."
        )
    return size


def _append(ledger: Ledger, envelopes: list[Envelope], batch: bool) -> tuple[dict[str, Any], bool]:
    """Append every envelope (all checked first); the response body and whether any was new."""
    from escrow.ledger.store import prepare

    prepared = []
    for i, env in enumerate(envelopes):
        try:
            prepared.append(prepare(env))
        except EscrowError as e:
            if batch:
                raise _in_batch(e, i) from e
            raise
    if batch:
        _precheck_signatures(ledger, prepared)
    from contextlib import closing

    done: list[tuple[Entry, bool]] = []
    if not batch:  # one envelope: no helper thread to start
        done.append(ledger.append_prepared(prepared[0]))
    else:  # one transaction each, the next ones checked meanwhile
        with closing(ledger.append_many(prepared)) as outcomes:
            for i, outcome in enumerate(outcomes):
                if isinstance(outcome, EscrowError):
                    raise _in_batch(outcome, i) from outcome
                done.append(outcome)
    cp = checkpoint_json(ledger)
    posted = [
        {
            "created": created,
            "entry": entry_json(entry),
            "inclusion_proof": _inclusion(ledger, entry, cp),
        }
        for entry, created in done
    ]
    any_created = any(c for _, c in done)
    if batch:
        return {"entries": posted, "checkpoint": cp}, any_created
    return {**posted[0], "checkpoint": cp}, any_created


def _precheck_signatures(ledger: Ledger, prepared: Sequence[Prepared]) -> None:
    """Refuse a batch before appending anything when an envelope has no valid signer.

    The ledger checks again, under its lock, as each envelope is appended.
    """
    from escrow.documents.types import KEY_EVENT
    from escrow.signing.keys import PublicKey

    active = [PublicKey.from_pem(k.public_pem) for k in ledger.keys() if k.status == "active"]
    for i, p in enumerate(prepared):
        try:
            if p.predicate_type == KEY_EVENT:  # signed by the log key, never a build key
                _check_log_signed(ledger, p)
                continue
            p.envelope.verify(active)
        except EscrowError as e:
            raise _in_batch(e, i) from e


def _check_log_signed(ledger: Ledger, p: Prepared) -> None:
    """A key event must verify with the log key (as the ledger checks when appending it)."""
    from escrow.errors import SignatureError

    try:
        p.envelope.verify([ledger.log_public])
    except SignatureError as e:
        raise SignatureError(
            "The key event is not signed by this ledger's log key.",
            hint="Key events are made by `escrow keys`, which signs them with the log key.",
        ) from e


def _in_batch(e: EscrowError, i: int) -> ApiError:
    from escrow.server.http import from_escrow_error

    err = from_escrow_error(e)
    err.message = f"Envelope {i} of the batch: {err.message}"
    if err.location == "body":
        err.pointer = f"/envelopes/{i}{err.pointer or ''}"
    elif err.location == "payload":
        err.location = f"payload of /envelopes/{i}"
    return err
