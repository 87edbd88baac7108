"""A hostile registry (a small HTTP server of the test's own) cannot make escrow crash,
read without bound, wait forever or follow it elsewhere: each lie is one sentence and
the documented exit code (review 9c)."""

from __future__ import annotations

import hashlib
import http.server
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from httpkit import loopback_server

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
MiB = 1 << 20


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def _image(config: Any = None) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config
        if config is not None
        else {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(CONFIG)},
        "layers": [],
    }
    return json.dumps(doc).encode()


class Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode: ClassVar[str] = ""
    image: ClassVar[bytes] = _image()
    pages: ClassVar[int] = 0

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _send(self, body: bytes, ctype: str = "application/json", code: int = 200) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless(self, ctype: str, total: int) -> None:
        """``total`` bytes with no length announced (as if it never ends), then close."""
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(b'{"a":"')
            for _ in range(total // MiB):
                self.wfile.write(b"x" * MiB)
        except OSError:
            pass
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        mode, path = self.mode, self.path
        if path == "/v2/":
            return self._send(b"{}")
        if "/tags/list" in path:
            type(self).pages += 1
            self.send_response(200)
            body = json.dumps({"tags": [f"t{self.pages}"]}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.pages < 50:  # a loop, cut short so that the code before the fix ends
                link = (
                    "/v2/repo/tags/list?n=1000"
                    if mode == "tags-loop"
                    else f"http://127.0.0.2:{self.server.server_address[1]}/v2/repo/tags/list"
                )
                self.send_header("Link", f'<{link}>; rel="next"')
            self.end_headers()
            self.wfile.write(body)
            return None
        if "/manifests/sha256:" in path:
            if mode == "huge-manifest":
                return self._endless(OCI_MANIFEST, 8 * MiB)
            if mode == "drip":
                self.send_response(200)
                self.send_header("Content-Type", OCI_MANIFEST)
                self.send_header("Content-Length", str(len(self.image)))
                self.end_headers()
                try:
                    for byte in self.image:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass
                return None
            return self._send(self.image, OCI_MANIFEST)
        if "/referrers/" in path:
            body = {
                "referrers-not-json": b"not json",
                "referrers-a-list": b"[]",
                "referrers-of-strings": b'{"manifests": ["abc"]}',
            }.get(mode)
            if body is not None:
                return self._send(body, OCI_INDEX)
            return self._send(b'{"errors":[]}', code=404)
        if "/manifests/sha256-" in path:  # the cosign tag of the attestation
            layers: Any = ["not an object"]
            if mode == "huge-envelope":
                layers = [{"mediaType": DSSE, "digest": "sha256:" + "0" * 64, "size": 1}]
            att = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers}
            return self._send(json.dumps(att).encode(), OCI_MANIFEST)
        if "/blobs/" in path and mode == "huge-envelope":
            return self._endless("application/octet-stream", 80 * MiB)
        return self._send(b'{"errors":[]}', code=404)

    do_HEAD = do_GET


@pytest.fixture
def hostile() -> Iterator[tuple[str, type[Hostile]]]:
    handler = type("H", (Hostile,), {"pages": 0})
    with loopback_server(handler) as address:
        yield address, handler


CASES = {
    "config-a-string": ("names no image config", 1),
    "layers-not-objects": ("holds no envelope", 1),
    "referrers-not-json": ("not an OCI image index", 1),
    "referrers-a-list": ("not an OCI image index", 1),
    "referrers-of-strings": ("not an OCI image index", 1),
    "huge-manifest": ("more than 4 MiB", 1),
    "huge-envelope": ("more than 64 MiB", 1),
    "drip": ("took longer than ESCROW_REGISTRY_TIMEOUT", 3),
}


@pytest.mark.parametrize("mode", sorted(CASES))
def test_verify_against_a_hostile_registry_is_one_sentence(
    mode: str,
    hostile: tuple[str, type[Hostile]],
    cli: Any,
    escrow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    addr, handler = hostile
    handler.mode = mode
    if mode == "config-a-string":
        handler.image = _image(config="x")
    monkeypatch.setenv("ESCROW_REGISTRY_TIMEOUT", "1")
    r = cli(["verify", f"{addr}/repo@{_digest(handler.image)}"])
    message, code = CASES[mode]
    assert r.exit_code == code, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert message in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize("mode", ["tags-loop", "tags-elsewhere"])
def test_a_tag_list_that_loops_or_leads_elsewhere_is_refused(
    mode: str, hostile: tuple[str, type[Hostile]]
) -> None:
    from escrow.registry.client import RegistryClient
    from escrow.registry.errors import RegistryUnavailable

    addr, handler = hostile
    handler.mode = mode
    with pytest.raises(RegistryUnavailable) as e:
        RegistryClient(addr).tags("repo")
    assert ("already sent" if mode == "tags-loop" else "another server") in e.value.message
    assert handler.pages == 1
