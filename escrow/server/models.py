"""The shapes of the HTTP API (request and response bodies), for FastAPI and OpenAPI.

Kept apart from the ledger's own types: these are the wire format.  Hashes and
roots are hex strings; times are RFC 3339 UTC with ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Signatures one envelope may carry; more is refused (422), never stored.
MAX_SIGNATURES = 16
#: Envelopes in one batch POST.
MAX_BATCH = 1000
#: Page size of GET /v1/entries.
MAX_PAGE = 1000
#: Largest index or tree size accepted anywhere (fits a signed 64-bit column).
MAX_INT = 2**62

Hex64 = Field(pattern=r"^[0-9a-f]{64}$")
NO_NUL = r"^[^\x00]*$"


def _time_member(value: Any, name: str, *, end_of_day: bool = False) -> Any:
    """A time member of a request body as the CLI reads the option: a bare date (2026-12-06,
    or 20261206) as `escrow pack --since/--until` reads it, and never a number of seconds
    since 1970, which Pydantic would make of ``0``, ``"0"`` or ``"20261206"``."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        given = "true or false" if isinstance(value, bool) else "a number"
        if not isinstance(value, int | float):
            given = "a list or an object"
        raise ValueError(
            f"{name} must be an RFC 3339 time or a date YYYY-MM-DD, in a string, not {given}"
        )
    from escrow.errors import EscrowError
    from escrow.times import TimeOutOfRange, parse_time

    # every string as the CLI reads it, not only a bare date: Pydantic's own reading
    # truncates a fraction finer than a microsecond (the CLI and `GET /v1/entries` round
    # it up), refuses a leap second and a week (2026-W49), which `GET /v1/entries` reads
    try:
        return parse_time(value, name, end_of_day=end_of_day)
    except TimeOutOfRange:
        return value  # the route names the member: the time is outside the years 1 to 9999
    except EscrowError as e:
        raise ValueError(e.message.rstrip(".")) from None


class ErrorBody(BaseModel):
    """Every error response: what failed, and where."""

    error: str = Field(description="Machine-readable error code, e.g. `schema`, `forbidden`.")
    message: str = Field(description="One sentence: what failed and what to do.")
    location: str | None = Field(
        None,
        description="Where the bad value is: `body`, `payload` (the decoded statement inside "
        "the envelope), `query`, `path` or `header`.",
    )
    pointer: str | None = Field(
        None, description="JSON Pointer (RFC 6901) of the bad value inside `location`."
    )
    field: str | None = Field(None, description="Name of the bad query or path parameter.")


class SignatureIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    keyid: str = Field("", max_length=256)
    sig: str = Field(min_length=1, max_length=4096, description="Base64 (standard or URL-safe).")


class EnvelopeIn(BaseModel):
    """A DSSE envelope (https://github.com/secure-systems-lab/dsse)."""

    model_config = ConfigDict(extra="allow")

    payload: str = Field(description="Base64 of the in-toto Statement.")
    payloadType: str = Field(max_length=256)  # noqa: N815 - DSSE field name
    signatures: list[SignatureIn] = Field(min_length=1, max_length=MAX_SIGNATURES)


class BatchIn(BaseModel):
    """Several envelopes, appended in order; all are checked before any is appended."""

    envelopes: list[EnvelopeIn] = Field(min_length=1, max_length=MAX_BATCH)


class SignatureOut(BaseModel):
    keyid: str
    sig: str


class EnvelopeOut(BaseModel):
    payload: str
    payloadType: str  # noqa: N815 - DSSE field name
    signatures: list[SignatureOut]


class EntryOut(BaseModel):
    index: int
    leaf_hash: str
    predicate_type: str
    project: str | None
    image_id: str | None
    signer: str
    integrated_at: str
    envelope: EnvelopeOut = Field(
        description="The stored envelope; its RFC 8785 canonical JSON is the leaf."
    )


class CheckpointOut(BaseModel):
    origin: str
    size: int
    root: str = Field(description="Hex root hash of the tree of `size` leaves.")
    note: str = Field(description="The signed note (C2SP tlog-checkpoint).")
    verifier_key: str = Field(description="The log's note verifier key.")


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    root: str
    hashes: list[str]


class ConsistencyProofOut(BaseModel):
    old: int
    new: int
    old_root: str
    new_root: str
    hashes: list[str]


class PostedEntry(BaseModel):
    created: bool = Field(description="False when the same envelope was already in the log.")
    entry: EntryOut
    inclusion_proof: InclusionProofOut


class PostEntryOut(PostedEntry):
    checkpoint: CheckpointOut


class PostBatchOut(BaseModel):
    entries: list[PostedEntry]
    checkpoint: CheckpointOut


class EntryPage(BaseModel):
    entries: list[EntryOut]
    size: int = Field(description="Size of the log when the page was read.")
    next_cursor: int | None = Field(
        None, description="Pass as `after` for the next page; null on the last page."
    )


class KeyOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    keyid: str
    name: str
    algorithm: str
    status: str
    added_at: str | None
    added_index: int | None
    revoked_at: str | None
    retired_at: str | None
    reason: str | None
    ended_index: int | None
    public_key: str = Field(description="PEM SubjectPublicKeyInfo.")


