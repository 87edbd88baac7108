"""HTTP plumbing: JSON error bodies, the body-size limit, and the audit log line.

Every error the server sends is a JSON :class:`~escrow.server.models.ErrorBody`;
bad input is a 4xx that names the field (a query or path parameter) or the
JSON Pointer (in the body, or in the statement inside the envelope).  Only a
fault of the server itself is a 5xx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from escrow.errors import (
    CheckFailed,
    DatabaseUnavailable,
    EnvironmentProblem,
    EscrowError,
    InputError,
    LedgerTamperError,
    SchemaError,
    SignatureError,
)
from escrow.signing.dsse import MAX_DIGITS, DuplicateMember, too_long_number, unique_members

log = logging.getLogger("escrow.server")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    503: "unavailable",
}


class ApiError(Exception):
    """An error answer: status, code and one sentence, optionally naming where."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str | None = None,
        location: str | None = None,
        pointer: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error or _CODES.get(status, "error")
        self.location = location
        self.pointer = pointer
        self.field = field
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "message": self.message,
            "location": self.location,
            "pointer": self.pointer,
            "field": self.field,
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def pointer_of(parts: Sequence[Any]) -> str:
    """RFC 6901 JSON Pointer of a path."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def from_escrow_error(e: EscrowError) -> ApiError:
    """Map escrow's error tree to HTTP."""
    msg = e.diagnostics()
    if isinstance(e, SchemaError):
        return ApiError(422, msg, error="schema", location="payload", pointer=e.pointer)
    if isinstance(e, SignatureError):
        return ApiError(422, msg, error="signature", location="body", pointer="/signatures")
    if isinstance(e, LedgerTamperError):
        return ApiError(500, msg, error="ledger_integrity")
    if isinstance(e, CheckFailed):
        return ApiError(422, msg, error="check_failed")
    if isinstance(e, DatabaseUnavailable):
        # the operator's details (the database's address, the driver's words) go to the
        # server's log, not to every client
        return ApiError(
            503,
            "The ledger database is unavailable; try again shortly.",
            error="unavailable",
            headers={"Retry-After": "5"},
        )
    if isinstance(e, EnvironmentProblem):
        return ApiError(503, msg, error="unavailable")
    if isinstance(e, InputError):
        return ApiError(422, msg, error="invalid", location="body")
    return ApiError(400, msg, error="bad_request")


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    if not errors:
        return ApiError(422, "The request is invalid.")
    first = errors[0]
    loc = list(first.get("loc", ()))
    where = str(loc[0]) if loc else "body"
    rest = loc[1:]
    text = str(first.get("msg", "invalid value")).rstrip(".")
    text = text.removeprefix("Value error, ")  # a validator's own words, without Pydantic's
    if first.get("type") == "json_invalid":
        text = str((first.get("ctx") or {}).get("error") or text)  # the parser's own words
        return ApiError(
            422, f"The request body is not valid JSON ({text}).", location="body", pointer=""
        )
    if where == "body":
        ptr = pointer_of(rest)
        return ApiError(
            422,
            f"The request body is invalid at {ptr or '/'}: {text}.",
            location="body",
            pointer=ptr,
        )
    name = str(rest[0]) if rest else where
    return ApiError(
        422, f"The {where} parameter {name!r} is invalid: {text}.", location=where, field=name
    )


def _is_json(media_type: str) -> bool:
    """Whether FastAPI reads a body of this media type as JSON (``application/json``,
    ``application/*+json``; not ``text/json``, whose bytes it would validate as they are)."""
    main, _, subtype = media_type.partition("/")
    return main == "application" and (subtype == "json" or subtype.endswith("+json"))


def _whole_body_error(request: Request, exc: RequestValidationError) -> ApiError | None:
    """The error of a body that is missing, or not sent as JSON (`curl -d` sends a form),
    which FastAPI reports as "Field required" or "Input should be a valid dictionary"."""
    errors = list(exc.errors())
    if not errors or tuple(errors[0].get("loc", ())) != ("body",):
        return None
    not_json = not_json_media(request)
    if not_json is not None:
        return not_json
    if errors[0].get("type") == "missing":
        return missing_body(request)
    return None


