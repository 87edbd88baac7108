"""The container engine boundary: a :class:`Engine` protocol and the Docker SDK implementation.

Pure capture logic talks to :class:`Engine`; unit tests give it a fake, the
integration tests and the CLI the real :class:`DockerEngine` (the Docker SDK's
low-level ``docker.APIClient``, imported only here, only when needed).

The calls a build makes — inspect, build, tag, history, version/info and
``docker save`` — are written once, as HTTP requests on a transport: on a
local engine (a ``unix://…`` address) the Unix socket itself,
with a small HTTP/1.1 client (:class:`_LocalSocket`); on a remote one (TCP, TLS,
SSH) the SDK client's session (:class:`_SDKTransport`).  Importing the SDK
costs ~0.15 s of CPU (``requests`` and ``urllib3``), one sixth of a small
phoenix build, on cores the engine is building with.  Pull, push and load use
the SDK's own methods.

Which engine: the one the docker CLI would use (:func:`engine_endpoint`) —
``DOCKER_HOST``, else the Docker context ``DOCKER_CONTEXT`` names, else the
current context (`docker context use`), else the local socket — so that
`docker build` and `escrow build` never reach different engines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from urllib.parse import quote, urlencode

from escrow.errors import EngineUnavailable, EscrowError, InputError

if TYPE_CHECKING:
    import docker


class Engine(Protocol):
    """What capture needs from a container engine."""

    def facts(self) -> dict[str, Any]:
        """``builder.engine``: version, apiVersion, os, arch, storageDriver, kernelVersion…"""
        ...

    def build(
        self,
        archive: Iterable[bytes],
        *,
        dockerfile: str,
        tags: list[str],
        build_args: Mapping[str, str],
        target: str | None,
        platform: str | None,
        labels: Mapping[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run a no-cache build of ``archive`` (the context tar, streamed); yield the
        engine's decoded JSON messages.  ``on_sent()`` is called once the engine has
        the whole context (it can start building).  ``labels`` are set on the image, as
        ``docker build --label`` does."""
        ...

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """``/images/{ref}/json``, or ``None`` when the engine has no such image."""
        ...

    def image_config(self, image_id: str) -> dict[str, Any]:
        """The image's raw config JSON (with ``history`` and its ``empty_layer`` flags)."""
        ...

    def history(self, image_id: str) -> list[dict[str, Any]]:
        """``/images/{id}/history``, oldest entry first (gives layer sizes)."""
        ...

    def remove_step_images(self, images: Sequence[str]) -> int:
        """Remove the step ``images`` of a finished build (full IDs, children first), each
        alone (``noprune``): none that a tag names or another image or a container uses.
        Returns how many were removed; what cannot be is left as it is."""
        ...

    def pull(self, ref: str, platform: str | None = None) -> str | None:
        """Pull ``ref``; :class:`InputError` when it cannot be pulled.  Returns the
        registry manifest digest the engine reports (``sha256:…``), when it does."""
        ...

    def remove_leftovers(self, images: Sequence[str]) -> int:
        """Remove what a build stopped part way left: the untagged step ``images`` (short
        IDs) and any image the engine committed on top of them after the stop.  Tagged
        images are never removed.  Returns how many were."""
        ...


#: the engine the docker CLI reaches when nothing names another
DEFAULT_HOST = "unix:///var/run/docker.sock"
#: addresses that are not TCP (TLS is for TCP addresses only, as in the docker CLI)
_NOT_TCP = ("unix://", "http+unix://", "ssh://", "npipe://", "fd://")
_CONTEXT_HINT = "`docker context ls` lists the contexts there are."


class Endpoint(NamedTuple):  # not a dataclass: defined before the build's request (~0.4 ms less)
    """Where the Docker Engine is, found as the docker CLI finds it (:func:`engine_endpoint`)."""

    #: the address: ``DOCKER_HOST``'s, the Docker context's, or :data:`DEFAULT_HOST`
    host: str
    #: the Docker CLI context that named it (``None``: ``DOCKER_HOST`` or the default)
    context: str | None = None
    #: TLS on a TCP address: on, off, or ``None`` when the folder's files decide (a context)
    tls: bool | None = False
    #: whether the engine's certificate is checked
    tls_verify: bool = False
    #: the folder of ``ca.pem``, ``cert.pem`` and ``key.pem``
    tls_dir: str = ""
    #: what asked for TLS (``DOCKER_TLS_VERIFY`` or ``DOCKER_TLS``), for messages
    tls_by: str = ""

    def __str__(self) -> str:
        if self.context is None:
            return self.host
        return f'{self.host} (Docker context "{self.context}")'

    @property
    def socket_path(self) -> str | None:
        """The Unix socket of a local engine, else ``None``."""
        for scheme in ("unix://", "http+unix://"):
            if self.host.startswith(scheme):
                path = self.host[len(scheme) :].lstrip("/")
                return "/" + path if path else DEFAULT_HOST.removeprefix("unix://")
        return None


