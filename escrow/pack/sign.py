"""The pack's PDF signature: PAdES with an ECDSA P-256 key and an X.509 certificate.

ECDSA P-256 because common PDF validators (poppler's ``pdfsig`` among them)
do not accept Ed25519 yet.  The key and certificate live in
``ESCROW_HOME/keys/pack.key.pem`` and ``pack.cert.pem``; :func:`ensure_pack_signer`
creates a self-signed pair on first use, and a certificate issued by the
user's own CA can be put in their place (``escrow keys``), with any
intermediate certificates in ``pack.chain.pem`` (embedded in the signature).

With a Time-Stamping Authority (``escrow pack --tsa URL``, or ``ESCROW_TSA_URL``), the
signature also carries an RFC 3161 signature timestamp (PAdES baseline B-T): the time a
third party vouches the signature existed at, which ``pack verify`` checks the signer
certificate at instead of the signing time the signature claims.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from escrow.config import Settings
from escrow.errors import EnvironmentProblem, EscrowError, InputError, KeyLocked
from escrow.signing.keyfile import ENCRYPTED_MARKER, create_file, read_key_file
from escrow.signing.keys import passphrase_bytes
from escrow.times import to_the_second

FIELD_NAME = "EscrowPackSignature"

#: the environment variable naming the Time-Stamping Authority (``--tsa`` wins over it)
TSA_URL_ENV = "ESCROW_TSA_URL"
#: seconds to wait for the Time-Stamping Authority's answer
TSA_TIMEOUT = 30.0


class PackSigningError(EscrowError):
    """The PDF could not be signed."""


class TimestampUnavailable(EnvironmentProblem):
    """The Time-Stamping Authority gave the signature no (valid) timestamp: exit 3, as for
    any service escrow needs that does not answer; nothing is written or recorded."""


def _without_credentials(url: str) -> str:
    """``url`` as it may be shown when it cannot be parsed as a URL: everything up to its
    last ``@`` (after the scheme's ``//``, if any) left out, wherever a password in it
    would end."""
    scheme, sep, rest = url.partition("//")
    if not sep:
        scheme, rest = "", url
    return scheme + sep + rest.rpartition("@")[2]


def tsa_url(given: str | None = None) -> str | None:
    """The Time-Stamping Authority's URL: ``given`` (``--tsa``), else ``ESCROW_TSA_URL``;
    None when neither names one (an empty value names none).  A URL that is not http(s),
    or has a port out of range, or an ``@`` after its host (a password holding a ``/``),
    is :class:`InputError` (exit 2), shown without its credentials.

    A user name and password (``https://user:password@host/…``, sent to the TSA as HTTP
    Basic credentials) are returned percent-encoded, so that a password holding an ``@``
    is left out whole wherever the URL is shown (:func:`escrow.config.redact_url`)."""
    value = given if given is not None else os.environ.get(TSA_URL_ENV)
    url = (value or "").strip()
    if not url:
        return None
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    source = "--tsa" if given is not None else TSA_URL_ENV
    hint = "Give the RFC 3161 URL your TSA publishes, e.g. https://tsa.example.com/tsr."
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"{source} is not an http(s) URL of a Time-Stamping Authority: "
            f"{_without_credentials(url)!r}.",
            hint=hint,
        )
    if "@" in urlunsplit(parts._replace(scheme="", netloc="")):
        raise InputError(
            f"{source} holds an @ after its host name, as a password holding a / would: "
            f"{_without_credentials(url)!r}.",
            hint="Write a user name or password that holds a / or an @ percent-encoded (%2F, %40).",
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise InputError(
            f"{source} names no valid port: {_without_credentials(url)!r}.", hint=hint
        ) from None
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        userinfo = quote(unquote(user), safe="") + colon + quote(unquote(password), safe="")
        url = urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))
    return url


@dataclass(frozen=True)
class PackSigner:
    key_path: Path
    cert_path: Path

    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert_path.read_bytes())

    @property
    def cert_sha256(self) -> str:
        return certificate_sha256(self.certificate())

    @property
    def subject(self) -> str:
        return self.certificate().subject.rfc4514_string()


def load_certificate(data: bytes) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise InputError(f"Not an X.509 certificate (PEM or DER): {e}.") from e


def certificate_sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def pack_key_paths(settings: Settings) -> tuple[Path, Path]:
    return settings.keys_dir / "pack.key.pem", settings.keys_dir / "pack.cert.pem"


def _load_private(path: Path, passphrase: str | None) -> ec.EllipticCurvePrivateKey:
    data = read_key_file(path, passphrase)
    encrypted = ENCRYPTED_MARKER in data
    try:
        key = serialization.load_pem_private_key(
            data, password=passphrase_bytes(passphrase) if encrypted and passphrase else None
        )
    except (ValueError, TypeError) as e:
        raise KeyLocked(f"The pack signing key {path} cannot be loaded: {e}.") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise InputError(f"The pack signing key {path} is not an ECDSA P-256 key.")
    return key


def self_signed_certificate(
    key: ec.EllipticCurvePrivateKey, common_name: str, now: datetime | None = None
) -> x509.Certificate:
    now = now or datetime.now(UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "escrow"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _create_signer_file(path: Path, data: bytes, mode: int, what: str) -> None:
    """Create the pack signer's key or certificate file ``path``, whole or not at all; one
    another process created meanwhile is kept (theirs signs, and is the one trusted).

    Both were written in place: a full disk left an empty ``pack.key.pem`` that every later
    pack failed to load, and two first packs at once could each sign with a certificate of
    their own while ``pack.cert.pem`` held only one of them."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        create_file(path, data, mode)
    except FileExistsError:  # another process created it meanwhile: theirs is used
        pass
    except OSError as e:
        raise EnvironmentProblem(
            f"Cannot create the {what} {path}: {e.strerror or e}; nothing was written.",
            hint="Free some space there or fix its permissions, then make the pack again.",
        ) from e


def ensure_pack_signer(settings: Settings, origin: str | None = None) -> PackSigner:
    """The pack signing key and certificate, created (self-signed) on first use; its
    subject names the ledger ``origin`` it was first made for."""
    key_path, cert_path = pack_key_paths(settings)
    if not key_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        enc: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase_bytes(settings.passphrase))
            if settings.passphrase
            else serialization.NoEncryption()
        )
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        _create_signer_file(key_path, pem, 0o600, "pack signing key")
    key = _load_private(key_path, settings.passphrase)
    if not cert_path.exists():
        name = f"escrow pack signer ({origin})" if origin else "escrow pack signer"
        cert = self_signed_certificate(key, name)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        _create_signer_file(cert_path, pem, 0o644, "pack certificate")
    cert = load_certificate(cert_path.read_bytes())
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise InputError(
            f"The pack certificate {cert_path} does not belong to the key {key_path}.",
            hint="Install the certificate issued for this key, or remove both to start afresh.",
        )
    return PackSigner(key_path=key_path, cert_path=cert_path)