def not_json_media(request: Request) -> ApiError | None:
    """The 415 of a body whose Content-Type is not JSON (none is taken as JSON)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and not _is_json(media):
        return ApiError(
            415,
            f"The request body was sent as {media}; send it as JSON, with "
            "Content-Type: application/json.",
            location="header",
            field="Content-Type",
        )
    return None


def missing_body(request: Request) -> ApiError:
    """The 422 of a request that has no body but needs one."""
    return ApiError(
        422,
        f"{request.method} {request.url.path} needs a JSON object as its request body.",
        location="body",
        pointer="",
    )


#: the key a duplicated member's name is kept under while looking for where it is
_TWICE = object()


def loads_unique(raw: bytes | str) -> Any:
    """``json.loads`` of a request body, refusing what Python's parser would take silently:
    an object with a member twice (the last one would win, though another parser may keep
    the first), a number of more digits than Python converts, nesting deeper than it
    recurses.  These are an :class:`ApiError` 422; bad JSON text is ``json.loads``'s
    ``ValueError`` still, for the caller to word."""

    try:
        try:
            return json.loads(raw, object_pairs_hook=unique_members)
        except DuplicateMember:  # parsed again, to say where (the first parse stopped there)
            doc = json.loads(raw, object_pairs_hook=_marking_the_duplicate)
    except RecursionError as e:
        raise ApiError(
            422, "The request body is nested too deeply.", location="body", pointer=""
        ) from e
    except ValueError as e:
        if isinstance(e, json.JSONDecodeError) or not too_long_number(e):
            raise
        raise ApiError(
            422,
            f"The request body has a number of more than {MAX_DIGITS:,} digits.",
            location="body",
            pointer="",
        ) from e
    raise _duplicate_member(doc)


def _marking_the_duplicate(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
    doc: dict[Any, Any] = {}
    for name, value in pairs:
        if name in doc:
            doc.setdefault(_TWICE, name)
        doc[name] = value
    return doc


def _duplicate_member(doc: Any) -> ApiError:
    """The 422 naming the first member given twice in ``doc`` (looked for without recursion:
    the body may be nested as deep as the parser goes)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            if _TWICE in value:
                ptr = pointer_of([*path, value[_TWICE]])
                return ApiError(
                    422,
                    f"The request body gives the member {ptr} more than once; give it once.",
                    location="body",
                    pointer=ptr,
                )
            stack.extend((v, (*path, k)) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, (*path, i)) for i, v in reversed(list(enumerate(value))))
    return ApiError(422, "The request body gives a member more than once.", location="body")


class _BodyRefused(StarletteHTTPException):
    """An :class:`ApiError` from reading a body as JSON, raised as an ``HTTPException`` so
    that FastAPI's body parsing lets it through (it makes any other exception a 400)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = loads_unique(await self.body())
            except ApiError as e:
                raise _BodyRefused(e) from e
        return self._json


class JsonRoute(APIRoute):
    """A route whose JSON body is read by :func:`loads_unique` (a member given twice is a
    422, as in the body of POST /v1/entries, which is read by hand)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def unique_members(request: Request) -> Response:
            return await handler(_JsonRequest(request.scope, request.receive))

        return unique_members


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        if exc.status >= 500:  # a batch's 503 names the envelope; the log says why too
            cause = exc.__cause__
            why = exc.message
            if isinstance(cause, EscrowError) and cause.diagnostics() not in why:
                why = f"{why.rstrip('.')} ({cause.diagnostics().rstrip('.')})."
            log.error("%s %s failed: %s", request.method, request.url.path, why)
        return exc.response()

    async def on_escrow_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EscrowError)
        err = from_escrow_error(exc)
        if err.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.diagnostics())
        return err.response()

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return (_whole_body_error(request, exc) or _validation_error(exc)).response()

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if isinstance(exc, _BodyRefused):
            return exc.error.response()
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        method = "HEAD" if request.scope.get("state", {}).get("head") else request.method
        messages = {
            404: f"There is no resource at {request.url.path}{_slash_hint(request)}.",
            405: f"{method} is not allowed on {request.url.path}.",
        }
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of one route at the path only
            allowed = allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            messages[405] = f"{method} is not allowed on {request.url.path}; it takes " + (
                ", ".join(allowed) + "."
            )
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8)
            return ApiError(
                422, "The request body is not valid JSON text.", location="body", pointer=""
            ).response()
        message = messages.get(exc.status_code, detail)
        where = "body" if exc.status_code == 413 else None
        return ApiError(exc.status_code, message, location=where, headers=headers).response()

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s crashed", request.method, request.url.path)
        return ApiError(500, "The server failed; see its log.", error="internal").response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(EscrowError, on_escrow_error)
    app.add_exception_handler(RequestValidationError, on_validation)

    async def on_disconnect(request: Request, exc: Exception) -> JSONResponse:
        # the client went away while sending its body: nobody to answer, nothing failed
        log.info(
            "%s %s: the client disconnected before its body was in",
            request.method,
            request.url.path,
        )
        return ApiError(400, "The client disconnected before its request body was in.").response()

    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(Exception, on_crash)


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="escrow"'}


def missing_token() -> ApiError:
    """401 for a request without a bearer token."""
    return ApiError(
        401,
        "This request needs a bearer token (Authorization: Bearer …).",
        location="header",
        field="Authorization",
        headers=_CHALLENGE,
    )


def unknown_token() -> ApiError:
    """401 for a bearer token that is not an active token of this server."""
    return ApiError(
        401,
        "The bearer token is unknown or revoked.",
        location="header",
        field="Authorization",
        headers=_CHALLENGE,
    )


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive`` once a body passes the limit.

    An ``HTTPException`` so that FastAPI's body parsing lets it through and the
    handler above answers with the JSON 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The request body is larger than the server's limit of {limit} bytes."
        )


