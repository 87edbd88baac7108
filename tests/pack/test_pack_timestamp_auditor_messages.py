"""What ``escrow pack verify`` says of a timestamped pack, as an auditor reads it: the
summary line, a pack whose bytes were changed after signing, and ``--tsa-trust`` files
that are no certificate (refused as ``--trust`` refuses them: one sentence, exit 2)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tsakit import TsaFiles, make_tsa_files, openssl_tsa

from .conftest import stamped_pack

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@pytest.fixture(scope="module")
def stamped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, TsaFiles]]:
    """A pack of one build timestamped by the test TSA; its home; the TSA's files."""
    tmp = tmp_path_factory.mktemp("messages")
    files = make_tsa_files(tmp / "tsa")
    with openssl_tsa(files) as tsa, stamped_pack(tmp, tsa.url) as out:
        yield out, tmp / "home", files


def test_the_summary_says_each_anchor_beside_what_it_anchors(
    stamped: tuple[Path, Path, TsaFiles], cli: Any
) -> None:
    """Regression: without --trust, the summary ended "timestamped T; timestamp not
    anchored: give --tsa-trust …; not anchored: give --trust CERT.pem to check who signed
    it": the last "not anchored", after the timestamp's, read as the timestamp's again."""
    pack, home, tsa = stamped
    r = cli(["pack", "verify", str(pack)])
    assert r.exit_code == 0, r.stderr
    summary = r.stdout.strip()
    m = re.search(
        r"; not anchored: give --trust CERT\.pem to check who signed it; timestamped "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; timestamp not anchored: give --tsa-trust CERT\.pem "
        r"to check who timestamped it\)\.$",
        summary,
    )
    assert m, summary
    r = cli(["pack", "verify", str(pack), "--trust", str(home / "keys" / "pack.cert.pem")])
    assert r.exit_code == 0, r.stderr
    assert "; not anchored" not in r.stdout and "; timestamp not anchored" in r.stdout
    both = ["--trust", str(home / "keys" / "pack.cert.pem"), "--tsa-trust", str(tsa.ca_pem)]
    r = cli(["pack", "verify", str(pack), *both])
    assert r.exit_code == 0, r.stderr
    assert "not anchored" not in r.stdout
    assert re.search(r"; timestamped \S+Z\)\.$", r.stdout.strip()), r.stdout


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("where", ["rendered-bytes", "signature-value"])
def test_a_pack_changed_after_signing_names_the_change_not_the_certificate(
    stamped: tuple[Path, Path, TsaFiles], cli: Any, tmp_path: Path, where: str
) -> None:
    """Regression: with --trust, a changed pack was also said to be signed by a
    certificate that "does not chain to pack-signer.pem" — the very certificate that
    signed it (pyHanko calls a broken signature untrusted as well)."""
    pack, home, tsa = stamped
    data = pack.read_bytes()
    if where == "rendered-bytes":
        changed = _flip(data, data.index(b"/Producer") + 12)
        said = "the signed bytes were changed"
    else:
        # a hex digit of the signature value, inside the signature's /Contents
        from asn1crypto import cms  # type: ignore[import-untyped]

        m = re.search(rb"/ByteRange\s*\[\s*\d+\s+(\d+)\s+(\d+)", data)
        assert m
        start, end = int(m.group(1)), int(m.group(2))
        raw = bytes.fromhex(data[start + 1 : end - 1].decode())
        value = cms.ContentInfo.load(raw)["content"]["signer_infos"][0]["signature"].native
        hexed = value.hex().encode()
        at = data.lower().index(hexed, start) + len(hexed) - 1
        flipped = b"0" if data[at : at + 1] != b"0" else b"1"
        changed = data[:at] + flipped + data[at + 1 :]
        said = "the signature value does not verify"
    bad = tmp_path / "changed.pdf"
    bad.write_bytes(changed)
    cert = home / "keys" / "pack.cert.pem"
    r = cli(["pack", "verify", str(bad), "--trust", str(cert), "--tsa-trust", str(tsa.ca_pem)])
    assert r.exit_code == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"escrow: error: The pack {bad} fails verification: pdf signature: {said}.", last
    assert "does not chain" not in r.stderr
    if where == "signature-value":  # the timestamp is of the original signature value
        assert "FAIL timestamp: the timestamp token is not for this signature" in r.stderr


@pytest.mark.parametrize("what", ["garbage", "missing", "key", "directory"])
def test_a_tsa_trust_that_is_no_certificate_is_refused_as_trust_is(
    stamped: tuple[Path, Path, TsaFiles], cli: Any, tmp_path: Path, what: str
) -> None:
    pack, home, _ = stamped
    path = tmp_path / "tsa.pem"
    if what == "garbage":
        path.write_text("no certificate here\n")
    elif what == "key":
        path.write_bytes((home / "keys" / "pack.key.pem").read_bytes())
    elif what == "directory":
        path.mkdir()
    for option in ("--trust", "--tsa-trust"):
        r = cli(["pack", "verify", str(pack), option, str(path)])
        assert r.exit_code == 2, (option, r.stderr)
        assert r.stdout == ""
        if what != "directory":  # click's own message for a folder
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("escrow: error: "), r.stderr
            if what != "missing":
                assert f"{option} takes the X.509 certificate" in lines[0], lines[0]
        else:
            assert f"Invalid value for '{option}'" in r.stderr