def check_certificate_current(signer: PackSigner, now: datetime | None = None) -> None:
    """Refuse to sign with a pack certificate that is not valid now: ``pack verify --trust``
    checks it as of the signing time, so such a pack would never verify.
    :class:`KeyLocked` (exit 3), before anything is rendered or recorded."""
    now = now or datetime.now(UTC)
    cert = signer.certificate()
    if cert.not_valid_after_utc < now:
        problem = f"expired on {to_the_second(cert.not_valid_after_utc)}"
    elif cert.not_valid_before_utc > now:
        problem = f"is not valid before {to_the_second(cert.not_valid_before_utc)}"
    else:
        return
    raise KeyLocked(
        f"The pack certificate {signer.cert_path} {problem}: a pack signed with it would not "
        "verify.",
        hint=f"Put a renewed certificate for {signer.key_path} in its place, or remove the key "
        "and certificate to start afresh with a self-signed pair; nothing was rendered or "
        "recorded.",
    )


@contextmanager
def pyhanko_imports() -> Iterator[None]:
    """Import pyHanko inside this: it imports cryptography's DSA key classes (for DSA
    signers, which escrow never uses), and cryptography 51 warns on that import — a
    warning every `escrow pack` and `pack verify` would print.  Exactly that warning is
    silenced, only while pyHanko's modules are first imported."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="DSA is deprecated", category=Warning)
        yield


#: the digest of the PDF signature, and of the timestamp requests made for it
MD_ALGORITHM = "sha256"


def _timestamper(url: str, tokens: list[TokenCheck] | None = None) -> Any:
    """pyHanko's RFC 3161 client (:class:`~pyhanko.sign.timestamps.api.TimeStamper`: the
    request, its nonce and the token's place in the signature are pyHanko's), posting with
    httpx, and refusing any answer that is not a valid token for the digest asked about:
    each failure is :class:`TimestampUnavailable`, in one sentence naming ``url``.  Each
    token accepted is appended to ``tokens`` as checked."""
    with pyhanko_imports():
        from asn1crypto import tsp  # type: ignore[import-untyped]
        from pyhanko.sign.timestamps.api import TimeStamper
        from pyhanko.sign.timestamps.common_utils import TimestampRequestError

    from escrow.config import redact_url

    shown = redact_url(url)

    class EscrowTimeStamper(TimeStamper):
        async def async_request_tsa_response(self, req: Any) -> Any:
            import httpx

            try:
                async with httpx.AsyncClient(timeout=TSA_TIMEOUT) as client:
                    r = await client.post(
                        url,
                        content=req.dump(),
                        headers={"Content-Type": "application/timestamp-query"},
                    )
            except (httpx.HTTPError, httpx.InvalidURL) as e:
                reason = str(e) or type(e).__name__
                raise TimestampUnavailable(
                    f"The Time-Stamping Authority {shown} cannot be reached ({reason}).",
                    hint="Check the --tsa URL (or ESCROW_TSA_URL) and the network; nothing "
                    "was written or recorded.",
                ) from e
            ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if r.status_code != 200 or ctype != "application/timestamp-reply":
                raise TimestampUnavailable(
                    f"The Time-Stamping Authority {shown} answered HTTP {r.status_code} "
                    f"({ctype or 'no content type'}), not a timestamp reply.",
                    hint="Nothing was written or recorded.",
                )
            try:
                resp = tsp.TimeStampResp.load(r.content)
                resp.native  # noqa: B018 - parse it all now: asn1crypto parses lazily
            except Exception as e:  # noqa: BLE001 - asn1crypto raises several types
                raise self._garbage("is not an RFC 3161 timestamp reply") from e
            return resp

        def _garbage(self, what: str) -> TimestampUnavailable:
            return TimestampUnavailable(
                f"The Time-Stamping Authority {shown} answered with a reply that {what}.",
                hint="Nothing was written or recorded.",
            )

        async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> Any:
            try:
                token = await super().async_timestamp(message_digest, md_algorithm)
            except TimestampUnavailable:
                raise
            except TimestampRequestError as e:
                raise TimestampUnavailable(
                    f"The Time-Stamping Authority {shown} gave no timestamp: {e}.",
                    hint="Nothing was written or recorded.",
                ) from e
            except Exception as e:  # noqa: BLE001 - a malformed token inside the reply
                raise self._garbage("holds no readable timestamp token") from e
            try:
                checked = await check_token(token["content"], lambda _: message_digest)
            except Exception as e:  # noqa: BLE001 - damaged tokens raise many types
                raise self._garbage(f"holds a timestamp token that cannot be checked ({e})") from e
            if not checked.intact:
                raise self._garbage("holds a timestamp token for other data than this signature")
            if not checked.valid:
                raise self._garbage("holds a timestamp token whose signature does not verify")
            if tokens is not None:
                # the last one is the signature's (the first, for a dummy digest, sizes it)
                tokens.append(checked)
            return token

    return EscrowTimeStamper()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class TokenCheck:
    """An RFC 3161 timestamp token as :func:`check_token` found it: the time it states,
    its TSA (the subject of the certificate that signed it), whether its message imprint
    is the data's (``intact``), its CMS signature verifies (``valid``) and its certificate
    chains to the roots it was checked against (``trusted``), and that validation context."""

    time: datetime
    tsa: str
    intact: bool
    valid: bool
    trusted: bool
    context: Any


async def check_token(signed_data: Any, imprint: Any, trusted: Any = None) -> TokenCheck:
    """Check an RFC 3161 token's SignedData with pyHanko's :func:`validate_tst_signed_data`:
    its message imprint (``imprint(hash algorithm)`` gives the digest it must hold), its
    CMS signature, and its certificate path as of its own time — to ``trusted`` (a
    certificate: ``--tsa-trust``), else to the token's own certificates (the time is then
    the TSA's word).  What ``escrow pack`` asks of the TSA's answer and ``pack verify`` of
    the pack's token.  Raises on a token that cannot be read."""
    from cryptography.hazmat.primitives.serialization import Encoding

    with pyhanko_imports():
        from asn1crypto import x509 as asn1_x509
        from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
        from pyhanko.sign.validation.status import TimestampSignatureStatus
        from pyhanko_certvalidator import ValidationContext

    when = signed_data["encap_content_info"]["content"].parsed["gen_time"].native
    certs = [
        c.chosen
        for c in signed_data["certificates"] or []
        if isinstance(c.chosen, asn1_x509.Certificate)
    ]
    if not certs and trusted is None:
        raise ValueError("it does not include the TSA's certificate")
    roots = [asn1_x509.Certificate.load(trusted.public_bytes(Encoding.DER))] if trusted else certs
    context = ValidationContext(
        trust_roots=roots,
        other_certs=certs,
        allow_fetching=False,
        revocation_mode="soft-fail",
        moment=when,
    )
    status = TimestampSignatureStatus(
        **await validate_tst_signed_data(signed_data, context, imprint)
    )
    return TokenCheck(
        time=when,
        tsa=load_certificate(status.signing_cert.dump()).subject.rfc4514_string(),
        intact=status.intact,
        valid=status.valid,
        trusted=status.trusted,  # a property of the status (its path to a root), not a field
        context=context,
    )


