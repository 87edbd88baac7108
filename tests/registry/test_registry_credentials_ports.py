"""A release engineer working through registries (credentials, wrong ports)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpkit import loopback_server

from .conftest import SCRIPT, Bases

pytestmark = [pytest.mark.registry, pytest.mark.docker]

USER, PASSWORD = "escrow-review9", "s3cret-review9"


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[str]:
    """A docker-registry of this test's own that requires basic auth (htpasswd)."""
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{_bcrypt(PASSWORD)}\n")
    root = tmp_path / "auth-registry"
    env = {
        **os.environ,
        "ESCROW_REGISTRY_DIR": str(root),
        "ESCROW_REGISTRY_HTPASSWD": str(htpasswd),
    }
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    try:
        yield out.stdout.strip()
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True)


def test_docker_config_credentials_are_used_like_docker_login_wrote_them(
    cli: Any,
    escrow_home: Path,
    registry: str,
    bases: Bases,
    auth_registry: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`docker login` with DOCKER_CONFIG set writes $DOCKER_CONFIG/config.json; the
    engine pushes with it, so escrow's own reads of that registry must use it too
    (they read only ~/.docker/config.json: the push was made, and refused as
    unconfirmed, "NOT pushed")."""
    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {auth_registry: {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.docker to fall back on

    base_ref, _, _ = bases.push(registry, "v1")
    app_ref = f"{auth_registry}/escrow-test/app-{bases.run}:1"
    bases.local.append(app_ref)
    r = cli(
        ["build", str(bases.app(base_ref)), "-t", app_ref, "-q", "--json", "--no-deposit"]
        + ["--push"]
    )
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    (pushed,) = doc["pushed"]
    r = cli(["attach", str(doc["index"])])
    assert r.exit_code == 0, r.stderr
    repo = app_ref.rsplit(":", 1)[0]
    r = cli(["verify", f"{repo}@{pushed['digest']}", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["ok"] is True
    # without the credentials: one clear sentence, exit 3
    (config / "config.json").write_text("{}")
    r = cli(["verify", f"{repo}@{pushed['digest']}"])
    assert r.exit_code == 3
    assert "credentials" in r.stderr and "docker login" in r.stderr


class _NotARegistry(http.server.BaseHTTPRequestHandler):
    """A web server on the wrong port: 404 for everything, or a 200 HTML page."""

    status = 404

    def _answer(self) -> None:
        body = b"<html><body>hello</body></html>" if self.status == 200 else b"404 page not found"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html" if self.status == 200 else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


class _HtmlPage(_NotARegistry):
    status = 200


@pytest.fixture(params=[_NotARegistry, _HtmlPage], ids=["404-everywhere", "html-page"])
def web_server(request: pytest.FixtureRequest) -> Iterator[str]:
    with loopback_server(request.param) as address:
        yield address


def test_a_web_server_on_the_wrong_port_is_named_not_a_registry(
    cli: Any, escrow_home: Path, web_server: str
) -> None:
    """Not "no such manifest" (exit 2), not "substituted bytes" (exit 1), not a
    traceback: the address is wrong, exit 3, one sentence."""
    target = f"{web_server}/escrow-test/app@sha256:{'ab' * 32}"
    for args in (
        ["verify", target],
        ["gc", "--deposit-store", f"oci://{web_server}/escrow/deposits"],
        ["deposit", "stats", "--deposit-store", f"oci://{web_server}/escrow/deposits"],
    ):
        r = cli(args)
        assert r.exit_code == 3, (args, r.stderr)
        # (the deposit commands name the store first: "…deposit store oci://…: the server at…")
        assert f"the server at {web_server} is not a container registry" in r.stderr.lower(), (
            r.stderr
        )
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_missing_repository_of_a_real_registry_is_still_not_found(
    cli: Any, escrow_home: Path, registry: str
) -> None:
    r = cli(["verify", f"{registry}/escrow-test/no-such-repo-review9@sha256:{'cd' * 32}"])
    assert r.exit_code == 2, r.stderr
    assert "has no manifest escrow-test/no-such-repo-review9@sha256:" in r.stderr


def _cosign_attest(registry: str, repository: str, digest: str) -> str:
    """Add a DSSE envelope to ``sha256-<hex>.att`` the way ``cosign attest`` does (one
    more layer of the same manifest, SLSA provenance); the envelope's digest."""
    from escrow.registry.attest import attestation_tag
    from escrow.registry.client import OCI_MANIFEST, RegistryClient

    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": repository, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicate": {"builder": {"id": "https://github.com/actions/runner"}},
    }
    envelope = json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(b"cosign").decode()}],
        }
    ).encode()
    client = RegistryClient(registry)
    env_digest = client.put_blob_bytes(repository, envelope)
    tag = attestation_tag(digest)
    manifest = client.manifest(repository, tag, accept=(OCI_MANIFEST,)).json()
    manifest["layers"].append(
        {
            "mediaType": "application/vnd.dsse.envelope.v1+json",
            "digest": env_digest,
            "size": len(envelope),
            "annotations": {
                "dev.cosignproject.cosign/signature": "",
                "predicateType": statement["predicateType"],
            },
        }
    )
    client.put_manifest(repository, tag, json.dumps(manifest).encode(), OCI_MANIFEST)
    return env_digest


