"""Trusted timestamps on audit packs (PAdES B-T, RFC 3161): ``escrow pack --tsa URL`` has
the signature timestamped by a Time-Stamping Authority, and ``escrow pack verify`` checks
the token, names its time and TSA, anchors it with ``--tsa-trust``, and checks the signer
certificate as of the timestamp's time instead of the signing time the signature claims.

The TSA is OpenSSL's own (``openssl ts -reply``) behind a loopback HTTP server
(tests/tsakit.py); the token is also checked independently with ``openssl ts -verify``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tsakit import TSA_NAME, Tsa, TsaFiles, closed_port_url, make_ca, openssl_tsa

from .conftest import PackLedger, pdftotext, stamped_pack
from .test_verify_after_cert_expiry import install_ca_issued_pack_cert, verify_elsewhere

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@dataclass
class StampedPack:
    path: Path
    home: Path
    before: datetime  # just before `escrow pack` ran
    after: datetime  # just after


@pytest.fixture(scope="module")
def stamped(tsa: Tsa, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StampedPack]:
    """One pack of one build, timestamped by the test TSA (made once, for every check)."""
    tmp = tmp_path_factory.mktemp("stamped-pack")
    before = datetime.now(UTC)
    with stamped_pack(tmp, tsa.url) as out:
        yield StampedPack(out, tmp / "home", before, datetime.now(UTC))


def verify(cli: Any, pdf: Path, *args: str) -> Any:
    return cli(["pack", "verify", str(pdf), *args, "--json"])


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    found = [c for c in report["checks"] if c["name"] == name]
    assert len(found) == 1, report["checks"]
    check: dict[str, Any] = found[0]
    return check


# -- the signature's CMS, read from the file as any tool would -----------------------


def _gap(data: bytes) -> tuple[int, int]:
    """Where the signature's /Contents hex string lies: between the two signed ranges."""
    m = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", data)
    assert m
    return int(m.group(2)), int(m.group(3))


def _signature_cms(data: bytes) -> Any:
    from asn1crypto import cms

    start, end = _gap(data)
    raw = bytes.fromhex(data[start + 1 : end - 1].decode("ascii"))  # zero padding after
    return cms.ContentInfo.load(raw)