def timestamper_for(tsa: str, tokens: list[TokenCheck] | None = None) -> Any:
    """The timestamper :func:`sign_pdf` will use for ``tsa``, having asked the TSA already
    for the token pyHanko sizes the signature with (a timestamp of a dummy digest, which it
    keeps): a TSA that cannot be reached, or gives no valid token, fails at once
    (:class:`TimestampUnavailable`), before a pack is rendered, and signing asks it only for
    the signature's own token afterwards."""
    import asyncio

    stamper = _timestamper(tsa, tokens)
    asyncio.run(stamper.async_dummy_response(MD_ALGORITHM))
    return stamper


def sign_pdf(
    pdf: bytes,
    signer: PackSigner,
    passphrase: str | None = None,
    tsa: str | None = None,
    tokens: list[TokenCheck] | None = None,
    timestamper: Any = None,
) -> bytes:
    """Sign ``pdf`` (PAdES baseline B, incremental update) and return the signed bytes;
    with the URL of a Time-Stamping Authority ``tsa``, baseline B-T: the signature carries
    that TSA's RFC 3161 signature timestamp (:class:`TimestampUnavailable` when it gives
    none), through ``timestamper`` when given (:func:`timestamper_for`)."""
    with pyhanko_imports():
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers

    try:
        chain = signer.cert_path.with_name("pack.chain.pem")
        simple = signers.SimpleSigner.load(  # type: ignore[no-untyped-call]
            str(signer.key_path),
            str(signer.cert_path),
            ca_chain_files=(str(chain),) if chain.is_file() else None,
            key_passphrase=passphrase_bytes(passphrase) if passphrase else None,
        )
    except Exception as e:  # noqa: BLE001 - pyHanko raises several types here
        raise KeyLocked(f"The pack signing key or certificate cannot be loaded: {e}.") from e
    if simple is None:
        raise KeyLocked(
            f"The pack signing key {signer.key_path} cannot be loaded.",
            hint="Check ESCROW_KEY_PASSPHRASE.",
        )
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME,
        md_algorithm=MD_ALGORITHM,
        subfilter=fields.SigSeedSubFilter.PADES,
        reason="escrow audit pack",
        name=signer.subject,
    )
    if timestamper is None and tsa:
        timestamper = _timestamper(tsa, tokens)
    out = io.BytesIO()
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        signers.sign_pdf(writer, meta, signer=simple, output=out, timestamper=timestamper)
    except EscrowError:
        raise  # the TSA's failure, said in one sentence
    except Exception as e:  # noqa: BLE001 - wrap pyHanko's errors at the boundary
        raise PackSigningError(f"Signing the pack PDF failed: {e}.") from e
    return out.getvalue()
