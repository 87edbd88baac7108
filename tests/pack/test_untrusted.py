"""Untrusted text stays text: nothing recorded from a build can make the renderer read or fetch."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from escrow.pack.render import RenderError, make_fetcher, reports_url

from .conftest import PackLedger, pdftotext

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening TCP socket on loopback: any connection to it is a fetch that escaped."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.setblocking(False)
    yield s
    s.close()


def connections(s: socket.socket) -> int:
    n = 0
    while True:
        try:
            conn, _ = s.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def hostile(port: int) -> dict[str, str]:
    return {
        "img": '<img src="file:///etc/passwd">',
        "link": f'<link rel=stylesheet href="http://127.0.0.1:{port}/x.css">',
        "css": f"<style>@import url(http://127.0.0.1:{port}/i.css); "
        f"body {{ background: url(http://127.0.0.1:{port}/bg.png) }}</style>",
        "attr": f'<div style="background-image: url(http://127.0.0.1:{port}/a.png)">x</div>',
        "iframe": '<iframe src="file:///etc/shadow"></iframe><object data="file:///etc/hosts">',
    }


def test_hostile_labels_and_commands_render_as_text(
    pack_ledger: PackLedger, cli: Any, tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    texts = hostile(port)
    values = list(texts.values())
    # each hostile text as an image label (a wide key-value cell) and as the command
    # that created a layer (a narrow table cell, where it wraps)
    entries = [
        pack_ledger.add(i, label=value, created_by=values[(i + 1) % len(values)])
        for i, value in enumerate(values)
    ]
    out = tmp_path / "p.pdf"
    r = cli(["pack", "--project", "example", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    assert "warning" not in r.stderr.lower()
    assert connections(listener) == 0
    text = pdftotext(out)
    flat = text.replace("\n", "").replace(" ", "")
    for value in values:
        # labels wrap at spaces in their cells: compare without spaces and line breaks
        assert value.replace(" ", "") in flat, value
    # in the narrow layer tables pdftotext interleaves wrapped cells; count the URLs
    assert flat.count(f"127.0.0.1:{port}/") >= 2 * 4
    assert flat.count("file:///etc/passwd") >= 2
    assert "root:x:0:0" not in text
    passwd = Path("/etc/passwd").read_text().splitlines()[0]
    assert passwd not in text
    assert r.json()["entries"] == [e.index for e in entries]
    # and the pack still verifies: the hostile text is evidence like any other
    v = cli(["pack", "verify", str(out)])
    assert v.exit_code == 0, v.stderr
    assert connections(listener) == 0


def test_fetcher_serves_only_the_reports_folder(listener: socket.socket, tmp_path: Path) -> None:
    from weasyprint.urls import FatalURLFetchingError

    port = listener.getsockname()[1]
    fetcher = make_fetcher()
    css = fetcher.fetch(reports_url() + "pack.css")
    assert b"@page" in css.read()
    outside = tmp_path / "x.css"
    outside.write_text("body{}")
    refused = [
        "file:///etc/passwd",
        f"http://127.0.0.1:{port}/x.css",
        f"https://127.0.0.1:{port}/x.css",
        reports_url() + "../pyproject.toml",
        reports_url() + "..%2fpyproject.toml",
        reports_url() + "pack.html.j2",  # a template is not a resource
        outside.as_uri(),
        "data:text/css,body{}",
        f"ftp://127.0.0.1:{port}/x",
    ]
    for url in refused:
        with pytest.raises(FatalURLFetchingError):
            fetcher.fetch(url)
    assert fetcher.refused == refused
    assert connections(listener) == 0


def test_a_template_that_loads_anything_else_fails_to_render(listener: socket.socket) -> None:
    from escrow.pack.render import render_pdf

    from .conftest import example_view

    port = listener.getsockname()[1]
    html = (
        f'<html><head><link rel="stylesheet" href="http://127.0.0.1:{port}/x.css"></head>'
        "<body>x</body></html>"
    )
    view = example_view()
    with pytest.raises(RenderError, match="refused"):
        render_pdf(view, [], _when(), html=html)
    assert connections(listener) == 0


def _when() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 12, 4, 16, 0, tzinfo=UTC)


def test_pdftotext_available() -> None:
    # the injection checks above read the PDF's text with poppler
    assert subprocess.run(["pdftotext", "-v"], capture_output=True).returncode == 0
