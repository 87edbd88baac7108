"""The evidence embedded in a pack as PDF attachments, written and read back.

=====================  ====================================================
attachment             content
=====================  ====================================================
envelopes.jsonl        every DSSE envelope in the pack, one per line, exactly
                       the leaf bytes stored in the ledger, ascending index
inclusion-proofs.json  ``{origin, treeSize, rootHash, proofs: [{index,
                       leafHash, hashes, integratedAt}]}``, one proof per
                       envelope line (``integratedAt``: when the ledger
                       appended it, as the operator states it)
checkpoint.txt         the signed checkpoint note the pack was made against
verifier-key.txt       the log's note verifier key
signer-keys.json       the registered signing keys, their PEM and events
consistency-proof.json with ``--since-checkpoint``: old note, sizes, roots, proof
pack-statement.json    the pack statement's predicate; its subject is the
                       SHA-256 of the signed file, so it cannot be inside it
=====================  ====================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from escrow.documents.canonical import canonical_bytes
from escrow.documents.types import AUDIT_PACK, STATEMENT_TYPE
from escrow.errors import CheckFailed
from escrow.pack.collect import Collected, ProofRecord
from escrow.pack.render import AttachmentFile

ENVELOPES = "envelopes.jsonl"
PROOFS = "inclusion-proofs.json"
CHECKPOINT = "checkpoint.txt"
VERIFIER_KEY = "verifier-key.txt"
SIGNER_KEYS = "signer-keys.json"
CONSISTENCY = "consistency-proof.json"
PACK_STATEMENT = "pack-statement.json"
REQUIRED = (ENVELOPES, PROOFS, CHECKPOINT, VERIFIER_KEY, SIGNER_KEYS, PACK_STATEMENT)

SUBJECT_NOTE = (
    "The pack statement's subject is the SHA-256 of the signed PDF file that holds this "
    "attachment; it is appended to the ledger after signing."
)


def _json(doc: Any) -> bytes:
    return canonical_bytes(doc) + b"\n"


def statement_for(
    predicate: dict[str, Any], pdf_sha256: str, rendered_sha256: str
) -> dict[str, Any]:
    """The pack statement appended to the ledger."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": f"{predicate['packId']}.pdf",
                "digest": {"sha256": pdf_sha256},
                "annotations": {"renderedSha256": rendered_sha256},
            }
        ],
        "predicateType": AUDIT_PACK,
        "predicate": predicate,
    }


def _proof_doc(p: ProofRecord) -> dict[str, Any]:
    doc: dict[str, Any] = {"index": p.index, "leafHash": p.leaf_hash, "hashes": list(p.hashes)}
    if p.integrated_at is not None:
        doc["integratedAt"] = p.integrated_at
    return doc


def attachments_for(collected: Collected) -> list[AttachmentFile]:
    ev = collected.evidence
    files = [
        AttachmentFile(
            ENVELOPES,
            b"".join(env + b"\n" for _, env in ev.envelopes),
            "Every DSSE envelope in this pack, one per line, as stored in the ledger",
        ),
        AttachmentFile(
            PROOFS,
            _json(
                {
                    "origin": collected.view.ledger.origin,
                    "treeSize": ev.tree_size,
                    "rootHash": ev.root_hex,
                    "proofs": [_proof_doc(p) for p in ev.proofs],
                }
            ),
            "RFC 9162 inclusion proofs of every envelope against the checkpoint",
        ),
        AttachmentFile(CHECKPOINT, ev.checkpoint_note.encode("utf-8"), "Signed checkpoint note"),
        AttachmentFile(VERIFIER_KEY, (ev.verifier_key + "\n").encode("utf-8"), "Log verifier key"),
        AttachmentFile(
            SIGNER_KEYS,
            _json(
                [
                    {
                        "keyid": k.keyid,
                        "name": k.name,
                        "algorithm": k.algorithm,
                        "status": k.status,
                        "publicKey": k.public_key_pem,
                        "events": [
                            {
                                "event": e.event,
                                "effectiveFrom": e.effective_from,
                                "reason": e.reason or None,
                                "index": e.index,
                            }
                            for e in k.events
                        ],
                    }
                    for k in ev.keys
                ]
            ),
            "Public keys of the signers, with their events",
        ),
    ]
    if ev.consistency is not None:
        files.append(
            AttachmentFile(
                CONSISTENCY, _json(ev.consistency), "Consistency proof from the previous checkpoint"
            )
        )
    files.append(
        AttachmentFile(
            PACK_STATEMENT,
            _json(
                {
                    "_type": STATEMENT_TYPE,
                    "predicateType": AUDIT_PACK,
                    "subjectNote": SUBJECT_NOTE,
                    "predicate": collected.predicate,
                }
            ),
            "The pack statement (its subject: this signed file's SHA-256)",
        )
    )
    return files


