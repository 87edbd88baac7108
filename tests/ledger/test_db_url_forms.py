"""Ledger database URLs as users copy them: ``postgres://`` (libpq's and many hosting
services' spelling, which SQLAlchemy no longer reads) names PostgreSQL as ``postgresql://``
does, and a plain file path is told apart from a broken URL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pgkit import fresh_pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_pg_database("escrow_url_forms")


@pytest.mark.parametrize("scheme", ["postgres", "postgres+psycopg"])
def test_a_postgres_url_reaches_postgresql(
    scheme: str, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """Regression: `postgres://…` failed "Unsupported ledger database 'postgres'"."""
    url = f"{scheme}://{pg_url.split('://', 1)[1]}"
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESCROW_DB_URL", url)
    r = cli(["init"])
    assert r.exit_code == 0, r.stderr
    assert not (tmp_path / "home" / "ledger.db").exists()  # not a SQLite file instead
    # the same ledger, read through the URL's usual spelling
    monkeypatch.setenv("ESCROW_DB_URL", pg_url)
    r = cli(["ledger", "checkpoint", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["size"] == 1  # the build key's event


def test_canonical_db_url_touches_only_the_postgres_scheme() -> None:
    from escrow.config import canonical_db_url

    assert canonical_db_url("postgres://u:p@h:5/d") == "postgresql://u:p@h:5/d"
    assert canonical_db_url("postgres+psycopg://h/d") == "postgresql+psycopg://h/d"
    for url in (
        "postgresql://h/d",
        "postgresql+psycopg://h/d",
        "sqlite:////x/postgres://y",
        "postgresx://h/d",
        "/var/lib/postgres://",
    ):
        assert canonical_db_url(url) == url


def test_a_plain_path_is_told_it_is_no_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    """Regression: a path for ESCROW_DB_URL was shown as '/x/ledger.db:…' "is not valid:
    Could not parse SQLAlchemy URL"."""
    path = str(tmp_path / "ledger.db")
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESCROW_DB_URL", path)
    r = cli(["init"])
    assert r.exit_code == 2, r.stderr
    assert f"'{path}' is not a ledger database URL." in r.stderr
    assert "sqlite:////absolute/path/ledger.db" in r.stderr
    assert "SQLAlchemy" not in r.stderr
    assert not Path(path).exists() and not (tmp_path / "home" / "keys").exists()


def test_a_broken_url_with_credentials_still_hides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Any
) -> None:
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ESCROW_DB_URL", "escrow:Sekr1t@db.example/ledger")
    r = cli(["log"])
    assert r.exit_code == 2, r.stderr
    assert "Sekr1t" not in r.stdout + r.stderr
