"""Type URIs of escrow's documents, each defined once.

A schema's ``$id`` is its document's type URI; ``schemas/<name>.schema.json``.
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

#: Schema file name (without ``.schema.json``) for each predicate type.
SCHEMA_NAMES: Final[dict[str, str]] = {
    BUILD_MANIFEST: "build-manifest",
    REBUILD_VERIFICATION: "rebuild-verification",
    AUDIT_PACK: "audit-pack",
    KEY_EVENT: "key-event",
}
