"""A Time-Stamping Authority URL that carries credentials (``https://user:secret@tsa/…``):
the password reaches the TSA (HTTP Basic), and nowhere else — not the pack's pages or
bytes, not the ledger, not a message of ``escrow pack``, whatever the password holds
(an ``@``) and however the URL is mistyped (another scheme, a bad port, a ``/`` in the
password)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from tsakit import Tsa, TsaFiles, closed_port_url, openssl_tsa

from .conftest import PackLedger, pdftotext

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

SECRET = "Zq7-SECRET-w4x"


def _with_userinfo(url: str, userinfo: str) -> str:
    return url.replace("http://", f"http://{userinfo}@", 1)


def _ledger_text(pack_ledger: PackLedger) -> str:
    ledger = pack_ledger.ledger
    return "\n".join(json.dumps(ledger.get(i).statement()) for i in range(ledger.size()))


def test_a_password_holding_an_at_sign_reaches_the_tsa_and_nothing_else(
    pack_ledger: PackLedger,
    cli: Any,
    tsa: Tsa,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: the page printed ``http://w4x@127.0.0.1:…`` — the part of the password
    after its ``@`` — as the TSA's URL (only ``user:Zq7-SECRET-`` up to the first ``@``
    was taken for the credentials)."""
    monkeypatch.delenv("ESCROW_TSA_URL", raising=False)
    pack_ledger.add(0)
    password = f"p@{SECRET}"
    url = _with_userinfo(tsa.url, f"tsauser:{password}")
    out = tmp_path / "pack.pdf"
    tsa.authorizations.clear()
    r = cli(["pack", "--project", "example", "--tsa", url, "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    # the TSA was sent exactly these credentials
    assert tsa.authorizations, "the TSA was not asked"
    sent = base64.b64encode(f"tsauser:{password}".encode()).decode()
    assert tsa.authorizations[-1] == f"Basic {sent}"
    # ...and nothing else holds any part of the password
    text = " ".join(pdftotext(out).split())
    assert f"RFC 3161 timestamp from the Time-Stamping Authority {tsa.url}." in text, text
    for where, said in {
        "page": text,
        "output": r.stdout + r.stderr,
        "ledger": _ledger_text(pack_ledger),
    }.items():
        assert "SECRET" not in said, where
        assert "tsauser" not in said, where
    assert b"SECRET" not in out.read_bytes()


@pytest.mark.parametrize(
    "how",
    ["ftp-scheme", "no-scheme", "env-no-scheme", "bad-port", "slash-in-password"],
)
def test_a_mistyped_tsa_url_is_refused_without_showing_its_password(
    pack_ledger: PackLedger,
    cli: Any,
    tsa: Tsa,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Exit 2, one sentence, before anything is rendered, and no part of the password.

    Regression: ``--tsa ftp://u:PASSWORD@…`` (or the URL without its scheme) was refused
    quoting the whole URL, password and all; a port out of range was "answered with a reply
    that holds no readable timestamp token" (exit 3); a password holding a ``/`` was quoted
    whole in the error."""
    monkeypatch.delenv("ESCROW_TSA_URL", raising=False)
    pack_ledger.add(0)
    before = pack_ledger.ledger.size()
    host = tsa.url.split("//", 1)[1]
    url = {
        "ftp-scheme": f"ftp://u:{SECRET}@tsa.example/tsr",
        "no-scheme": f"u:{SECRET}@tsa.example/tsr",
        "env-no-scheme": f"u:{SECRET}@tsa.example/tsr",
        "bad-port": f"http://u:{SECRET}@127.0.0.1:99999/tsa",
        "slash-in-password": f"http://u:ab/{SECRET}@{host}",
    }[how]
    out = tmp_path / "pack.pdf"
    args = ["pack", "--project", "example", "-o", str(out)]
    if how.startswith("env-"):
        monkeypatch.setenv("ESCROW_TSA_URL", url)
    else:
        args[1:1] = ["--tsa", url]
    tsa.answered.clear()
    r = cli(args)
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("escrow: error: "), lines[0]
    source = "ESCROW_TSA_URL" if how.startswith("env-") else "--tsa"
    assert source in lines[0]
    assert SECRET not in r.stderr + r.stdout
    if how == "bad-port":
        assert "port" in lines[0]
    assert not out.exists() and pack_ledger.ledger.size() == before
    assert tsa.answered == []


@pytest.mark.parametrize("how", ["unreachable", "http-error"])
def test_a_tsa_that_fails_is_named_without_its_password(
    pack_ledger: PackLedger,
    cli: Any,
    tsa_files: TsaFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    monkeypatch.delenv("ESCROW_TSA_URL", raising=False)
    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    if how == "unreachable":
        plain = closed_port_url()
        r = cli(
            [
                "pack", "--project", "example", "--tsa",
                _with_userinfo(plain, f"u:{SECRET}"), "-o", str(out),
            ]
        )  # fmt: skip
    else:
        with openssl_tsa(tsa_files, "error") as bad:
            plain = bad.url
            r = cli(
                [
                    "pack", "--project", "example", "--tsa",
                    _with_userinfo(plain, f"u:p@{SECRET}"), "-o", str(out),
                ]
            )  # fmt: skip
    assert r.exit_code == 3, r.stderr
    assert f"The Time-Stamping Authority {plain} " in r.stderr
    assert SECRET not in r.stderr + r.stdout
    assert not out.exists()
