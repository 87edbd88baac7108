"""A real RFC 3161 Time-Stamping Authority for tests: OpenSSL's own (``openssl ts -reply``)
behind a loopback HTTP server, with a throwaway CA and a TSA certificate it issues
(extendedKeyUsage critical timeStamping)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from httpkit import loopback_server

TSA_NAME = "Test Time-Stamping Authority"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tsakit"),
        ]
    )


def _pem(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_ca(
    folder: Path, cn: str = "Test TSA Root CA"
) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA (valid from 20 years ago for 40 years); its PEM, certificate, key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=7300))
        .not_valid_after(now + timedelta(days=7300))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    return _pem(folder / f"{cn.lower().replace(' ', '-')}.pem", cert), cert, key


@dataclass
class TsaFiles:
    """The TSA's CA, its certificate and key, and the ``openssl ts`` configuration."""

    folder: Path
    ca_pem: Path
    cert_pem: Path
    key_pem: Path
    config: Path


def make_tsa_files(folder: Path) -> TsaFiles:
    """A throwaway TSA: a CA, a TSA certificate it issues (valid from 20 years ago for 40
    years, extendedKeyUsage critical timeStamping), and an ``openssl ts`` configuration."""
    ca_pem, ca, ca_key = make_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(TSA_NAME))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=7000))
        .not_valid_after(now + timedelta(days=7000))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = _pem(folder / "tsa.pem", cert)
    key_pem = folder / "tsa.key"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (folder / "tsaserial").write_text("01\n")
    config = folder / "tsa.cnf"
    config.write_text(
        f"""\
[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {folder}
serial = $dir/tsaserial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = {ca_pem}
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.4146.2.3
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""",
        encoding="utf-8",
    )
    return TsaFiles(folder, ca_pem, cert_pem, key_pem, config)


@dataclass
class Tsa:
    """A running TSA: its URL, files, how it answers (``mode``, see :func:`openssl_tsa`)
    and by which clock (``clock``; both may be changed while it runs), the replies it
    gave and the credentials it was sent."""

    url: str
    files: TsaFiles
    mode: str = "ok"
    clock: str | None = None  # a faketime offset ("-5d") for the TSA's clock
    answered: list[bytes] = field(default_factory=list)
    #: the Authorization header of each request (None: none was sent)
    authorizations: list[str | None] = field(default_factory=list)
    #: with N, the N-th request and those after it are held (``held`` set) until
    #: :meth:`answer` (then answered as ``mode`` says) or :meth:`refuse` (the connection
    #: closed unanswered); 0: none is held
    hold_from: int = 0
    held: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    refused: bool = False

    def answer(self) -> None:
        """Let the held requests be answered."""
        self.gate.set()

    def refuse(self) -> None:
        """Close the held requests' connections unanswered."""
        self.refused = True
        self.gate.set()


def openssl_reply(files: TsaFiles, query: bytes, clock: str | None = None) -> bytes:
    """``openssl ts -reply`` for the DER TimeStampReq ``query``: the DER TimeStampResp;
    with ``clock``, by a clock shifted that much (``faketime -f CLOCK``)."""
    faketime = ["faketime", "-f", clock] if clock else []
    with tempfile.TemporaryDirectory(prefix="tsakit-") as tmp:
        q, r = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
        q.write_bytes(query)
        subprocess.run(
            [
                *faketime,
                "openssl", "ts", "-reply",
                "-config", str(files.config),
                "-queryfile", str(q),
                "-inkey", str(files.key_pem),
                "-signer", str(files.cert_pem),
                "-out", str(r),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        return r.read_bytes()


@contextmanager
def openssl_tsa(files: TsaFiles, mode: str = "ok", hold_from: int = 0) -> Iterator[Tsa]:
    """Serve a TSA on a loopback port. ``mode``: ``ok`` (OpenSSL's replies), ``error``
    (HTTP 500), ``garbage`` (a 200 timestamp-reply whose body is no TimeStampResp),
    ``once`` (OpenSSL's reply to the first request, HTTP 500 after it); ``hold_from``: the
    first request held (:attr:`Tsa.hold_from`; any still held at the end are refused)."""
    lock = threading.Lock()
    tsa = Tsa("", files, mode, hold_from=hold_from)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                tsa.authorizations.append(self.headers.get("Authorization"))
                nth = len(tsa.authorizations)
            if tsa.hold_from and nth >= tsa.hold_from:
                tsa.held.set()
                tsa.gate.wait(300)
                if tsa.refused:
                    self.close_connection = True
                    return
            mode = tsa.mode
            if mode == "once":
                mode = "ok" if nth == 1 else "error"
            if mode == "error":
                self._answer(500, "text/plain", b"the TSA is down\n")
                return
            if mode == "garbage":
                self._answer(200, "application/timestamp-reply", b"this is no timestamp reply")
                return
            with lock:  # openssl ts updates its serial file
                reply = openssl_reply(files, body, tsa.clock)
                tsa.answered.append(reply)
            self._answer(200, "application/timestamp-reply", reply)

        def _answer(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    with loopback_server(Handler) as address:
        tsa.url = f"http://{address}/tsa"
        try:
            yield tsa
        finally:
            tsa.refuse()


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/tsa"
