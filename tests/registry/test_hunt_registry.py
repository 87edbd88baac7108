"""A build pipeline and an engineer misusing the registry features and `escrow verify`.

Regressions: a reference with credentials in it (``USER:PASSWORD@HOST/REPO``, as in a
URL) was echoed, password and all, in the error of `escrow build -t`, `escrow verify`,
`escrow attach --to` and `--deposit-store oci://…`; a registry refusing a token printed
oras' own log line beside escrow's one-sentence error; a registry's error document for a
manifest read was dropped ("no details"); `-t X -t X` recorded the push of X twice.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from httpkit import loopback_server

from escrow.errors import InputError

PASSWORD = "hunt-s3cret-pw"
DIGEST = "sha256:" + "ab" * 32


def _one_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("escrow: error: "), stderr
    return lines[0]


def _entries(cli: Any) -> int:
    r = cli(["log", "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    return len(doc if isinstance(doc, list) else doc["entries"])


@pytest.mark.parametrize(
    "args",
    [
        ["verify", f"hunter:{PASSWORD}@127.0.0.1:5000/team/app@{DIGEST}"],
        ["verify", f"https://hunter:{PASSWORD}@127.0.0.1:5000/team/app@{DIGEST}"],
        ["verify", f"hunter:{PASSWORD}@127.0.0.1:5000/team/app:1"],
        ["attach", "0", "--to", f"hunter:{PASSWORD}@127.0.0.1:5000/team/app:1"],
        ["attach", "0", "--to", f"hunter:pa/{PASSWORD}@127.0.0.1:5000/team/app:1"],
    ],
    ids=["verify-digest", "verify-url", "verify-tag", "attach", "attach-slash-in-password"],
)
def test_credentials_in_a_reference_are_refused_and_never_printed(
    args: list[str], cli: Any, escrow_home: Path
) -> None:
    before = _entries(cli)
    r = cli(args)
    assert r.exit_code == 2, r.stderr
    line = _one_error(r.stderr)
    assert PASSWORD not in r.stderr + r.stdout
    assert "hunter" not in line
    assert "***@127.0.0.1:5000/team/app" in line
    assert "holds credentials" in line
    assert _entries(cli) == before


@pytest.mark.registry
@pytest.mark.docker
def test_a_build_tag_with_credentials_is_refused_before_the_build(
    cli: Any, escrow_home: Path, tmp_path: Path, registry: str
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nLABEL hunt=1\n")
    before = _entries(cli)
    tag = f"hunter:{PASSWORD}@{registry}/hunt-reg/app:1"
    r = cli(["build", "--no-deposit", "--push", "-t", tag, str(ctx)])
    assert r.exit_code == 2, r.stderr
    line = _one_error(r.stderr)
    assert PASSWORD not in r.stderr + r.stdout
    assert f"***@{registry}/hunt-reg/app:1" in line
    assert "nothing was built" in line
    assert _entries(cli) == before


def test_a_deposit_store_address_with_credentials_is_refused_masked() -> None:
    from escrow.deposit.oci import parse_location

    with pytest.raises(InputError) as info:
        parse_location(f"oci://hunter:{PASSWORD}@127.0.0.1:5000/escrow/deposits")
    assert PASSWORD not in info.value.diagnostics()
    assert "oci://***@127.0.0.1:5000/escrow/deposits" in info.value.message


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"u:{PASSWORD}@h:5000/r:1", "***@h:5000/r:1"),
        (f"u:p@{PASSWORD}@h/r@{DIGEST}", f"***@h/r@{DIGEST}"),
        (f"http://u@h/r@{DIGEST}", f"http://***@h/r@{DIGEST}"),
        (f"h:5000/r@{DIGEST}", None),
        (f"r@{DIGEST}", None),
        ("r@latest", None),  # a malformed digest, not credentials
        ("h:5000/r:1", None),
    ],
)
def test_credentials_are_told_from_digests(text: str, masked: str | None) -> None:
    from escrow.registry.reference import masked_credentials

    assert masked_credentials(text) == masked


def _token_refusing_registry() -> type[http.server.BaseHTTPRequestHandler]:
    """``GET /v2/`` answers 200; everything else 401 with a Bearer challenge whose token
    service refuses anonymous tokens (a private repository of a token registry)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, code: int, body: bytes, **headers: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            port = self.server.server_address[1]
            if self.path == "/v2/":
                return self._send(200, b"{}")
            denied = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
            if self.path.startswith("/token"):
                return self._send(401, denied)
            return self._send(
                401,
                denied,
                **{
                    "WWW-Authenticate": f'Bearer realm="http://127.0.0.1:{port}/token",'
                    'service="hunt",scope="repository:team/app:pull"'
                },
            )

        do_HEAD = do_GET

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def test_a_refused_token_is_one_sentence_without_oras_logging(
    escrow_home: Path, tmp_path: Path
) -> None:
    # a process of its own: pytest's log capture would hide what Python's last-resort
    # handler prints to a real escrow's stderr
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "no-docker-config")}
    script = "from escrow.cli.entry import main; main()"
    with loopback_server(_token_refusing_registry()) as addr:
        out = subprocess.run(
            [sys.executable, "-c", script, "verify", f"{addr}/team/app@{DIGEST}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 3, out.stderr
    line = _one_error(out.stderr)
    assert "requires a token" not in out.stderr
    assert f"The registry {addr} asks for credentials" in line


class _Failing(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        status, body = (
            (200, b"{}")
            if self.path == "/v2/"
            else (500, b'{"errors":[{"code":"UNKNOWN","message":"storage backend is down"}]}')
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def failing_registry() -> Iterator[str]:
    with loopback_server(_Failing) as address:
        yield address


def test_a_registry_error_on_a_manifest_read_says_what_the_registry_said(
    cli: Any, escrow_home: Path, failing_registry: str
) -> None:
    r = cli(["verify", f"{failing_registry}/team/app@{DIGEST}"])
    assert r.exit_code == 3, r.stderr
    line = _one_error(r.stderr)
    assert "failed (500)" in line
    assert "storage backend is down" in line
    assert "no details" not in line


def test_the_same_tag_twice_is_recorded_as_pushed_once() -> None:
    from escrow.registry.pull import record_push

    image_id = "sha256:" + "cd" * 32
    statement: dict[str, Any] = {
        "subject": [{"name": "127.0.0.1:5000/team/app:1", "digest": {"sha256": "cd" * 32}}],
        "predicate": {"image": {"id": image_id, "repoDigests": []}},
    }
    pushed = {
        "reference": "127.0.0.1:5000/team/app:1",
        "repository": "127.0.0.1:5000/team/app",
        "digest": DIGEST,
        "size": 1,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": image_id,
    }
    record_push(statement, [pushed, dict(pushed)])
    image = statement["predicate"]["image"]
    assert image["pushed"] == [
        {"reference": pushed["reference"], "digest": DIGEST, "mediaType": pushed["mediaType"]}
    ]
    assert image["repoDigests"] == [f"127.0.0.1:5000/team/app@{DIGEST}"]
    pushed_subjects = [s for s in statement["subject"] if s["digest"]["sha256"] == "ab" * 32]
    assert pushed_subjects == [{"name": "127.0.0.1:5000/team/app", "digest": {"sha256": "ab" * 32}}]
