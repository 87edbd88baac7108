"""Signed envelopes in the registry, beside the image they describe.

``escrow attach INDEX`` pushes the entry's DSSE envelope (the exact ledger
leaf bytes) as an OCI artifact into the image's repository, the way cosign
stores attestations: a manifest tagged ``sha256-<image manifest hex>.att``
whose layers are DSSE envelopes (``application/vnd.dsse.envelope.v1+json``,
annotated ``predicateType``), so ``cosign download attestation`` and
``cosign verify-attestation`` find it.  The manifest also names the image in
its ``subject`` field, so registries with the OCI referrers API list it; on
registries without that API (Debian's docker-registry 2.8, for one) escrow keeps
the OCI 1.1 "referrers tag schema" itself: an image index tagged ``sha256-<hex>``
listing the referrers of the image, which OCI 1.1 clients (``oras discover``)
read in place of the API.
Attaching a second envelope to the same image adds a layer (cosign does the
same); attaching the same one again changes nothing.

``escrow verify HOST/REPO@sha256:…`` reads the image manifest (its digest
checked), finds the attestations (referrers API, else the tag), reads each
envelope (its digest checked), finds the ledger entry with that leaf hash,
and checks its signature, its inclusion under the latest checkpoint, and
that it describes this image (the manifest's config digest is the recorded
image ID).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from escrow.errors import CheckFailed, EscrowError, InputError
from escrow.registry.client import (
    DOCKER_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    sha256_digest,
)
from escrow.registry.errors import RegistryIntegrityError, RegistryNotFound
from escrow.registry.reference import Reference

if TYPE_CHECKING:
    from escrow.ledger.store import Entry
    from escrow.verification import EntryVerification

DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"


#: the largest attached envelope read from a registry
MAX_ENVELOPE = 64 << 20


def attestation_tag(manifest_digest: str) -> str:
    """cosign's tag scheme: ``sha256:<hex>`` → ``sha256-<hex>.att``."""
    return manifest_digest.replace(":", "-") + ".att"


def _image_manifest(client: RegistryClient, ref: Reference) -> Manifest:
    manifest = client.manifest(ref.repository, ref.ref)
    if manifest.media_type in (OCI_INDEX, DOCKER_LIST):
        raise InputError(
            f"{ref} is a multi-platform index; name the manifest of one platform "
            "(HOST/REPO@sha256:…).",
        )
    return manifest


def _config_digest(manifest: Manifest) -> str:
    config = manifest.json().get("config")
    digest = config.get("digest") if isinstance(config, dict) else None
    if not isinstance(digest, str):
        raise RegistryIntegrityError(
            f"The manifest {manifest.digest} names no image config; it is not an image's."
        )
    return digest


# ---------------------------------------------------------------------------
# attach


@dataclass
class Attached:
    reference: str
    manifest_digest: str
    tag: str
    attestation_digest: str
    envelope_digest: str
    created: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "manifestDigest": self.manifest_digest,
            "tag": self.tag,
            "attestation": self.attestation_digest,
            "envelope": self.envelope_digest,
            "created": self.created,
        }


def targets_of(entry: Entry) -> list[str]:
    """Where ``entry``'s image was pushed (``escrow build --push``), by digest."""
    image = entry.statement()["predicate"].get("image") or {}
    out = []
    for p in image.get("pushed") or []:
        ref = Reference.parse(str(p["reference"]))
        out.append(str(Reference(ref.registry, ref.repository, None, str(p["digest"]))))
    return out


