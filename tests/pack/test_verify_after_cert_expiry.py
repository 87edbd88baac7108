"""A pack verifies offline long after it was made: its signer certificate is checked as of
the signing time, not against the verifier's clock (run under ``faketime``), on a machine
with no escrow home, after a key rotation retired the key that signed its first builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tsakit import make_ca

from .conftest import PackLedger

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

ESCROW = Path(sys.executable).with_name("escrow")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def install_ca_issued_pack_cert(home: Path, tmp: Path, not_before: datetime, days: int) -> Path:
    """A CA (valid from 20 years ago for 40 years) and a pack certificate it issues for
    ``days`` from ``not_before``, put in ``home/keys`` as the pack signer; returns the CA's
    PEM."""
    pem, ca, ca_key = make_ca(tmp, "Test Root CA")
    ca_pem = pem.replace(tmp / "ca.pem")  # the name the auditor is told to give --trust
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("ACME pack signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    keys = home / "keys"
    (keys / "pack.key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (keys / "pack.cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_pem


def verify_elsewhere(
    pack: Path, machine: Path, *args: str, clock: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``escrow pack verify`` on the auditor's machine: a copy of the pack in its own
    folder, an ESCROW_HOME that does not exist, and its clock shifted by ``clock``."""
    faketime = shutil.which("faketime")
    if clock is not None and faketime is None:
        pytest.fail("faketime (Debian's faketime package) is needed; scripts/test.sh installs it.")
    machine.mkdir(exist_ok=True)
    copy = machine / "received-pack.pdf"
    shutil.copyfile(pack, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env["ESCROW_HOME"] = str(machine / "no-escrow-home")
    prefix = [str(faketime), "-f", clock] if clock is not None and faketime else []
    return subprocess.run(
        [*prefix, str(ESCROW), "pack", "verify", copy.name, *args],
        cwd=machine,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def rotate_and_build(pack_ledger: PackLedger, cli: Any) -> None:
    """Two builds signed by the first build key, a rotation that retires it, and a build
    signed by its successor."""
    from escrow.config import load_settings
    from escrow.signing.keys import SigningKey

    pack_ledger.add(0)
    pack_ledger.add(1)
    r = cli(["keys", "rotate"])
    assert r.exit_code == 0, r.stderr
    settings = load_settings()
    pack_ledger.key = SigningKey.load(settings.key_path, settings.passphrase)
    pack_ledger.add(2)


@pytest.mark.parametrize(
    "clock", ["+400d", "-2d"], ids=["a-year-later-certificate-expired", "clock-behind"]
)
def test_a_pack_signed_by_a_ca_issued_certificate_verifies_after_it_expired(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, clock: str
) -> None:
    """Regression: `pack verify --trust ca.pem` checked the signer certificate against
    the verifier's clock, so a genuine pack stopped verifying once its (one-year)
    certificate expired, or on a machine whose clock was behind, with the false reason
    "the signer certificate does not chain to ca.pem"."""
    rotate_and_build(pack_ledger, cli)
    now = datetime.now(UTC)
    ca = install_ca_issued_pack_cert(pack_ledger.home, tmp_path, now - timedelta(hours=1), 365)
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "example", "--requester", "ACME Escrow", "-o", str(out)])
    assert r.exit_code == 0, r.stderr

    v = verify_elsewhere(out, tmp_path / "auditor", "--trust", str(ca), clock=clock)
    assert v.returncode == 0, v.stderr
    assert "verified" in v.stdout
    assert "trusted via ca.pem as of its signing time" in v.stderr, v.stderr
    if clock.startswith("+"):
        assert "the certificate has expired since" in v.stderr, v.stderr
    # the builds of the retired key still verify, and the verdict recomputes offline
    assert "ok   envelope signatures: 6 envelopes, each signed by a key valid" in v.stderr
    assert "ok   verdict: Verified" in v.stderr, v.stderr


def test_the_default_self_signed_pack_verifies_after_ten_years(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """The self-signed certificate escrow makes is valid for ten years; a pack signed
    with it verifies, anchored on it, after that."""
    pack_ledger.add(0)
    out = tmp_path / "pack.pdf"
    assert cli(["pack", "--project", "example", "-o", str(out)]).exit_code == 0
    cert = pack_ledger.home / "keys" / "pack.cert.pem"
    v = verify_elsewhere(out, tmp_path / "auditor", "--trust", str(cert), clock="+3700d")
    assert v.returncode == 0, v.stderr
    assert "the certificate has expired since" in v.stderr, v.stderr


def test_making_a_pack_with_an_expired_certificate_is_refused(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """Regression: `escrow pack` signed and recorded a pack with a pack certificate that
    had expired, one no auditor could verify; it is refused before rendering (exit 3),
    nothing written or recorded."""
    pack_ledger.add(0)
    before = pack_ledger.ledger.size()
    now = datetime.now(UTC)
    install_ca_issued_pack_cert(pack_ledger.home, tmp_path, now - timedelta(days=30), 29)
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out)])
    assert r.exit_code == 3, r.stderr
    assert "pack.cert.pem expired on" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()
    assert pack_ledger.ledger.size() == before


def test_verify_names_a_certificate_not_valid_when_the_pack_was_signed(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    """Regression: a pack signed after its certificate expired was reported as "does not
    chain to ca.pem", which sent the auditor after the wrong certificate."""
    from escrow.config import load_settings
    from escrow.pack.sign import ensure_pack_signer, sign_pdf

    pack_ledger.add(0)
    now = datetime.now(UTC)
    ca = install_ca_issued_pack_cert(pack_ledger.home, tmp_path, now - timedelta(days=30), 29)
    rendered = tmp_path / "rendered.pdf"
    r = cli(["pack", "--project", "example", "--render-only", "-o", str(rendered)])
    assert r.exit_code == 0, r.stderr
    signer = ensure_pack_signer(load_settings())
    out = tmp_path / "pack.pdf"
    out.write_bytes(sign_pdf(rendered.read_bytes(), signer))

    v = verify_elsewhere(out, tmp_path / "auditor", "--trust", str(ca))
    assert v.returncode == 1, v.stderr
    last = v.stderr.strip().splitlines()[-1]
    assert "the signer certificate was not valid when the pack was signed" in last, last
    assert "does not chain" not in v.stderr
