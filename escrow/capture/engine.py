"""The container engine boundary: a :class:`Engine` protocol and the Docker SDK implementation.

Pure capture logic talks to :class:`Engine`; unit tests give it a fake, the
integration tests and the CLI the real :class:`DockerEngine` (the Docker SDK's
low-level ``docker.APIClient``, imported only here, only when needed).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any, Protocol

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
        archive: IO[bytes],
        *,
        dockerfile: str,
        tags: list[str],
        build_args: Mapping[str, str],
        target: str | None,
        platform: str | None,
    ) -> Iterator[dict[str, Any]]:
        """Run a no-cache build of ``archive``; yield the engine's decoded JSON messages."""
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

    def pull(self, ref: str, platform: str | None = None) -> None:
        """Pull ``ref``; :class:`InputError` when it cannot be pulled."""
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


class _ChunkReader:
    """A read-only file over an iterator of byte chunks (for streaming ``tarfile``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                break
        if n < 0:
            data, self._buf = self._buf, b""
        else:
            data, self._buf = self._buf[:n], self._buf[n:]
        return data


class DockerEngine:
    """The real Docker Engine through ``docker.APIClient``."""

    def __init__(self, api: docker.APIClient | None = None) -> None:
        self._api = api

    @property
    def api(self) -> docker.APIClient:
        if self._api is None:
            import docker
            from docker.utils import kwargs_from_env

            try:
                self._api = docker.APIClient(version="auto", **kwargs_from_env())
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
        archive: IO[bytes],
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
        try:
            chunks = self.api.get_image(image_id, chunk_size=1 << 20)
            reader = _ChunkReader(iter(chunks))
            with tarfile.open(fileobj=reader, mode="r|") as t:  # type: ignore[call-overload]
                for member in t:
                    if member.name in names:
                        f = t.extractfile(member)
                        if f is None:
                            break
                        config: dict[str, Any] = json.loads(f.read())
                        return config
        except tarfile.TarError as e:
            raise EngineUnavailable(
                f"The Docker Engine sent an unreadable image archive for {image_id}: {e}."
            ) from e
        except self._errors() as e:
            raise _unavailable(e) from e
        finally:
            close = getattr(locals().get("chunks"), "close", None)
            if close is not None:
                close()
        raise EngineUnavailable(f"The Docker Engine's export of {image_id} holds no image config.")

    def history(self, image_id: str) -> list[dict[str, Any]]:
        try:
            items: list[dict[str, Any]] = self.api.history(image_id)
        except self._errors() as e:
            raise _unavailable(e) from e
        return list(reversed(items))

    def pull(self, ref: str, platform: str | None = None) -> None:
        import docker

        repo, tag = _split_ref(ref)
        try:
            for msg in self.api.pull(repo, tag=tag, platform=platform, stream=True, decode=True):
                if isinstance(msg, dict) and msg.get("error"):
                    raise InputError(f"Pulling {ref} failed: {msg['error']}.")
        except docker.errors.APIError as e:
            raise InputError(f"Pulling {ref} failed: {e.explanation or e}.") from e
        except EscrowError:
            raise
        except self._errors() as e:
            raise _unavailable(e) from e


def _split_ref(ref: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` → (repo, tag-or-digest) for ``APIClient.pull``."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    repo, sep, tag = ref.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return ref, "latest"