_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _as_get(scope: Scope, send: Send) -> tuple[Scope, Send]:
    """A HEAD request as the GET it asks about, and a ``send`` that drops the body (the
    headers, ``Content-Length`` included, are the GET's)."""
    state = dict(scope.get("state") or {})
    state["head"] = True  # for the 405 of a path that has no GET either

    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return {**scope, "method": "GET", "state": state}, headers_only


def _slash_hint(request: Request) -> str:
    """For a path that some route takes without its trailing slash, the words naming it."""
    path = request.url.path
    bare = path.rstrip("/")
    if bare == path or not bare:
        return ""
    scope = {**request.scope, "path": bare}
    if any(_matches_path(r, scope) for r in request.app.router.routes):
        return f"; use {bare}, without the trailing slash"
    return ""


def _matches_path(route: Any, scope: Scope) -> bool:
    """Whether ``route`` takes the path of ``scope`` (with any method)."""
    from starlette.routing import Match

    return bool(route.matches(scope)[0] != Match.NONE)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at the request's path (HEAD wherever GET is)."""
    from starlette.routing import Match

    methods = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(r.matches(scope)[0] == Match.FULL for r in request.app.router.routes):
            methods.append(method)
    if "GET" in methods:
        methods.insert(1, "HEAD")
    return methods


def root_path(scope: Scope) -> str:
    """The path prefix a proxy publishes the server under (``escrow serve --root-path``,
    which Uvicorn hands to each request), ``""`` for none."""
    return str(scope.get("root_path") or "").rstrip("/")


def route_path(scope: Scope) -> str:
    """The path the routes see: the request's path without the ``root_path`` prefix that
    Uvicorn puts in front of it (``escrow serve --root-path``), as Starlette's router
    takes it off."""
    path = str(scope.get("path", ""))
    root = root_path(scope)
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :]
    return path


class GuardMiddleware:
    """Refuse bodies over ``max_body`` bytes with 413, and log who changed what.

    The limit is checked against ``Content-Length`` before anything is read,
    and against the bytes actually received for chunked bodies.  Every
    request with a changing method gets one log line naming the token's name
    and role (or "no valid token"), the status, and what it did.
    """

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    def _too_large(self) -> JSONResponse:
        return ApiError(
            413,
            f"The request body is larger than the server's limit of {self.max_body} bytes.",
            location="body",
        ).response()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "HEAD":  # RFC 9110 §9.3.2: a GET's answer without its body
            scope, send = _as_get(scope, send)
        state: dict[str, Any] = scope.setdefault("state", {})
        status: list[int] = []
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body:
                    await self._too_large()(scope, receive, send)
                    self._audit(scope, state, 413)
                    return

        if scope.get("method") in _WRITE_METHODS and route_path(scope).startswith("/v1/"):
            refused = await self._refused_token(scope, state)
            if refused is not None:
                self._audit(scope, state, refused.status)  # logged before the answer leaves
                await refused.response()(scope, receive, send)
                return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        logged = False

        async def tracking_send(message: Message) -> None:
            nonlocal logged
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                if not logged:  # before the answer leaves: a client never sees it first
                    logged = True
                    self._audit(scope, state, status[0])
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if status:
                raise
            status.append(413)
            await self._too_large()(scope, receive, send)
        finally:
            if not logged:
                self._audit(scope, state, status[0] if status else 500)

    @staticmethod
    async def _refused_token(scope: Scope, state: dict[str, Any]) -> ApiError | None:
        """The 401 for a change request without an active bearer token, given before its
        body is read: the routes check the token only once FastAPI has read and parsed
        the body, so anyone could otherwise make the server hold ``max_body`` bytes per
        connection.  The principal found is kept for the route, which checks its role."""
        from anyio import to_thread

        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return missing_token()
        app_state = getattr(scope.get("app"), "state", None)
        try:
            backend = getattr(app_state, "backend", None)
            if getattr(app_state, "tokens", None) is None and backend is not None:
                await to_thread.run_sync(backend.ready)  # a worker that started while it was down
            tokens = getattr(app_state, "tokens", None)
            if tokens is None:
                return None
            principal = await to_thread.run_sync(tokens.resolve, token)
        except DatabaseUnavailable as e:  # refused before the body is read, as a bad token is
            log.error("%s %s failed: %s", scope.get("method"), scope.get("path"), e.diagnostics())
            return from_escrow_error(e)
        except EscrowError:
            return None  # the route reports it as it does
        if principal is None:
            return unknown_token()
        state["principal"] = principal  # the route's own check takes it from here
        return None

    @staticmethod
    def _audit(scope: Scope, state: dict[str, Any], status: int) -> None:
        if scope.get("method") not in _WRITE_METHODS:
            return
        who = state.get("principal")
        did = state.get("audit")
        log.info(
            "%s %s -> %d by %s%s",
            scope.get("method"),
            scope.get("path"),
            status,
            str(who) if who is not None else "no valid token",
            f": {did}" if did else "",
        )
