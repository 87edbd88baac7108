"""The pack signing key and certificate: created once, or issued by the user's own CA."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from escrow.errors import InputError
from escrow.pack.sign import ensure_pack_signer

from .conftest import PackLedger

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _settings() -> Any:
    from escrow.config import load_settings

    return load_settings()


def test_created_once_and_kept(escrow_home: Path) -> None:
    a = ensure_pack_signer(_settings())
    key, cert = a.key_path.read_bytes(), a.cert_path.read_bytes()
    assert a.key_path == escrow_home / "keys" / "pack.key.pem"
    assert a.key_path.stat().st_mode & 0o777 == 0o600
    b = ensure_pack_signer(_settings())
    assert b.key_path.read_bytes() == key and b.cert_path.read_bytes() == cert
    pub = a.certificate().public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp256r1"


def test_a_certificate_for_another_key_is_refused(escrow_home: Path) -> None:
    from escrow.pack.sign import self_signed_certificate

    s = ensure_pack_signer(_settings())
    other = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "other")
    s.cert_path.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(InputError, match="does not belong"):
        ensure_pack_signer(_settings())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def test_certificate_from_the_users_ca(pack_ledger: PackLedger, cli: Any, tmp_path: Path) -> None:
    signer = ensure_pack_signer(_settings())
    pack_key = serialization.load_pem_private_key(signer.key_path.read_bytes(), None)
    assert isinstance(pack_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Example Audit CA"))
        .issuer_name(_name("Example Audit CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("escrow packs of Example Ltd"))
        .issuer_name(ca.subject)
        .public_key(pack_key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    signer.cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    pack_ledger.add(0)
    out = tmp_path / "p.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    sig = subprocess.run(["pdfsig", str(out)], capture_output=True, text=True).stdout
    assert "Signature is Valid" in sig
    assert "escrow packs of Example Ltd" in sig
    v = cli(["pack", "verify", str(out), "--trust", str(ca_pem), "--json"])
    assert v.exit_code == 0, v.stdout + v.stderr
    assert "trusted via ca.pem" in v.json()["checks"][0]["detail"]
    # the self-signed certificate of another home is no anchor for it
    other = tmp_path / "other.pem"
    from escrow.pack.sign import self_signed_certificate

    other.write_bytes(
        self_signed_certificate(ec.generate_private_key(ec.SECP256R1()), "x").public_bytes(
            serialization.Encoding.PEM
        )
    )
    assert cli(["pack", "verify", str(out), "--trust", str(other)]).exit_code == 1
