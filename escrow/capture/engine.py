"""The container engine boundary: a :class:`Engine` protocol and the Docker SDK implementation.

Pure capture logic talks to :class:`Engine`; unit tests give it a fake, the
integration tests and the CLI the real :class:`DockerEngine` (the Docker SDK's
low-level ``docker.APIClient``, imported only here, only when needed).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

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


class DockerEngine:
    """The real Docker Engine through ``docker.APIClient``."""

    def __init__(self, api: docker.APIClient | None = None) -> None:
        self._api = api

    @property
    def api(self) -> docker.APIClient:
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

    def _errors(self) -> tuple[type[BaseException], ...]:
        import docker
        import requests

        return (docker.errors.DockerException, requests.exceptions.ConnectionError)

    def facts(self) -> dict[str, Any]:
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
            explanation = e.explanation or str(e)
            if e.status_code is not None and 400 <= e.status_code < 500:
                raise InputError(
                    f"The Docker Engine rejected the build: {explanation}.",
                    hint="Fix the Dockerfile or the build options.",
                ) from e
            raise EngineUnavailable(f"The Docker Engine failed the build: {explanation}.") from e
        except self._errors() as e:
            raise _unavailable(e) from e
        for extra in tags[1:]:
            self.tag(tags[0], extra)

    def tag(self, source: str, target: str) -> None:
        repo, _, tag = target.rpartition(":")
        if "/" in tag or not repo:
            repo, tag = target, "latest"
        try:
            self.api.tag(source, repo, tag)
        except self._errors() as e:
            raise EngineUnavailable(f"Tagging {source} as {target} failed: {e}.") from e

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
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
