"""Bearer tokens with roles, stored hashed in the ledger's database.

A token is ``escrow_`` followed by 43 URL-safe base64 characters (32 random
bytes).  Only its SHA-256 is stored (a fast hash is enough: the token has 256
bits of entropy, so there is nothing to brute-force), with a short public ID,
a name, a role and the time it was created or revoked.

Roles:

============  =====================================================
``pipeline``  read the log, post entries
``auditor``   read the log, request and fetch audit packs
``admin``     everything, including keys and tokens
============  =====================================================

Reads are open to every role because a pipeline verifies the proofs and
checkpoints of what it posted.
"""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlmodel import Field, SQLModel

from escrow.errors import DatabaseUnavailable, InputError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

TOKEN_PREFIX = "escrow_"  # noqa: S105 - a prefix, not a secret
#: PostgreSQL advisory lock key serialising token creation ("escrowt" in ASCII): the check
#: that no active token has the name and the insert are one step for every server.
PG_TOKEN_LOCK_KEY = 0x657363726F7774


def db_reason(e: BaseException) -> str:
    """A database failure as one clause: the driver's first line ("connection failed: …
    Connection refused"), not the exception's class name nor its traceback."""
    orig = getattr(e, "orig", None) or e
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return (lines[0] if lines else type(orig).__name__).rstrip(" .?!:;")


class Role(StrEnum):
    PIPELINE = "pipeline"
    AUDITOR = "auditor"
    ADMIN = "admin"


class ServerToken(SQLModel, table=True):
    """One bearer token; ``token_hash`` is hex SHA-256 of the whole token string."""

    __tablename__ = "server_tokens"

    id: str = Field(primary_key=True, max_length=16)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(index=True, max_length=200)
    role: str = Field(max_length=16)
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's ID, name and role."""

    token_id: str
    name: str
    role: Role

    def may(self, *roles: Role) -> bool:
        return self.role is Role.ADMIN or self.role in roles

    def __str__(self) -> str:
        return f"{self.name!r} ({self.role.value}, token {self.token_id})"


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "created_at": _rfc3339(self.created_at),
            "revoked_at": _rfc3339(self.revoked_at) if self.revoked_at else None,
            "active": self.revoked_at is None,
        }


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _info(row: ServerToken) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=_utc(row.created_at),
        revoked_at=_utc(row.revoked_at) if row.revoked_at else None,
    )


def check_name(name: str) -> str:
    name = name.strip()
    if (
        not name
        or len(name) > 200
        or any(
            ord(c) < 32
            or 0x7F <= ord(c) <= 0x9F
            or 0xD800 <= ord(c) <= 0xDFFF
            # format characters: direction overrides (U+202E) and zero-width ones would
            # reorder or hide what `tokens list` and the server log print beside the name
            or unicodedata.category(c) == "Cf"
            for c in name
        )
    ):
        raise InputError(
            "A token name must be 1 to 200 printable characters.",
            hint="Name it after the pipeline or the person, e.g. --name ci-nightly.",
        )
    return name


def _is_text(value: str) -> bool:
    """Whether ``value`` can be written as UTF-8 (no lone surrogates from bytes that were not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TokenNameTaken(InputError):
    """An active token already has the name asked for (the API's 409)."""


class TokenStore:
    """Create, list, revoke and resolve tokens in the ledger's database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def create_tables(cls, engine: Engine) -> None:
        """Create the ``server_tokens`` table when missing (safe with several servers starting)."""
        from escrow.ledger.store import create_missing_tables

        create_missing_tables(engine, ServerToken.__table__)  # type: ignore[attr-defined]

    def _session(self, *, write: bool = False) -> Any:
        from sqlmodel import Session

        # BEGIN IMMEDIATE on SQLite for writes (see escrow.ledger.store.make_engine)
        return Session(self.engine.execution_options(escrow_write=True) if write else self.engine)

    def create(self, name: str, role: Role) -> tuple[str, TokenInfo]:
        """A new token; return ``(token, info)``.  The token itself is never stored."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import select

        name = check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ServerToken(
            id=secrets.token_hex(6),
            token_hash=hash_token(token),
            name=name,
            role=role.value,
            created_at=datetime.now(UTC),
        )
        try:
            with self._session(write=True) as s:
                if self.engine.dialect.name == "postgresql":
                    # SQLite's BEGIN IMMEDIATE serialises this; on PostgreSQL two servers
                    # (or workers) would both find the name free and both insert it
                    s.exec(text(f"SELECT pg_advisory_xact_lock({PG_TOKEN_LOCK_KEY})"))
                clash = s.exec(
                    select(ServerToken).where(
                        ServerToken.name == name,
                        ServerToken.revoked_at.is_(None),  # type: ignore[union-attr]
                    )
                ).first()
                if clash is not None:
                    raise TokenNameTaken(
                        f"An active token named {name!r} already exists (ID {clash.id}).",
                        hint="Revoke it first or choose another name.",
                    )
                s.add(row)
                s.commit()
                s.refresh(row)
                return token, _info(row)
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot store the token: {db_reason(e)}.") from e

    def list(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import select

        try:
            with self._session() as s:
                q = select(ServerToken).order_by(ServerToken.created_at)  # type: ignore[arg-type]
                if not include_revoked:
                    q = q.where(ServerToken.revoked_at.is_(None))  # type: ignore[union-attr]
                return [_info(r) for r in s.exec(q).all()]
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot read the tokens: {db_reason(e)}.") from e

    def revoke(self, id_or_name: str) -> TokenInfo:
        """Revoke the token with this ID or (active) name; revoking twice is a no-op."""
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import select

        try:
            if not _is_text(id_or_name):  # bytes that are not UTF-8 name no token
                raise InputError(
                    f"There is no token with the ID or active name {id_or_name!r}.",
                    hint="`escrow tokens list` shows them.",
                )
            with self._session(write=True) as s:
                row = s.get(ServerToken, id_or_name)
                if row is None:
                    rows = s.exec(
                        select(ServerToken).where(
                            ServerToken.name == id_or_name,
                            ServerToken.revoked_at.is_(None),  # type: ignore[union-attr]
                        )
                    ).all()
                    if not rows:
                        raise InputError(
                            f"There is no token with the ID or active name {id_or_name!r}.",
                            hint="`escrow tokens list` shows them.",
                        )
                    if len(rows) > 1:  # made at once by two servers before names were locked
                        ids = ", ".join(sorted(r.id for r in rows))
                        raise InputError(
                            f"{len(rows)} active tokens are named {id_or_name!r} ({ids}); "
                            "nothing was revoked.",
                            hint="Revoke each by its ID.",
                        )
                    row = rows[0]
                if row.revoked_at is None:
                    row.revoked_at = datetime.now(UTC)
                    s.add(row)
                    s.commit()
                    s.refresh(row)
                return _info(row)
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot revoke the token: {db_reason(e)}.") from e

    def resolve(self, token: str) -> Principal | None:
        """The principal of an active token, or ``None``."""
        from sqlalchemy.exc import SQLAlchemyError
        from sqlmodel import select

        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        try:
            with self._session() as s:
                row = s.exec(
                    select(ServerToken).where(ServerToken.token_hash == hash_token(token))
                ).first()
        except SQLAlchemyError as e:
            raise DatabaseUnavailable(f"Cannot check the token: {db_reason(e)}.") from e
        if row is None or row.revoked_at is not None:
            return None
        # compare in constant time anyway (the lookup was by hash, so this is belt and braces)
        if not secrets.compare_digest(row.token_hash, hash_token(token)):
            return None
        return Principal(token_id=row.id, name=row.name, role=Role(row.role))