def attach(entry: Entry, target: str, *, origin: str | None = None) -> Attached:
    """Push ``entry``'s envelope beside the image ``target`` (``HOST/REPO:TAG`` or
    ``@sha256:…``), which must be the image the entry records."""
    if not entry.image_id:
        raise InputError(f"Entry {entry.index} records no image; there is nothing to attach to.")
    ref = Reference.parse(target)
    client = RegistryClient(ref.registry)
    manifest = _image_manifest(client, ref)
    config = _config_digest(manifest)
    if config != entry.image_id:
        raise CheckFailed(
            f"{target} is the image {config or '(no config)'}, not the {entry.image_id} that "
            f"entry {entry.index} records; nothing was attached.",
        )
    envelope = entry.envelope
    env_digest = client.put_blob_bytes(ref.repository, envelope)
    predicate_type = entry.predicate_type
    layer = {
        "mediaType": DSSE_TYPE,
        "digest": env_digest,
        "size": len(envelope),
        "annotations": {
            COSIGN_SIGNATURE: "",
            "predicateType": predicate_type,
            "dev.escrow.ledger.index": str(entry.index),
            "dev.escrow.ledger.leafHash": entry.leaf_hash,
            **({"dev.escrow.ledger.origin": origin} if origin else {}),
        },
    }
    tag = attestation_tag(manifest.digest)
    existing = client.find_manifest(ref.repository, tag, accept=(OCI_MANIFEST,))
    layers: list[dict[str, Any]] = []
    if existing is not None:
        layers = list(existing.json().get("layers") or [])
        if any(x.get("digest") == env_digest for x in layers):
            _list_referrer(client, ref.repository, manifest.digest, existing, replaced=None)
            return Attached(str(ref), manifest.digest, tag, existing.digest, env_digest, False)
    layers.append(layer)
    config_doc = {
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [x["digest"] for x in layers]},
    }
    config_bytes = json.dumps(config_doc, sort_keys=True, separators=(",", ":")).encode()
    config_digest = client.put_blob_bytes(ref.repository, config_bytes)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": len(config_bytes)},
        "layers": layers,
        "subject": {
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": len(manifest.data),
        },
    }
    data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    digest = client.put_manifest(ref.repository, tag, data, OCI_MANIFEST)
    pushed = Manifest(data=data, media_type=OCI_MANIFEST, digest=digest)
    replaced = existing.digest if existing is not None else None
    _list_referrer(client, ref.repository, manifest.digest, pushed, replaced=replaced)
    return Attached(str(ref), manifest.digest, tag, digest, env_digest, True)


def referrers_tag(manifest_digest: str) -> str:
    """The OCI 1.1 referrers tag schema: ``sha256:<hex>`` → ``sha256-<hex>``."""
    return manifest_digest.replace(":", "-")


def _list_referrer(
    client: RegistryClient,
    repository: str,
    subject: str,
    attestation: Manifest,
    *,
    replaced: str | None,
) -> None:
    """List ``attestation`` as a referrer of ``subject`` where a registry without the
    referrers API keeps them (OCI distribution spec 1.1, "referrers tag schema"): in the
    image index tagged ``sha256-<hex>``, replacing the attestation manifest it succeeds
    (a second envelope makes a new one).  Registries with the API list it themselves,
    from the manifest's ``subject``.  A tag of that name holding something else than an
    index is left alone (the cosign tag still finds the attestation)."""
    if client.referrers(repository, subject) is not None:
        return
    tag = referrers_tag(subject)
    current = client.find_manifest(repository, tag, accept=(OCI_INDEX,))
    if current is not None and current.media_type != OCI_INDEX:
        return
    listed = list(current.json().get("manifests") or []) if current is not None else []
    if any(m.get("digest") == attestation.digest for m in listed) and replaced is None:
        return
    config = attestation.json().get("config") or {}
    descriptor = {
        "mediaType": OCI_MANIFEST,
        "digest": attestation.digest,
        "size": len(attestation.data),
        # the manifest has no artifactType of its own: the spec's rule is its config's type
        "artifactType": str(config.get("mediaType") or CONFIG_TYPE),
    }
    kept = [m for m in listed if m.get("digest") not in (attestation.digest, replaced)]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*kept, descriptor]}
    data = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    client.put_manifest(repository, tag, data, OCI_INDEX)


# ---------------------------------------------------------------------------
# verify


@dataclass
class RegistryVerification:
    reference: str
    manifest_digest: str
    image_id: str
    found_by: str
    attestations: list[EntryVerification] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: envelopes of other tools (e.g. ``cosign attest`` SLSA provenance) sharing the tag
    ignored: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            bool(self.attestations) and not self.problems and all(a.ok for a in self.attestations)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "manifestDigest": self.manifest_digest,
            "imageId": self.image_id,
            "foundBy": self.found_by,
            "ok": self.ok,
            "problems": self.problems,
            "attestations": [a.to_dict() for a in self.attestations],
            "ignored": self.ignored,
        }


def _attestation_manifests(
    client: RegistryClient, repository: str, digest: str
) -> tuple[list[Manifest], str]:
    referrers = client.referrers(repository, digest)
    found: list[Manifest] = []
    if referrers:
        found.extend(client.manifest(repository, str(d["digest"])) for d in referrers)
        if found:
            return found, "referrers API"
    tag = attestation_tag(digest)
    got = client.find_manifest(repository, tag, accept=(OCI_MANIFEST,))
    return ([got] if got is not None else []), f"tag {tag}"


