"""`escrow attach` lists the attestation as an OCI referrer on a registry without the
referrers API (Debian's docker-registry 2.8): the OCI 1.1 referrers tag schema, an image
index tagged ``sha256-<hex>``, read here with skopeo, not escrow."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import Bases

pytestmark = [pytest.mark.registry, pytest.mark.docker]


def _raw(ref: str) -> dict[str, Any] | None:
    r = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        text=True,
    )
    return dict(json.loads(r.stdout)) if r.returncode == 0 else None


def test_attach_keeps_the_referrers_tag_schema_index(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, _, _ = bases.push(registry, "v1")
    app_ref = f"{registry}/escrow-test/app-{bases.run}:1"
    bases.local.append(app_ref)
    r = cli(
        ["build", str(bases.app(base_ref)), "-t", app_ref, "-q", "--json", "--no-deposit"]
        + ["--push"]
    )
    assert r.exit_code == 0, r.stderr
    index, digest = r.json()["index"], r.json()["pushed"][0]["digest"]
    repo = app_ref.rsplit(":", 1)[0]
    assert _raw(f"{repo}:{digest.replace(':', '-')}") is None  # nothing before attach

    r = cli(["attach", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    (attached,) = r.json()["attached"]
    referrers = _raw(f"{repo}:{digest.replace(':', '-')}")
    assert referrers is not None
    assert referrers["mediaType"] == "application/vnd.oci.image.index.v1+json"
    att = _raw(f"{repo}:{digest.replace(':', '-')}.att")
    assert att is not None and att["subject"]["digest"] == digest
    (listed,) = referrers["manifests"]
    assert listed["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert listed["artifactType"] == att["config"]["mediaType"]
    attestation = listed["digest"]
    assert attestation == attached["attestation"]

    # attaching the same envelope again changes nothing
    assert cli(["attach", str(index)]).exit_code == 0
    assert _raw(f"{repo}:{digest.replace(':', '-')}") == referrers

    # a second envelope for the same image (a capture of it) makes a new attestation
    # manifest: the index lists that one instead of the one it replaces
    r = cli(["capture", app_ref, "--json"])
    assert r.exit_code == 0, r.stderr
    assert cli(["attach", str(r.json()["index"]), "--to", f"{repo}@{digest}"]).exit_code == 0
    att2 = _raw(f"{repo}:{digest.replace(':', '-')}.att")
    assert att2 is not None and len(att2["layers"]) == 2
    (now,) = _raw(f"{repo}:{digest.replace(':', '-')}")["manifests"]  # type: ignore[index]
    assert now["digest"] != attestation
    assert _raw(f"{repo}@{now['digest']}") == att2

    r = cli(["verify", f"{repo}@{digest}", "--json"])
    assert r.exit_code == 0, r.stderr
    assert len(r.json()["attestations"]) == 2
