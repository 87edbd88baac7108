"""A registry client on the ``oras`` library (OCI distribution), checking every digest.

:class:`RegistryClient` is what escrow asks of a registry: manifests (raw
bytes, their SHA-256 checked against the digest asked for or announced),
blobs (streamed, hashed while they arrive, refused when the bytes do not
match the digest), uploads, tags, deletes and the OCI referrers API.  The
HTTP work — upload sessions, authentication, URLs — is the ``oras``
package's (``oras.provider.Registry``); escrow adds fail-fast timeouts
(oras retries a refused connection for minutes), the digest checks and one
clear error per failure (:mod:`escrow.registry.errors`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import IO, Any

from escrow.registry.errors import (
    RegistryAuthError,
    RegistryIntegrityError,
    RegistryNotFound,
    RegistryUnavailable,
)
from escrow.registry.reference import is_insecure

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
_CHUNK = 1 << 20
#: blobs larger than this are uploaded in chunks (PATCH), not in one PUT
_CHUNKED = 32 << 20
#: (connect, read) timeouts in seconds; ESCROW_REGISTRY_TIMEOUT overrides the read one
_CONNECT_TIMEOUT = 5.0


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Manifest:
    """A manifest as the registry served it; ``digest`` is the SHA-256 of ``data``."""

    data: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.data)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RegistryIntegrityError(f"The manifest {self.digest} is not a JSON object.")
        return doc


def _oras_registry(host: str, insecure: bool) -> Any:
    import logging

    import oras.auth
    import oras.provider
    import requests

    # oras logs a refused token request as an error of its own ("This endpoint requires
    # a token…"), which Python's last-resort handler printed to stderr beside escrow's
    # one-sentence error; escrow names the refusal itself (RegistryAuthError)
    oras_log = logging.getLogger("oras")
    if not oras_log.handlers:
        oras_log.addHandler(logging.NullHandler())
    read_timeout = float(os.environ.get("ESCROW_REGISTRY_TIMEOUT", "300"))

    class _Session(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", (_CONNECT_TIMEOUT, read_timeout))
            return super().request(*args, **kwargs)

    class _Registry(oras.provider.Registry):  # type: ignore[misc]
        def do_request(self, *args: Any, **kwargs: Any) -> Any:
            # oras' own do_request retries connection errors for minutes; escrow fails fast
            return oras.provider.Registry.do_request.__wrapped__(self, *args, **kwargs)

    reg = _Registry(hostname=host, insecure=insecure)
    token_auth = reg.auth.authenticate_request

    def authenticate_request(original: Any, headers: Any, refresh: bool = False) -> Any:
        # a registry asking for Basic auth (htpasswd): the docker login credentials, if any
        challenge = str(original.headers.get("Www-Authenticate", ""))
        if challenge.lower().startswith("basic"):
            basic = getattr(reg.auth, "_basic_auth", None)
            if not basic:
                raise oras.auth.AuthenticationException("no basic auth credentials")
            headers = dict(headers or {})
            headers["Authorization"] = f"Basic {basic}"
            return headers, True
        try:
            return token_auth(original, headers, refresh)
        except Exception as e:  # a token service that cannot be used is a refusal
            raise oras.auth.AuthenticationException(str(e)) from e

    reg.auth.authenticate_request = authenticate_request
    from http.cookiejar import DefaultCookiePolicy

    session = _Session()
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    reg.session = session
    reg.auth.session = session
    return reg


class RegistryClient:
    """One registry (``HOST[:PORT]``); plain HTTP for loopback hosts (see
    :func:`~escrow.registry.reference.is_insecure`)."""

    def __init__(self, host: str, *, insecure: bool | None = None) -> None:
        self.host = host
        self.insecure = is_insecure(host) if insecure is None else insecure
        self._reg = _oras_registry(host, self.insecure)
        self._auth_loaded = False
        self._api_checked = False
        self._referrers: dict[str, bool] = {}

    @property
    def base_url(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    # -- plumbing -----------------------------------------------------------
    def _container(self, repository: str) -> Any:
        import oras.container

        return oras.container.Container(f"{self.host}/{repository}", registry=self.host)

    def _request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
        stream: bool = False,
        ok: tuple[int, ...] = (200,),
        missing_ok: bool = False,
    ) -> Any:
        import oras.auth
        import requests

        if not url.startswith("http"):
            url = f"{'http' if self.insecure else 'https'}://{url}"
        if not self._auth_loaded:
            self._auth_loaded = True
            try:
                custom = _docker_config()
                if custom is not None:  # DOCKER_CONFIG: the docker CLI's file, not ~/.docker's
                    self._reg.auth._auth_config = custom
                self._reg.auth.load_configs(self._container("escrow/probe"))
            except Exception:  # noqa: BLE001, S110 - no usable docker config: anonymous access
                pass
        try:
            response = self._reg.do_request(
                url, method, data=data, headers=dict(headers or {}), stream=stream
            )
        except requests.exceptions.SSLError as e:
            raise RegistryUnavailable(
                f"The TLS handshake with the registry {self.host} failed while {what}.",
                hint="Check its certificate, or list it in ESCROW_INSECURE_REGISTRIES if it "
                "speaks plain HTTP.",
            ) from e
        except requests.exceptions.RequestException as e:
            raise RegistryUnavailable(
                f"The registry {self.host} is not reachable while {what} ({type(e).__name__}).",
                hint="Check the address and that the registry is running.",
            ) from e
        except (ValueError, oras.auth.AuthenticationException) as e:
            raise RegistryAuthError(
                f"The registry {self.host} asks for credentials escrow does not have while {what}.",
                hint=f"Log in first (docker login {self.host}).",
            ) from e
        status = int(response.status_code)
        if status in ok:
            return response
        body = ""
        try:  # a streamed answer's error document too (a manifest read): its first bytes
            body = (
                response.raw.read(300, decode_content=True).decode("utf-8", "replace")
                if stream
                else response.text[:300]
            )
        except Exception:  # noqa: BLE001, S110 - the status alone is reported then
            pass
        response.close()
        if status in (401, 403):
            raise RegistryAuthError(
                f"The registry {self.host} refused access ({status}) while {what}.",
                hint=f"Log in with an account that may do this (docker login {self.host}).",
            )
        if status == 404:
            if not self._api_checked:  # a 404 from a web server that is no registry at all
                self._check_api()
            if missing_ok:
                return None
            raise RegistryNotFound(f"The registry {self.host} has no such thing while {what}.")
        if status >= 500:
            raise RegistryUnavailable(
                f"The registry {self.host} failed ({status}) while {what}: {_error_text(body)}."
            )
        raise RegistryUnavailable(
            f"The registry {self.host} answered {status} while {what}: {_error_text(body)}."
        )

    # -- the API -------------------------------------------------------------
    def ping(self) -> None:
        """``GET /v2/``: reachable, speaks the distribution API, lets us in."""
        self._check_api(ok=(200, 404))  # a 401 is refused as for any other request

    def _check_api(self, ok: tuple[int, ...] = (200, 401, 404)) -> None:
        """:class:`RegistryUnavailable` when ``HOST`` answers ``GET /v2/`` with 404:
        a server on that address, but not a container registry (a wrong port)."""
        self._api_checked = True
        response = self._request("GET", f"{self.host}/v2/", what="checking its API version", ok=ok)
        if response.status_code == 404:
            response.close()
            raise _not_a_registry(self.host, "GET /v2/ answered 404")

    def manifest(
        self, repository: str, ref: str, *, accept: tuple[str, ...] = MANIFEST_TYPES
    ) -> Manifest:
        """The manifest ``ref`` (tag or digest); its bytes must hash to the digest asked
        for, or (by tag) to the ``Docker-Content-Digest`` the registry announces."""
        got = self.find_manifest(repository, ref, accept=accept)
        if got is None:
            raise RegistryNotFound(
                f"The registry {self.host} has no manifest {repository}:{ref}"
                if not ref.startswith("sha256:")
                else f"The registry {self.host} has no manifest {repository}@{ref}.",
                hint="Check the repository and tag (skopeo inspect shows what is there).",
            )
        return got

    def find_manifest(
        self, repository: str, ref: str, *, accept: tuple[str, ...] = MANIFEST_TYPES
    ) -> Manifest | None:
        c = self._container(repository)
        response = self._request(
            "GET",
            c.manifest_url(ref),
            what=f"reading the manifest {_at(repository, ref)}",
            headers={"Accept": ", ".join(accept)},
            missing_ok=True,
            stream=True,
        )
        if response is None:
            return None
        data = _bounded_body(response, self.host, f"the manifest {_at(repository, ref)}")
        ctype = str(response.headers.get("Content-Type", "")).split(";")[0].strip()
        if ctype not in MANIFEST_TYPES and not _json_object(data):
            raise _not_a_registry(
                self.host,
                f"it answered the request for the manifest {_at(repository, ref)} with "
                f"{ctype or 'content of no type'}, not a manifest",
            )
        digest = sha256_digest(data)
        expected = (
            ref if ref.startswith("sha256:") else response.headers.get("Docker-Content-Digest")
        )
        if expected and expected != digest:
            raise RegistryIntegrityError(
                f"The registry {self.host} served a manifest for {repository}"
                f"{'@' if ref.startswith('sha256:') else ':'}{ref} whose bytes hash to "
                f"{digest}, not {expected} (corrupted or substituted); nothing was used.",
                hint="Do not trust this registry's copy; re-push the image from a trusted source.",
            )
        media_type = str(response.headers.get("Content-Type", "")).split(";")[0].strip()
        if media_type not in MANIFEST_TYPES:
            try:
                media_type = str(json.loads(data).get("mediaType") or media_type)
            except (ValueError, AttributeError):
                pass
        return Manifest(data, media_type, digest)

    def head_manifest(self, repository: str, ref: str) -> str | None:
        """The digest of manifest ``ref``, or ``None`` when there is none (one HEAD)."""
        c = self._container(repository)
        response = self._request(
            "HEAD",
            c.manifest_url(ref),
            what=f"looking up {_at(repository, ref)}",
            headers={"Accept": ", ".join(MANIFEST_TYPES)},
            missing_ok=True,
        )
        if response is None:
            return None
        digest = response.headers.get("Docker-Content-Digest")
        if not digest:  # a registry that does not announce it: read and hash
            got = self.find_manifest(repository, ref)
            return None if got is None else got.digest
        return str(digest)

    def put_manifest(self, repository: str, ref: str, data: bytes, media_type: str) -> str:
        """Store manifest ``data`` under ``ref`` (a tag, or its own digest); its digest."""
        digest = sha256_digest(data)
        c = self._container(repository)
        response = self._request(
            "PUT",
            c.manifest_url(ref),
            what=f"storing the manifest {repository}:{ref}",
            headers={"Content-Type": media_type},
            data=data,
            ok=(200, 201, 202),
        )
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != digest:
            raise RegistryIntegrityError(
                f"The registry {self.host} stored the manifest {repository}:{ref} as "
                f"{announced}, not as the {digest} escrow sent."
            )
        return digest

    def delete_manifest(self, repository: str, digest: str) -> bool:
        c = self._container(repository)
        response = self._request(
            "DELETE",
            c.manifest_url(digest),
            what=f"deleting the manifest {repository}@{digest}",
            ok=(200, 202),
            missing_ok=True,
        )
        return response is not None

    def tags(self, repository: str) -> list[str]:
        """Every tag of ``repository`` (``[]`` when it does not exist yet)."""
        c = self._container(repository)
        url: str | None = f"{self.base_url.split('://')[0]}://{c.tags_url(N=1000)}"
        out: list[str] = []
        seen: set[str] = set()
        while url:
            if url in seen or not _same_registry(url, self.host):
                raise _not_a_registry(
                    self.host,
                    f"its tag list of {repository} links to "
                    + ("a page it already sent" if url in seen else "another server"),
                )
            seen.add(url)
            response = self._request(
                "GET", url, what=f"listing the tags of {repository}", missing_ok=True
            )
            if response is None:
                return out
            try:
                doc = response.json()
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                raise _not_a_registry(
                    self.host, f"it answered the tag list of {repository} with no JSON object"
                )
            tags = doc.get("tags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise _not_a_registry(
                    self.host, f"it answered the tag list of {repository} with no list of tags"
                )
            out.extend(tags)
            link = response.links.get("next", {}).get("url")
            url = f"{self.base_url}{link}" if link and link.startswith("/") else link
        return out

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size of blob ``digest`` in ``repository``, or ``None`` when it has none."""
        c = self._container(repository)
        response = self._request(
            "HEAD", c.get_blob_url(digest), what=f"looking up the blob {digest}", missing_ok=True
        )
        if response is None:
            return None
        return int(response.headers.get("Content-Length", "0"))

    def blob_chunks(self, repository: str, digest: str) -> Generator[bytes, None, None]:
        """Blob ``digest`` as chunks; after the last chunk its SHA-256 is checked, and a
        mismatch is a :class:`RegistryIntegrityError` (consume it all before trusting it)."""
        import requests

        c = self._container(repository)
        response = self._request(
            "GET", c.get_blob_url(digest), what=f"reading the blob {digest}", stream=True
        )
        h = hashlib.sha256()
        try:
            for chunk in response.iter_content(_CHUNK):
                h.update(chunk)
                yield chunk
        except requests.exceptions.RequestException as e:
            raise RegistryUnavailable(
                f"The registry {self.host} broke off while sending the blob {digest}."
            ) from e
        finally:
            response.close()
        if "sha256:" + h.hexdigest() != digest:
            raise RegistryIntegrityError(
                f"The registry {self.host} served bytes for the blob {digest} of {repository} "
                f"that hash to sha256:{h.hexdigest()} (corrupted or tampered storage).",
                hint="Nothing from this blob was used; restore it from a trusted copy.",
            )

    def blob(self, repository: str, digest: str, *, limit: int | None = None) -> bytes:
        """Blob ``digest`` in memory, checked against its digest; with ``limit``, one
        larger than ``limit`` bytes is refused as it arrives."""
        parts: list[bytes] = []
        size = 0
        chunks = self.blob_chunks(repository, digest)
        for chunk in chunks:
            size += len(chunk)
            if limit is not None and size > limit:
                chunks.close()
                raise RegistryIntegrityError(
                    f"The registry {self.host} sent more than {limit >> 20} MiB for the blob "
                    f"{digest} of {repository}, more than it can hold; nothing was used."
                )
            parts.append(chunk)
        return b"".join(parts)

    def blob_to_file(self, repository: str, digest: str, out: IO[bytes]) -> int:
        n = 0
        for chunk in self.blob_chunks(repository, digest):
            out.write(chunk)
            n += len(chunk)
        return n

    def put_blob(self, repository: str, path: str, digest: str, size: int) -> bool:
        """Upload the file ``path`` as blob ``digest`` (oras: monolithic or chunked);
        ``False`` when the registry already had it."""
        import oras.auth
        import requests

        if self.blob_size(repository, digest) is not None:
            return False
        layer = {"digest": digest, "size": size, "mediaType": "application/octet-stream"}
        try:
            response = self._reg.upload_blob(
                path, self._container(repository), layer, do_chunked=size > _CHUNKED
            )
        except requests.exceptions.RequestException as e:
            raise RegistryUnavailable(
                f"The registry {self.host} is not reachable while uploading the blob {digest}."
            ) from e
        except (ValueError, oras.auth.AuthenticationException) as e:
            raise RegistryAuthError(
                f"The registry {self.host} refused the upload of the blob {digest} ({e}).",
                hint=f"Log in with an account that may push (docker login {self.host}).",
            ) from e
        if response.status_code in (401, 403):
            raise RegistryAuthError(
                f"The registry {self.host} refused the upload of the blob {digest} "
                f"({response.status_code}).",
                hint=f"Log in with an account that may push (docker login {self.host}).",
            )
        if response.status_code not in (200, 201, 202):
            raise RegistryUnavailable(
                f"The registry {self.host} did not accept the blob {digest} "
                f"({response.status_code}: {_error_text(response.text)})."
            )
        return True

    def put_blob_bytes(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        if self.blob_size(repository, digest) is not None:
            return digest
        fd, tmp = tempfile.mkstemp(prefix="escrow-blob-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.put_blob(repository, tmp, digest, len(data))
        finally:
            os.unlink(tmp)
        return digest

    def delete_blob(self, repository: str, digest: str) -> bool:
        c = self._container(repository)
        response = self._request(
            "DELETE",
            c.get_blob_url(digest),
            what=f"deleting the blob {digest}",
            ok=(200, 202),
            missing_ok=True,
        )
        return response is not None

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The OCI 1.1 referrers of ``digest``, or ``None`` when the registry has no
        referrers API (then the tag scheme ``sha256-<hex>.att`` is the way)."""
        if self._referrers.get(repository) is False:
            return None
        c = self._container(repository)
        url = f"{self.host}/v2/{c.api_prefix}/referrers/{digest}"
        response = self._request(
            "GET",
            url,
            what=f"asking for the referrers of {digest}",
            headers={"Accept": OCI_INDEX},
            missing_ok=True,
            stream=True,
        )
        ctype = "" if response is None else str(response.headers.get("Content-Type", ""))
        if response is None or not ctype.startswith(OCI_INDEX):
            if response is not None:
                response.close()
            self._referrers[repository] = False
            return None
        self._referrers[repository] = True
        try:
            doc = json.loads(_bounded_body(response, self.host, f"the referrers of {digest}"))
        except ValueError:
            doc = None
        manifests = doc.get("manifests") if isinstance(doc, dict) else None
        if manifests is None and isinstance(doc, dict):
            manifests = []
        if not isinstance(manifests, list) or not all(
            isinstance(m, dict) and _is_digest(m.get("digest")) for m in manifests
        ):
            raise RegistryIntegrityError(
                f"The registry {self.host} answered the request for the referrers of "
                f"{digest} with something that is not an OCI image index; nothing was used."
            )
        return manifests


#: the most a manifest or index may hold (the distribution spec lets registries refuse
#: larger ones; 4 MiB is what they commonly allow)
MAX_MANIFEST = 4 << 20


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", value) is not None


def _bounded_body(response: Any, host: str, what: str, limit: int = MAX_MANIFEST) -> bytes:
    """The body of a response streamed with ``stream=True``, refused beyond ``limit``
    bytes and beyond the registry read timeout in all (a registry that sends a byte now
    and then never times out a read)."""
    import requests

    deadline = time.monotonic() + float(os.environ.get("ESCROW_REGISTRY_TIMEOUT", "300"))
    parts: list[bytes] = []
    size = 0
    # read1 returns what has arrived (iter_content waits for whole chunks, so a drip of
    # a byte now and then would never reach the deadline check)
    read1 = getattr(response.raw, "read1", None)
    chunks = (
        iter(lambda: read1(64 << 10, decode_content=True), b"")
        if read1 is not None
        else response.iter_content(64 << 10)
    )
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise RegistryIntegrityError(
                    f"The registry {host} sent more than {limit >> 20} MiB for {what}, more "
                    "than any manifest holds; nothing was used."
                )
            if time.monotonic() > deadline:
                raise RegistryUnavailable(
                    f"The registry {host} took longer than ESCROW_REGISTRY_TIMEOUT to send "
                    f"{what}; nothing was used."
                )
            parts.append(chunk)
    except requests.exceptions.RequestException as e:
        raise RegistryUnavailable(f"The registry {host} broke off while sending {what}.") from e
    finally:
        response.close()
    return b"".join(parts)


def _same_registry(url: str, host: str) -> bool:
    """Whether ``url`` (with or without its scheme) is on the registry ``host``: a
    pagination link elsewhere would be sent the registry's credentials."""
    from urllib.parse import urlsplit

    netloc = urlsplit(url if "://" in url else f"//{url}").netloc
    return netloc.lower() == host.lower()


def _at(repository: str, ref: str) -> str:
    """``REPO@sha256:…`` for a digest, ``REPO:TAG`` for a tag."""
    return f"{repository}{'@' if ref.startswith('sha256:') else ':'}{ref}"


def _json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


class NotARegistry(RegistryUnavailable):
    """An address that answers, but not as a container registry does (a wrong port)."""


def _not_a_registry(host: str, why: str) -> RegistryUnavailable:
    return NotARegistry(
        f"The server at {host} is not a container registry ({why}).",
        hint="Check the address and port of the registry.",
    )


def _docker_config() -> dict[str, Any] | None:
    """The credentials of ``$DOCKER_CONFIG/config.json`` in oras' shape, or ``None``
    when ``DOCKER_CONFIG`` is unset (oras then reads ``~/.docker/config.json``).

    ``docker login`` writes where ``DOCKER_CONFIG`` points, and the engine's pushes
    and pulls read it there: escrow's own reads must use the same credentials.
    """
    folder = os.environ.get("DOCKER_CONFIG")
    if not folder:
        return None
    try:
        with open(os.path.join(os.path.expanduser(folder), "config.json"), "rb") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        cfg = {}
    if not isinstance(cfg, dict):
        cfg = {}
    return {
        "auths": dict(cfg.get("auths") or {}),
        "credsStore": cfg.get("credsStore"),
        "credHelpers": dict(cfg.get("credHelpers") or {}),
    }


def _error_text(body: str) -> str:
    try:
        doc = json.loads(body)
        errors = doc.get("errors") or []
        text = "; ".join(
            f"{e.get('code', '')} {e.get('message', '')}".strip()
            for e in errors
            if isinstance(e, dict)
        )
        return text or body.strip()[:200] or "no details"
    except (ValueError, AttributeError):
        return body.strip()[:200] or "no details"
