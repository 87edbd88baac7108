"""``escrow serve`` and ``escrow tokens``: the HTTP server and its bearer tokens."""

from __future__ import annotations

import os
import re
from typing import Any

import click
from click.core import ParameterSource

from escrow.cli.app import App, Integer, Number, json_option, pass_app
from escrow.errors import EnvironmentProblem, UsageError
from escrow.text import count

DEFAULT_MAX_BODY = 10 * 1024 * 1024
ROLES = ("pipeline", "auditor", "admin")


def _log_config(level: str) -> dict[str, Any]:
    """Uvicorn's logging, plus the ``escrow.server`` audit lines, all on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    cfg: dict[str, Any] = {
        **LOGGING_CONFIG,
        "formatters": dict(LOGGING_CONFIG["formatters"]),
        "handlers": dict(LOGGING_CONFIG["handlers"]),
        "loggers": dict(LOGGING_CONFIG["loggers"]),
    }
    cfg["formatters"]["escrow"] = {
        "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        "datefmt": "%Y-%m-%dT%H:%M:%S%z",
    }
    cfg["handlers"]["escrow"] = {
        "class": "logging.StreamHandler",
        "formatter": "escrow",
        "stream": "ext://sys.stderr",
    }
    cfg["loggers"]["escrow"] = {"handlers": ["escrow"], "level": level, "propagate": False}
    return cfg


class Duration(click.ParamType[float]):
    """A positive duration: seconds, or a number with ``s``, ``m`` or ``h`` (``90m``)."""

    name = "duration"
    _UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value), re.IGNORECASE)
            if found is None:
                self.fail(
                    f"{value!r} is not a duration; give seconds, or a number with s, m or h "
                    "(90m, 2h).",
                    param,
                    ctx,
                )
            seconds = float(found.group(1)) * self._UNITS[found.group(2).lower()]
        if not seconds > 0:
            self.fail(f"{value!r} is not a duration longer than zero.", param, ctx)
        return seconds


@click.command()
@click.option(
    "--host",
    metavar="ADDRESS",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    type=Integer(0, 65535),
    metavar="PORT",
    default=8080,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=Integer(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help="Server processes (each renders pack jobs too).",
)
@click.option(
    "--max-body",
    type=Integer(min=1),
    metavar="BYTES",
    default=DEFAULT_MAX_BODY,
    show_default=True,
    envvar="ESCROW_SERVER_MAX_BODY",
    help="Largest request body in bytes; larger ones get 413 (ESCROW_SERVER_MAX_BODY).",
)
@click.option(
    "--max-connections",
    type=Integer(min=1),
    metavar="N",
    default=256,
    show_default=True,
    help="Open connections one worker serves at once; beyond them new requests get 503, "
    "so slow or idle clients cannot hold unbounded memory (each may send --max-body).",
)
@click.option(
    "--request-timeout",
    type=Number(min=0, min_open=True),
    metavar="SECONDS",
    default=60.0,
    show_default=True,
    envvar="ESCROW_SERVER_REQUEST_TIMEOUT",
    help="Seconds a request may take to arrive, headers and body; a slower one gets 408 and "
    "its connection is closed, so clients sending a byte now and then cannot hold the "
    "connections (ESCROW_SERVER_REQUEST_TIMEOUT).",
)
@click.option(
    "--root-path",
    default="",
    metavar="PREFIX",
    envvar="ESCROW_SERVER_ROOT_PATH",
    help="The path prefix a reverse proxy publishes the server under and strips from "
    "requests (/escrow for https://proxy/escrow/v1/...): the links the server hands out "
    "(Location, pdf_url, /docs, the OpenAPI servers) carry it (ESCROW_SERVER_ROOT_PATH).",
)
@click.option(
    "--pack-time-limit",
    type=Duration(),
    default="2h",
    show_default=True,
    envvar="ESCROW_SERVER_PACK_TIME_LIMIT",
    metavar="DURATION",
    help="How long a pack job may render (seconds, or with s, m or h: 90m, 2h); its "
    "renderer is then killed and the job fails saying so (ESCROW_SERVER_PACK_TIME_LIMIT).",
)
@click.option(
    "--no-packs",
    is_flag=True,
    help="Queue pack requests but do not render them here (another server does).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Uvicorn's line per request on stderr (the audit lines of changing requests are "
    "logged either way).",
)
@pass_app
def serve(
    app: App,
    host: str,
    port: int,
    workers: int,
    max_body: int,
    max_connections: int,
    request_timeout: float,
    root_path: str,
    pack_time_limit: float,
    no_packs: bool,
    access_log: bool,
) -> None:
    """Serve the ledger over HTTP (FastAPI + Uvicorn): routes under /v1, /openapi.json, /healthz.

    Several `escrow serve` processes may share one PostgreSQL ledger
    (ESCROW_DB_URL). Requests need a bearer token from `escrow tokens create`.
    While the ledger database is unavailable (also at start-up) requests get 503
    with Retry-After, and the server connects again once it is back; clients
    try reads and appends again for up to 30 s. Behind a reverse proxy that
    publishes the server under a path and strips it, give that path as
    --root-path, so that the links the server hands out lead through the proxy.
    """
    import uvicorn

    from escrow.config import redact_url
    from escrow.ledger.store import Ledger

    s = app.settings
    from_env = click.get_current_context().get_parameter_source("root_path")
    root_path = _check_root_path(
        root_path,
        "ESCROW_SERVER_ROOT_PATH" if from_env == ParameterSource.ENVIRONMENT else "--root-path",
    )
    _check_listen(host, port)  # one sentence now, rather than Uvicorn's after start-up
    if not no_packs:  # the Time-Stamping Authority of its pack jobs: refused now, not job by job
        from escrow.pack.sign import tsa_url

        tsa_url()  # a malformed ESCROW_TSA_URL: InputError (exit 2), in one sentence
    # exit 3 now when the database is unreachable or holds no ledger: never serve (or
    # half-make) a new, empty ledger at a mistyped URL
    with Ledger.open(s, create=False) as ledger:
        verifier = ledger.verifier_key()
        size = ledger.size()
    # Worker processes build their app from the environment (escrow.server.app:app_from_env).
    os.environ["ESCROW_HOME"] = str(s.home)
    os.environ["ESCROW_DB_URL"] = s.db_url
    os.environ["ESCROW_SERVER_MAX_BODY"] = str(max_body)
    os.environ["ESCROW_SERVER_REQUEST_TIMEOUT"] = repr(request_timeout)
    os.environ["ESCROW_SERVER_PACK_WORKERS"] = "0" if no_packs else "1"
    os.environ["ESCROW_SERVER_PACK_TIME_LIMIT"] = repr(pack_time_limit)
    # its workers stop when this process is gone, however it went (escrow.server.app)
    os.environ["ESCROW_SERVER_SUPERVISOR_PID"] = str(os.getpid())
    app.say(
        f"escrow: serving the ledger {redact_url(s.db_url)} ({count(size, 'entry', 'entries')}) "
        f"on http://{f'[{host}]' if ':' in host else host}:{port} with {count(workers, 'worker')}"
        + (f", published under the path {root_path}" if root_path else "")
    )
    app.say(f"escrow: log verifier key: {verifier}")
    uvicorn.run(
        "escrow.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        limit_concurrency=max_connections,
        # Uvicorn's own protocol waits for ever for a request sent a byte now and then
        http="escrow.server.protocol:DeadlineHTTPProtocol",
        log_config=_log_config("INFO"),
        access_log=access_log,
        server_header=False,
        # the proxy strips the prefix; Uvicorn puts it back into each request's root_path
        # (and path), from which the links the server hands out are made
        root_path=root_path,
    )


#: one path segment of --root-path: RFC 3986 pchar, without percent-encoding (the proxy
#: would send the prefix decoded, and Uvicorn needs it in ASCII)
_SEGMENT = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")


def _check_root_path(value: str, name: str = "--root-path") -> str:
    """``--root-path`` (``name``: how the user gave it) once it is a path prefix such as
    ``/escrow`` (``""`` for none); else a :class:`UsageError` saying what to give."""
    from urllib.parse import urlsplit

    value = value.strip()
    if not value:
        return ""
    if "://" in value or (value.startswith("//") and value.strip("/")):
        path = urlsplit(value if "://" in value else "http:" + value).path.rstrip("/")
        what = f"only its path, {path}" if path else "only the path the proxy publishes it under"
        raise UsageError(f"{name} {value!r} is a URL; give {what}.")
    if not value.startswith("/"):
        raise UsageError(
            f"{name} {value!r} does not begin with a slash; give it as /{value.rstrip('/')}."
        )
    if value.endswith("/"):
        bare = value.rstrip("/")
        raise UsageError(
            f"{name} {value!r} ends with a slash; "
            + (f"give it as {bare}." if bare else "leave it out when there is no prefix.")
        )
    for segment in value[1:].split("/"):
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise UsageError(
                f"{name} {value!r} is not a path prefix such as /escrow: "
                + (
                    f"{segment!r} is not a plain path segment (use letters, digits, - . _ ~)."
                    if segment
                    else "it has an empty segment (//)."
                )
            )
    return value


def _check_listen(host: str, port: int) -> None:
    """Bind ``host:port`` as Uvicorn will (and let it go): a host that is no address of this
    machine is a :class:`UsageError`, a port in use an :class:`EnvironmentProblem`."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as Uvicorn chooses
    try:
        addr = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)[0][4]
    except (socket.gaierror, UnicodeError) as e:
        reason = e.strerror if isinstance(e, socket.gaierror) else str(e)
        raise UsageError(
            f"Cannot listen on {host}:{port}: --host {host!r} is not an address or a name "
            f"of this machine ({reason}).",
            hint="Use 127.0.0.1, 0.0.0.0 (every interface) or one of this machine's addresses.",
        ) from e
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise EnvironmentProblem(
                    f"Cannot listen on {host}:{port}: another process is using the port.",
                    hint="Stop it, or choose another --port.",
                ) from e
            if e.errno == errno.EADDRNOTAVAIL:
                raise UsageError(
                    f"Cannot listen on {host}:{port}: {host} is not an address of this machine.",
                    hint="Use 127.0.0.1, 0.0.0.0 (every interface) or one of its addresses.",
                ) from e
            raise EnvironmentProblem(
                f"Cannot listen on {host}:{port}: {e.strerror or e}.",
                hint="Choose another --port or --host.",
            ) from e


