"""Helpers shared by the ledger tests and their worker processes (no pytest here)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from escrow.config import Settings, load_settings
from escrow.documents.canonical import canonical_bytes
from escrow.ledger.store import Ledger
from escrow.signing.dsse import Envelope
from escrow.signing.keys import SigningKey

ASSETS = Path(__file__).resolve().parent.parent / "assets"
_EXAMPLE: dict[str, Any] | None = None


def manifest(n: int, *, project: str = "proj", tag: str = "t") -> dict[str, Any]:
    """A valid build-manifest statement, unique per ``(tag, n)``."""
    global _EXAMPLE
    if _EXAMPLE is None:
        _EXAMPLE = json.loads((ASSETS / "build-manifest.example.json").read_text())
    st = copy.deepcopy(_EXAMPLE)
    digest = hashlib.sha256(f"{tag}-{n}".encode()).hexdigest()
    st["subject"][0]["digest"]["sha256"] = digest
    pred = st["predicate"]
    pred["build"]["id"] = f"{tag}-{n}"
    pred["build"]["project"] = project
    pred["image"]["id"] = f"sha256:{digest}"
    for j, layer in enumerate(pred["layers"]):
        layer["diffId"] = "sha256:" + hashlib.sha256(f"{tag}-{n}-layer-{j}".encode()).hexdigest()
    pred["layers"][0]["diffId"] = "sha256:" + hashlib.sha256(b"shared-base-layer").hexdigest()
    return st


def raw_sign(statement: dict[str, Any], key: SigningKey) -> Envelope:
    """Sign without validating (the ledger must do the validating)."""
    return Envelope(payload=canonical_bytes(statement)).signed_by(key)


def diff_ids(statement: dict[str, Any]) -> list[str]:
    return [layer["diffId"] for layer in statement["predicate"]["layers"]]


@dataclass
class LedgerEnv:
    home: Path
    settings: Settings
    build_key: SigningKey
    log_key: SigningKey

    @classmethod
    def create(cls, home: Path, db_url: str, *, register: bool = True) -> LedgerEnv:
        settings = load_settings(home=home)._replace(db_url=db_url)
        SigningKey.generate().save(settings.log_key_path)
        SigningKey.generate().save(settings.key_path)
        env = cls.load(home, db_url)
        if register:
            with env.open() as lg:
                lg.register_key(env.build_key.public, "build")
        return env

    @classmethod
    def load(cls, home: Path, db_url: str) -> LedgerEnv:
        settings = load_settings(home=home)._replace(db_url=db_url)
        return cls(
            home=home,
            settings=settings,
            build_key=SigningKey.load(settings.key_path),
            log_key=SigningKey.load(settings.log_key_path),
        )

    def open(self) -> Ledger:
        return Ledger.open(self.settings)

    def envelope(
        self, n: int, *, project: str = "proj", tag: str = "t", key: SigningKey | None = None
    ) -> Envelope:
        return raw_sign(manifest(n, project=project, tag=tag), key or self.build_key)


@contextmanager
def raw_sql(url: str) -> Iterator[Any]:
    """A raw connection to a ledger's database (to tamper with it), committed at the end."""
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def q(conn: Any, statement: str, **params: Any) -> Any:
    from sqlalchemy import text

    return conn.execute(text(statement), params)