def test_a_cosign_attestation_beside_escrows_does_not_fail_verification(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    """The .att tag is cosign's too: `cosign attest` after `escrow attach` adds its own
    envelope to the same manifest.  escrow verify checks escrow's envelopes and lists
    the others as ignored (it failed: "not an entry of this ledger")."""
    base_ref, _, _ = bases.push(registry, "v1")
    app_ref = f"{registry}/escrow-test/app-{bases.run}:1"
    bases.local.append(app_ref)
    r = cli(
        ["build", str(bases.app(base_ref)), "-t", app_ref, "-q", "--json", "--no-deposit"]
        + ["--push"]
    )
    assert r.exit_code == 0, r.stderr
    index, digest = r.json()["index"], r.json()["pushed"][0]["digest"]
    assert cli(["attach", str(index)]).exit_code == 0
    repository = f"escrow-test/app-{bases.run}"
    foreign = _cosign_attest(registry, repository, digest)

    r = cli(["verify", f"{registry}/{repository}@{digest}", "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    doc = r.json()
    assert doc["ok"] is True and [a["index"] for a in doc["attestations"]] == [index]
    assert doc["ignored"] == [
        {"envelope": foreign, "predicateType": "https://slsa.dev/provenance/v0.2"}
    ]
    text = cli(["verify", f"{registry}/{repository}@{digest}"])
    assert text.exit_code == 0, text.stderr
    assert f"skip another tool's envelope {foreign[:19]}… (https://slsa.dev/provenance/v0.2)" in (
        text.stdout
    )
    # escrow attach keeps cosign's envelope when it adds another
    r = cli(["attach", str(index)])
    assert r.exit_code == 0 and "already attached" in r.stdout


def test_only_other_tools_envelopes_is_no_escrow_attestation(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, _, digest = bases.push(registry, "v1")
    repo = base_ref.rsplit(":", 1)[0]
    repository = repo.split("/", 1)[1]
    from escrow.registry.attest import attestation_tag
    from escrow.registry.client import OCI_MANIFEST, RegistryClient

    # an empty cosign-style attestation manifest, then cosign's envelope in it
    client = RegistryClient(registry)
    config = client.put_blob_bytes(repository, b"{}")
    empty = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": 2,
        },
        "layers": [],
    }
    client.put_manifest(
        repository, attestation_tag(digest), json.dumps(empty).encode(), OCI_MANIFEST
    )
    _cosign_attest(registry, repository, digest)
    r = cli(["verify", f"{repo}@{digest}"])
    assert r.exit_code == 1, r.stderr
    assert "No escrow attestation is attached" in r.stderr
