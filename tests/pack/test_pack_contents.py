"""The audit pack's Contents are numbered like its headings (the cover is 1), and the pack tells
an auditor how to check a salted secret digest: ``sha256(bytes.fromhex(salt) || value_utf8)``."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import PackLedger, pdftotext
from .synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")

SECRET_VALUE = "s3cr\u00e9t-v\u00e4lue"  # not ASCII: the digest is over its UTF-8 bytes
SALT = bytes(range(16))
DIGEST_RULE = "sha256(salt_bytes || value_utf8)"


def _page(pdf: Path, first: int, last: int | None = None) -> str:
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", "-f", str(first), "-l", str(last or first), str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _make(cli: Any, out: Path) -> dict[str, Any]:
    r = cli(["pack", "--project", "example", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    return dict(r.json())


def _without_secrets(n: int) -> dict[str, Any]:
    st = manifest_variant(n)
    args = st["predicate"]["inputs"]["buildArgs"]
    st["predicate"]["inputs"]["buildArgs"] = [a for a in args if not a.get("secret")]
    return st


def test_contents_start_at_1_and_match_the_headings(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add(0)
    out = tmp_path / "p.pdf"
    res = _make(cli, out)
    cover = _page(out, 1)
    toc = cover.split("Contents", 1)[1]
    entries = re.findall(r"^(\d+)\. ([A-Za-z][^.\n]*?)\s*(?:\. )*\.?\s*\d+$", toc, re.M)
    numbers = [int(n) for n, _ in entries]
    assert numbers == list(range(1, len(numbers) + 1)), entries
    assert entries[0] == ("1", "Cover")
    assert len(entries) == 8, entries  # the cover and the 7 sections: the loop below runs
    body = " ".join(_page(out, 2, res["pages"]).split())
    for n, title in entries[1:]:
        assert f"{n}. {title.strip()}" in body, (n, title)


def test_secret_digest_is_explained_and_the_command_checks_it(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    st = _without_secrets(1)
    digest = hashlib.sha256(SALT + SECRET_VALUE.encode("utf-8")).hexdigest()
    st["predicate"]["inputs"]["buildArgs"].append(
        {"name": "DEPLOY_TOKEN", "secret": True, "salt": SALT.hex(), "sha256": digest}
    )
    pack_ledger.add_statement(st)
    out = tmp_path / "secret.pdf"
    _make(cli, out)
    raw = pdftotext(out)
    text = " ".join(raw.split())
    # next to the secret, in the build's section
    assert "A secret is shown only as its salted digest" in text
    assert "16 random bytes written in hex" in text
    assert DIGEST_RULE in text
    # in "How to verify": the command, as printed, gives the recorded digest
    match = re.search(r"(python3 -c '.*?') SALT VALUE", text)
    assert match is not None, "no checking command in the pack"
    program = match.group(1).removeprefix("python3 -c '").removesuffix("'")
    # pdftotext joins the wrapped line with a space, which Python ignores here
    got = subprocess.run(
        [sys.executable, "-c", program, SALT.hex(), SECRET_VALUE],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert got == digest
    assert cli(["pack", "verify", str(out), "--json"]).exit_code == 0


def test_no_secret_note_where_no_secret_is_shown(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path
) -> None:
    pack_ledger.add_statement(_without_secrets(2))
    out = tmp_path / "plain.pdf"
    _make(cli, out)
    text = " ".join(pdftotext(out).split())
    assert "A secret is shown only as its salted digest" not in text
    assert DIGEST_RULE in text  # "How to verify this pack" always says how
