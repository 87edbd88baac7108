"""The "How to verify" page of a timestamped pack, followed literally: its commands for
checking the timestamp with OpenSSL alone are taken from the page's text (``pdftotext``)
and run as printed, on Debian's poppler and OpenSSL, against a real pack stamped by a real
TSA (OpenSSL's own, tests/tsakit.py) — today, and years later, once the TSA's certificate
has expired (``faketime``), when ``escrow pack verify`` must still accept the pack."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tsakit import TSA_NAME, TsaFiles, make_tsa_files, openssl_tsa

from .conftest import pdftotext, stamped_pack
from .test_verify_after_cert_expiry import verify_elsewhere

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

#: years later: past the pack certificate (10 years) and the TSA's (7,000 days from now)
YEARS_LATER = "+7100d"


@dataclass
class Stamped:
    path: Path
    home: Path
    tsa: TsaFiles


@pytest.fixture(scope="module")
def stamped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stamped]:
    """A pack of two builds, timestamped by the test TSA."""
    tmp = tmp_path_factory.mktemp("recipe")
    files = make_tsa_files(tmp / "tsa")
    with openssl_tsa(files) as tsa, stamped_pack(tmp, tsa.url, builds=2) as out:
        yield Stamped(out, tmp / "home", files)


def _recipe(pack: Path) -> tuple[str, list[str]]:
    """The page's text about checking the timestamp without escrow (one line), and the
    commands it prints for that, each a line of its own, in order."""
    text = pdftotext(pack)
    start = text.index("--tsa-trust tsa.pem\n")
    end = text.index("pdfdetach -saveall pack.pdf", start)
    part = text[start:end]
    commands = [
        line.strip() for line in part.splitlines() if re.match(r"(pdfsig|openssl) ", line.strip())
    ]
    return " ".join(part.split()), commands


def _run(command: str, folder: Path, clock: str | None = None) -> subprocess.CompletedProcess[str]:
    prefix = f"faketime -f {clock} " if clock else ""
    return subprocess.run(
        ["bash", "-c", prefix + command],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _offset(line: str) -> str:
    m = re.match(r"\s*(\d+):d=", line)
    assert m, line
    return m.group(1)


def _follow_the_page(pack: Path, folder: Path, tsa_pem: Path) -> tuple[list[str], str]:
    """Run the page's recipe as an auditor does, in ``folder`` with ``pack.pdf`` and
    ``tsa.pem``: the commands exactly as printed, S and N read as the page says.  The
    last command (``ts -verify``) and the text ``ts -reply`` printed are returned."""
    folder.mkdir()
    shutil.copyfile(pack, folder / "pack.pdf")
    shutil.copyfile(tsa_pem, folder / "tsa.pem")
    said, commands = _recipe(pack)
    assert len(commands) == 6, commands
    dump, grep, get_sig, get_token, show, check = commands
    assert dump == "pdfsig -dump pack.pdf"
    assert "S is the number the first line begins with" in said, said
    assert "N the number the last line begins with" in said, said

    r = _run(dump, folder)
    assert r.returncode == 0, r.stderr
    r = _run(grep, folder)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 6, r.stdout
    assert "OCTET STRING" in lines[0] and "timeStampToken" in lines[3], r.stdout
    assert "SEQUENCE" in lines[-1], r.stdout
    s, n = _offset(lines[0]), _offset(lines[-1])
    for command in (re.sub(r"\bS\b", s, get_sig), re.sub(r"\bN\b", n, get_token)):
        r = _run(command, folder)
        assert r.returncode == 0, (command, r.stderr)
    r = _run(show, folder)
    assert r.returncode == 0, r.stderr
    return [dump, grep, get_sig, get_token, show, check], r.stdout


@pytest.mark.parametrize("anchor", ["ca", "tsa-certificate"])
def test_the_pages_openssl_recipe_works_as_printed(
    stamped: Stamped, tmp_path: Path, anchor: str
) -> None:
    """Regression: the page named a file SIG ("holding the signature value") no command
    made, broke ``-out`` across two lines (``pdftotext`` gives ``-noout out token.der``),
    and its ``ts -verify -CAfile tsa.pem`` failed for a tsa.pem holding the TSA's own
    certificate, which the page offers as tsa.pem ("self-signed certificate in
    certificate chain")."""
    tsa_pem = stamped.tsa.ca_pem if anchor == "ca" else stamped.tsa.cert_pem
    commands, shown = _follow_the_page(stamped.path, tmp_path / "auditor", tsa_pem)
    assert f"TSA: DirName:/CN={TSA_NAME}" in shown
    assert re.search(r"^Time stamp: \w{3} +\d+ [\d:]{8} \d{4} GMT$", shown, re.M), shown

    r = _run(commands[-1], tmp_path / "auditor")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Verification: OK" in r.stdout
    # ...and it can fail: a timestamp of other data than sig.bin
    sig = tmp_path / "auditor" / "sig.bin"
    value = sig.read_bytes()
    sig.write_bytes(value[:-1] + bytes([value[-1] ^ 1]))
    r = _run(commands[-1], tmp_path / "auditor")
    assert r.returncode != 0 and "Verification: FAILED" in r.stdout


def test_years_later_the_recipe_works_with_attime_as_the_page_says(
    stamped: Stamped, tmp_path: Path
) -> None:
    """Once the TSA's certificate has expired, OpenSSL refuses it as of today, as the page
    warns, and the page's ``-attime T`` (T from ``date -d "TIME" +%s``) checks it as of the
    timestamp's time."""
    folder = tmp_path / "auditor"
    commands, shown = _follow_the_page(stamped.path, folder, stamped.tsa.ca_pem)
    said, _ = _recipe(stamped.path)
    assert "add -attime T to the last command" in said, said
    assert 'date -d "TIME" +%s' in said, said

    r = _run(commands[-1], folder, clock=YEARS_LATER)
    assert r.returncode != 0 and "certificate has expired" in r.stderr, r.stdout + r.stderr
    m = re.search(r"^Time stamp: (.+)$", shown, re.M)
    assert m, shown
    t = _run(f'date -d "{m.group(1)}" +%s', folder).stdout.strip()
    assert t.isdigit(), t
    r = _run(f"{commands[-1]} -attime {t}", folder, clock=YEARS_LATER)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Verification: OK" in r.stdout


def test_years_later_escrow_still_verifies_the_pack(stamped: Stamped, tmp_path: Path) -> None:
    """After the pack certificate and the TSA's have both expired, the pack verifies
    with --trust and --tsa-trust: each certificate is checked as of the timestamp's time."""
    cert = stamped.home / "keys" / "pack.cert.pem"
    v = verify_elsewhere(
        stamped.path,
        tmp_path / "auditor",
        "--trust",
        str(cert),
        "--tsa-trust",
        str(stamped.tsa.ca_pem),
        clock=YEARS_LATER,
    )
    assert v.returncode == 0, v.stderr
    assert "the certificate has expired since" in v.stderr  # the clock was shifted
    assert "ok   timestamp: RFC 3161, " in v.stderr and "(trusted via " in v.stderr
