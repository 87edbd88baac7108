"""pyHanko imports cryptography's DSA key classes; cryptography 51 deprecates DSA and
warns on that import, so `escrow pack` and `escrow pack verify` printed a warning on
every run (and under `-W error`, as the test suite runs, failed).  Run in a fresh
process: the warning comes once, at the first import of pyHanko."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_pack_verify_imports_pyhanko_without_a_warning(tmp_path: Path) -> None:
    junk = tmp_path / "not-a-pack.pdf"
    junk.write_bytes(b"not a pdf")
    code = (
        "from pathlib import Path\n"
        "from escrow.pack.verify import verify_pack\n"
        f"report = verify_pack(Path({str(junk)!r}))\n"
        "print(report.first_failure.name)\n"
    )
    r = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pdf signature"
    assert "Warning" not in r.stderr, r.stderr
