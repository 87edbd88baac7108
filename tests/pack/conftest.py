"""Fixtures of the pack tests: a real SQLite ledger filled with signed build manifests."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tsakit import Tsa, TsaFiles, closed_port_url, make_tsa_files, openssl_tsa

from .synth import manifest_variant


@dataclass
class PackLedger:
    home: Path
    ledger: Any
    key: Any

    def add(self, n: int, **kw: Any) -> Any:
        from escrow.signing.dsse import sign_statement

        entry, _ = self.ledger.append(sign_statement(manifest_variant(n, **kw), self.key))
        return entry

    def add_statement(self, statement: dict[str, Any]) -> Any:
        from escrow.signing.dsse import sign_statement

        entry, _ = self.ledger.append(sign_statement(statement, self.key))
        return entry


@pytest.fixture
def pack_ledger(escrow_home: Path) -> Iterator[PackLedger]:
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.keys import SigningKey

    settings = load_settings()
    ledger = Ledger.open(settings)
    try:
        yield PackLedger(
            escrow_home, ledger, SigningKey.load(settings.key_path, settings.passphrase)
        )
    finally:
        ledger.close()


def pdftotext(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def statement_of(entry: Any) -> dict[str, Any]:
    return json.loads(json.dumps(entry.statement()))


def example_view(n: int = 2, **kw: Any) -> Any:
    """A view model of ``n`` builds made from the example manifest, without a ledger."""
    from escrow.pack.collect import build_view
    from escrow.pack.model import (
        KeyEventRow,
        KeyView,
        LedgerView,
        PackView,
        ScopeView,
        SignerView,
        SummaryView,
    )

    builds = tuple(
        build_view(
            index=i,
            leaf_hash=f"{i:02x}" * 32,
            integrated_at="2026-12-04T15:44:36Z",
            statement=manifest_variant(i, **kw),
            signer="cd" * 32,
            signer_name="build",
            algorithm="ed25519",
            signature_verified=True,
            inclusion_proof=["ef" * 32] * 3,
            inclusion_verified=True,
        )
        for i in range(n)
    )
    return PackView(
        pack_id="EP-0000-1111-2222-3333",
        title="Audit pack EP-0000-1111-2222-3333",
        requester="tests",
        generated_at="2026-12-04T16:00:00Z",
        scope=ScopeView(("example",), "", "", tuple(range(n)), ""),
        ledger=LedgerView(
            "escrow.local/ledger", n, "12" * 32, "EjQ=", "note\n", "vkey+0000+AQ==", True
        ),
        summary=SummaryView(n, 0, n, n, n, (("not checked", n),), ()),
        builds=builds,
        keys=(
            KeyView(
                "cd" * 32,
                "build",
                "ed25519",
                "active",
                "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n",
                (KeyEventRow("added", "2026-12-04T15:00:00Z", "", 0),),
            ),
        ),
        signer=SignerView("CN=test", "99" * 32, "ECDSA P-256"),
        overall="Verified",
        overall_ok=True,
        escrow_version="0.1.0",
    )


def run_escrow(args: list[str]) -> int:
    """``escrow ARGS`` in this process, output discarded; the exit code (for module fixtures)."""
    import contextlib
    import io

    from escrow.cli.main import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(list(args))
        except SystemExit as e:
            return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


@contextlib.contextmanager
def stamped_pack(tmp: Path, tsa_url: str, builds: int = 1) -> Iterator[Path]:
    """A pack of ``builds`` builds of project "example" in a home of its own (``tmp /
    "home"``, ESCROW_HOME while the block runs), timestamped by the TSA at ``tsa_url``
    given with ``--tsa``; ESCROW_TSA_URL names a TSA nothing answers at, so ``--tsa`` is
    seen to win over it.  Yields the PDF's path (``tmp / "stamped.pdf"``)."""
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(tmp / "home"))
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            mp.delenv(var, raising=False)
        mp.setenv("ESCROW_TSA_URL", closed_port_url())
        assert run_escrow(["init"]) == 0
        settings = load_settings()
        with Ledger.open(settings) as ledger:
            key = SigningKey.load(settings.key_path, settings.passphrase)
            for n in range(builds):
                ledger.append(sign_statement(manifest_variant(n), key))
        out = tmp / "stamped.pdf"
        assert run_escrow(["pack", "--project", "example", "--tsa", tsa_url, "-o", str(out)]) == 0
        yield out


@pytest.fixture(scope="module")
def tsa_files(tmp_path_factory: pytest.TempPathFactory) -> TsaFiles:
    """A throwaway Time-Stamping Authority's CA, certificate, key and OpenSSL configuration."""
    return make_tsa_files(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def tsa(tsa_files: TsaFiles) -> Iterator[Tsa]:
    """OpenSSL's own TSA (``openssl ts -reply``) answering on a loopback port."""
    with openssl_tsa(tsa_files) as running:
        yield running