def engine_endpoint() -> Endpoint:
    """The engine the docker CLI would use: ``DOCKER_HOST``; else the context that
    ``DOCKER_CONTEXT`` names; else the current context of ``config.json`` (what
    `docker context use` set) in ``DOCKER_CONFIG`` or ``~/.docker``; else the local
    socket.  Empty variables count as unset, and the context ``default`` is the local
    socket.  Costs no file read when ``DOCKER_HOST`` is set, and two small ones at most
    otherwise.  :class:`EngineUnavailable` when the context named does not exist or
    cannot be read (the docker CLI refuses it too)."""
    env = os.environ
    host = env.get("DOCKER_HOST")
    if host:
        return _env_endpoint(host)
    config_dir = _config_dir()
    name, named_by = env.get("DOCKER_CONTEXT"), "named by DOCKER_CONTEXT"
    if not name:
        config = os.path.join(config_dir, "config.json")
        name, named_by = _current_context(config), f"the current context in {config}"
    if not name or name == "default":
        return _env_endpoint(DEFAULT_HOST)
    return _context_endpoint(name, named_by, config_dir)


def _config_dir() -> str:
    """The docker CLI's configuration folder: ``DOCKER_CONFIG``, else ``~/.docker``."""
    return os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")


def _env_endpoint(host: str) -> Endpoint:
    """``host`` with the TLS settings of the environment, read as the docker CLI reads
    them: TLS when ``DOCKER_TLS_VERIFY`` (checking the engine's certificate) or
    ``DOCKER_TLS`` is not empty, with the files of ``DOCKER_CERT_PATH``, else of the
    docker CLI's configuration folder; ``DOCKER_CERT_PATH`` alone turns nothing on."""
    verify = bool(os.environ.get("DOCKER_TLS_VERIFY"))
    if not verify and not os.environ.get("DOCKER_TLS"):
        return Endpoint(host)
    return Endpoint(
        host,
        tls=True,
        tls_verify=verify,
        tls_dir=os.environ.get("DOCKER_CERT_PATH") or _config_dir(),
        tls_by="DOCKER_TLS_VERIFY" if verify else "DOCKER_TLS",
    )


