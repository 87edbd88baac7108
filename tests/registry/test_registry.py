"""escrow through a real registry (Debian's docker-registry on loopback), checked with skopeo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Bases, PrivateRegistry, docker, skopeo_digest

pytestmark = [pytest.mark.registry, pytest.mark.docker]


def _statement(index: int) -> dict[str, Any]:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings()) as ledger:
        return ledger.get(index).statement()


def _ledger_size() -> int:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings()) as ledger:
        return ledger.size()


def _build(cli: Any, ctx: Path, tag: str, *extra: str) -> Any:
    return cli(["build", str(ctx), "-t", tag, "-q", "--json", "--no-deposit", *extra])


def test_pull_pin_build_push_round_trip(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, base_id, _ = bases.push(registry, "v1")
    bases.forget(base_ref)  # --pull must fetch it from the registry
    assert docker("image", "inspect", base_ref, check=False).returncode != 0
    app_ref = f"{registry}/escrow-test/app-{bases.run}:1"
    bases.local.append(app_ref)

    r = _build(cli, bases.app(base_ref), app_ref, "--pull", "--push")
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    # the pinned base digest is what an independent client (skopeo) sees for the tag
    base_repo = f"{registry}/escrow-test/base-{bases.run}"
    (pinned,) = doc["bases"]
    assert pinned["repoDigest"] == f"{base_repo}@{skopeo_digest(base_ref)}"
    assert pinned["imageId"] == base_id and pinned["pinnedBy"] == "tag"
    # the pushed manifest digest is the registry's, and a second subject
    (pushed,) = doc["pushed"]
    assert pushed["digest"] == skopeo_digest(app_ref)
    statement = _statement(doc["index"])
    image_hex = doc["image_id"].removeprefix("sha256:")
    assert statement["subject"] == [
        {"name": app_ref, "digest": {"sha256": image_hex}},
        {
            "name": f"{registry}/escrow-test/app-{bases.run}",
            "digest": {"sha256": pushed["digest"].removeprefix("sha256:")},
        },
    ]
    predicate = statement["predicate"]
    assert predicate["build"]["phoenix"]["pulledBase"] is True
    assert predicate["inputs"]["baseImages"][0]["repoDigest"] == pinned["repoDigest"]
    assert (
        f"{registry}/escrow-test/app-{bases.run}@{pushed['digest']}"
        in (predicate["image"]["repoDigests"])
    )
    assert predicate["image"]["pushed"][0]["reference"] == app_ref


def test_a_moved_base_tag_is_reported_with_both_digests(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, id1, d1 = bases.push(registry, "v1")
    ctx = bases.app(base_ref)
    tag = f"escrow-test/app-{bases.run}:1"
    bases.local.append(tag)
    first = _build(cli, ctx, tag, "--pull")
    assert first.exit_code == 0, first.stderr
    assert first.json()["movedBases"] == []

    # the monthly base is rebuilt and pushed under the same tag
    _, id2, d2 = bases.push(registry, "v2")
    assert d2 != d1 and id2 != id1
    second = _build(cli, ctx, tag, "--pull")
    assert second.exit_code == 0, second.stderr
    (moved,) = second.json()["movedBases"]
    repo = base_ref.rsplit(":", 1)[0]
    assert moved["reference"] == base_ref
    assert moved["previous"] == {
        "index": first.json()["index"],
        "repoDigest": f"{repo}@{d1}",
        "imageId": id1,
    }
    assert moved["current"] == {"repoDigest": f"{repo}@{d2}", "imageId": id2}
    assert "now points to another digest" in second.stderr
    assert d1 in second.stderr and d2 in second.stderr

    # escrow diff shows the base behind the same tag, with both digests in its JSON
    r = cli(["diff", str(first.json()["index"]), str(second.json()["index"]), "--json"])
    assert r.exit_code == 0, r.stderr
    (change,) = r.json()["inputs"]["baseImages"]
    assert change["change"] == "image"
    assert change["original"]["repoDigest"] == f"{repo}@{d1}"
    assert change["rebuilt"]["repoDigest"] == f"{repo}@{d2}"

    # the next build on the same base: nothing moved
    third = _build(cli, ctx, tag, "--pull")
    assert third.exit_code == 0, third.stderr
    assert third.json()["movedBases"] == []

    # FROM name@sha256:… is honoured: the old base, although the tag moved
    pinned_ctx = bases.app(f"{repo}@{d1}", name="pinned")
    r = _build(cli, pinned_ctx, tag, "--pull")
    assert r.exit_code == 0, r.stderr
    (base,) = r.json()["bases"]
    assert base == {
        "stage": 0,
        "reference": f"{repo}@{d1}",
        "repoDigest": f"{repo}@{d1}",
        "imageId": id1,
        "pinnedBy": "digest",
    }
    assert r.json()["movedBases"] == []


def test_attach_and_verify_through_the_registry_alone(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, _, _ = bases.push(registry, "v1")
    app_ref = f"{registry}/escrow-test/app-{bases.run}:1"
    bases.local.append(app_ref)
    r = _build(cli, bases.app(base_ref), app_ref, "--pull", "--push")
    assert r.exit_code == 0, r.stderr
    index, image_id = r.json()["index"], r.json()["image_id"]
    digest = r.json()["pushed"][0]["digest"]

    r = cli(["attach", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    (att,) = r.json()["attached"]
    assert att["created"] and att["manifestDigest"] == digest
    assert att["tag"] == "sha256-" + digest.removeprefix("sha256:") + ".att"
    # an independent client sees the cosign-style attestation beside the image
    repo = f"{registry}/escrow-test/app-{bases.run}"
    assert skopeo_digest(f"{repo}:{att['tag']}") == att["attestation"]
    again = cli(["attach", str(index), "--json"])
    assert again.exit_code == 0 and again.json()["attached"][0]["created"] is False

    # the engine forgets the image: verification needs only the registry and the ledger
    bases.forget(app_ref, image_id)
    r = cli(["verify", f"{repo}@{digest}", "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    doc = r.json()
    assert doc["ok"] and doc["imageId"] == image_id and doc["manifestDigest"] == digest
    (checked,) = doc["attestations"]
    assert checked["index"] == index
    assert [c["name"] for c in checked["checks"]] == [
        "registry",
        "signature",
        "inclusion",
        "base",  # the test base, built outside the ledger: skipped
        "subject",
    ]
    assert all(c["ok"] for c in checked["checks"])

    # the entry is not attached to an image it does not describe
    r = cli(["attach", str(index), "--to", base_ref])
    assert r.exit_code == 1
    assert "not the" in r.stderr and "nothing was attached" in r.stderr
    # an image without attestation does not verify (fail closed)
    r = cli(["verify", f"{base_ref.rsplit(':', 1)[0]}@{skopeo_digest(base_ref)}"])
    assert r.exit_code == 1
    assert "No escrow attestation" in r.stderr


def test_rebuild_from_a_registry_deposit_after_the_base_left_the_engine(
    cli: Any, escrow_home: Path, registry: str, bases: Bases, tmp_path: Path
) -> None:
    base_ref, base_id, _ = bases.push(registry, "v1")
    store = f"oci://{registry}/escrow-test/deposits-{bases.run}"
    # the layers are saved into the registry store while the ENV step runs
    ctx = bases.app(base_ref, tail="ENV MODE=deposited\n")
    tag = f"escrow-test/app-{bases.run}:1"
    bases.local.append(tag)
    r = cli(["build", str(ctx), "-t", tag, "-q", "--json", "--pull", "--deposit-store", store])
    assert r.exit_code == 0, r.stderr
    index, image_id = r.json()["index"], r.json()["image_id"]
    assert r.json()["deposit"] == {"complete": True, "missing": []}

    r = cli(["deposit", "check", str(index), "--verify", "--deposit-store", store, "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["complete"] and r.json()["verifiedBlobs"] > 3
    # the deposited base is a real image in the deposit repository (by reference)
    hexid = base_id.removeprefix("sha256:")
    deposited = f"{registry}/escrow-test/deposits-{bases.run}:image-{hexid}"
    assert skopeo_digest(deposited).startswith("sha256:")

    # the engine loses the build and its base; the checkout is gone
    bases.forget(tag, image_id, base_ref, base_id)
    assert docker("image", "inspect", base_id, check=False).returncode != 0
    import shutil

    shutil.rmtree(ctx)
    rebuilt = f"escrow-test/app-{bases.run}:rebuilt"
    bases.local.append(rebuilt)
    r = cli(["rebuild", str(index), "-q", "-t", rebuilt, "--deposit-store", store, "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    assert r.json()["verdict"] in ("identical", "equivalent")
    assert r.json()["statement"]["predicate"]["rebuild"]["inputsFrom"] == "deposit"
    assert docker("image", "inspect", base_id, check=False).returncode == 0

    # export, stats and gc work the same against the registry
    out = tmp_path / "deposit.tar"
    r = cli(["deposit", "export", str(index), "-o", str(out), "--deposit-store", store, "--json"])
    assert r.exit_code == 0, r.stderr
    assert out.stat().st_size > 1000 and r.json()["blobs"] > 3
    r = cli(["deposit", "stats", "--deposit-store", store, "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["entries"] == 1 and r.json()["bytesStored"] > 0
    r = cli(["gc", "--keep-last", "0", "--deposit-store", store, "--json"])
    assert r.exit_code == 0 and r.json()["reclaimBlobs"] > 0 and not r.json()["applied"]
    r = cli(["deposit", "check", str(index), "--deposit-store", store])
    assert r.exit_code == 0, "a dry run removes nothing"
    r = cli(["gc", "--keep-last", "0", "--apply", "--deposit-store", store, "--json"])
    assert r.exit_code == 0, r.stderr
    r = cli(["deposit", "check", str(index), "--deposit-store", store])
    assert r.exit_code == 1 and "INCOMPLETE" in r.stdout

    # the export, imported into a fresh folder store, is complete
    r = cli(["deposit", "import", str(out), "--deposit-store", str(tmp_path / "imported")])
    assert r.exit_code == 0, r.stderr


def test_tampered_registry_storage_is_detected(
    cli: Any, escrow_home: Path, private_registry: PrivateRegistry, bases: Bases
) -> None:
    reg = private_registry
    base_ref, base_id, _ = bases.push(reg.addr, "v1")
    store = f"oci://{reg.addr}/escrow-test/deposits"
    app_ref = f"{reg.addr}/escrow-test/app-{bases.run}:1"
    bases.local.append(app_ref)
    r = cli(
        [
            "build",
            str(bases.app(base_ref)),
            "-t",
            app_ref,
            "-q",
            "--json",
            "--pull",
            "--push",
            "--deposit-store",
            store,
        ]
    )
    assert r.exit_code == 0, r.stderr
    index, digest = r.json()["index"], r.json()["pushed"][0]["digest"]
    assert cli(["attach", str(index)]).exit_code == 0
    predicate = _statement(index)["predicate"]
    base_layer = predicate["layers"][0]["diffId"]

    # a deposited base layer altered in the registry's storage directory
    path = reg.blob_file(base_layer)
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    r = cli(["deposit", "check", str(index), "--verify", "--deposit-store", store])
    assert r.exit_code == 1
    assert base_layer in r.stderr and "tampered" in r.stderr

    # rebuilding from it fails before anything is built or recorded
    bases.forget(app_ref, base_ref, base_id)
    size = _ledger_size()
    r = cli(
        [
            "rebuild",
            str(index),
            "-q",
            "-t",
            f"escrow-test/x-{bases.run}:1",
            "--deposit-store",
            store,
        ]
    )
    assert r.exit_code == 1, r.stderr
    assert _ledger_size() == size

    # the attached envelope altered: verify through the registry fails
    repo = f"{reg.addr}/escrow-test/app-{bases.run}"
    att = skopeo_raw(f"{repo}:sha256-{digest.removeprefix('sha256:')}.att")
    envelope = reg.blob_file(att["layers"][0]["digest"])
    envelope.write_bytes(envelope.read_bytes().replace(b'"payload"', b'"payload" '))
    r = cli(["verify", f"{repo}@{digest}"])
    assert r.exit_code == 1
    assert "hash to" in r.stderr

    # the image manifest altered: its bytes no longer have the digest asked for
    manifest = reg.blob_file(digest)
    manifest.write_bytes(manifest.read_bytes() + b" ")
    r = cli(["verify", f"{repo}@{digest}"])
    assert r.exit_code == 1
    assert f"not {digest}" in r.stderr or "hash to" in r.stderr

    # a base whose manifest was altered is not pulled into a recorded build
    base_manifest = reg.blob_file(skopeo_digest(base_ref))
    base_manifest.write_bytes(base_manifest.read_bytes() + b"\n")
    size = _ledger_size()
    r = _build(cli, bases.app(base_ref), f"escrow-test/app-{bases.run}:2", "--pull")
    assert r.exit_code == 1, r.stderr
    assert "whose bytes hash to" in r.stderr and "nothing was used" in r.stderr
    assert _ledger_size() == size


def skopeo_raw(ref: str) -> dict[str, Any]:
    import json
    import subprocess

    out = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        text=True,
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_bad_registries_fail_clearly_and_record_nothing(
    cli: Any,
    escrow_home: Path,
    registry: str,
    bases: Bases,
    closed_port: str,
    denying_registry: str,
) -> None:
    size = _ledger_size()
    # unreachable
    r = _build(cli, bases.app(f"{closed_port}/escrow-test/base:1"), "escrow-test/bad:1", "--pull")
    assert r.exit_code == 3, r.stderr
    assert "not reachable" in r.stderr and "nothing was recorded" in r.stderr
    r = cli(["deposit", "stats", "--deposit-store", f"oci://{closed_port}/deposits"])
    assert r.exit_code == 3 and "not reachable" in r.stderr
    # 401
    r = _build(
        cli, bases.app(f"{denying_registry}/escrow-test/base:1"), "escrow-test/bad:1", "--pull"
    )
    assert r.exit_code == 3, r.stderr
    assert "refused access" in r.stderr and "docker login" in r.stderr
    r = cli(["deposit", "stats", "--deposit-store", f"oci://{denying_registry}/deposits"])
    assert r.exit_code == 3 and "credentials" in r.stderr
    r = cli(["verify", f"{denying_registry}/escrow-test/app@sha256:{'ab' * 32}"])
    assert r.exit_code == 3 and "credentials" in r.stderr
    assert _ledger_size() == size

    # a push that fails leaves the build recorded, but without any pushed digest
    base_ref, _, _ = bases.push(registry, "v1")
    r = _build(cli, bases.app(base_ref), f"{closed_port}/escrow-test/app:1", "--push")
    bases.local.append(f"{closed_port}/escrow-test/app:1")
    assert r.exit_code == 3, r.stderr
    assert "without any pushed digest" in r.stderr
    statement = _statement(r.json()["index"])
    assert len(statement["subject"]) == 1
    assert "pushed" not in statement["predicate"]["image"]
    # --push needs tags naming a registry: refused before building
    size = _ledger_size()
    r = _build(cli, bases.app(base_ref), "escrow-test/no-registry:1", "--push")
    assert r.exit_code == 2 and "names no registry" in r.stderr
    assert _ledger_size() == size
