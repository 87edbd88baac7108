"""Whether a key could sign an entry is decided by the entry's position in the log.

A key may sign the entries appended after the event that added it and before the event
that revoked or retired it; after a retirement, only those appended before the time it
takes effect (its signed ``effectiveFrom``, or the event's own append: a retirement from a
later date leaves the key signing until then).  The append, `escrow ledger verify`, the
pack's own checks and `pack verify` decided it so; `escrow verify` (on a ledger or through
a server) and `escrow pack`'s verdict compared times alone: an entry appended before the
retirement but in the same microsecond — or with the clock put back meanwhile, when the
ledger gives the later entries its last time (append times never go back) — was "signed
by a key retired before the entry was appended", a finding of the pack, while `ledger
verify` and `pack verify` passed it.

The times are the ledger's: ``escrow.ledger.store.now_us`` set to a clock ahead (then put
back, or kept still), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import LedgerEnv, manifest, raw_sign

from escrow.errors import SignatureError
from escrow.ledger.store import key_event_statement
from escrow.signing.dsse import sign_statement
from tests.conftest import run_cli

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

#: how far ahead of the real clock the ledger's clock is set (then put back, or kept)
AHEAD_US = 10_000_000


def _clock(monkeypatch: pytest.MonkeyPatch, us: Callable[[], int]) -> None:
    from escrow.ledger import store

    monkeypatch.setattr(store, "now_us", us)


@contextmanager
def _past_the_key_table(env: LedgerEnv, keyid: str) -> Iterator[None]:
    """What a thief with write access to the database does to append with a key the
    ledger ended: its key-table row set active for one append, then put back."""
    from sqlalchemy import text

    from escrow.ledger.store import make_engine

    engine = make_engine(env.settings.db_url)
    bump = text("UPDATE ledger_meta SET value = :v WHERE name = 'key_version'")
    version = text("SELECT value FROM ledger_meta WHERE name = 'key_version'")
    try:
        with engine.begin() as conn:
            row = conn.execute(
                text("SELECT status, retired_us FROM ledger_key WHERE keyid = :k"), {"k": keyid}
            ).one()
            conn.execute(
                text("UPDATE ledger_key SET status = 'active', retired_us = NULL WHERE keyid = :k"),
                {"k": keyid},
            )
            conn.execute(bump, {"v": str(int(conn.execute(version).scalar_one()) + 1)})
        yield
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE ledger_key SET status = :s, retired_us = :r WHERE keyid = :k"),
                {"s": row.status, "r": row.retired_us, "k": keyid},
            )
            conn.execute(bump, {"v": str(int(conn.execute(version).scalar_one()) + 1)})
    finally:
        engine.dispose()


def _problems(r: Any) -> list[tuple[int, str]]:
    return [(p["index"], p["kind"]) for p in r.json()["problems"]]


def _verify(index: int) -> Any:
    r = run_cli(["verify", str(index), "--json"])
    signature = next(c for c in r.json()["checks"] if c["name"] == "signature")
    return r.exit_code, signature


@pytest.mark.parametrize("clock", ["kept-still", "put-back"])
def test_an_entry_appended_in_the_microsecond_of_a_retirement_is_judged_by_its_position(
    cli_env: LedgerEnv, monkeypatch: pytest.MonkeyPatch, clock: str, tmp_path: Path
) -> None:
    """Entry 1 is appended, then the key is retired, in the same microsecond: the clock
    kept still, or put back (the ledger then gives the retirement entry 1's time).  Entry 1
    was appended before the retirement and is valid; an entry written past the key table
    after the retirement (in that microsecond too) is not; the key revoked later changes
    neither.  Every verifier says so."""
    from escrow.ledger import store

    env = cli_env
    real = store.now_us
    with env.open() as lg:
        if clock == "kept-still":  # a retirement from that very microsecond
            now = real()
            _clock(monkeypatch, lambda: now)
            honest, _ = lg.append(sign_statement(manifest(1), env.build_key))
            event = key_event_statement(
                "retired", env.build_key.public, "build", store.from_us(now), "rotated"
            )
            retirement, _ = lg.append(raw_sign(event, env.log_key))
        else:  # ahead, then put back: the retirement (from now) is given entry 1's time
            ahead = real() + AHEAD_US
            _clock(monkeypatch, lambda: ahead)
            honest, _ = lg.append(sign_statement(manifest(1), env.build_key))
            _clock(monkeypatch, real)
            retirement = lg.retire_key(env.build_key.keyid, reason="rotated")
        with pytest.raises(SignatureError, match="may not sign now"):
            lg.append(sign_statement(manifest(2), env.build_key))  # the append refuses it
        with _past_the_key_table(env, env.build_key.keyid):
            forged, _ = lg.append(sign_statement(manifest(3), env.build_key))
        revocation = lg.revoke_key(env.build_key.keyid, "leaked")
    assert honest.integrated_at == retirement.integrated_at == forged.integrated_at
    assert honest.index < retirement.index < forged.index < revocation.index
    _clock(monkeypatch, real)

    code, signature = _verify(honest.index)
    assert code == 0 and signature["ok"], signature
    assert "(since revoked)" in signature["detail"]
    code, signature = _verify(forged.index)
    assert code == 1 and not signature["ok"]
    assert "was retired before the entry was appended" in signature["detail"]

    r = run_cli(["ledger", "verify", "--json"])
    assert r.exit_code == 1
    assert _problems(r) == [(forged.index, "key-not-valid")], r.stdout

    # the keys a pack of entry 1 shows as in force over its entries: the build key too
    from escrow.pack.collect import _in_force_at
    from escrow.verification import _key_history

    with env.open() as lg:
        records = {r.keyid: r for r in _key_history(lg)}
        assert _in_force_at(records[env.build_key.keyid], [lg.get(honest.index)])
    if clock == "kept-still":
        return  # the same positions and times: one pack is enough
    # escrow pack (with a new build key) of entry 1: verified, as pack verify finds it from
    # the pack's evidence (`escrow pack` said "Verification failed", and pack verify then
    # failed its own verdict: "its evidence gives Verified")
    assert run_cli(["keys", "rotate"]).exit_code == 0
    out = tmp_path / "pack.pdf"
    r = run_cli(["pack", "--entries", str(honest.index), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.json()["overall"].startswith("Verified"), r.stdout
    r = run_cli(["pack", "verify", str(out)])
    assert r.exit_code == 0, r.stdout + r.stderr


def test_a_retirement_from_a_later_date_ends_the_key_at_that_time(
    cli_env: LedgerEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a retirement from a later date the key signs until that time, to the
    microsecond: an entry appended a microsecond before it is valid for every verifier,
    and one at that time is refused (one written past the key table is invalid)."""
    from escrow.ledger import store

    env = cli_env
    real = store.now_us
    when = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=250_000)
    with env.open() as lg:
        retirement = lg.retire_key(env.build_key.keyid, when, reason="rotated")
        effective = store.to_us(when)
        _clock(monkeypatch, lambda: effective - 1)
        last, _ = lg.append(sign_statement(manifest(1), env.build_key))
        _clock(monkeypatch, lambda: effective)
        with pytest.raises(SignatureError, match="may not sign now"):
            lg.append(sign_statement(manifest(2), env.build_key))
        with _past_the_key_table(env, env.build_key.keyid):
            late, _ = lg.append(sign_statement(manifest(3), env.build_key))
    _clock(monkeypatch, real)
    assert retirement.index < last.index < late.index
    assert late.integrated_at == when

    code, signature = _verify(last.index)
    assert code == 0 and signature["ok"], signature
    code, signature = _verify(late.index)
    assert code == 1 and "was retired before the entry was appended" in signature["detail"]
    r = run_cli(["ledger", "verify", "--json"])
    assert _problems(r) == [(late.index, "key-not-valid")], r.stdout


def test_escrow_verify_through_a_server_judges_by_position(
    cli_env: LedgerEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The client's check (`escrow verify` through `escrow serve`, keys replayed from the
    server's key events) comes to what it does on the ledger itself."""
    from escrow.ledger import store
    from escrow.server.app import ServerConfig, create_app
    from tests.server.server_helpers import make_tokens, serving

    env = cli_env
    real = store.now_us
    ahead = real() + AHEAD_US
    _clock(monkeypatch, lambda: ahead)
    with env.open() as lg:
        honest, _ = lg.append(sign_statement(manifest(1), env.build_key))
        _clock(monkeypatch, real)  # the clock put back
        retirement = lg.retire_key(env.build_key.keyid, reason="rotated")
    assert honest.integrated_at == retirement.integrated_at

    tokens = make_tokens(env.settings)
    with serving(create_app(ServerConfig(env.settings, pack_workers=0))) as url:
        monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "client-home"))
        monkeypatch.setenv("ESCROW_SERVER", url)
        monkeypatch.setenv("ESCROW_TOKEN", tokens["auditor"])
        monkeypatch.delenv("ESCROW_DB_URL")
        code, signature = _verify(honest.index)
    assert code == 0 and signature["ok"], signature
