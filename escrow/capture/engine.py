"""The container engine boundary: a :class:`Engine` protocol and the Docker SDK implementation.

Pure capture logic talks to :class:`Engine`; unit tests give it a fake, the
integration tests and the CLI the real :class:`DockerEngine` (the Docker SDK's
low-level ``docker.APIClient``, imported only here, only when needed).

On a local engine (``DOCKER_HOST`` unset or ``unix://…``) the calls a build
makes — inspect, build, tag, history, version/info, the config out of
``docker save`` — go straight to the socket with :mod:`http.client`
(:class:`_LocalSocket`), and so does ``docker save`` into the deposit store.
Importing the SDK costs ~0.15 s of CPU (``requests`` and ``urllib3``), one
sixth of a small phoenix build, on cores the engine is building with.  Pull,
push and load, and remote engines (TCP, TLS, SSH), go through the SDK.
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from escrow.errors import EngineUnavailable, EscrowError, InputError

if TYPE_CHECKING:
    import http.client

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
    ) -> Iterator[dict[str, Any]]:
        """Run a no-cache build of ``archive`` (the context tar, streamed); yield the
        engine's decoded JSON messages."""
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

    def pull(self, ref: str, platform: str | None = None) -> str | None:
        """Pull ``ref``; :class:`InputError` when it cannot be pulled.  Returns the
        registry manifest digest the engine reports (``sha256:…``), when it does."""
        ...


def _unavailable(e: BaseException) -> EngineUnavailable:
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    text = str(e)
    if "Permission denied" in text or "PermissionError" in text:
        return EngineUnavailable(
            f"Permission to use the Docker Engine at {host} was denied.",
            hint="Add your user to the `docker` group (then log in again) or run as root.",
        )
    return EngineUnavailable(
        f"The Docker Engine at {host} is not reachable.",
        hint="Start it (`sudo systemctl start docker`, or `sudo dockerd &`) "
        "or point DOCKER_HOST at a running engine.",
    )


def _check_socket(base_url: str) -> None:
    """Fail clearly (and without leaking the SDK's half-opened socket) when a local
    engine socket is missing or not permitted."""
    if base_url and not base_url.startswith(("unix://", "http+unix://")):
        return
    path = base_url.split("://", 1)[1] if base_url else "/var/run/docker.sock"
    path = "/" + path.lstrip("/")
    if not os.path.exists(path):
        raise _unavailable(FileNotFoundError(path))
    if not os.access(path, os.R_OK | os.W_OK):
        raise _unavailable(PermissionError(f"Permission denied: {path}"))


def local_socket_path() -> str | None:
    """The engine's Unix socket when ``DOCKER_HOST`` names one (or is unset), else ``None``."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return "/var/run/docker.sock"
    for scheme in ("unix://", "http+unix://"):
        if host.startswith(scheme):
            return "/" + host[len(scheme) :].lstrip("/")
    return None


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


@functools.cache
def _unix_connection_class() -> type[http.client.HTTPConnection]:
    """``http.client.HTTPConnection`` over a Unix socket (made once, on first use)."""
    import http.client
    import socket

    class UnixHTTPConnection(http.client.HTTPConnection):
        def __init__(self, path: str, timeout: float | None) -> None:
            super().__init__("localhost", timeout=timeout)
            self.socket_path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    return UnixHTTPConnection


class _LocalSocket:
    """HTTP/1.1 to the engine's Unix socket (unversioned API paths: the engine's own version)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def request(
        self,
        method: str,
        url: str,
        *,
        body: Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 60.0,
    ) -> http.client.HTTPResponse:
        """Send one request on a new connection; the response (status < 400), open."""
        import http.client

        conn = _unix_connection_class()(self.path, timeout=timeout)
        hdrs = dict(headers or {})
        try:
            if body is not None:
                hdrs.setdefault("Transfer-Encoding", "chunked")
                conn.request(method, url, body=body, headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, url, headers=hdrs)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise _unavailable(e) from e
        # hand the socket to the response: closing the response closes it (the
        # socket's file keeps it open until then)
        sock, conn.sock = conn.sock, None
        if sock is not None:
            sock.close()
        if response.status >= 400:
            try:
                data = response.read()
            finally:
                conn.close()
            try:
                message = str(json.loads(data).get("message", ""))
            except (ValueError, AttributeError):
                message = data.decode("utf-8", errors="replace").strip()
            raise EngineHTTPError(response.status, message or response.reason)
        return response

    def get_json(self, url: str) -> Any:
        response = self.request("GET", url)
        try:
            return json.loads(response.read())
        except (OSError, ValueError) as e:
            raise EngineUnavailable(f"The Docker Engine sent an unreadable answer to {url}.") from e
        finally:
            response.close()


