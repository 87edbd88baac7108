"""Pure parts of registry work: references, store locations, engine messages, tags."""

from __future__ import annotations

import pytest

from escrow.errors import InputError
from escrow.registry.errors import (
    RegistryAuthError,
    RegistryIntegrityError,
    RegistryNotFound,
    RegistryUnavailable,
)
from escrow.registry.reference import Reference, is_insecure

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", None, None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("team/app:1", "docker.io", "team/app", "1", None),
        ("127.0.0.1:5000/base:monthly", "127.0.0.1:5000", "base", "monthly", None),
        ("localhost/a/b", "localhost", "a/b", None, None),
        (f"reg.example/a/b@{DIGEST}", "reg.example", "a/b", None, DIGEST),
        (f"reg.example:443/a:t@{DIGEST}", "reg.example:443", "a", "t", DIGEST),
    ],
    ids=["hub-short", "hub-tag", "hub-user", "loopback", "localhost", "digest", "tag+digest"],
)
def test_references_parse_the_docker_way(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert ref.ref == (digest or tag or "latest")


@pytest.mark.parametrize(
    "text",
    ["Upper/Case", "reg.example/a@sha256:abc", "reg.example/a:bad tag", "reg.example/"],
    ids=["uppercase", "short-digest", "space-in-tag", "no-repository"],
)
def test_malformed_references_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        Reference.parse(text)


@pytest.mark.parametrize(
    ("host", "insecure"),
    [("127.0.0.1:5000", True), ("localhost:5000", True), ("[::1]:5000", True), ("ghcr.io", False)],
)
def test_only_loopback_registries_speak_plain_http(host: str, insecure: bool) -> None:
    assert is_insecure(host) is insecure


def test_deposit_store_locations() -> None:
    from escrow.deposit.oci import parse_location

    assert parse_location("oci://127.0.0.1:5000/escrow/deposits") == (
        "127.0.0.1:5000",
        "escrow/deposits",
    )
    for bad in ("oci://127.0.0.1:5000", "oci:///repo", "oci://host/Bad_Repo!"):
        with pytest.raises(InputError):
            parse_location(bad)


def test_other_url_schemes_are_refused(tmp_path: object) -> None:
    from pathlib import Path

    from escrow.deposit.store import open_store

    with pytest.raises(InputError, match="neither a folder nor an oci://"):
        open_store(Path("/nonexistent"), "s3://bucket/x")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            RegistryUnavailable,
        ),
        ('Head "http://h/v2/a/manifests/1": no basic auth credentials', RegistryAuthError),
        ("unauthorized: authentication required", RegistryAuthError),
        ("manifest for h/a:1 not found: manifest unknown: manifest unknown", RegistryNotFound),
        ("filesystem layer verification failed for digest sha256:ab", RegistryIntegrityError),
        ("something else entirely", InputError),
    ],
    ids=["refused", "no-credentials", "unauthorized", "missing", "bad-layer", "other"],
)
def test_engine_messages_become_one_clear_error(message: str, kind: type) -> None:
    from escrow.registry.pull import classify

    error = classify("127.0.0.1:5000/escrow-test/base:1", message, "Pulling the base image")
    assert type(error) is kind
    assert error.message.startswith("Pulling the base image 127.0.0.1:5000/escrow-test/base:1")


def test_attestation_tags_and_registry_targets() -> None:
    from escrow.registry.attest import attestation_tag, is_registry_reference

    assert attestation_tag(DIGEST) == "sha256-" + "ab" * 32 + ".att"
    assert is_registry_reference(f"127.0.0.1:5000/app@{DIGEST}")
    assert not is_registry_reference(f"team/app@{DIGEST}")  # no registry host named
    assert not is_registry_reference("127.0.0.1:5000/app:1")  # no digest
    assert not is_registry_reference("12")


@pytest.mark.parametrize(
    ("tag", "reason"),
    [
        ("Bad Tag!", "does not name a repository"),
        (
            "UPPER:1",
            "has upper-case letters in its name, which the engine refuses (only the tag "
            "after the colon may have them)",
        ),
        ("app:bad tag", "has a malformed tag 'bad tag'"),
        ("app@sha256:" + "a" * 64, "holds a digest"),
    ],
)
def test_build_tags_are_checked_before_a_build(tag: str, reason: str) -> None:
    from escrow.errors import UsageError
    from escrow.registry.reference import check_build_tag

    with pytest.raises(UsageError) as info:
        check_build_tag(tag)
    assert info.value.message == f"The tag {tag!r} is not a valid image name: it {reason}."
    for good in ("app", "app:1.4", "registry.local:5000/team/app:1.4", "localhost/a_b:x"):
        check_build_tag(good)