class KeysOut(BaseModel):
    verifier_key: str
    keys: list[KeyOut]


class KeyAddIn(BaseModel):
    # in these bodies, as in PackIn, an unknown member is a 422 naming it: a mistyped
    # "from" must not retire a key now
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    public_key: str = Field(
        min_length=1,
        max_length=16384,
        pattern=r"^[\t\n\r\x20-\x7e]+$",
        description="PEM public key.",
    )


class KeyRevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000, pattern=NO_NUL)


class KeyRetireIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("", max_length=2000, pattern=NO_NUL)
    effective_from: datetime | None = Field(
        None, description="RFC 3339; the key may sign until then (default: now)."
    )

    @field_validator("effective_from", mode="before")
    @classmethod
    def _a_time_in_words(cls, value: Any, info: Any) -> Any:
        return _time_member(value, info.field_name)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    role: Literal["pipeline", "auditor", "admin"]


class TokenOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: str
    revoked_at: str | None
    active: bool


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The bearer token. Shown once; only its hash is stored.")


class OwnTokenOut(BaseModel):
    id: str
    name: str
    role: Literal["pipeline", "auditor", "admin"]


class TokensOut(BaseModel):
    tokens: list[TokenOut]


class PackIn(BaseModel):
    """The scope of an audit pack, as with `escrow pack`."""

    model_config = ConfigDict(extra="forbid")

    projects: list[Annotated[str, Field(min_length=1, max_length=200, pattern=NO_NUL)]] = Field(
        default_factory=list, max_length=100, description="Projects; empty means all."
    )
    since: datetime | None = Field(
        None, description="RFC 3339 time, or a bare date YYYY-MM-DD (its midnight UTC); inclusive."
    )
    until: datetime | None = Field(
        None,
        description="RFC 3339 time (exclusive), or a bare date YYYY-MM-DD, which includes that "
        "whole day (UTC), as `escrow pack --until`.",
    )
    entries: list[Annotated[int, Field(strict=True, ge=0, le=MAX_INT)]] = Field(
        default_factory=list, max_length=10000, description="Only these ledger indexes."
    )
    since_checkpoint: str | None = Field(
        None,
        max_length=8192,
        pattern=NO_NUL,
        description="The auditor's previous checkpoint (signed note) to prove consistency with.",
    )
    tree_size: int | None = Field(
        None,
        strict=True,  # a JSON integer: not true (1), "5" nor 5.0
        ge=1,
        le=MAX_INT,
        description="The ledger as of its first N entries: their signed checkpoint, builds and "
        "key history (default: all).",
    )

    @field_validator("since", "until", mode="before")
    @classmethod
    def _as_the_cli_reads_it(cls, value: Any, info: Any) -> Any:
        """A time means what it means to `escrow pack`: ``until`` includes a bare date's day."""
        return _time_member(value, info.field_name, end_of_day=info.field_name == "until")


class PackJobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    scope: dict[str, Any]
    requested_by: str
    requested_at: str
    started_at: str | None
    finished_at: str | None
    heartbeat_at: str | None = Field(
        None,
        description="RFC 3339: when the server rendering the job last said it is alive (every "
        "minute while it renders); null before its first heartbeat and for a job never "
        "started. A running job whose last heartbeat, or its start before the first, is five "
        "minutes old belongs to a server that died, and is failed (or queued again).",
    )
    progress: str | None = Field(
        None,
        description="What the server rendering the job is doing, in words, as `escrow pack` "
        "shows it: the step (`collecting the builds`, `rendering 364 builds`, `signing` or "
        "`signing and timestamping with URL`, `recording the pack in the ledger`), then what "
        "more it said of that step after a colon (`rendering 364 builds: laying out builds "
        "17–32 of 364 (39 pages so far)`); at most 200 characters. Null while queued and until "
        "the renderer first says; a finished job keeps the last, where it ended.",
    )
    error: str | None = Field(
        description="Why a failed job failed: one sentence, as `escrow pack` says it."
    )
    error_kind: Literal["check", "input", "unavailable", "internal"] | None = Field(
        None,
        description="What made a failed job fail: `check` (a check failed), `input` (the "
        "request, or a document in it, is wrong), `unavailable` (something outside escrow: "
        "the Time-Stamping Authority, the database, a key, or the server's renderer process "
        "killed or gone stale) or `internal` (the renderer failed unexpectedly); null unless "
        "failed, and for jobs that failed before servers recorded it.",
    )
    error_exit_code: int | None = Field(
        None,
        description="The exit code `escrow pack` has for `error_kind`: 1 for `check`, 2 for "
        "`input`, 3 for `unavailable` and `internal`.",
    )
    pdf_sha256: str | None
    pdf_size: int | None
    entry_index: int | None = Field(None, description="The pack's own entry in the ledger.")
    pdf_url: str | None = Field(None, description="Where to GET the signed PDF once it exists.")


class HealthOut(BaseModel):
    status: Literal["ok"]
    size: int