def _json_messages(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
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


class DockerEngine:
    """The real Docker Engine: the local socket directly, else ``docker.APIClient``."""

    def __init__(self, api: docker.APIClient | None = None) -> None:
        self._api = api
        self._api_lock = threading.Lock()
        path = local_socket_path() if api is None else None
        self._local = _LocalSocket(path) if path is not None else None
        self._checked = False

    @property
    def api(self) -> docker.APIClient:
        with self._api_lock:
            if self._api is None:
                import docker
                from docker.utils import kwargs_from_env

                kwargs = kwargs_from_env()
                _check_socket(str(kwargs.get("base_url") or os.environ.get("DOCKER_HOST") or ""))
                try:
                    self._api = docker.APIClient(version="auto", **kwargs)
                except docker.errors.DockerException as e:
                    raise _unavailable(e) from e
            return self._api

    def _socket(self) -> _LocalSocket | None:
        """The local socket transport, after a clear check that the socket is usable."""
        if self._local is not None and not self._checked:
            _check_socket("unix://" + self._local.path)
            self._checked = True
        return self._local

    def _errors(self) -> tuple[type[BaseException], ...]:
        import docker
        import requests

        return (docker.errors.DockerException, requests.exceptions.ConnectionError)

    def facts(self) -> dict[str, Any]:
        local = self._socket()
        if local is not None:
            try:
                version = local.get_json("/version")
                info = local.get_json("/info")
            except EngineHTTPError as e:
                raise _failed("report its version", e) from e
        else:
            try:
                version = self.api.version()
                info = self.api.info()
            except self._errors() as e:
                raise _unavailable(e) from e
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
    ) -> Iterator[dict[str, Any]]:
        local = self._socket()
        if local is not None:
            yield from self._build_local(
                local, archive, dockerfile, tags, build_args, target, platform
            )
            for extra in tags[1:]:
                self.tag(tags[0], extra)
            return
        import docker

        try:
            stream = self.api.build(
                fileobj=archive,
                custom_context=True,
                dockerfile=dockerfile,
                tag=tags[0] if tags else None,
                buildargs=dict(build_args),
                target=target,
                platform=platform,
                nocache=True,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
                use_config_proxy=False,  # no proxy build args the manifest would not show
            )
            yield from stream
        except docker.errors.APIError as e:
            raise _build_refused(e.status_code, str(e.explanation or e)) from e
        except self._errors() as e:
            raise _unavailable(e) from e
        for extra in tags[1:]:
            self.tag(tags[0], extra)

    def _build_local(
        self,
        local: _LocalSocket,
        archive: Iterable[bytes],
        dockerfile: str,
        tags: list[str],
        build_args: Mapping[str, str],
        target: str | None,
        platform: str | None,
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
        try:
            response = local.request(
                "POST",
                "/build?" + urlencode(params),
                body=archive,
                headers={"Content-Type": "application/x-tar"},
                timeout=None,
            )
        except EngineHTTPError as e:
            raise _build_refused(e.status, e.message) from e
        try:
            yield from _json_messages(response)
        except OSError as e:
            raise _unavailable(e) from e
        finally:
            response.close()

    def tag(self, source: str, target: str) -> None:
        repo, _, tag = target.rpartition(":")
        if "/" in tag or not repo:
            repo, tag = target, "latest"
        local = self._socket()
        if local is not None:
            try:
                query = urlencode({"repo": repo, "tag": tag})
                local.request("POST", f"/images/{quote(source, safe='/:')}/tag?{query}").close()
            except EngineHTTPError as e:
                raise EngineUnavailable(f"Tagging {source} as {target} failed: {e.message}.") from e
            return
        try:
            self.api.tag(source, repo, tag)
        except self._errors() as e:
            raise EngineUnavailable(f"Tagging {source} as {target} failed: {e}.") from e

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        local = self._socket()
        if local is not None:
            try:
                found = local.get_json(f"/images/{quote(ref, safe='/:')}/json")
            except EngineHTTPError as e:
                if e.status in (400, 404):
                    return None
                raise _failed(f"inspect {ref}", e) from e
            return dict(found) if isinstance(found, dict) else None
        import docker

        try:
            data: dict[str, Any] = self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            if e.status_code in (400, 404):
                return None
            raise _unavailable(e) from e
        except self._errors() as e:
            raise _unavailable(e) from e
        return data

    def image_config(self, image_id: str) -> dict[str, Any]:
        """Stream ``docker save`` and read only the config JSON (``<hex>.json``).

        The inspect endpoint has no history and the history endpoint lacks
        ``empty_layer``; the save stream carries the raw config, and reading
        stops as soon as it is found.
        """
        hexid = image_id.removeprefix("sha256:")
        names = {f"{hexid}.json", f"blobs/sha256/{hexid}"}
        local = self._socket()
        if local is not None:
            try:
                response = local.request("GET", f"/images/{quote(image_id, safe='/:')}/get")
            except EngineHTTPError as e:
                raise _failed(f"export {image_id}", e) from e
            try:
                with tarfile.open(fileobj=response, mode="r|") as t:
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
                raise _unavailable(e) from e
            finally:
                response.close()
            raise EngineUnavailable(
                f"The Docker Engine's export of {image_id} holds no image config."
            )
        api = self.api
        try:
            # the SDK's get_image() hides the response; this is its own request, closable
            response = api._get(api._url("/images/{0}/get", image_id), stream=True)
            try:
                api._raise_for_status(response)
                with tarfile.open(fileobj=response.raw, mode="r|") as t:
                    for member in t:
                        if member.name in names:
                            f = t.extractfile(member)
                            if f is None:
                                break
                            config: dict[str, Any] = json.loads(f.read())
                            return config
            finally:
                response.close()
        except tarfile.TarError as e:
            raise EngineUnavailable(
                f"The Docker Engine sent an unreadable image archive for {image_id}: {e}."
            ) from e
        except self._errors() as e:
            raise _unavailable(e) from e
        raise EngineUnavailable(f"The Docker Engine's export of {image_id} holds no image config.")

    def save(self, names: Sequence[str], *, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """``docker save`` of ``names`` (one archive, each layer once), as a byte stream.

        :class:`InputError` when an image is not in the engine."""
        local = self._socket()
        if local is not None:
            query = urlencode([("names", n) for n in names])
            try:
                response = local.request("GET", f"/images/get?{query}", timeout=None)
            except EngineHTTPError as e:
                if e.status == 404:
                    raise InputError(
                        f"An image to deposit is not in the Docker Engine: {e.message}."
                    ) from e
                raise _failed("save images", e) from e
            return self._chunks(response, chunk_size)
        import docker.errors
        import requests.exceptions

        api = self.api
        try:
            sdk = api._get(api._url("/images/get"), params={"names": list(names)}, stream=True)
            api._raise_for_status(sdk)
        except docker.errors.NotFound as e:
            raise InputError(
                f"An image to deposit is not in the Docker Engine: {e.explanation}."
            ) from e
        except docker.errors.APIError as e:
            raise EngineUnavailable(
                f"The Docker Engine could not save images: {e.explanation}."
            ) from e
        except requests.exceptions.RequestException as e:
            raise _unavailable(e) from e

        def sdk_chunks() -> Iterator[bytes]:
            try:
                yield from sdk.iter_content(chunk_size, decode_unicode=False)
            finally:
                sdk.close()

        return sdk_chunks()

    @staticmethod
    def _chunks(response: http.client.HTTPResponse, size: int) -> Iterator[bytes]:
        try:
            while chunk := response.read(size):
                yield chunk
        except OSError as e:
            raise _unavailable(e) from e
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
        local = self._socket()
        if local is not None:
            try:
                got = local.get_json(f"/images/{quote(image_id, safe='/:')}/history")
            except EngineHTTPError as e:
                raise _failed(f"give the history of {image_id}", e) from e
            return list(reversed(got)) if isinstance(got, list) else []
        try:
            items: list[dict[str, Any]] = self.api.history(image_id)
        except self._errors() as e:
            raise _unavailable(e) from e
        return list(reversed(items))

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
        except EscrowError:
            raise
        except self._errors() as e:
            raise _unavailable(e) from e
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
        except EscrowError:
            raise
        except self._errors() as e:
            raise _unavailable(e) from e
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