@click.group()
def tokens() -> None:
    """Bearer tokens of the server: create (shown once), list, revoke.

    Works on the ledger database directly (ESCROW_DB_URL), on the server's host; or,
    with ESCROW_SERVER (or `escrow --server URL`) set, through that server with an
    admin token.
    """


class _Tokens:
    """The token operations, on the ledger's database or through a server, as dicts
    (``TokenInfo.to_dict()``, the server's JSON)."""

    def __init__(self, app: App) -> None:
        s = app.settings
        self.remote: Any = None
        self.store: Any = None
        if s.server:
            self.remote = app.ledger()
            return
        from escrow.ledger.store import db_errors, make_engine
        from escrow.server.auth import TokenStore

        app.local_ledger()  # the database answers and holds a ledger (never made here)
        engine = make_engine(s.db_url)
        try:
            with db_errors(s.db_url):
                TokenStore.create_tables(engine)
        except BaseException:
            engine.dispose()
            raise
        self.store = TokenStore(engine)

    def __enter__(self) -> _Tokens:
        return self

    def __exit__(self, *_: object) -> None:
        # the pooled connections go with the command (`escrow` run in-process, by a test
        # or a script, would otherwise leave them open until garbage collection)
        if self.store is not None:
            self.store.engine.dispose()

    def create(self, name: str, role: str) -> dict[str, Any]:
        if self.remote is not None:
            created: dict[str, Any] = self.remote.create_token(name, role)
            return created
        from escrow.server.auth import Role

        token, info = self.store.create(name, Role(role))
        return {**info.to_dict(), "token": token}

    def list(self, *, include_revoked: bool) -> list[dict[str, Any]]:
        if self.remote is not None:
            rows: list[dict[str, Any]] = self.remote.list_tokens(include_revoked=include_revoked)
            return rows
        return [t.to_dict() for t in self.store.list(include_revoked=include_revoked)]

    def revoke(self, id_or_name: str) -> dict[str, Any]:
        if self.remote is not None:
            revoked: dict[str, Any] = self.remote.revoke_token(id_or_name)
            return revoked
        info: dict[str, Any] = self.store.revoke(id_or_name).to_dict()
        return info