def _current_context(config: str) -> str | None:
    """``currentContext`` of the docker CLI's ``config.json``; ``None`` when it names
    none or cannot be read (the docker CLI then uses the default context too)."""
    try:
        with open(config, "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _context_endpoint(name: str, named_by: str, config_dir: str) -> Endpoint:
    """The Docker endpoint of the context ``name``, from the docker CLI's context store
    (``contexts/meta/<SHA-256 of the name>/meta.json``; its TLS files beside, in
    ``contexts/tls/<same>/docker``)."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    contexts = os.path.join(config_dir, "contexts")
    meta = os.path.join(contexts, "meta", digest, "meta.json")
    said = f'The Docker context "{name}" ({named_by})'
    try:
        with open(meta, "rb") as f:
            data = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError) as e:
        raise EngineUnavailable(f"{said} does not exist.", hint=_CONTEXT_HINT) from e
    except OSError as e:
        raise EngineUnavailable(
            f"{said} cannot be read: {meta}: {e.strerror or e}.", hint=_CONTEXT_HINT
        ) from e
    except ValueError as e:
        raise EngineUnavailable(
            f"{said} cannot be read: {meta} is not JSON.", hint=_CONTEXT_HINT
        ) from e
    endpoints = data.get("Endpoints") if isinstance(data, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = docker.get("Host") if isinstance(docker, dict) else None
    if not isinstance(host, str) or not host or not isinstance(docker, dict):
        raise EngineUnavailable(f"{said} names no Docker Engine.", hint=_CONTEXT_HINT)
    skip = bool(docker.get("SkipTLSVerify"))
    return Endpoint(
        host,
        context=name,
        tls=True if skip else None,
        tls_verify=not skip,
        tls_dir=os.path.join(contexts, "tls", digest, "docker"),
    )


def sdk_kwargs(endpoint: Endpoint) -> dict[str, Any]:
    """``base_url`` and, for TLS to a TCP address, ``tls`` for ``docker.APIClient`` —
    what the docker CLI would use: the CA is required when the engine's certificate is
    checked (``DOCKER_TLS_VERIFY``; a context falls back on the system's CAs), a client
    certificate is sent when both ``cert.pem`` and ``key.pem`` are there.
    :class:`EngineUnavailable`, naming the engine and the file, when one is missing."""
    kwargs: dict[str, Any] = {"base_url": endpoint.host}
    if endpoint.host.startswith(_NOT_TCP) or endpoint.tls is False:
        return kwargs
    files = {name: os.path.join(endpoint.tls_dir, f"{name}.pem") for name in ("ca", "cert", "key")}
    have = {name: os.path.isfile(path) for name, path in files.items()}
    if endpoint.tls is None and not any(have.values()):
        return kwargs  # a context without TLS files: plain TCP
    missing: list[str] = []
    if endpoint.tls_verify and not have["ca"] and endpoint.context is None:
        missing.append(files["ca"])
    if have["cert"] != have["key"]:
        missing.append(files["key" if have["cert"] else "cert"])
    if missing:
        if endpoint.context:
            raise EngineUnavailable(
                f"The TLS files of the Docker Engine at {endpoint} are incomplete: "
                f"{missing[0]} is missing.",
                hint=f"`docker context update {endpoint.context} --docker ...` sets them again.",
            )
        raise EngineUnavailable(
            f"{endpoint.tls_by} asks for TLS to the Docker Engine at {endpoint}, "
            f"but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing.",
            hint=f"Put ca.pem (and cert.pem with key.pem for a client certificate) in "
            f"{endpoint.tls_dir}, point DOCKER_CERT_PATH at the folder that holds them, "
            f"or unset {endpoint.tls_by} for an engine without TLS.",
        )
    from docker.tls import TLSConfig

    kwargs["tls"] = TLSConfig(
        client_cert=(files["cert"], files["key"]) if have["cert"] else None,
        ca_cert=files["ca"] if endpoint.tls_verify and have["ca"] else None,
        verify=endpoint.tls_verify,
    )
    return kwargs


def sdk_client(endpoint: Endpoint) -> docker.APIClient:
    """``docker.APIClient`` for ``endpoint`` (:func:`sdk_kwargs`), its failures said in
    one sentence naming the engine."""
    import docker

    path = endpoint.socket_path
    if path is not None:
        _check_socket("unix://" + path, endpoint)
    kwargs = sdk_kwargs(endpoint)
    if "tls" in kwargs and not endpoint.tls_verify:
        _unchecked_tls_is_wanted(endpoint.host)
    try:
        api: docker.APIClient = _api_class()(version="auto", **kwargs)
    except docker.errors.DockerException as e:
        raise _sdk_refused(e, endpoint) from e
    except ValueError as e:  # urllib's reading of the address (a port that is no number)
        raise _bad_address(endpoint, e) from e
    return api


def _unchecked_tls_is_wanted(host: str) -> None:
    """No urllib3 warning for each request to an engine whose certificate the user asked
    not to check (``DOCKER_TLS``, a context's skip-TLS-verify): the docker CLI gives
    none, and every other host still warns."""
    import warnings
    from urllib.parse import urlparse

    from urllib3.exceptions import InsecureRequestWarning

    name = urlparse(host if "://" in host else f"tcp://{host}").hostname or ""
    warnings.filterwarnings(
        "ignore",
        message=f"Unverified HTTPS request is being made to host '{re.escape(name)}'",
        category=InsecureRequestWarning,
    )


_API_CLASS: Any = None


def _api_class() -> Any:
    """``docker.APIClient`` whose TLS settings (the engine's CA, or no check) are not
    replaced by requests' ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``: requests lets
    those win over a session's own ``verify`` (docker-py issue 2433), and the docker CLI
    knows nothing of them."""
    global _API_CLASS
    if _API_CLASS is None:
        import docker

        class APIClient(docker.APIClient):  # type: ignore[misc]
            def merge_environment_settings(
                self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
            ) -> Any:
                if verify is None:
                    verify = self.verify
                return super().merge_environment_settings(url, proxies, stream, verify, cert)

        _API_CLASS = APIClient
    return _API_CLASS


def _sdk_refused(e: BaseException, endpoint: Endpoint) -> EngineUnavailable:
    text = str(e)
    if "paramiko" in text:
        return EngineUnavailable(
            f"The Docker Engine at {endpoint} is reached over SSH, which needs the "
            "paramiko package, and escrow's Python environment has none.",
            hint="Install paramiko there (`pip install paramiko`), or forward the engine's "
            "socket (`ssh -NL /tmp/docker.sock:/var/run/docker.sock HOST`) and set "
            "DOCKER_HOST=unix:///tmp/docker.sock.",
        )
    if text.startswith(("Invalid bind address", "fd protocol")):
        return _bad_address(endpoint, e)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return EngineUnavailable(
            f"The Docker Engine at {endpoint} presented a TLS certificate that could not "
            "be verified.",
            hint=f"Check the CA in {endpoint.tls_dir or 'the TLS folder'} (ca.pem): the "
            "engine's certificate must be signed by it and name the address used.",
        )
    return _unavailable(e, endpoint)


def _bad_address(endpoint: Endpoint, e: BaseException) -> EngineUnavailable:
    hint = (
        f"`docker context update {endpoint.context} --docker host=...` changes it."
        if endpoint.context
        else "Set DOCKER_HOST to unix:///PATH, tcp://HOST:PORT or ssh://USER@HOST."
    )
    return EngineUnavailable(
        f"The Docker Engine address {endpoint} cannot be used: {str(e).rstrip('.')}.", hint=hint
    )


def _current_endpoint() -> Endpoint:
    """:func:`engine_endpoint`, or (a context that cannot be read) ``DOCKER_HOST``'s."""
    try:
        return engine_endpoint()
    except EscrowError:
        return Endpoint(os.environ.get("DOCKER_HOST") or DEFAULT_HOST)


def _unavailable(e: BaseException, endpoint: Endpoint | None = None) -> EngineUnavailable:
    """The engine at ``endpoint`` (else the one escrow would use) could not be reached."""
    where = endpoint if endpoint is not None else _current_endpoint()
    text = str(e)
    if "Permission denied" in text or "PermissionError" in text:
        if where.context is None and where.host in (DEFAULT_HOST, "unix:///run/docker.sock"):
            hint = "Add your user to the `docker` group (then log in again) or run as root."
        elif where.context is not None:
            hint = (
                "Ask the engine's owner for access, or choose an engine you may use "
                "(`docker context use`, or DOCKER_HOST)."
            )
        else:  # the docker group opens only the system engine's socket
            hint = (
                "Ask the engine's owner for access, or point DOCKER_HOST at an engine you may use."
            )
        return EngineUnavailable(
            f"Permission to use the Docker Engine at {where} was denied.", hint=hint
        )
    if where.context is not None:
        hint = (
            "Start it, or choose a running engine with `docker context use` "
            "(or DOCKER_CONTEXT, or DOCKER_HOST)."
        )
    else:
        hint = (
            "Start it (`sudo systemctl start docker`, or `sudo dockerd &`) "
            "or point DOCKER_HOST at a running engine."
        )
    return EngineUnavailable(f"The Docker Engine at {where} is not reachable.", hint=hint)


def _check_socket(base_url: str, endpoint: Endpoint | None = None) -> None:
    """Fail clearly (and without leaking the SDK's half-opened socket) when a local
    engine socket is missing or not permitted."""
    if base_url and not base_url.startswith(("unix://", "http+unix://")):
        return
    path = Endpoint(base_url or DEFAULT_HOST).socket_path or DEFAULT_HOST.removeprefix("unix://")
    try:
        os.stat(path)
    except PermissionError as e:  # in a folder this user may not enter (a rootless engine's)
        raise _unavailable(PermissionError(f"Permission denied: {path}"), endpoint) from e
    except OSError as e:
        raise _unavailable(FileNotFoundError(path), endpoint) from e
    if not os.access(path, os.R_OK | os.W_OK):
        raise _unavailable(PermissionError(f"Permission denied: {path}"), endpoint)


def local_socket_path() -> str | None:
    """The Unix socket of the engine escrow uses (:func:`engine_endpoint`), else ``None``."""
    return engine_endpoint().socket_path


def _build_refused(status: int | None, message: str) -> EscrowError:
    """An error status for ``POST /build``: the request's fault (4xx) or the engine's."""
    if status is not None and 400 <= status < 500:
        return InputError(
            f"The Docker Engine rejected the build: {message.rstrip('.')}.",
            hint="Fix the Dockerfile or the build options.",
        )
    return EngineUnavailable(f"The Docker Engine failed the build: {message.rstrip('.')}.")


def _failed(what: str, e: EngineHTTPError) -> EngineUnavailable:
    return EngineUnavailable(f"The Docker Engine could not {what}: {e.message.rstrip('.')}.")


class EngineHTTPError(Exception):
    """An error status from the engine: ``status`` and the engine's ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


class _Response(Protocol):
    """An open HTTP response body from the engine."""

    def read(self, amt: int | None = None, /) -> bytes: ...

    def read1(self, amt: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def _error_message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message", ""))
    except (ValueError, AttributeError):
        return data.decode("utf-8", errors="replace").strip()


class _LocalSocket:
    """HTTP/1.1 to the engine's Unix socket (unversioned API paths: the engine's own version).

    A small client of its own rather than :mod:`http.client`, whose import (with
    :mod:`email` and :mod:`ssl`) is about a sixth of what ``escrow build`` imports
    before it can send ``POST /build``.  One request per connection; request bodies
    are sent chunked; responses are read by ``Content-Length``, chunked, or to the end.
    """

    def __init__(self, path: str, endpoint: Endpoint | None = None) -> None:
        self.path = path
        self.endpoint = endpoint or Endpoint("unix://" + path)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 60.0,
        on_sent: Callable[[], None] | None = None,
    ) -> _Response:
        """Send one request on a new connection; the response (status < 400), open.
        ``on_sent()`` runs once the whole request is sent, before its answer is read."""
        import socket

        lines = [f"{method} {url} HTTP/1.1", "Host: localhost", "Accept-Encoding: identity"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines.append("Transfer-Encoding: chunked")
        elif method in ("POST", "PUT"):
            lines.append("Content-Length: 0")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.path)
            try:
                sock.sendall(head)
                if body is not None:
                    for chunk in body:
                        if chunk:
                            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sock.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                # The engine refused the request before reading all of it (a bad
                # option with a large context): its answer says why, if it sent one.
                sock.settimeout(5.0)
                response = _UnixResponse(sock, method)
                if response.status < 400:
                    raise
            else:
                if on_sent is not None:
                    on_sent()
                response = _UnixResponse(sock, method)
        except OSError as e:
            sock.close()
            raise _unavailable(e, self.endpoint) from e
        except BaseException:  # on_sent failed, or Ctrl-C
            sock.close()
            raise
        if response.status >= 400:
            try:
                data = response.read()
            except OSError:
                data = b""
            finally:
                response.close()
            raise EngineHTTPError(response.status, _error_message(data) or response.reason)
        return response


class _UnixResponse:
    """A response of :class:`_LocalSocket`: status, reason, headers, and the body."""

    def __init__(self, sock: Any, method: str) -> None:
        self._sock = sock
        self._f = sock.makefile("rb")
        while True:
            status_line = self._f.readline(65537).decode("latin-1")
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ConnectionError(f"the engine sent no HTTP status line ({status_line!r})")
            self.status = int(parts[1])
            self.reason = parts[2].strip() if len(parts) > 2 else ""
            self.headers: dict[str, str] = {}
            while (line := self._f.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                self.headers[name.strip().lower()] = value.strip()
            if not 100 <= self.status < 200:
                break
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._left: int | None = None  # bytes left: of the body, or of the current chunk
        if method == "HEAD" or self.status in (204, 304):
            self._left, self._chunked = 0, False
        elif not self._chunked and "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        self._done = self._left == 0 and not self._chunked

    def _chunk(self) -> bool:
        """Start the next chunk: False at the last (zero-size) one, trailers read."""
        line = self._f.readline(65537)
        if not line:
            raise ConnectionError("the engine closed the connection mid-response")
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while self._f.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
            self._done = True
            return False
        self._left = size
        return True

    def read1(self, amt: int = -1, /) -> bytes:
        """Up to ``amt`` bytes (any amount for -1), at least one unless the body ended."""
        if self._done or amt == 0:
            return b""
        if self._chunked and not self._left and not self._chunk():
            return b""
        want = 1 << 16 if amt is None or amt < 0 else amt
        if self._left is not None:
            want = min(want, self._left)
        data: bytes = self._f.read1(want)
        if self._left is not None:
            if not data:
                raise ConnectionError("the engine closed the connection mid-response")
            self._left -= len(data)
            if self._chunked and self._left == 0:
                self._f.readline(3)  # the CRLF after the chunk
            elif self._left == 0:
                self._done = True
        elif not data:
            self._done = True
        return data

    def read(self, amt: int | None = None, /) -> bytes:
        """``amt`` bytes (all the rest for None), fewer only at the end of the body."""
        parts: list[bytes] = []
        got = 0
        while amt is None or got < amt:
            data = self.read1(-1 if amt is None else amt - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def close(self) -> None:
        self._done = True
        self._f.close()
        self._sock.close()


class _SDKTransport:
    """The same requests through ``docker.APIClient``: remote engines (TCP, TLS, SSH)."""

    def __init__(self, api: docker.APIClient, endpoint: Endpoint | None = None) -> None:
        self.api = api
        self.endpoint = endpoint

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 60.0,
        on_sent: Callable[[], None] | None = None,
    ) -> _Response:
        import requests

        if body is not None and on_sent is not None:
            body = _then(body, on_sent)

        full = f"{self.api.base_url}/v{self.api.api_version}{url}"
        try:
            response = self.api.request(
                method, full, data=body, headers=dict(headers or {}), stream=True, timeout=timeout
            )
        except requests.exceptions.RequestException as e:
            raise _unavailable(e, self.endpoint) from e
        if response.status_code >= 400:
            try:
                data = response.content
            finally:
                response.close()
            raise EngineHTTPError(response.status_code, _error_message(data) or response.reason)
        return _SDKResponse(response)


def _then(body: Iterable[bytes], done: Callable[[], None]) -> Iterator[bytes]:
    """``body``, then ``done()`` once it is exhausted (the SDK's session sends it)."""
    yield from body
    done()


class _SDKResponse:
    def __init__(self, response: Any) -> None:
        self._response = response

    def read(self, amt: int | None = None, /) -> bytes:
        return bytes(self._response.raw.read(amt))

    def read1(self, amt: int = -1, /) -> bytes:
        return bytes(self._response.raw.read1(amt))

    def close(self) -> None:
        self._response.close()


def _get_json(transport: _LocalSocket | _SDKTransport, url: str) -> Any:
    response = transport.request("GET", url)
    try:
        return json.loads(response.read())
    except (OSError, ValueError) as e:
        raise EngineUnavailable(f"The Docker Engine sent an unreadable answer to {url}.") from e
    finally:
        response.close()


def _json_messages(response: _Response) -> Iterator[dict[str, Any]]:
    """The engine's stream of JSON messages (split anywhere across chunks)."""
    import codecs

    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    buf = ""
    while True:
        data = response.read1(1 << 16)
        buf += text.decode(data, final=not data)
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                msg, end = decoder.raw_decode(buf)
            except ValueError:
                break  # an incomplete message: wait for more
            buf = buf[end:]
            if isinstance(msg, dict):
                yield msg
        if not data:
            if buf.strip():
                raise EngineUnavailable("The Docker Engine's build stream ended mid-message.")
            return


_HEX64 = re.compile(r"[0-9a-f]{64}")
#: an image config is a few kB; one with a long history tens of kB
_MAX_CONFIG = 16 << 20
#: tar-split's entry types: a file whose bytes are read back, a raw segment of the stream.
_SPLIT_FILE, _SPLIT_SEGMENT = 1, 2
_READ = 1 << 20


def _tar_from_split(split: str, files: str) -> Iterator[bytes]:
    """The tar stream of a layer from its tar-split entries and its files (see
    :meth:`DockerEngine.local_layer`); raises ``OSError`` or ``ValueError`` on anything
    missing, short, malformed or outside ``files``, and nothing else."""
    import zlib

    try:
        yield from _split_entries(split, files)
    except (KeyError, TypeError, AttributeError, EOFError, zlib.error) as e:
        raise ValueError(f"unreadable tar-split {split}: {e!r}") from e


def _split_entries(split: str, files: str) -> Iterator[bytes]:
    import gzip
    from base64 import b64decode

    top = os.path.realpath(files)
    with gzip.open(split, "rt", encoding="utf-8") as entries:
        for line in entries:
            entry = json.loads(line)
            kind = entry.get("type")
            if kind == _SPLIT_SEGMENT:
                payload = entry.get("payload")
                if payload:
                    yield b64decode(payload)
                continue
            if kind != _SPLIT_FILE:
                raise ValueError(f"unknown tar-split entry type {kind!r}")
            size = int(entry.get("size") or 0)
            if not size:
                continue  # directories, links, empty files: all in the segments
            name = entry.get("name")
            if name is None:
                name = b64decode(entry["name_raw"]).decode("utf-8", "surrogateescape")
            path = os.path.realpath(os.path.join(top, name.lstrip("/")))
            if os.path.commonpath([top, path]) != top:
                raise ValueError(f"the layer names a file outside it: {name!r}")
            with open(path, "rb") as f:
                left = size
                while left:
                    chunk = f.read(min(left, _READ))
                    if not chunk:
                        raise ValueError(f"{name!r} is shorter than the layer says")
                    left -= len(chunk)
                    yield chunk


def _path(ref: str) -> str:
    """``ref`` (an image name or ID) as one part of an engine API path: refused when a
    ``/``-separated segment is empty, ``.`` or ``..`` (the engine would resolve it to
    another endpoint: ``..`` or ``a/../../containers``), every other character but ``/``
    and ``:`` percent-quoted (``?``, ``#``, ``%`` and spaces cannot end or escape it)."""
    if any(part in ("", ".", "..") for part in ref.split("/")):
        raise InputError(f"{ref!r} is not an image name or ID.")
    return quote(ref, safe="/:")


class DockerEngine:
    """The real Docker Engine: a local one on its Unix socket, else through ``docker.APIClient``."""

    def __init__(self, api: docker.APIClient | None = None) -> None:
        self._api = api
        self._api_lock = threading.Lock()
        #: why the engine cannot be used (a Docker context that does not exist), said
        #: at the first request
        self._problem: EngineUnavailable | None = None
        try:
            #: the engine's address, as the docker CLI would find it
            self.endpoint = engine_endpoint()
        except EngineUnavailable as e:
            self.endpoint = Endpoint(os.environ.get("DOCKER_HOST") or DEFAULT_HOST)
            self._problem = e if api is None else None
        path = self.endpoint.socket_path if api is None and self._problem is None else None
        self._local = _LocalSocket(path, self.endpoint) if path is not None else None
        self._checked = False
        self._info: dict[str, Any] | None = None

    @property
    def api(self) -> docker.APIClient:
        """The SDK client: pull, push, load, and every request to a remote engine."""
        with self._api_lock:
            if self._api is None:
                if self._problem is not None:
                    raise self._problem
                self._api = sdk_client(self.endpoint)
            return self._api

    def _transport(self) -> _LocalSocket | _SDKTransport:
        """The local socket (checked once, clearly), else the SDK's client."""
        if self._local is None:
            return _SDKTransport(self.api, self.endpoint)
        if not self._checked:
            _check_socket("unix://" + self._local.path, self.endpoint)
            self._checked = True
        return self._local

    def _errors(self) -> tuple[type[BaseException], ...]:
        import docker
        import requests

        return (docker.errors.DockerException, requests.exceptions.ConnectionError)

    def facts(self) -> dict[str, Any]:
        transport = self._transport()
        try:
            version = _get_json(transport, "/version")
            info = self._engine_info()
        except EngineHTTPError as e:
            raise _failed("report its version", e) from e
        facts: dict[str, Any] = {
            "version": str(version.get("Version", "")),
            "apiVersion": str(version.get("ApiVersion", "")),
            "os": str(version.get("Os", "")),
            "arch": str(version.get("Arch", "")),
            "storageDriver": str(info.get("Driver", "")),
            "kernelVersion": str(version.get("KernelVersion", "")),
        }
        for key, field in (("ID", "id"), ("Name", "name"), ("OperatingSystem", "operatingSystem")):
            if info.get(key):
                facts[field] = str(info[key])
        return facts

    def build(
        self,
        archive: Iterable[bytes],
        *,
        dockerfile: str,
        tags: list[str],
        build_args: Mapping[str, str],
        target: str | None,
        platform: str | None,
        labels: Mapping[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """``POST /build`` with the options ``APIClient.build`` sends for the same call."""
        params: dict[str, str] = {
            "dockerfile": dockerfile,
            "nocache": "1",
            "rm": "1",
            "forcerm": "1",
            "pull": "0",
            "q": "0",
            "buildargs": json.dumps(dict(build_args)),
        }
        if tags:
            params["t"] = tags[0]
        if target:
            params["target"] = target
        if platform:
            params["platform"] = platform
        if labels:
            params["labels"] = json.dumps(dict(labels))
        try:
            response = self._transport().request(
                "POST",
                "/build?" + urlencode(params),
                body=archive,
                headers={"Content-Type": "application/x-tar"},
                timeout=None,
                on_sent=on_sent,
            )
        except EngineHTTPError as e:
            raise _build_refused(e.status, e.message) from e
        try:
            yield from _json_messages(response)
        except OSError as e:
            raise _unavailable(e, self.endpoint) from e
        finally:
            response.close()
        for extra in tags[1:]:
            self.tag(tags[0], extra)

    def tag(self, source: str, target: str) -> None:
        repo, _, tag = target.rpartition(":")
        if "/" in tag or not repo:
            repo, tag = target, "latest"
        query = urlencode({"repo": repo, "tag": tag})
        try:
            self._transport().request("POST", f"/images/{_path(source)}/tag?{query}").close()
        except EngineHTTPError as e:
            raise EngineUnavailable(f"Tagging {source} as {target} failed: {e.message}.") from e

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        try:
            found = _get_json(self._transport(), f"/images/{_path(ref)}/json")
        except EngineHTTPError as e:
            if e.status in (400, 404):
                return None
            raise _failed(f"inspect {ref}", e) from e
        return dict(found) if isinstance(found, dict) else None

    def _engine_info(self) -> dict[str, Any]:
        """``GET /info``, asked once per engine object."""
        if self._info is None:
            got = _get_json(self._transport(), "/info")
            self._info = dict(got) if isinstance(got, dict) else {}
        return self._info

    def local_config(self, image_id: str) -> bytes | None:
        """The raw config of ``image_id`` read from the engine's own image store, when
        the engine is local and this process may read its data root; else None.

        The store is the engine's private layout (``<DockerRootDir>/image/<driver>/
        imagedb/content/sha256/<hex>``, the same since engine 1.10), so what is read is
        trusted only because it hashes to the image ID, which *is* the SHA-256 of the
        raw config: a file that does not is ignored, and :meth:`image_config` falls
        back to ``docker save``.  This saves a whole image export (tens of ms for a
        small image, seconds for a large one) whenever only the config is wanted.
        """
        hexid = image_id.removeprefix("sha256:")
        found = self._local_root() if _HEX64.fullmatch(hexid) else None
        if found is None:
            return None
        root, driver = found
        path = os.path.join(root, "image", driver, "imagedb", "content", "sha256", hexid)
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_CONFIG + 1)
        except OSError:
            return None
        if len(data) > _MAX_CONFIG or hashlib.sha256(data).hexdigest() != hexid:
            return None
        return data

    def _local_root(self) -> tuple[str, str] | None:
        """``(DockerRootDir, storage driver)`` of a local engine, else None."""
        if self._local is None:
            return None
        try:
            info = self._engine_info()
        except (EscrowError, EngineHTTPError):
            return None
        root, driver = info.get("DockerRootDir"), info.get("Driver")
        if not isinstance(root, str) or not isinstance(driver, str) or "/" in driver:
            return None
        return root, driver

    def local_layer(self, diff_ids: Sequence[str], index: int) -> Iterator[bytes] | None:
        """Layer ``index`` of an image whose layers are ``diff_ids``, as the uncompressed
        tar ``docker save`` would give, rebuilt from the engine's own layer store; None
        when the engine is not local, its storage driver is not ``overlay2``, or this
        process cannot read the layer's files.

        The engine keeps each layer as a directory of files (``<root>/overlay2/
        <cache-id>/diff``) and, beside it, the layer's tar stream with the files' contents
        left out (``<root>/image/overlay2/layerdb/sha256/<chain ID>/tar-split.json.gz``:
        tar-split's format, one JSON entry per line — a segment of the stream, or a file
        to read back).  Writing the segments and the files' bytes in order gives the
        tar again, byte for byte.  The layout is private to the engine, so what this
        yields must be trusted only once its SHA-256 is the diff ID (the caller checks,
        and uses ``docker save`` otherwise).  It may raise :class:`OSError` or
        ``ValueError`` part way (a layer removed meanwhile, say).
        """
        found = self._local_root()
        if found is None or not 0 <= index < len(diff_ids):
            return None
        root, driver = found
        if driver != "overlay2":
            return None
        chain = str(diff_ids[0])
        for diff_id in diff_ids[1 : index + 1]:
            chain = "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        hexid = chain.removeprefix("sha256:")
        if not _HEX64.fullmatch(hexid):
            return None
        layer = os.path.join(root, "image", driver, "layerdb", "sha256", hexid)
        try:
            with open(os.path.join(layer, "diff"), encoding="ascii") as f:
                if f.read().strip() != str(diff_ids[index]):
                    return None
            with open(os.path.join(layer, "cache-id"), encoding="ascii") as f:
                cache_id = f.read().strip()
        except (OSError, ValueError):
            return None
        if not re.fullmatch(r"[0-9a-zA-Z]{1,128}", cache_id):
            return None
        files = os.path.join(root, driver, cache_id, "diff")
        split = os.path.join(layer, "tar-split.json.gz")
        if not os.path.isdir(files) or not os.access(split, os.R_OK):
            return None
        return _tar_from_split(split, files)

    def image_config(self, image_id: str) -> dict[str, Any]:
        """The image's raw config: from the engine's image store when this machine can
        read it (:meth:`local_config`), else from ``docker save``, read only up to the
        config JSON (``<hex>.json``).

        The inspect endpoint has no history and the history endpoint lacks
        ``empty_layer``; only the raw config has both.
        """
        local = self.local_config(image_id)
        if local is not None:
            config = json.loads(local)
            if isinstance(config, dict):
                return config
        hexid = image_id.removeprefix("sha256:")
        names = {f"{hexid}.json", f"blobs/sha256/{hexid}"}
        response = self._save([image_id], timeout=60.0)
        try:
            with tarfile.open(fileobj=response, mode="r|") as t:  # type: ignore[call-overload]
                for member in t:
                    if member.name in names:
                        f = t.extractfile(member)
                        if f is None:
                            break
                        found: dict[str, Any] = json.loads(f.read())
                        return found
        except tarfile.TarError as e:
            raise EngineUnavailable(
                f"The Docker Engine sent an unreadable image archive for {image_id}: {e}."
            ) from e
        except OSError as e:
            raise _unavailable(e, self.endpoint) from e
        finally:
            response.close()
        raise EngineUnavailable(f"The Docker Engine's export of {image_id} holds no image config.")

    def save(self, names: Sequence[str], *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """``docker save`` of ``names`` (one archive, each layer once), as a byte stream.

        :class:`InputError` when an image is not in the engine."""
        return self._chunks(self._save(names, timeout=None), chunk_size)

    def _save(self, names: Sequence[str], *, timeout: float | None) -> _Response:
        query = urlencode([("names", n) for n in names])
        try:
            return self._transport().request("GET", f"/images/get?{query}", timeout=timeout)
        except EngineHTTPError as e:
            if e.status == 404:
                raise InputError(f"An image is not in the Docker Engine: {e.message}.") from e
            raise _failed("save images", e) from e

    def _chunks(self, response: _Response, size: int) -> Iterator[bytes]:
        try:
            while chunk := response.read(size):
                yield chunk
        except OSError as e:
            raise _unavailable(e, self.endpoint) from e
        finally:
            response.close()

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def __enter__(self) -> DockerEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def history(self, image_id: str) -> list[dict[str, Any]]:
        try:
            got = _get_json(self._transport(), f"/images/{_path(image_id)}/history")
        except EngineHTTPError as e:
            raise _failed(f"give the history of {image_id}", e) from e
        return list(reversed(got)) if isinstance(got, list) else []

    def remove_leftovers(self, images: Sequence[str]) -> int:
        import time

        transport = self._transport()

        def descendants() -> tuple[dict[str, Any], list[str]]:
            """Every image, and ours: the step images and all made on top of them."""
            listed = _get_json(transport, "/images/json?all=1")
            ids = {str(i.get("Id")): i for i in listed if isinstance(i, dict)}
            found = [i for i in ids if any(i.removeprefix("sha256:").startswith(s) for s in images)]
            for image in found:  # grows as it goes: children, grandchildren…
                found.extend(
                    i for i, info in ids.items() if info.get("ParentId") == image and i not in found
                )
            return ids, found

        # The engine finishes the step it was running when the build was stopped (commits
        # it, removes its container) after the connection closed: wait, up to 3 s, until no
        # container runs from one of our images and no new image appeared for 0.25 s.
        deadline = time.monotonic() + 3.0
        try:
            ids, ours = descendants()
            while time.monotonic() < deadline:
                time.sleep(0.25)
                running = _get_json(transport, "/containers/json?all=1")
                busy = any(isinstance(c, dict) and str(c.get("ImageID")) in ours for c in running)
                ids, now = descendants()
                if not busy and now == ours:
                    break
                ours = now
        except EngineHTTPError:
            return 0

        def depth(image: str) -> int:
            parent = str(ids[image].get("ParentId") or "")
            return 1 + depth(parent) if parent in ours else 0

        removed = 0
        for image in sorted(ours, key=depth, reverse=True):  # children before parents
            if [t for t in ids[image].get("RepoTags") or [] if t != "<none>:<none>"]:
                continue  # tagged: not a leftover
            try:
                transport.request("DELETE", f"/images/{_path(image)}?noprune=1").close()
                removed += 1
            except EngineHTTPError:
                pass  # in use, or gone already
        return removed

    def remove_step_images(self, images: Sequence[str]) -> int:
        transport = self._transport()
        removed = 0
        for image in images:
            try:
                found = _get_json(transport, f"/images/{_path(image)}/json")
            except EngineHTTPError:
                continue  # gone already
            if not isinstance(found, dict) or [
                t for t in found.get("RepoTags") or [] if t != "<none>:<none>"
            ]:
                continue  # tagged: someone's image now
            try:
                transport.request("DELETE", f"/images/{_path(image)}?noprune=1").close()
                removed += 1
            except EngineHTTPError:
                pass  # an image built on it, or a container: in use
        return removed

    def pull(self, ref: str, platform: str | None = None) -> str | None:
        import docker

        repo, tag = _split_ref(ref)
        digest: str | None = None
        try:
            for msg in self.api.pull(repo, tag=tag, platform=platform, stream=True, decode=True):
                if isinstance(msg, dict) and msg.get("error"):
                    raise InputError(f"Pulling {ref} failed: {str(msg['error']).rstrip('.')}.")
                status = str(msg.get("status", "")) if isinstance(msg, dict) else ""
                if status.startswith("Digest: sha256:"):
                    digest = status.removeprefix("Digest: ").strip()
        except docker.errors.APIError as e:
            raise InputError(f"Pulling {ref} failed: {e.explanation or e}.") from e
        except self._errors() as e:
            raise _unavailable(e, self.endpoint) from e
        return digest

    def push(self, ref: str) -> dict[str, Any]:
        """Push ``ref`` (``HOST/REPO:TAG``); the engine's result ``{"Tag", "Digest",
        "Size"}``.  :class:`InputError` when the engine reports a failure."""
        import docker

        repo, tag = _split_ref(ref)
        result: dict[str, Any] = {}
        try:
            for msg in self.api.push(repo, tag=tag, stream=True, decode=True):
                if not isinstance(msg, dict):
                    continue
                if msg.get("error"):
                    raise InputError(f"Pushing {ref} failed: {str(msg['error']).rstrip('.')}.")
                if isinstance(msg.get("aux"), dict) and msg["aux"].get("Digest"):
                    result = dict(msg["aux"])
        except docker.errors.APIError as e:
            raise InputError(f"Pushing {ref} failed: {e.explanation or e}.") from e
        except self._errors() as e:
            raise _unavailable(e, self.endpoint) from e
        if not result:
            raise InputError(f"Pushing {ref} ended without the engine naming a digest.")
        return result


def _split_ref(ref: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` → (repo, tag-or-digest) for ``APIClient.pull``."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    repo, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return ref, "latest"
