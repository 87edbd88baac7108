"""The CLI's client of an escrow server: :class:`RemoteLedger`.

It has the methods of :class:`escrow.ledger.store.Ledger` the commands use and
returns the same :class:`Entry`, :class:`Checkpoint` and :class:`KeyRecord`
values, so ``escrow build/post/log/show/verify/ledger …`` work against a
server as they do against a local ledger.  It trusts nothing the server says
without checking:

* every checkpoint's signature is verified against the **trusted log key**:
  ``verifier_key`` given to the constructor (``ESCROW_SERVER_KEY``, the line
  ``escrow serve`` and ``escrow init`` print), otherwise the key pinned for
  this server in ``ESCROW_HOME/servers/<host>_<port>.json``, otherwise — on
  first use only — the key the server announces, which is then pinned (and
  said so on stderr); a ``verifier_key`` that is no note verifier key line is a
  :class:`~escrow.errors.UsageError` (exit 2);
* before its first request of anything else, each :class:`RemoteLedger` fetches the
  server's checkpoint and verifies it against that key (once per object), so no
  answer — not even a listing of entries — comes from a server signing with
  another key;
* every new checkpoint must be consistent (RFC 9162 consistency proof) with
  the last one this ``ESCROW_HOME`` saw from that server, which is kept in the
  same file: a server that rewrote or forked its log is caught;
* every appended or fetched entry's leaf hash is recomputed from its bytes,
  and its inclusion proof is verified against the verified checkpoint before
  ``append`` or ``get`` returns.

Any failed check raises :class:`~escrow.errors.CheckFailed` (exit 1).
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import tempfile
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from escrow.errors import (
    CheckFailed,
    EnvironmentProblem,
    EscrowError,
    InputError,
    KeyLocked,
    LedgerTamperError,
    SchemaError,
    SignatureError,
    UsageError,
)
from escrow.text import count

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

    import httpx

    from escrow.config import Settings
    from escrow.ledger.models import Checkpoint, Entry, KeyRecord
    from escrow.ledger.store import Prepared
    from escrow.pack.render import Stage
    from escrow.signing.dsse import Envelope
    from escrow.signing.keys import PublicKey

MAX_PAGE = 1000


#: How long ``escrow pack`` through a server waits for its job: a pack of the most builds a
#: job holds (5,000) renders in most of an hour; a job whose server died fails within
#: minutes (``escrow.server.packs.STALE_AFTER_S``), so the wait is a guard, not the limit
PACK_WAIT_S = 3 * 3600.0
#: the longest pause between two questions about a pack job
PACK_POLL_MAX_S = 10.0
#: the most of a pack job's ``progress`` the client reads (the server's own limit)
PROGRESS_MAX = 200


class ServerUnavailable(EnvironmentProblem):
    """The escrow server cannot be reached or failed (exit 3)."""

    #: the request may have reached the server (and an append been made) before the
    #: connection was lost without an answer
    maybe_received: bool = False


def _cut_off() -> tuple[type[Exception], ...]:
    """The connection lost while a request was sent or its answer awaited (not
    ``ConnectError``: then nothing reached the server)."""
    import httpx

    return (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


class ServerAuthError(KeyLocked):
    """The server refused the token: missing, unknown, revoked, or the wrong role (exit 3)."""


_F = TypeVar("_F", bound="Callable[..., Any]")


def _reads_answers(method: _F) -> _F:
    """``method`` of :class:`RemoteLedger`, with an answer of the server that lacks a field,
    or holds one of the wrong type (a hash that is not hex, a size that is not a number),
    reported as :class:`ServerUnavailable` (exit 3, one sentence) instead of a traceback:
    what answered is not an escrow server speaking this client's protocol."""

    @functools.wraps(method)
    def wrapper(self: RemoteLedger, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
            raise self._malformed(e) from e

    return wrapper  # type: ignore[return-value]


#: how long a read or an append is tried again while the server answers 503 (its database
#: unavailable; a server that cannot be reached at all is reported at once: a mistyped
#: ESCROW_SERVER must not look like a wait); each wait follows the answer's Retry-After
RETRY_FOR_S = 30.0


def _retry_wait(r: httpx.Response, deadline: float) -> float | None:
    """Seconds to wait before trying again (the answer's ``Retry-After``, at most 5 s), or
    ``None`` when the time for trying again is over."""
    try:
        wait = min(max(float(r.headers.get("retry-after", "1")), 0.0), 5.0)
    except ValueError:
        wait = 1.0
    if time.monotonic() + wait > deadline:
        return None
    return wait


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _time_param(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        raise InputError(f"The time {t.isoformat()} has no time zone; give UTC.")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


KEY_FORM = "<name>+<8 hex digits>+<base64 key>"


def _explicit_key(verifier_key: str | None) -> str | None:
    """``verifier_key`` stripped (``None`` when blank); a UsageError unless it is a note
    verifier key line."""
    from escrow.ledger.checkpoint import parse_verifier_key

    key = (verifier_key or "").strip()
    if not key:
        return None
    try:
        parse_verifier_key(key)
    except InputError as e:
        raise UsageError(
            "ESCROW_SERVER_KEY is not a note verifier key: set it to the line `escrow serve` "
            f'prints after "log verifier key:", of the form {KEY_FORM}.'
        ) from e
    return key


def _server_url(url: str) -> str:
    """``url`` stripped, once it is an http(s) base URL with a host and a valid port and no
    query; else a UsageError (exit 2) that never shows a ``user:password@`` it holds."""
    from escrow.config import redact_url

    url = url.strip()
    hint = "Use --server http://host:port or ESCROW_SERVER."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number from 0 to 65535 raises here
    except ValueError as e:
        why = str(e).rstrip(".")
        why = "its port is not a number from 0 to 65535" if "port" in why.lower() else why
        shown = redact_url(url)
        raise UsageError(
            f"The server URL {shown!r} is not an http(s) URL: {why[:1].lower()}{why[1:]}.",
            hint=hint,
        ) from e
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"The server URL {redact_url(url)!r} is not an http(s) URL.", hint=hint)
    if parts.username is not None or parts.password is not None:
        # httpx would send them as Basic credentials in place of the bearer token, and
        # every message naming the server would show them
        raise UsageError(
            "The server URL names a user or password (user:password@), which escrow does not "
            "use: it sends the server only the token of ESCROW_TOKEN (or --token).",
            hint=f"Set ESCROW_SERVER (or --server) to {redact_url(url)}.",
        )
    if parts.query:
        raise UsageError(
            f"The server URL {url!r} has a query (?{parts.query}); give the server's base URL.",
            hint=hint,
        )
    return url


#: what a bearer token may hold: visible ASCII (escrow's are ``escrow_`` and URL-safe base64)
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


def _bearer_token(token: str | None) -> str | None:
    """``token`` stripped (``None`` when blank); a UsageError, which does not show it, when it
    holds a character no header may carry (a line break, a space, a non-ASCII character)."""
    token = (token or "").strip()
    if not token:
        return None
    if not _TOKEN_CHARS.fullmatch(token):
        raise UsageError(
            "ESCROW_TOKEN (or --token) holds a space, a line break or a non-ASCII character, "
            "which no token has: set it to the token `escrow tokens create` printed.",
        )
    return token


def _slug(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "server"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path.strip("/")
    raw = f"{host}_{port}" + (f"_{path}" if path else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


class RemoteLedger:
    """A ledger on an escrow server, checked as it is read (see the module docstring).

    ``url``: the server's base URL (``http://host:8080``); ``token``: a bearer token;
    ``home``: ``ESCROW_HOME``, where the server's log key and last checkpoint are
    pinned; ``verifier_key``: the log's note verifier key line, to trust it
    explicitly instead of pinning on first use.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        home: Path,
        verifier_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        url = _server_url(url)
        token = _bearer_token(token)
        self.url = url.rstrip("/")
        self.token = token
        self.home = Path(home)
        self.state_path = self.home / "servers" / f"{_slug(self.url)}.json"
        self._explicit_key = _explicit_key(verifier_key)
        self._trusted: str | None = self._explicit_key
        self._checkpoint: Checkpoint | None = None
        self._checking = False  # fetching a checkpoint (see _request)
        self._job_paths: dict[str, str] = {}  # pack job ID -> the Location the server gave
        headers = {"User-Agent": "escrow-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )
        # Commands may drop the ledger without closing it: close the connections then.
        weakref.finalize(self, self._http.close)

    @classmethod
    def open(cls, settings: Settings) -> RemoteLedger:
        """The server of ``settings.server`` with ``settings.token``; ``ESCROW_SERVER_KEY`` pins."""
        if not settings.server:
            raise UsageError("No server is configured (--server or ESCROW_SERVER).")
        return cls(
            settings.server,
            settings.token,
            home=settings.home,
            verifier_key=os.environ.get("ESCROW_SERVER_KEY") or None,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP -------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> Any:
        """The JSON object the server answers to ``method path`` (see :meth:`_send`); an
        answer that is no JSON object (a proxy's HTML page) is :class:`ServerUnavailable`."""
        return self._json(self._send(method, path, **kw), method, path)

    def _request_bytes(self, method: str, path: str, **kw: Any) -> bytes:
        """The body of the server's answer to ``method path`` (a pack's PDF)."""
        return self._send(method, path, **kw).content

    def _json(self, r: httpx.Response, method: str, path: str) -> dict[str, Any]:
        """The JSON object of the successful answer ``r``, else ServerUnavailable."""
        ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
        what = f"The escrow server {self.url} answered {method} {path}"
        hint = (
            "Check that ESCROW_SERVER names the `escrow serve` itself, not a proxy or "
            "login page in front of it."
        )
        if ctype != "application/json":
            shown = ctype or "no content type"
            raise ServerUnavailable(f"{what} with {shown}, not JSON.", hint=hint)
        try:
            data = r.json()
        except ValueError as e:
            raise ServerUnavailable(f"{what} with a body that is not valid JSON.", hint=hint) from e
        if not isinstance(data, dict):
            raise ServerUnavailable(f"{what} with JSON that is not an object.", hint=hint)
        return data

    def _malformed(self, e: BaseException) -> ServerUnavailable:
        """The error of an answer of the server that lacks a field or has a bad one."""
        detail = f"no field {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__
        return ServerUnavailable(
            f"The escrow server {self.url} sent an answer this client cannot read "
            f"({detail.rstrip('.')[:200]}).",
            hint="Check that the server runs a release of escrow this client works with.",
        )

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """The server's answer to ``method path`` (under the base URL), once the server's
        checkpoint is trusted; 503s of requests safe to repeat are tried again; an error
        answer raises."""
        import httpx

        if self._checkpoint is None and not self._checking and path != "/v1/checkpoint":
            # Trust first: whatever is asked, the server must show it signs with the
            # trusted log key before any of its answers is used (once per RemoteLedger).
            self.checkpoint()
        retry = method in ("GET", "HEAD") or (method == "POST" and path == "/v1/entries")
        deadline = time.monotonic() + RETRY_FOR_S if retry else 0.0
        told = False
        lost_answer = False  # a request the server may have acted on, its answer lost
        while True:
            try:
                r = self._http.request(method, path, **kw)
            except httpx.HTTPError as e:
                # the request was (maybe) received and the connection lost before its
                # answer: a server stopping or restarting mid-request, a proxy's cut
                received = isinstance(e, (*_cut_off(), httpx.ReadTimeout))
                # made again at once after a cut, not after a wait for an answer in time
                if isinstance(e, _cut_off()) and retry and not lost_answer:
                    lost_answer = True  # safe to make again (reads; appends are idempotent)
                    continue
                raise self._unreachable(e, maybe_received=received or lost_answer) from e
            # 503: its database unavailable; 429: it (or a proxy) limits the rate of requests
            wait = _retry_wait(r, deadline) if r.status_code in (429, 503) else None
            if wait is None:
                break
            # the server's database back in a moment: a request that changes nothing
            # when made twice (reads; appends are idempotent) is tried again
            if not told:
                told = True
                sys.stderr.write(
                    f"escrow: the escrow server {self.url} is unavailable for now; trying again "
                    f"for up to {RETRY_FOR_S:.0f} s\n"
                )
            time.sleep(wait)
        if 300 <= r.status_code < 400:
            raise self._redirected(r)
        if r.status_code < 400:
            return r
        if r.status_code == 404 and path == "/v1/checkpoint":
            # every escrow server has it: the URL is not one's base URL
            raise self._not_escrow(path)
        raise self._error(r)

    def _unreachable(self, e: httpx.HTTPError, *, maybe_received: bool) -> ServerUnavailable:
        """The error for a request that got no answer; ``maybe_received``: the server may
        have acted on it (an append made) before the connection was lost."""
        import httpx

        if isinstance(e, httpx.TimeoutException):
            error = ServerUnavailable(
                f"The escrow server {self.url} did not answer in time.",
                hint="Check that `escrow serve` is running there.",
            )
        else:
            plain = "WRONG_VERSION_NUMBER" in str(e) and self.url.startswith("https://")
            error = ServerUnavailable(
                f"Cannot reach the escrow server {self.url}: {e}.",
                # TLS spoken to a port that answers plain HTTP (`escrow serve` itself)
                hint=f"The server there speaks plain HTTP: use http://{self.url[8:]}, or "
                "put a TLS proxy in front of it."
                if plain
                else "Check ESCROW_SERVER and that `escrow serve` is running.",
            )
        error.maybe_received = maybe_received
        return error

    def _redirected(self, r: httpx.Response) -> ServerUnavailable:
        """The error of a redirect: escrow follows none (the token must go nowhere else, and
        a pipeline must name the server it trusts); the target is shown without a query or
        any ``user:password@``."""
        from escrow.config import redact_url
        from escrow.text import printable

        target = r.headers.get("location", "").strip()
        to = ""
        if target:
            parts = urlsplit(target)
            to = f" to {printable(redact_url(parts._replace(query='', fragment='').geturl()))}"
        return ServerUnavailable(
            f"The escrow server {self.url} answered {r.status_code}, a redirect{to}; escrow "
            "follows no redirects.",
            hint="Set ESCROW_SERVER (or --server) to the URL `escrow serve` answers at.",
        )

    def _not_escrow(self, path: str) -> ServerUnavailable:
        """The error of a server URL at which ``path``, which every escrow server has, is 404."""
        extra = urlsplit(self.url).path
        drop = f", without {extra}" if extra.rstrip("/").endswith("/v1") else ""
        return ServerUnavailable(
            f"{self.url} is not the base URL of an escrow server: it has no {path} (404).",
            hint=f"Set ESCROW_SERVER (or --server) to the http://host:port `escrow serve` "
            f"listens on{drop}.",
        )

    def _error(self, r: httpx.Response) -> EscrowError:
        try:
            body = r.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        msg = str(body.get("message") or r.reason_phrase or f"HTTP {r.status_code}").rstrip(".")
        where = f"The escrow server {self.url} answered {r.status_code}: {msg}."
        code = body.get("error")
        if r.status_code == 401:
            return ServerAuthError(where, hint="Set ESCROW_TOKEN (or --token) to a valid token.")
        if r.status_code == 403:
            return ServerAuthError(where, hint="Use a token with a role that may do this.")
        if r.status_code == 408:  # the request did not reach it within its request timeout
            return ServerUnavailable(where, hint="Check the network to the server; try again.")
        if r.status_code == 429:  # it (or a proxy before it) limits the rate of requests
            return ServerUnavailable(where, hint="Try again later.")
        if code == "schema":
            return SchemaError(f"{msg}.", pointer=str(body.get("pointer") or ""))
        if code == "signature" or code == "check_failed":
            return SignatureError(f"{msg}.") if code == "signature" else CheckFailed(f"{msg}.")
        if r.status_code == 404 and code == "not_found":
            return InputError(f"{msg}.")
        if code == "ledger_integrity":  # the server's own ledger contradicts itself
            return LedgerTamperError(where, hint="Run `escrow ledger verify` on the server's host.")
        if 400 <= r.status_code < 500:
            return InputError(where)
        return ServerUnavailable(where)

    # -- trust ------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InputError(
                f"Cannot read the pinned server state {self.state_path}: {e}.",
                hint="Fix or remove the file (the server's log key is then pinned again).",
            ) from e
        return data if isinstance(data, dict) else {}

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".server-", dir=self.state_path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=2)
            os.replace(tmp, self.state_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @_reads_answers
    def _trusted_key(self, announced: str | None = None) -> str:
        if self._trusted:
            return self._trusted
        pinned = self._state().get("verifier_key")
        if isinstance(pinned, str) and pinned:
            self._trusted = pinned
            return pinned
        if announced is None:
            announced = str(self._request("GET", "/v1/checkpoint")["verifier_key"])
        from escrow.ledger.checkpoint import parse_verifier_key

        parse_verifier_key(announced)  # well-formed, or InputError
        self._trusted = announced
        self._save_state({"url": self.url, "verifier_key": announced})
        import sys

        print(
            f"escrow: trusting the log key of {self.url} on first use: {announced} "
            f"(pinned in {self.state_path}; set ESCROW_SERVER_KEY to trust a key explicitly)",
            file=sys.stderr,
        )
        return announced

    @_reads_answers
    def _accept(self, cp_json: dict[str, Any]) -> Checkpoint:
        """Verify a checkpoint from the server and its consistency with the last one seen."""
        from escrow.ledger import merkle
        from escrow.ledger.checkpoint import verify_checkpoint

        key = self._trusted_key(str(cp_json.get("verifier_key") or "") or None)
        announced = cp_json.get("verifier_key")
        if announced and announced != key:
            if self._explicit_key is not None:
                where = f"not the {key} ESCROW_SERVER_KEY trusts"
                hint = (
                    "Check that ESCROW_SERVER names the intended server; if its log key was "
                    "legitimately replaced, set ESCROW_SERVER_KEY to the new one."
                )
            else:
                where = f"not the {key} pinned in {self.state_path}"
                hint = (
                    f"If the server's log key was legitimately replaced, remove {self.state_path}"
                    " or set ESCROW_SERVER_KEY."
                )
            raise SignatureError(
                f"The escrow server {self.url} signs with the log key {announced}, {where}.",
                hint=hint,
            )
        cp = verify_checkpoint(str(cp_json["note"]), key)
        if cp.size != int(cp_json["size"]) or cp.root.hex() != cp_json["root"]:
            raise LedgerTamperError(
                f"The escrow server {self.url} sent a checkpoint whose fields disagree with its "
                "signed note.",
                kind="checkpoint-root",
            )
        state = self._state()
        last = state.get("checkpoint") if state.get("verifier_key") == key else None
        if isinstance(last, str):
            old = verify_checkpoint(last, key)
            if old.size > cp.size:
                shows = count(cp.size, "entry", "entries")
                raise LedgerTamperError(
                    f"The escrow server's log shrank: it shows {shows}, but this machine "
                    f"already saw a signed checkpoint of {old.size}.",
                    kind="truncated",
                )
            if old.size == cp.size and old.root != cp.root:
                raise LedgerTamperError(
                    f"The escrow server shows two different roots for size {cp.size}: "
                    "its log was forked or rewritten.",
                    kind="checkpoint-root",
                )
            if old.size < cp.size:
                proof = self._request(
                    "GET", "/v1/consistency", params={"old": old.size, "new": cp.size}
                )
                hashes = [bytes.fromhex(h) for h in proof["hashes"]]
                if not merkle.verify_consistency(old.size, cp.size, old.root, cp.root, hashes):
                    raise LedgerTamperError(
                        f"The escrow server's checkpoint of size {cp.size} is not consistent "
                        f"with the one of size {old.size} this machine saw before: its log "
                        "was rewritten.",
                        kind="checkpoint-root",
                    )
        if not isinstance(last, str) or verify_checkpoint(last, key).size < cp.size:
            # re-read: another process may have pinned a newer one meanwhile
            fresh = self._state()
            fresh_last = fresh.get("checkpoint")
            if not isinstance(fresh_last, str) or (
                verify_checkpoint(fresh_last, key).size < cp.size
            ):
                self._save_state({"url": self.url, "verifier_key": key, "checkpoint": cp.note})
        if self._checkpoint is None or self._checkpoint.size <= cp.size:
            self._checkpoint = cp
        return cp

    def _check_inclusion(self, entry: Entry, proof: list[bytes], cp: Checkpoint) -> None:
        from escrow.ledger import merkle

        if not merkle.verify_inclusion(
            bytes.fromhex(entry.leaf_hash), entry.index, cp.size, proof, cp.root
        ):
            raise LedgerTamperError(
                f"The escrow server's inclusion proof of entry {entry.index} does not verify "
                f"against its signed checkpoint of size {cp.size}.",
                index=entry.index,
                kind="edited",
            )

    @_reads_answers
    def _entry(self, data: dict[str, Any]) -> Entry:
        from escrow.documents.canonical import canonical_bytes
        from escrow.ledger import merkle
        from escrow.ledger.models import Entry

        leaf = canonical_bytes(data["envelope"])
        computed = merkle.leaf_hash(leaf).hex()
        if computed != data["leaf_hash"]:
            raise LedgerTamperError(
                f"Entry {data['index']} from the escrow server does not hash to its leaf hash.",
                index=int(data["index"]),
                kind="edited",
            )
        integrated = _parse_time(data["integrated_at"])
        assert integrated is not None
        entry = Entry(
            index=int(data["index"]),
            leaf_hash=computed,
            envelope=leaf,
            predicate_type=str(data["predicate_type"]),
            project=data.get("project"),
            image_id=data.get("image_id"),
            signer=str(data["signer"]),
            integrated_at=integrated,
        )
        self._check_fields(entry)
        return entry

    def _check_fields(self, entry: Entry) -> None:
        """The kind, project and image ID the server gives must be what the entry's signed
        statement says (they are not covered by any hash the client checks)."""
        from escrow.ledger.store import edited_fields

        which = edited_fields(entry)
        if which:
            raise LedgerTamperError(
                f"The escrow server {self.url} gives entry {entry.index} another {which} "
                "than its signed envelope states.",
                index=entry.index,
                kind="index",
            )

    # -- the Ledger interface -------------------------------------------------------
    def verifier_key(self) -> str:
        """The trusted log verifier key (given, pinned, or pinned now on first use), once
        the server's checkpoint has been verified with it."""
        self._current()
        return self._trusted_key()

    @property
    def origin(self) -> str:
        """The log's origin line, from its verified checkpoint."""
        return self._current().origin

    def checkpoint(self) -> Checkpoint:
        """The server's latest checkpoint, verified (signature and consistency)."""
        checking, self._checking = self._checking, True  # its own requests need no check
        try:
            return self._accept(self._request("GET", "/v1/checkpoint"))
        finally:
            self._checking = checking

    def _current(self) -> Checkpoint:
        return self._checkpoint if self._checkpoint is not None else self.checkpoint()

    def size(self) -> int:
        return self.checkpoint().size

    def append(self, envelope: Envelope | bytes | str) -> tuple[Entry, bool]:
        """Post one envelope; verify the returned entry, inclusion proof and checkpoint."""
        from escrow.ledger.store import prepare

        # the same local checks as the ledger (parse, schema): fail before posting
        return self.append_prepared(prepare(envelope))

    def append_many(
        self, envelopes: Iterable[Envelope | bytes | str | Prepared]
    ) -> Generator[tuple[Entry, bool] | EscrowError, None, None]:
        """Post each envelope in turn; yield its result, or the reason it was refused
        (here or by the server), as :meth:`escrow.ledger.store.Ledger.append_many` does."""
        from escrow.ledger.store import Prepared, prepare

        for item in envelopes:
            # A server that is not the trusted one, or whose answer does not verify, stops
            # the stream (raised): that is no fault of the envelope, and it was not refused.
            self._current()
            try:
                p = item if isinstance(item, Prepared) else prepare(item)
                data = self._post(p)
            except (InputError, CheckFailed) as e:  # this envelope refused, here or there
                if isinstance(e, LedgerTamperError):
                    raise
                yield e
                continue
            yield self._posted(p, data)

    def append_prepared(self, p: Prepared) -> tuple[Entry, bool]:
        """:meth:`append` for an envelope :func:`escrow.ledger.store.prepare` checked."""
        return self._posted(p, self._post(p))

    def _post(self, p: Prepared) -> Any:
        return self._request("POST", "/v1/entries", json=p.envelope.to_dict())

    @_reads_answers
    def _posted(self, p: Prepared, data: Any) -> tuple[Entry, bool]:
        """The entry the server's answer ``data`` to posting ``p`` gives, once its
        checkpoint, entry bytes and inclusion proof are verified."""
        cp = self._accept(data["checkpoint"])
        entry = self._entry(data["entry"])
        if entry.envelope != p.leaf:
            raise LedgerTamperError(
                f"The escrow server recorded entry {entry.index} with other bytes than were posted."
            )
        proof = data["inclusion_proof"]
        if int(proof["tree_size"]) != cp.size:
            raise LedgerTamperError("The inclusion proof is not for the returned checkpoint.")
        self._check_inclusion(entry, [bytes.fromhex(h) for h in proof["hashes"]], cp)
        return entry, bool(data["created"])

    def get(self, index: int) -> Entry:
        """Entry ``index``, with its inclusion under the latest checkpoint verified."""
        if index < 0:
            raise InputError(f"The ledger has no entry {index}.")
        fresh = self._checkpoint is None
        cp = self._current()
        if index >= cp.size and not fresh:
            cp = self.checkpoint()
        if index >= cp.size:
            raise InputError(
                f"The ledger has no entry {index} "
                f"(it holds {count(cp.size, 'entry', 'entries')}, from 0)."
            )
        entry = self._entry(self._request("GET", f"/v1/entries/{index}"))
        if entry.index != index:
            # its inclusion proof would be that of the entry it is, not of the one asked for
            raise LedgerTamperError(
                f"The escrow server {self.url} answered entry {entry.index} when asked for "
                f"entry {index}.",
                index=index,
                kind="index",
            )
        if entry.index >= cp.size:
            cp = self.checkpoint()
        self._check_inclusion(entry, self._proof(entry.index, cp.size), cp)
        return entry

    @_reads_answers
    def _proof(self, index: int, tree_size: int) -> list[bytes]:
        data = self._request("GET", f"/v1/entries/{index}/proof", params={"tree_size": tree_size})
        return [bytes.fromhex(h) for h in data["hashes"]]

    def image_ids_starting(self, short: str, *, limit: int = 2) -> list[str]:
        """``[]``: the server's query takes full image IDs only (its API has no prefix
        search), so a short ID is expanded by the Docker Engine or not at all."""
        return []

    @_reads_answers
    def entries(
        self,
        *,
        project: str | None = None,
        image_id: str | None = None,
        diff_id: str | None = None,
        signer: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        predicate_type: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        """Entries matching every filter, oldest first (pages of at most 1000 requested)."""
        if limit < 1:
            raise InputError("The page size (limit) must be at least 1.")
        if since is not None and until is not None and since > until:
            return []  # as Ledger.entries answers; the server refuses such a range (422)
        params: dict[str, Any] = {
            "project": project,
            "image_id": image_id,
            "diff_id": diff_id,
            "signer": signer,
            "since": _time_param(since),
            "until": _time_param(until),
            "predicate_type": predicate_type,
        }
        params = {k: v for k, v in params.items() if v is not None}
        out: list[Entry] = []
        cursor = after
        while len(out) < limit:
            want = min(MAX_PAGE, limit - len(out))
            page_params = {**params, "limit": want}
            if cursor is not None:
                page_params["after"] = cursor
            page = self._request("GET", "/v1/entries", params=page_params)
            rows = page["entries"]
            if not isinstance(rows, list):
                raise TypeError("its entries are not a list")
            for row in rows[:want]:
                entry = self._entry(row)
                self._check_listed(entry, cursor, params)
                out.append(entry)
                cursor = entry.index
            # the next page starts after the last entry listed, not where the server says:
            # a cursor that goes back would list entries twice, one ahead would skip some
            if page.get("next_cursor") is None or not rows:
                break
        return out

    def _check_listed(self, entry: Entry, after: int | None, params: dict[str, Any]) -> None:
        """An entry the server lists must come after the one before it (``after``) and
        match the filters its signed statement can be checked against (kind, project,
        image ID: :meth:`_check_fields` showed them to be the statement's)."""
        if after is not None and entry.index <= after:
            raise LedgerTamperError(
                f"The escrow server {self.url} listed entry {entry.index} after entry {after}: "
                "its list of entries is out of order or repeats entries.",
                index=entry.index,
                kind="index",
            )
        shown = {
            "project": entry.project,
            "image_id": entry.image_id,
            "predicate_type": entry.predicate_type,
        }
        from escrow.documents.types import SCHEMA_NAMES

        for name, value in shown.items():
            wanted = params.get(name)
            if wanted is None:
                continue
            if name == "image_id":  # the server takes it with or without "sha256:"
                wanted = wanted if wanted.startswith("sha256:") else f"sha256:{wanted}"
            if name == "predicate_type" and SCHEMA_NAMES.get(str(value)) == wanted:
                continue  # the server takes a kind ("build-manifest") for its type URI
            if value != wanted:
                raise LedgerTamperError(
                    f"The escrow server {self.url} listed entry {entry.index}, whose "
                    f"{name.replace('_', ' ')} is {value!r}, for the filter {name}={wanted!r}.",
                    index=entry.index,
                    kind="index",
                )

    @_reads_answers
    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        """The inclusion proof; verified here when it is for the latest checkpoint."""
        cp = self._current() if tree_size is None else None
        n = self._tree_size(tree_size) if tree_size is not None else self._current().size
        if not 0 <= index < n:
            raise InputError(f"The entry {index} is not in a tree of size {n}.")
        data = self._request("GET", f"/v1/entries/{index}/proof", params={"tree_size": n})
        proof = [bytes.fromhex(h) for h in data["hashes"]]
        if cp is not None:
            from escrow.ledger import merkle

            if not merkle.verify_inclusion(
                bytes.fromhex(data["leaf_hash"]), index, cp.size, proof, cp.root
            ):
                raise LedgerTamperError(
                    f"The escrow server's inclusion proof of entry {index} does not verify.",
                    index=index,
                )
        return proof

    def _tree_size(self, tree_size: int) -> int:
        """``tree_size``, once it is no larger than the log (the latest checkpoint is read
        again when it is larger than the one seen): the local ledger's InputError if not."""
        size = self._current().size
        if tree_size > size:
            size = self.checkpoint().size
        if not 0 <= tree_size <= size:
            raise InputError(
                f"The tree size {tree_size} is not between 0 and the log's size {size}."
            )
        return tree_size

    @_reads_answers
    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        params: dict[str, Any] = {"old": old}
        if new is not None:
            params["new"] = new = self._tree_size(new)
            if not 0 <= old <= new:
                raise InputError(f"The old size {old} is not between 0 and the new size {new}.")
        data = self._request("GET", "/v1/consistency", params=params)
        return [bytes.fromhex(h) for h in data["hashes"]]

    @_reads_answers
    def root(self, tree_size: int | None = None) -> bytes:
        """The root of ``tree_size`` entries, proved consistent with the signed checkpoint."""
        from escrow.ledger import merkle

        cp = self.checkpoint()
        if tree_size is None or tree_size == cp.size:
            return cp.root
        if not 0 <= tree_size <= cp.size:
            raise InputError(
                f"The tree size {tree_size} is not between 0 and the log's size {cp.size}."
            )
        data = self._request("GET", "/v1/consistency", params={"old": tree_size, "new": cp.size})
        old_root = bytes.fromhex(data["old_root"])
        hashes = [bytes.fromhex(h) for h in data["hashes"]]
        if not merkle.verify_consistency(tree_size, cp.size, old_root, cp.root, hashes):
            raise LedgerTamperError(
                f"The escrow server's root of size {tree_size} is not consistent with its "
                f"signed checkpoint of size {cp.size}.",
            )
        return old_root

    @_reads_answers
    def keys(self) -> list[KeyRecord]:
        from escrow.ledger.models import KeyRecord

        data = self._request("GET", "/v1/keys")
        out: list[KeyRecord] = []
        for k in data["keys"]:
            added = _parse_time(k.get("added_at"))
            out.append(
                KeyRecord(
                    keyid=str(k["keyid"]),
                    name=str(k["name"]),
                    algorithm=str(k["algorithm"]),
                    public_pem=str(k["public_key"]),
                    status=str(k["status"]),
                    added_at=added if added is not None else datetime.fromtimestamp(0, UTC),
                    added_index=int(k.get("added_index") or 0),
                    revoked_at=_parse_time(k.get("revoked_at")),
                    retired_at=_parse_time(k.get("retired_at")),
                    reason=k.get("reason"),
                    ended_index=k.get("ended_index"),
                )
            )
        return out

    @_reads_answers
    def own_token(self) -> dict[str, Any] | None:
        """``{id, name, role}`` of this client's token; ``None`` when the server is too
        old to say (it has no ``GET /v1/token``)."""
        import httpx

        self._current()  # trust first, as for any other request
        try:
            r = self._http.request("GET", "/v1/token")
        except httpx.HTTPError:
            return None  # unreachable: the request that needs it says so
        if r.status_code == 404:
            return None
        if 300 <= r.status_code < 400:
            raise self._redirected(r)
        if r.status_code >= 400:
            raise self._error(r)
        return self._json(r, "GET", "/v1/token")

    def key_status(self, keyid: str) -> tuple[str, str] | None:
        """``(name, status)`` of the registered key ``keyid`` now, or ``None``."""
        rec = next((k for k in self.keys() if k.keyid == keyid), None)
        return None if rec is None else (rec.name, rec.status)

    def key(self, keyid: str) -> KeyRecord:
        """One registered key by full key ID, unique prefix or name (:func:`find_key`)."""
        from escrow.ledger.models import find_key

        return find_key(self.keys(), keyid)

    # -- key administration (admin tokens) --------------------------------------------
    @_reads_answers
    def _key_event(self, path: str, body: dict[str, Any]) -> Entry:
        data = self._request("POST", path, json=body)
        cp = self._accept(data["checkpoint"])
        entry = self._entry(data["entry"])
        self._check_inclusion(
            entry, [bytes.fromhex(h) for h in data["inclusion_proof"]["hashes"]], cp
        )
        return entry

    def register_key(self, public: PublicKey, name: str) -> Entry:
        return self._key_event("/v1/keys", {"name": name, "public_key": public.pem()})

    def revoke_key(self, keyid: str, reason: str) -> Entry:
        return self._key_event(f"/v1/keys/{keyid}/revoke", {"reason": reason})

    def retire_key(
        self, keyid: str, effective_from: datetime | None = None, reason: str | None = None
    ) -> Entry:
        body: dict[str, Any] = {"reason": reason or ""}
        if effective_from is not None:
            body["effective_from"] = _time_param(effective_from)
        return self._key_event(f"/v1/keys/{keyid}/retire", body)

    # -- tokens (admin tokens) ----------------------------------------------------------
    @_reads_answers
    def list_tokens(self, *, include_revoked: bool = True) -> list[dict[str, Any]]:
        """The server's tokens (never the secrets), as ``escrow tokens list --json`` shows them."""
        data = self._request("GET", "/v1/tokens")
        rows = [dict(t) for t in data["tokens"]]
        return rows if include_revoked else [t for t in rows if t.get("active")]

    def create_token(self, name: str, role: str) -> dict[str, Any]:
        """A new token on the server: its fields and ``token``, the secret, shown only now."""
        from escrow.server.auth import check_name

        created: dict[str, Any] = self._request(
            "POST", "/v1/tokens", json={"name": check_name(name), "role": role}
        )
        return created

    def revoke_token(self, id_or_name: str) -> dict[str, Any]:
        """Revoke the token with this ID or active name (as ``TokenStore.revoke`` does)."""
        rows = self.list_tokens()
        match = next((t for t in rows if t["id"] == id_or_name), None)
        if match is None:
            named = [t for t in rows if t["name"] == id_or_name and t.get("active")]
            if len(named) > 1:  # made at once by two servers before names were locked
                ids = ", ".join(sorted(str(t["id"]) for t in named))
                raise InputError(
                    f"{len(named)} active tokens are named {id_or_name!r} on {self.url} "
                    f"({ids}); nothing was revoked.",
                    hint="Revoke each by its ID.",
                )
            match = named[0] if named else None
        if match is None:
            raise InputError(
                f"There is no token with the ID or active name {id_or_name!r} on {self.url}.",
                hint="`escrow tokens list` shows them.",
            )
        from urllib.parse import quote

        revoked: dict[str, Any] = self._request(
            "DELETE", f"/v1/tokens/{quote(str(match['id']), safe='')}"
        )
        return revoked

    def verify(self, **_: Any) -> Any:
        raise UsageError(
            "`escrow ledger verify` re-reads the whole database and is not available "
            "through a server.",
            hint="Run it on the server's host (ESCROW_DB_URL), or use `escrow verify INDEX`.",
        )

    # -- packs (auditor tokens) -------------------------------------------------------
    def request_pack(
        self,
        *,
        projects: list[str] | tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        entries: list[int] | tuple[int, ...] = (),
        since_checkpoint: str | None = None,
        tree_size: int | None = None,
    ) -> dict[str, Any]:
        """Queue a pack job; return the job (``id``, ``status`` …)."""
        body: dict[str, Any] = {"projects": list(projects), "entries": list(entries)}
        if since is not None:
            body["since"] = _time_param(since)
        if until is not None:
            body["until"] = _time_param(until)
        if since_checkpoint:
            body["since_checkpoint"] = since_checkpoint
        if tree_size is not None:
            body["tree_size"] = tree_size
        r = self._send("POST", "/v1/packs", json=body)
        job = self._json(r, "POST", "/v1/packs")
        location = self._link(r.headers.get("location"))
        if location is not None:
            self._job_paths[str(job.get("id"))] = location
        return job

    def pack_job(self, job_id: str) -> dict[str, Any]:
        path = self._job_paths.get(job_id) or f"/v1/packs/{job_id}"
        job: dict[str, Any] = self._request("GET", path)
        return job

    def _link(self, link: object) -> str | None:
        """The path under the base URL of a link the server handed out (a ``Location``, a
        ``pdf_url``), when it lies under the base URL, which is where the token may go;
        else ``None`` (the client then uses the path it knows). Behind a proxy that
        publishes the server under a path, the server's links carry that path
        (``escrow serve --root-path``)."""
        from urllib.parse import urljoin

        if not isinstance(link, str) or not link.strip():
            return None
        base = urlsplit(self.url + "/")
        target = urlsplit(urljoin(self.url + "/", link.strip()))
        same_origin = (target.scheme, target.netloc) == (base.scheme, base.netloc)
        if not same_origin or not target.path.startswith(base.path) or target.query:
            return None
        path = "/" + target.path[len(base.path) :]
        return path if path.startswith("/v1/") else None

    def wait_pack(
        self,
        job_id: str,
        *,
        timeout: float = PACK_WAIT_S,
        poll: float = 1.0,
        on_job: Callable[[dict[str, Any]], object] | None = None,
    ) -> bytes:
        """Wait for a pack job and return the signed PDF; when it failed, the error
        :func:`_job_failure` makes of it.  The server fails a job whose renderer died
        within minutes (its heartbeat), so the client waits as long as the job lives, up
        to ``timeout``; it asks every ``poll`` seconds, then less often (up to every
        :data:`PACK_POLL_MAX_S`) as the job goes on.  ``on_job`` is given each job
        document as it is read, the last (finished) one included: its ``progress``
        (:func:`progress_stages`) is for a display."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.pack_job(job_id)
            status = job.get("status")
            if not isinstance(status, str):
                raise self._malformed(KeyError("status"))
            if on_job is not None:
                on_job(job)
            if status == "succeeded":
                path = self._link(job.get("pdf_url")) or f"/v1/packs/{job_id}/pdf"
                return self._request_bytes("GET", path)
            if status == "failed":
                raise _job_failure(job)
            if time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"The pack job {job_id} did not finish within {timeout:.0f} s.",
                    hint=f"Fetch it later from {self.url}/v1/packs/{job_id}.",
                )
            time.sleep(poll)
            poll = min(poll * 1.25, PACK_POLL_MAX_S)


#: The phase of a pack job's ``progress`` by the first word of its heading (the words
#: before its first ": ", ``escrow.server.packs.progress_text``); "rendering" is followed by
#: the number of builds.
_PROGRESS_PHASES = {"collecting": "collect", "signing": "sign", "recording": "record"}
_RENDERING = re.compile(r"rendering (\d[\d,]*) builds?")


def progress_stages(progress: object) -> list[Stage]:
    """The :class:`~escrow.pack.render.Stage` objects a pack job's ``progress`` tells, for
    the display a local pack has: its phase under its heading ("collecting the builds",
    "signing and timestamping with URL"), then what comes after the heading, if anything;
    in the phase "render", the part being laid out, with the pack's number of builds.
    None (an empty list) for no progress, or one this client does not know (a server of
    another release).  The server's words are shown as text: a control character in them
    is escaped."""
    from escrow.pack.render import Stage
    from escrow.text import printable

    if not isinstance(progress, str):
        return []
    text = printable(" ".join(progress[:PROGRESS_MAX].split()))
    heading, _, rest = text.partition(": ")
    rendering = _RENDERING.fullmatch(heading)
    if rendering is not None:
        if not rest:
            return []
        builds = int(rendering.group(1).replace(",", ""))
        part = "builds" if rest.startswith("laying out build") else ""
        return [Stage("render", rest, part=part, builds=builds)]
    phase = _PROGRESS_PHASES.get(heading.split(" ", 1)[0])
    if phase is None:
        return []
    return [Stage(phase, heading), *([Stage(phase, rest)] if rest else [])]


#: The error ``escrow pack`` raises for a failed pack job of each ``error_kind``: the class
#: of errors (:mod:`escrow.errors`) the same failure is on a local ledger, so it exits as
#: a local run does; ``internal`` (the server's renderer failed, a bug) is the server failing.
_JOB_ERRORS: dict[str, type[EscrowError]] = {
    "check": CheckFailed,
    "input": InputError,
    "unavailable": EnvironmentProblem,
    "internal": ServerUnavailable,
}
#: The same by ``error_exit_code``, for a kind this client does not know.
_EXIT_ERRORS: dict[int, type[EscrowError]] = {1: CheckFailed, 2: InputError, 3: EnvironmentProblem}


def _job_failure(job: dict[str, Any]) -> EscrowError:
    """The error of a failed pack job, saying what the server said.  A server older than
    ``error_kind`` (or a kind and exit code this client does not know) is :class:`InputError`,
    exit 2, as before.  A job that gives no ``error`` (none, or an empty one) is named, so
    that its server's log can be searched for it."""
    kind, code = job.get("error_kind"), job.get("error_exit_code")
    cls = _JOB_ERRORS.get(kind) if isinstance(kind, str) else None
    if cls is None and isinstance(code, int) and not isinstance(code, bool):
        cls = _EXIT_ERRORS.get(code)
    error = job.get("error")
    if not isinstance(error, str) or not error.strip():
        job_id = job.get("id")
        named = f"pack job {job_id}; " if isinstance(job_id, str) and job_id.strip() else ""
        error = f"the server gave no reason ({named}see the server's log)."
    return (cls or InputError)(f"The server could not make the pack: {error.strip()}")