def verify_reference(ledger: Any, target: str) -> RegistryVerification:
    """Verify the image ``target`` through the registry alone, and the ledger."""
    from escrow.documents.types import BUILD_MANIFEST
    from escrow.ledger import merkle
    from escrow.verification import Check, verify_entry

    ref = Reference.parse(target)
    client = RegistryClient(ref.registry)
    manifest = _image_manifest(client, ref)
    image_id = _config_digest(manifest)
    manifests, found_by = _attestation_manifests(client, ref.repository, manifest.digest)
    result = RegistryVerification(str(ref), manifest.digest, image_id, found_by)
    if not manifests:
        raise CheckFailed(
            f"No escrow attestation is attached to {ref.name}@{manifest.digest} (looked for "
            f"{found_by}).",
            hint="Attach one with `escrow attach INDEX`.",
        )
    layers = [
        x
        for m in manifests
        for x in _listed(m.json().get("layers"))
        if x.get("mediaType") == DSSE_TYPE
    ]
    if not layers:
        raise CheckFailed(f"The attestation of {ref.name}@{manifest.digest} holds no envelope.")
    candidates = ledger.entries(image_id=image_id, predicate_type=BUILD_MANIFEST, limit=1000)
    by_leaf = {e.leaf_hash: e for e in candidates}
    for layer in layers:
        digest = str(layer.get("digest"))
        if not isinstance(layer.get("annotations") or {}, dict):
            layer = {**layer, "annotations": {}}
        # checked against its digest; no envelope escrow signs is near the limit
        envelope = client.blob(ref.repository, digest, limit=MAX_ENVELOPE)
        foreign = _foreign_predicate(envelope, layer)
        if foreign is not None:  # another tool's attestation beside escrow's: not ours to judge
            result.ignored.append({"envelope": digest, "predicateType": foreign})
            continue
        leaf = merkle.leaf_hash(envelope).hex()
        entry = by_leaf.get(leaf)
        if entry is None:
            entry = _entry_by_leaf(ledger, leaf, layer)
        if entry is None:
            result.problems.append(
                f"the attached envelope {digest[:19]}… is not an entry of this ledger "
                f"describing {image_id[:19]}…"
            )
            continue
        check = verify_entry(ledger, entry)
        recorded = entry.image_id
        subjects = {
            "sha256:" + str(s.get("digest", {}).get("sha256", ""))
            for s in entry.statement().get("subject") or []
        }
        check.checks.insert(
            0,
            Check(
                "registry",
                True,
                f"envelope {digest[:19]}… found by {found_by}, its bytes match their digest",
            ),
        )
        same = recorded == image_id
        pushed = manifest.digest in subjects
        check.checks.append(
            Check(
                "subject",
                same,
                (
                    f"describes this image ({image_id[:19]}…"
                    + ("; the pushed manifest digest is a subject)" if pushed else ")")
                )
                if same
                else f"describes {recorded}, not this image {image_id}",
            )
        )
        result.attestations.append(check)
    if not result.attestations and not result.problems:
        raise CheckFailed(
            f"No escrow attestation is attached to {ref.name}@{manifest.digest} (found by "
            f"{found_by}: only {len(result.ignored)} envelope(s) of other tools).",
            hint="Attach one with `escrow attach INDEX`.",
        )
    return result


def _listed(value: Any) -> list[dict[str, Any]]:
    """The objects of a manifest's list member (a crafted one may hold anything)."""
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _foreign_predicate(envelope: bytes, layer: dict[str, Any]) -> str | None:
    """The predicate type of an envelope that is not escrow's (``cosign attest`` puts
    its own in the same ``.att`` manifest), or ``None`` for one escrow must check.

    Escrow's are those of an escrow predicate type or carrying escrow's ledger
    annotations; an envelope that cannot be read is escrow's to fail.
    """
    import base64

    from escrow.documents.types import SCHEMA_NAMES

    annotations = layer.get("annotations") or {}
    if any(str(k).startswith("dev.escrow.") for k in annotations):
        return None
    try:
        doc = json.loads(envelope)
        statement = json.loads(base64.b64decode(doc["payload"], validate=True))
        predicate_type = statement["predicateType"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(predicate_type, str) or predicate_type in SCHEMA_NAMES:
        return None
    return predicate_type


def _entry_by_leaf(ledger: Any, leaf: str, layer: dict[str, Any]) -> Entry | None:
    """The entry the layer's annotations name, if its leaf hash is ``leaf``."""
    index = (layer.get("annotations") or {}).get("dev.escrow.ledger.index")
    if index is None or not str(index).isdigit():
        return None
    try:
        entry: Entry = ledger.get(int(index))
    except EscrowError:
        return None
    return entry if entry.leaf_hash == leaf else None


def is_registry_reference(target: str) -> bool:
    """``HOST[:PORT]/REPO@sha256:…``: a reference naming a registry and a digest."""
    first = target.split("/", 1)[0]
    return (
        "/" in target
        and "@sha256:" in target
        and ("." in first or ":" in first or first == "localhost")
    )


__all__ = [
    "RegistryNotFound",
    "attach",
    "attestation_tag",
    "is_registry_reference",
    "referrers_tag",
    "sha256_digest",
    "targets_of",
    "verify_reference",
]
