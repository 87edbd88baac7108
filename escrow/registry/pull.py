"""Pulling and pushing through the Docker Engine, with the registry's failures named.

The engine does the distribution work (it checks every digest it pulls);
escrow turns its messages into one clear error each, and checks what the
engine says it pushed against the registry itself (an independent read with
:class:`~escrow.registry.client.RegistryClient`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from escrow.errors import EnvironmentProblem, EscrowError, InputError
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
#: the engine's words for a registry that answered with a server error or a status it did
#: not expect ("received unexpected HTTP status: 500 Internal Server Error", "error parsing
#: HTTP 418 response body: …")
_SERVER = ("unexpected http status", "error parsing http", "internal server error")
#: the engine's words for a push of a tag it does not hold (20.10: "An image does not
#: exist locally with the tag: …", "tag does not exist: …"; later: "No such image: …")
_NO_LOCAL_IMAGE = ("does not exist locally", "tag does not exist", "no such image")
#: the registry's words for an upload whose bytes do not match the digest the engine named
#: (not the bare word "digest": a URL the engine quotes may hold "?digest=sha256:…")
_PUSH_INTEGRITY = ("digest invalid", "did not match", "verification failed", "checksum")


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
    if any(k in text for k in _SERVER):
        return RegistryUnavailable(
            f"{action} {reference} failed: the registry {host} answered with an error "
            f"({message.rstrip('.')}); nothing was recorded.",
            hint="The registry is failing; try again once it works, or ask its operator.",
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


def push_error(tag: str, message: str) -> EscrowError:
    """One clear error for the engine's message about a failed push of ``tag``.

    The push comes after a successful build, with tags checked before it, so nothing
    the user typed is at fault: a registry that refuses, fails or cannot be reached,
    or an engine that no longer holds the tag, is an environment problem (exit 3); bytes
    the registry received that do not match their digest are a check that failed
    (exit 1).  The build itself is recorded by the caller, which says so.
    """
    text = message.lower()
    host = Reference.parse(tag).registry
    reason = message.rstrip(".")
    if any(k in text for k in _NO_LOCAL_IMAGE):
        # the build tagged the image moments ago: something removed the tag since
        return EnvironmentProblem(
            f"Pushing {tag} failed: the Docker Engine no longer holds an image tagged {tag}, "
            "so something removed the tag after the build.",
            hint="Nothing else should remove or re-tag the image while escrow builds and "
            "pushes it; build again.",
        )
    if any(k in text for k in _UNREACHABLE + _AUTH):
        return classify(tag, message, "Pushing")
    if any(k in text for k in _PUSH_INTEGRITY):
        return RegistryIntegrityError(
            f"Pushing {tag} failed: the registry {host} received bytes that do not match "
            f"their digest ({reason}).",
            hint="Something between the engine and the registry altered the upload, or the "
            "registry is faulty; check it, then build and push again.",
        )
    from escrow.registry.client import RegistryClient

    try:  # an address that answers but is no registry at all is named as such
        RegistryClient(host).ping()
    except EnvironmentProblem as problem:
        return problem
    except EscrowError:
        pass
    return RegistryUnavailable(
        f"Pushing {tag} failed: the registry {host} refused or failed the push ({reason}).",
        hint="The registry is failing or does not accept this image; check its logs, then "
        "build and push again.",
    )


def check_push_tags(tags: list[str] | tuple[str, ...]) -> None:
    """Before a build with ``--push``: every tag names a registry host, and no host
    is an address that answers but is not a registry (a wrong port).

    That is known for certain before the build, and the engine would only find it
    after it, retrying the push for most of a minute.  A registry that cannot be
    reached or refuses escrow's own request (it may need the engine's credentials or
    TLS settings) is left to the push, which names what went wrong.
    """
    hosts: list[str] = []
    for tag in tags:
        ref = Reference.parse(tag)
        if ref.registry == "docker.io" or "@" in tag:
            raise InputError(
                f"--push needs tags of the form HOST[:PORT]/REPO:TAG; {tag!r} names no registry.",
                hint="Tag the build with -t registry.example:5000/team/app:1.",
            )
        if ref.registry not in hosts:
            hosts.append(ref.registry)
    from escrow.registry.client import NotARegistry, RegistryClient

    for host in hosts:
        try:
            RegistryClient(host).ping()
        except NotARegistry:
            raise
        except EscrowError:
            pass  # the push names it, if it still fails then


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
        if " failed: " not in e.message:  # the push ended without the engine naming a digest
            raise EnvironmentProblem(
                f"Pushing {tag} failed: the Docker Engine finished it without naming the "
                "manifest digest it pushed."
            ) from e
        raise push_error(tag, e.message.split(" failed: ", 1)[-1]) from e
    digest = str(aux.get("Digest", ""))
    client = RegistryClient(ref.registry)
    # the registry itself, read independently, must name the same manifest for the tag
    try:
        manifest = client.manifest(ref.repository, ref.tag or "latest")
    except RegistryNotFound as e:
        raise RegistryUnavailable(
            f"Pushing {tag} failed: the registry {ref.registry} accepted the push but "
            "serves no manifest for that tag.",
            hint="The registry is failing (or something deleted the tag at once); check it, "
            "then build and push again.",
        ) from e
    if manifest.digest != digest:
        raise RegistryIntegrityError(
            f"Pushing {tag} failed: the engine pushed it as {digest}, but the registry "
            f"{ref.registry} serves {manifest.digest} for that tag.",
            hint="Something else pushed to the tag at the same moment, or the registry "
            "substitutes manifests; check it before trusting the tag.",
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
                f"not the build's {image['id']}."
            )
    for p in pushed:
        hexd = p["digest"].removeprefix("sha256:")
        subject = {"name": p["repository"], "digest": {"sha256": hexd}}
        if subject not in statement["subject"]:
            statement["subject"].append(subject)
        repo_digest = f"{p['repository']}@{p['digest']}"
        if repo_digest not in image["repoDigests"]:
            image["repoDigests"].append(repo_digest)
        pushed_doc = {
            "reference": p["reference"],
            "digest": p["digest"],
            "mediaType": p["mediaType"],
        }
        listed = image.setdefault("pushed", [])
        if pushed_doc not in listed:  # `-t X -t X`: one push, recorded once
            listed.append(pushed_doc)