def _token(data: bytes) -> tuple[Any, bytes]:
    """The signature's timestamp token (the unsigned attribute signature-time-stamp-token,
    a CMS ContentInfo) and the signature value it timestamps."""
    signer_info = _signature_cms(data)["content"]["signer_infos"][0]
    attrs = [
        a for a in signer_info["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"
    ]
    assert len(attrs) == 1
    return attrs[0]["values"][0], signer_info["signature"].native


def _altered(data: bytes, old: bytes, new: bytes) -> bytes:
    """``data`` with the DER bytes ``old`` of the signature container replaced by ``new``
    (same length), in the hex string, whichever case it is written in."""
    start, end = _gap(data)
    gap = data[start:end]
    for hexed in (old.hex().encode(), old.hex().upper().encode()):
        at = gap.find(hexed)
        if at >= 0:
            case = str.upper if hexed.isupper() else str.lower
            fixed = gap[:at] + case(new.hex()).encode() + gap[at + len(hexed) :]
            return data[:start] + fixed + data[end:]
    raise AssertionError("the bytes are not in the signature container")


# -- making and verifying ------------------------------------------------------------


def test_a_timestamped_pack_verifies_and_reports_the_tsa_time(
    stamped: StampedPack, tsa: Tsa, cli: Any
) -> None:
    """With --trust and --tsa-trust: the timestamp is checked and anchored, its time and
    TSA reported, and the signer certificate checked as of that time."""
    cert = stamped.home / "keys" / "pack.cert.pem"
    r = verify(cli, stamped.path, "--trust", str(cert), "--tsa-trust", str(tsa.files.ca_pem))
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["ok"] is True and report["anchored"] is True
    stamp = report["timestamp"]
    assert stamp["anchored"] is True
    assert TSA_NAME in stamp["tsa"]
    when = datetime.fromisoformat(stamp["time"].replace("Z", "+00:00"))
    # the TSA's clock (to the second, accuracy 1 s) read while `escrow pack` ran
    assert stamped.before - timedelta(seconds=2) <= when <= stamped.after + timedelta(seconds=2)
    shown = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    timestamp = _check(report, "timestamp")
    assert timestamp["ok"] is True
    assert f"{shown} by" in timestamp["detail"] and "trusted via" in timestamp["detail"]
    signature = _check(report, "pdf signature")["detail"]
    assert f"as of its timestamp's time {shown}" in signature, signature
    assert "as the signature states" not in signature
    # the checks run in their order, the timestamp's right after the signature's
    names = [c["name"] for c in report["checks"]]
    assert names[:3] == ["pdf signature", "timestamp", "attachments"]
    assert all(c["ok"] for c in report["checks"])

    # the same time as the token itself says, read by OpenSSL
    token, _ = _token(stamped.path.read_bytes())
    text = _openssl_token_text(token.dump(), stamped.path.parent)
    assert f"TSA: DirName:/CN={TSA_NAME}" in text
    openssl_time = re.search(r"Time stamp: (.+)", text)
    assert openssl_time
    assert datetime.strptime(openssl_time.group(1).strip(), "%b %d %H:%M:%S %Y %Z").replace(
        tzinfo=UTC
    ) == when.replace(microsecond=0)


def test_without_tsa_trust_the_timestamp_is_checked_but_not_anchored(
    stamped: StampedPack, cli: Any
) -> None:
    r = cli(["pack", "verify", str(stamped.path)])
    assert r.exit_code == 0, r.stderr
    assert "ok   timestamp: RFC 3161, " in r.stderr
    assert "(not anchored: no --tsa-trust given)" in r.stderr
    assert "timestamp not anchored: give --tsa-trust" in r.stdout


def _openssl_token_text(token: bytes, folder: Path) -> str:
    path = folder / "token-text.der"
    path.write_bytes(token)
    return subprocess.run(
        ["openssl", "ts", "-reply", "-token_in", "-in", str(path), "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_openssl_verifies_the_token_extracted_from_the_pdf(
    stamped: StampedPack, tsa: Tsa, tmp_path: Path
) -> None:
    """The independent check: OpenSSL's `ts -verify` accepts the token as a timestamp of
    the signature value, by a TSA chaining to the TSA's CA, and refuses it for other data."""
    token, signature = _token(stamped.path.read_bytes())
    (tmp_path / "token.der").write_bytes(token.dump())
    (tmp_path / "signature.bin").write_bytes(signature)
    (tmp_path / "other.bin").write_bytes(signature[:-1] + bytes([signature[-1] ^ 1]))

    def openssl_verify(data: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl", "ts", "-verify", "-token_in", "-in", "token.der",
                "-data", data, "-CAfile", str(tsa.files.ca_pem),
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )  # fmt: skip

    ok = openssl_verify("signature.bin")
    assert ok.returncode == 0, ok.stderr
    assert "Verification: OK" in ok.stdout
    other = openssl_verify("other.bin")
    assert other.returncode != 0
    assert "Verification: FAILED" in other.stdout


@pytest.mark.parametrize("where", ["token-time", "token-signature"])
def test_an_altered_timestamp_token_fails_naming_the_timestamp(
    stamped: StampedPack, cli: Any, tmp_path: Path, where: str
) -> None:
    """The token is an unsigned attribute: the PDF signature still verifies when it is
    changed, so its own checks must catch it — a time moved a year back (a back-dated
    timestamp), or a changed byte of the TSA's signature."""
    data = stamped.path.read_bytes()
    token, _ = _token(data)
    signed_data = token["content"]
    if where == "token-time":
        gen_time = signed_data["encap_content_info"]["content"].parsed["gen_time"]
        old = gen_time.contents
        year = int(old[:4])
        new = str(year - 1).encode() + old[4:]
    else:
        old = signed_data["signer_infos"][0]["signature"].native
        new = old[:20] + bytes([old[20] ^ 0x01]) + old[21:]
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(_altered(data, old, new))

    r = verify(cli, bad)
    assert r.exit_code == 1, r.stdout
    report = r.json()
    assert _check(report, "pdf signature")["ok"] is True  # the signature itself is intact
    timestamp = _check(report, "timestamp")
    assert timestamp["ok"] is False
    assert report["timestamp"] is None
    expected = "was changed" if where == "token-time" else "the timestamp token's own signature"
    assert expected in timestamp["detail"], timestamp["detail"]
    assert "fails verification: timestamp: " in r.stderr


def test_tsa_trust_with_another_ca_fails_naming_it(
    stamped: StampedPack, cli: Any, tmp_path: Path
) -> None:
    other_ca, _, _ = make_ca(tmp_path, "Another CA")
    r = verify(cli, stamped.path, "--tsa-trust", str(other_ca))
    assert r.exit_code == 1
    detail = _check(r.json(), "timestamp")["detail"]
    assert f"its TSA certificate does not chain to {other_ca}" in detail, detail
    assert "fails verification: timestamp:" in r.stderr
    assert r.json()["timestamp"] is None


def test_a_pack_without_timestamp_verifies_as_before_and_fails_tsa_trust(
    stamped: StampedPack, tsa: Tsa, cli: Any, tmp_path: Path
) -> None:
    """The same rendering signed without a TSA (the first revision of the stamped pack,
    signed again): it verifies as a pack always did, with no timestamp check; asked for
    one with --tsa-trust, it fails: the pack carries no timestamp."""
    from escrow.config import load_settings
    from escrow.pack.sign import ensure_pack_signer, sign_pdf
    from escrow.pack.verify import _first_revision_end

    data = stamped.path.read_bytes()
    rendered = data[: _first_revision_end(data)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(stamped.home))
        signer = ensure_pack_signer(load_settings())
    plain = tmp_path / "plain.pdf"
    plain.write_bytes(sign_pdf(rendered, signer))

    cert = stamped.home / "keys" / "pack.cert.pem"
    r = verify(cli, plain, "--trust", str(cert))
    assert r.exit_code == 0, r.stderr
    report = r.json()
    assert report["timestamp"] is None
    assert "timestamp" not in [c["name"] for c in report["checks"]]
    assert "as of its signing time" in _check(report, "pdf signature")["detail"]

    r = verify(cli, plain, "--trust", str(cert), "--tsa-trust", str(tsa.files.ca_pem))
    assert r.exit_code == 1
    assert "the pack carries no timestamp" in _check(r.json(), "timestamp")["detail"]
    assert "fails verification: timestamp: the pack carries no timestamp" in r.stderr


def test_the_how_to_verify_page_tells_how_to_check_the_timestamp(
    stamped: StampedPack, tsa: Tsa
) -> None:
    text = " ".join(pdftotext(stamped.path).split())
    assert f"RFC 3161 timestamp from the Time-Stamping Authority {tsa.url}" in text
    assert "--tsa-trust tsa.pem" in text
    assert "openssl ts -verify -token_in" in text
    assert "checks the certificate as of the timestamp's time" in text
    assert "carries no trusted timestamp" not in text


# -- a TSA that gives no timestamp ---------------------------------------------------


@pytest.mark.parametrize("how", ["unreachable-by-env", "http-error", "garbage"])
def test_a_tsa_that_gives_no_timestamp_stops_the_pack_exit_3(
    pack_ledger: PackLedger,
    cli: Any,
    tsa_files: TsaFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """Exit 3 in one sentence naming the TSA; no file written, nothing appended."""
    pack_ledger.add(0)
    before = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"
    if how == "unreachable-by-env":
        url = closed_port_url()
        monkeypatch.setenv("ESCROW_TSA_URL", url)
        r = cli(["pack", "--project", "example", "-o", str(out)])
    else:
        monkeypatch.delenv("ESCROW_TSA_URL", raising=False)
        with openssl_tsa(tsa_files, "error" if how == "http-error" else "garbage") as bad:
            url = bad.url
            r = cli(["pack", "--project", "example", "--tsa", url, "-o", str(out)])
    assert r.exit_code == 3, r.stderr
    # the TSA is asked once the builds are collected, before rendering: that step failed,
    # then the one-line error
    lines = r.stderr.strip().splitlines()[-2:]
    assert lines[0].startswith("step 1 failed in "), r.stderr
    assert r.stderr.count("escrow: error: ") == 1 and "step 2/4" not in r.stderr, r.stderr
    lines = lines[1:]
    assert lines[0].startswith(f"escrow: error: The Time-Stamping Authority {url} "), lines[0]
    said = {
        "unreachable-by-env": "cannot be reached",
        "http-error": "answered HTTP 500",
        "garbage": "is not an RFC 3161 timestamp reply",
    }[how]
    assert said in lines[0]
    assert "nothing was written or recorded" in lines[0].lower()
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".pack.pdf")] == []
    assert pack_ledger.ledger.size() == before
    assert r.stdout == ""


def test_the_tsa_is_asked_before_rendering_and_twice_in_all(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, tsa_files: TsaFiles
) -> None:
    """The TSA is asked first for the token pyHanko sizes the signature with, once the
    builds are collected and before the pack is rendered (a TSA that is down fails a pack of
    5,000 builds at once, not after half an hour: the failing cases above end in step 1),
    then for the signature's own token: two requests, as signing alone made."""
    pack_ledger.add(0)
    with openssl_tsa(tsa_files) as tsa:
        r = cli(["pack", "--project", "example", "--tsa", tsa.url, "-o", str(tmp_path / "p.pdf")])
        assert r.exit_code == 0, r.stderr
        assert len(tsa.authorizations) == 2
    lines = r.stderr.splitlines()
    at = lines.index("step 1/4: collecting the builds")
    assert lines[at + 1] == f"  | asking the Time-Stamping Authority {tsa.url}", r.stderr


def test_a_tsa_url_that_is_not_http_is_refused_before_rendering(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    before = pack_ledger.ledger.size()
    out = tmp_path / "pack.pdf"
    r = cli(["pack", "--project", "example", "--tsa", "tsa.example.com", "-o", str(out)])
    assert r.exit_code == 2, r.stderr
    assert "--tsa is not an http(s) URL of a Time-Stamping Authority" in r.stderr
    assert not out.exists() and pack_ledger.ledger.size() == before


# -- the signer certificate's validity follows the timestamp's time -----------------


def _sign_in_subprocess(
    home: Path, rendered: Path, out: Path, *, clock: str | None, tsa_url: str | None
) -> None:
    """Sign ``rendered`` with the home's pack key in another process, whose clock is
    shifted by ``clock`` (faketime): the signing time the signature claims is that clock's."""
    faketime = shutil.which("faketime")
    if clock is not None and faketime is None:
        pytest.fail("faketime (Debian's faketime package) is needed; scripts/test.sh installs it.")
    code = (
        "import sys; from pathlib import Path; from escrow.config import load_settings; "
        "from escrow.pack.sign import ensure_pack_signer, sign_pdf; "
        "tsa = sys.argv[3] or None; "
        "Path(sys.argv[2]).write_bytes(sign_pdf(Path(sys.argv[1]).read_bytes(), "
        "ensure_pack_signer(load_settings()), tsa=tsa))"
    )
    prefix = [str(faketime), "-f", clock] if clock is not None and faketime else []
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    env["ESCROW_HOME"] = str(home)
    r = subprocess.run(
        [*prefix, sys.executable, "-c", code, str(rendered), str(out), tsa_url or ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr


def test_the_signer_certificate_is_checked_at_the_timestamps_time(
    pack_ledger: PackLedger, cli: Any, tsa: Tsa, tmp_path: Path
) -> None:
    """A pack certificate valid from 9 days ago until an hour ago (expired now).

    Back-dated: the pack signed by a clock 5 days behind claims a signing time inside the
    certificate's validity. Without a timestamp it verifies (the signer's own clock is all
    there is); timestamped, the TSA's time (now, after the certificate expired) is the one
    checked, and it fails, naming that time.

    The other way round: signed now (after expiry) by a clock that says so, but
    timestamped by a TSA whose clock is 5 days behind, inside the validity: it verifies,
    as of the TSA's time. The verdict follows the timestamp, not the claimed time."""
    pack_ledger.add(0)
    now = datetime.now(UTC)
    # valid from 9 days and an hour ago, for 9 days: until an hour ago
    not_before = now - timedelta(days=9, hours=1)
    ca = install_ca_issued_pack_cert(pack_ledger.home, tmp_path, not_before, 9)
    rendered = tmp_path / "rendered.pdf"
    r = cli(["pack", "--project", "example", "--render-only", "-o", str(rendered)])
    assert r.exit_code == 0, r.stderr
    tsa_trust = ("--tsa-trust", str(tsa.files.ca_pem))

    # back-dated, no timestamp: the claimed time is all there is, and it verifies
    plain = tmp_path / "backdated-plain.pdf"
    _sign_in_subprocess(pack_ledger.home, rendered, plain, clock="-5d", tsa_url=None)
    v = verify_elsewhere(plain, tmp_path / "auditor-1", "--trust", str(ca))
    assert v.returncode == 0, v.stderr
    assert "trusted via ca.pem as of its signing time" in v.stderr

    # back-dated and timestamped: the TSA's time (now) is after the certificate expired
    stamped = tmp_path / "backdated-stamped.pdf"
    _sign_in_subprocess(pack_ledger.home, rendered, stamped, clock="-5d", tsa_url=tsa.url)
    v = verify_elsewhere(stamped, tmp_path / "auditor-2", "--trust", str(ca), *tsa_trust)
    assert v.returncode == 1, v.stderr
    last = v.stderr.strip().splitlines()[-1]
    assert "pdf signature: the signer certificate was not valid at the pack's timestamp (" in last
    assert f"by O=tsakit,CN={TSA_NAME}" in last, last
    assert "ok   timestamp: RFC 3161" in v.stderr  # the timestamp itself is sound

    # signed now (after expiry), timestamped by a TSA whose clock is inside the validity
    tsa.clock = "-5d"
    try:
        late = tmp_path / "late-stamped.pdf"
        _sign_in_subprocess(pack_ledger.home, rendered, late, clock=None, tsa_url=tsa.url)
    finally:
        tsa.clock = None
    v = verify_elsewhere(late, tmp_path / "auditor-3", "--trust", str(ca), *tsa_trust)
    assert v.returncode == 0, v.stderr
    assert "trusted via ca.pem as of its timestamp's time" in v.stderr, v.stderr
    stamp_time = json.loads(
        verify_elsewhere(late, tmp_path / "auditor-4", "--json", *tsa_trust).stdout
    )["timestamp"]["time"]
    assert datetime.fromisoformat(stamp_time.replace("Z", "+00:00")) < now - timedelta(days=4)
    # ...and without its timestamp the same signature fails at its claimed time
    _sign_in_subprocess(pack_ledger.home, rendered, late, clock=None, tsa_url=None)
    v = verify_elsewhere(late, tmp_path / "auditor-5", "--trust", str(ca))
    assert v.returncode == 1
    assert "the signer certificate was not valid when the pack was signed" in v.stderr