@dataclass(frozen=True)
class EmbeddedEvidence:
    envelopes: list[bytes]
    proofs: dict[str, Any]
    checkpoint_note: str
    verifier_key: str
    signer_keys: list[dict[str, Any]]
    pack_statement: dict[str, Any]
    consistency: dict[str, Any] | None


def parse_attachments(files: dict[str, bytes]) -> EmbeddedEvidence:
    """Read the evidence back; :class:`CheckFailed` naming what is missing or malformed."""
    missing = [n for n in REQUIRED if n not in files]
    if missing:
        raise CheckFailed(f"The pack has no attachment {missing[0]}.")

    def load(name: str) -> Any:
        try:
            return json.loads(files[name])
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckFailed(f"The attachment {name} is not valid JSON.") from e

    try:
        note = files[CHECKPOINT].decode("utf-8")
        vkey = files[VERIFIER_KEY].decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise CheckFailed("The checkpoint or verifier key attachment is not UTF-8 text.") from e
    lines = [ln for ln in files[ENVELOPES].split(b"\n") if ln]
    proofs, keys, statement = load(PROOFS), load(SIGNER_KEYS), load(PACK_STATEMENT)
    if (
        not isinstance(proofs, dict)
        or not isinstance(keys, list)
        or not isinstance(statement, dict)
    ):
        raise CheckFailed("An evidence attachment of the pack has the wrong shape.")
    consistency = load(CONSISTENCY) if CONSISTENCY in files else None
    if consistency is not None and not isinstance(consistency, dict):
        raise CheckFailed(f"The attachment {CONSISTENCY} has the wrong shape.")
    if not all(isinstance(k, dict) for k in keys):
        raise CheckFailed(f"The attachment {SIGNER_KEYS} has the wrong shape.")
    _check_statement_shape(statement)
    return EmbeddedEvidence(lines, proofs, note, vkey, keys, statement, consistency)


def _check_statement_shape(statement: dict[str, Any]) -> None:
    """The members of the pack statement's predicate the verifier reads have the types
    ``escrow pack`` writes (objects, lists of entry indexes), so a crafted statement is
    refused in one sentence rather than read as something else."""
    pred = statement.get("predicate")
    if pred is None:
        return  # reported by the pack statement check
    where = f"The attachment {PACK_STATEMENT}"
    if not isinstance(pred, dict):
        raise CheckFailed(f"{where} has a predicate that is not an object.")
    for member in ("scope", "checkpoint", "signer", "summary"):
        if pred.get(member) is not None and not isinstance(pred[member], dict):
            raise CheckFailed(f"{where} has a predicate.{member} that is not an object.")
    indexes = [
        pred.get("evidence"),
        (pred.get("scope") or {}).get("entries"),
        pred.get("supportingBuilds"),
    ]
    members = ("evidence", "scope.entries", "supportingBuilds")
    for member, value in zip(members, indexes, strict=True):
        if value is None:
            continue
        if not isinstance(value, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value
        ):
            raise CheckFailed(f"{where} has a predicate.{member} that is not a list of indexes.")
    projects = (pred.get("scope") or {}).get("projects")
    if projects is not None and not (
        isinstance(projects, list) and all(isinstance(x, str) for x in projects)
    ):
        raise CheckFailed(f"{where} has a predicate.scope.projects that is not a list of names.")