@tokens.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option(
    "--name", metavar="NAME", required=True, help="Who uses it (shown in the server log)."
)
@json_option
@pass_app
def tokens_create(app: App, role: str, name: str, as_json: bool) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    with _Tokens(app) as store:
        info = store.create(name, role)
    if as_json:
        app.emit_json(info)
        return
    app.out(str(info["token"]))
    app.say(
        f"Token {info['id']} {info['name']!r} ({info['role']}) created. It is shown only now: "
        "store it as a secret (ESCROW_TOKEN)."
    )


@tokens.command("list")
@click.option("--active", is_flag=True, help="Only tokens that are not revoked.")
@json_option
@pass_app
def tokens_list(app: App, active: bool, as_json: bool) -> None:
    """List tokens (never the secrets)."""
    with _Tokens(app) as store:
        rows = store.list(include_revoked=not active)
    if as_json:
        app.emit_json({"tokens": rows})
        return
    if not rows:
        app.say("No tokens.")
        return
    table = [("ID", "ROLE", "STATUS", "CREATED", "REVOKED", "NAME")]
    table += [
        (
            r["id"],
            r["role"],
            "active" if r["active"] else "revoked",
            _second(r["created_at"]),
            _second(r["revoked_at"]) if r["revoked_at"] else "-",
            r["name"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        app.out("  ".join([*cells, row[-1]]).rstrip())


def _second(time: str) -> str:
    """An RFC 3339 UTC time to the second (``2026-01-02T03:04:05Z``), as `keys list` shows."""
    return time[:19] + "Z" if len(time) >= 19 else time


@tokens.command("revoke")
@click.argument("token")
@json_option
@pass_app
def tokens_revoke(app: App, token: str, as_json: bool) -> None:
    """Revoke TOKEN (its ID or its active name); requests with it then get 401."""
    if not token.strip():
        raise UsageError("Give the ID or name of the token to revoke.")
    with _Tokens(app) as store:
        info = store.revoke(token.strip())
    if as_json:
        app.emit_json(info)
        return
    app.say(f"Token {info['id']} {info['name']!r} is revoked.")
