"""Type URIs of escrow's documents, each defined once.

A schema's ``$id`` is its document's type URI: ``schemas/<name>.schema.json``
holds the schema whose ``$id`` is ``SCHEMA_IDS[name]`` (checked when loaded).
"""

from __future__ import annotations

from typing import Final, NewType

Sha256Hex = NewType("Sha256Hex", str)
KeyID = NewType("KeyID", str)

STATEMENT_TYPE: Final = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"

BUILD_MANIFEST: Final = "https://escrow.dev/build-manifest/v1"
REBUILD_VERIFICATION: Final = "https://escrow.dev/rebuild-verification/v1"
AUDIT_PACK: Final = "https://escrow.dev/audit-pack/v1"
KEY_EVENT: Final = "https://escrow.dev/key-event/v1"
SLSA_PROVENANCE: Final = "https://slsa.dev/provenance/v1"
#: ``type`` of a deposit record (a JSON blob in the deposit store, docs/deposits.md) and of
#: the import record of an entry imported from another ledger; not ledger documents.
DEPOSIT_RECORD: Final = "https://escrow.dev/deposit/v1"
IMPORT_RECORD: Final = "https://escrow.dev/deposit-import/v1"

#: SLSA ``buildDefinition.buildType`` of an escrow phoenix Docker build (docs/slsa.md).
SLSA_BUILD_TYPE: Final = "https://escrow.dev/slsa/docker-build/v1"
#: Prefix of SLSA ``runDetails.builder.id``; the escrow builder id is appended, URL-quoted.
SLSA_BUILDER_PREFIX: Final = "https://escrow.dev/builders/"

#: Schema file name (without ``.schema.json``) for each predicate type the ledger records.
SCHEMA_NAMES: Final[dict[str, str]] = {
    BUILD_MANIFEST: "build-manifest",
    REBUILD_VERIFICATION: "rebuild-verification",
    AUDIT_PACK: "audit-pack",
    KEY_EVENT: "key-event",
}

#: Every schema escrow ships, by name, with the ``$id`` it must declare.
#: ``slsa-provenance`` describes ``escrow export --slsa`` output (not recorded in the ledger).
SCHEMA_IDS: Final[dict[str, str]] = {
    "statement": STATEMENT_TYPE,
    **{name: uri for uri, name in SCHEMA_NAMES.items()},
    "slsa-provenance": SLSA_PROVENANCE,
}

#: Predicate types ``escrow sign`` / ``escrow schema validate`` accept: the ledger's plus exports.
DOCUMENT_SCHEMAS: Final[dict[str, str]] = {**SCHEMA_NAMES, SLSA_PROVENANCE: "slsa-provenance"}
