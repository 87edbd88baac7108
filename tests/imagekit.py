"""Helpers for tests that check which images a command leaves in the Docker Engine."""

from __future__ import annotations

from typing import Any


def all_images(docker_client: Any) -> set[str]:
    """The IDs of every image in the engine, untagged step images included."""
    return set(docker_client.api.images(all=True, quiet=True))


def images_naming(docker_client: Any, images: set[str], value: str) -> set[str]:
    """Those of ``images`` whose history names ``value`` (in a command that made a layer)."""
    import docker.errors

    out = set()
    for image in images:
        try:
            history = docker_client.api.history(image)
        except docker.errors.NotFound:
            continue
        if any(value in str(h.get("CreatedBy") or "") for h in history):
            out.add(image)
    return out
