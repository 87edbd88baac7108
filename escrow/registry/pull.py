"""Pulling and pushing through the Docker Engine, with the registry's failures named.

The engine does the distribution work (it checks every digest it pulls);
escrow turns its messages into one clear error each, and checks what the
engine says it pushed against the registry itself (an independent read with
:class:`~escrow.registry.client.RegistryClient`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from escrow.errors import EscrowError, InputError
from escrow.registry.errors import (
    RegistryAuthError,
    RegistryIntegrityError,
    RegistryNotFound,
    RegistryUnavailable,
)
from escrow.registry.reference import Reference

if TYPE_CHECKING:
    from escrow.capture.engine import DockerEngine

_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "timeout exceeded",
    "connection reset",
    "no route to host",
    "server gave http response to https client",
    "tls:",
)
_AUTH = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "denied",
    "401",
    "403",
)
_INTEGRITY = ("digest", "did not match", "verification failed", "checksum")
_MISSING = ("manifest unknown", "not found", "name unknown", "404")


def classify(reference: str, message: str, action: str) -> EscrowError:
    """One clear error for an engine message about ``reference``."""
    text = message.lower()
    host = Reference.parse(reference).registry if "/" in reference else "docker.io"
    if any(k in text for k in _UNREACHABLE):
        return RegistryUnavailable(
            f"{action} {reference} failed: the registry {host} is not reachable "
            f"({message.rstrip('.')}); nothing was recorded.",
            hint="Check the address and that the registry is running.",
        )
    if any(k in text for k in _AUTH):
        return RegistryAuthError(
            f"{action} {reference} failed: the registry {host} refused access "
            f"({message.rstrip('.')}); nothing was recorded.",
            hint=f"Log in first (docker login {host}).",
        )
    if any(k in text for k in _INTEGRITY) and not any(k in text for k in _MISSING):
        return RegistryIntegrityError(
            f"{action} {reference} failed: the registry's bytes do not match their digest "
            f"({message.rstrip('.')}); nothing was recorded.",
            hint="The registry's copy is corrupted or was tampered with; re-push it from a "
            "trusted source.",
        )
    if any(k in text for k in _MISSING):
        return RegistryNotFound(
            f"{action} {reference} failed: the registry {host} has no such image "
            f"({message.rstrip('.')}).",
            hint="Check the name, tag or digest in the FROM line.",
        )
    return InputError(f"{action} {reference} failed: {message.rstrip('.')}.")


def pull_error(reference: str, error: InputError) -> EscrowError:
    message = error.message.split(" failed: ", 1)[-1]
    return classify(reference, message, "Pulling the base image")


def check_push_tags(tags: list[str] | tuple[str, ...]) -> None:
    """Before a build with ``--push``: every tag names a registry host."""
    for tag in tags:
        ref = Reference.parse(tag)
        if ref.registry == "docker.io" or "@" in tag:
            raise InputError(
                f"--push needs tags of the form HOST[:PORT]/REPO:TAG; {tag!r} names no registry.",
                hint="Tag the build with -t registry.example:5000/team/app:1.",
            )


def push_image(engine: DockerEngine, tag: str) -> dict[str, Any]:
    """Push ``tag`` and check the registry now holds that manifest under the tag.

    Returns ``{"reference", "repository", "digest", "size"}`` (``digest`` is the
    registry manifest digest).  Raises a registry error; nothing is returned
    for a push the registry does not confirm.
    """
    from escrow.registry.client import RegistryClient

    ref = Reference.parse(tag)
    try:
        aux = engine.push(tag)
    except InputError as e:
        message = e.message.split(" failed: ", 1)[-1]
        raise classify(tag, message, "Pushing") from e
    digest = str(aux.get("Digest", ""))
    client = RegistryClient(ref.registry)
    # the registry itself, read independently, must name the same manifest for the tag
    manifest = client.manifest(ref.repository, ref.tag or "latest")
    if manifest.digest != digest:
        raise RegistryIntegrityError(
            f"The engine pushed {tag} as {digest}, but the registry {ref.registry} serves "
            f"{manifest.digest} for it; the push is not recorded."
        )
    return {
        "reference": str(ref.with_tag(ref.tag or "latest")),
        "repository": ref.name,
        "digest": digest,
        "size": int(aux.get("Size", 0) or 0),
        "mediaType": manifest.media_type,
        "config": str((manifest.json().get("config") or {}).get("digest", "")),
    }


def record_push(statement: dict[str, Any], pushed: list[dict[str, Any]]) -> None:
    """Add each pushed manifest digest to ``statement``: a subject beside the image
    ID, and ``predicate.image.repoDigests`` / ``predicate.image.pushed``."""
    image = statement["predicate"]["image"]
    for p in pushed:
        if p["config"] != image["id"]:
            raise RegistryIntegrityError(
                f"The manifest pushed as {p['reference']} describes the image {p['config']}, "
                f"not the build's {image['id']}; the push is not recorded."
            )
    for p in pushed:
        hexd = p["digest"].removeprefix("sha256:")
        subject = {"name": p["repository"], "digest": {"sha256": hexd}}
        if subject not in statement["subject"]:
            statement["subject"].append(subject)
        repo_digest = f"{p['repository']}@{p['digest']}"
        if repo_digest not in image["repoDigests"]:
            image["repoDigests"].append(repo_digest)
        image.setdefault("pushed", []).append(
            {"reference": p["reference"], "digest": p["digest"], "mediaType": p["mediaType"]}
        )
