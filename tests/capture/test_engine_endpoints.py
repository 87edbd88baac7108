"""Which engine escrow reaches: the one the docker CLI would (hunt: engine endpoints).

A user whose `docker build` and `escrow build` reach different engines records the
wrong thing.  The docker CLI picks its engine from ``DOCKER_HOST``, else the context
``DOCKER_CONTEXT`` names, else the ``currentContext`` of ``config.json`` (written by
`docker context use`), else the local socket; TLS comes from ``DOCKER_TLS_VERIFY`` /
``DOCKER_CERT_PATH``.  Each way is exercised here with the real engine behind a small
forwarding proxy (a Unix socket, a TCP port, a TLS port) that notes every connection,
so what escrow reached is seen, not assumed.  Every test has its own ``HOME`` and
``DOCKER_CONFIG`` (the contexts are made by the real `docker context create`): the
machine's ``~/.docker`` is never read or written.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import select
import shutil
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from escrow.capture.engine import DockerEngine
from tests.conftest import BASE_TAG, run_cli

from .conftest import write_tree

pytestmark = pytest.mark.docker

#: the engine the proxies forward to (the test machine's own)
ENGINE_SOCKET = "/var/run/docker.sock"
TAG = "hunt-endpoint-app:1"
DOCKER_VARS = (
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_TLS_VERIFY",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS",
)


class _Forward(socketserver.BaseRequestHandler):
    """One connection, forwarded to the engine's socket both ways until either side ends."""

    server: Any

    def handle(self) -> None:
        client = self.request
        if self.server.tls is not None:
            try:
                client = self.server.tls.wrap_socket(client, server_side=True)
            except (OSError, ssl.SSLError):
                return  # a client that would not speak TLS (or trust this one)
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(ENGINE_SOCKET)
        first = True
        try:
            while True:
                readable, _, _ = select.select([client, engine], [], [])
                for side in readable:
                    data = side.recv(1 << 16)
                    while isinstance(side, ssl.SSLSocket) and side.pending():
                        data += side.recv(side.pending())
                    if not data:
                        return
                    if first and side is client:
                        first = False
                        self.server.seen.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                    (engine if side is client else client).sendall(data)
        except OSError:
            return
        finally:
            engine.close()
            client.close()


class _UnixProxy(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False


class _TCPProxy(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False


@contextmanager
def engine_proxy(
    *, unix: str | None = None, tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[str]]]:
    """Forward to the real engine from a Unix socket at ``unix`` (else a loopback TCP
    port, with TLS when ``tls`` is given); yield (the address, the first line of each
    connection so far)."""
    server: Any
    if unix is not None:
        server = _UnixProxy(unix, _Forward)
        address = f"unix://{unix}"
    else:
        server = _TCPProxy(("127.0.0.1", 0), _Forward)
        address = f"tcp://127.0.0.1:{server.server_address[1]}"
    server.seen, server.tls = [], tls
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield address, server.seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path (a Unix socket's path must fit in 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hunt-ep-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def docker_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME and DOCKER_CONFIG of the test's own, no DOCKER_* variable set; returns
    the DOCKER_CONFIG folder."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(home / ".docker"))
    for var in DOCKER_VARS:
        monkeypatch.delenv(var, raising=False)
    return home / ".docker"


def docker_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real docker CLI, in this test's environment (its HOME, DOCKER_CONFIG…)."""
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


def make_context(name: str, host: str, *, use: bool = False) -> None:
    r = docker_cli("context", "create", name, "--docker", f"host={host}")
    assert r.returncode == 0, r.stderr
    if use:
        r = docker_cli("context", "use", name)
        assert r.returncode == 0, r.stderr


def one_sentence(stderr: str) -> str:
    """The error escrow printed: one `escrow: error:` line, no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("escrow: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="module")
def recorded(
    module_home: Path, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The module's one build: ``escrow build`` with `docker context use` naming a
    context whose engine is a proxy of the real one — what the proxy saw, the entry,
    and the image."""
    root = tmp_path_factory.mktemp("endpoints")
    ctx = write_tree(
        root / "app",
        {
            "Dockerfile": f"FROM {BASE_TAG}\nWORKDIR /app\nCOPY app.sh ./\n"
            'RUN chmod 0755 /app/app.sh && echo hello > /app/greeting\nCMD ["/app/app.sh"]\n',
            "app.sh": "#!/bin/sh\ncat /app/greeting\n",
        },
    )
    sockets = Path(tempfile.mkdtemp(prefix="hunt-ep-", dir="/tmp"))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("HOME", str(root / "home"))
            mp.setenv("DOCKER_CONFIG", str(root / "home" / ".docker"))
            for var in DOCKER_VARS:
                mp.delenv(var, raising=False)
            with engine_proxy(unix=str(sockets / "e.sock")) as (address, seen):
                make_context("hunt-endpoint-ctx", address, use=True)
                r = run_cli(["build", str(ctx), "-t", TAG, "--json"])
                build_seen = list(seen)
                v = run_cli(["verify", TAG])
                verify_seen = seen[len(build_seen) :]
        assert r.exit_code == 0, r.stderr
        doc = r.json()
        yield {
            "index": doc["index"],
            "image": doc["image_id"],
            "build_seen": build_seen,
            "verify": v,
            "verify_seen": verify_seen,
        }
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
        # the two builds that must fail are removed too, should they ever succeed
        leftovers = [TAG, "hunt-endpoint-app:dead", "hunt-endpoint-app:tls"]
        subprocess.run(["docker", "rmi", *leftovers], capture_output=True, timeout=120)


# -- Docker CLI contexts ----------------------------------------------------------------------


def test_build_and_verify_use_the_engine_of_docker_context_use(recorded: dict[str, Any]) -> None:
    """Regression: `escrow build` ignored `docker context use` and built on the local
    socket, while `docker build` used the context's engine."""
    assert any(line.startswith("POST /build") for line in recorded["build_seen"]), recorded[
        "build_seen"
    ]
    v = recorded["verify"]
    assert v.exit_code == 0, v.stderr
    assert recorded["verify_seen"], "verify did not reach the context's engine"


def test_docker_context_names_the_engine_of_capture_record_and_verify(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DOCKER_CONTEXT is used, and over the current context of config.json."""
    dead = f"unix://{short_dir}/nobody.sock"
    make_context("hunt-dead", dead, use=True)
    empty = short_dir / "empty"
    empty.mkdir()
    with engine_proxy(unix=str(short_dir / "e.sock")) as (address, seen):
        make_context("hunt-live", address)
        monkeypatch.setenv("DOCKER_CONTEXT", "hunt-live")
        for args in (
            ["capture", TAG, "--json"],
            ["record", "--image", TAG, "--context", str(empty), "-q", "--", "true"],
            ["verify", TAG],
        ):
            before = len(seen)
            r = run_cli(args)
            assert r.exit_code == 0, (args, r.stderr)
            assert len(seen) > before, f"`escrow {args[0]}` did not reach hunt-live's engine"
        before = len(seen)  # the SDK's client too (pull, push, `docker save` for diff)
        with DockerEngine() as engine:
            assert engine.api.ping()
        assert len(seen) > before


def test_an_unreachable_context_engine_is_named_with_its_context(
    recorded: dict[str, Any], module_home: Path, docker_home: Path, short_dir: Path
) -> None:
    """Regression: with `docker context use` naming a dead engine, `escrow build` built
    on the local socket (exit 0) and `escrow verify IMAGE` said the engine at
    unix:///var/run/docker.sock was not reachable."""
    dead = f"unix://{short_dir}/nobody.sock"
    make_context("hunt-dead", dead, use=True)
    assert docker_cli("version").returncode != 0  # the docker CLI fails there too
    app = write_tree(short_dir / "app", {"Dockerfile": f"FROM {BASE_TAG}\nRUN true\n"})
    for args in (
        ["build", str(app), "-t", "hunt-endpoint-app:dead"],
        ["verify", TAG],
        ["capture", TAG],
        ["rebuild", str(recorded["index"])],
    ):
        r = run_cli(args)
        assert r.exit_code == 3, (args, r.stdout, r.stderr)
        line = one_sentence(r.stderr)
        assert f'The Docker Engine at {dead} (Docker context "hunt-dead") is not reachable' in line
        assert "/var/run/docker.sock" not in r.stderr


@pytest.mark.parametrize("how", ["DOCKER_CONTEXT", "docker context use"])
def test_an_unknown_context_is_one_sentence(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    """The docker CLI refuses a context that does not exist; escrow used the local
    socket instead."""
    if how == "DOCKER_CONTEXT":
        monkeypatch.setenv("DOCKER_CONTEXT", "hunt-ghost")
    else:  # a context removed after `docker context use` named it
        (docker_home / "config.json").write_text('{"currentContext": "hunt-ghost"}\n')
    assert docker_cli("version").returncode != 0
    for args in (["capture", TAG], ["verify", TAG]):
        r = run_cli(args)
        assert r.exit_code == 3, (args, r.stdout, r.stderr)
        assert 'The Docker context "hunt-ghost"' in one_sentence(r.stderr)
        assert "does not exist" in r.stderr and "docker context ls" in r.stderr


def test_docker_host_wins_over_any_context(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As for the docker CLI: DOCKER_HOST (a TCP address here) over DOCKER_CONTEXT and
    the current context; and the facts through TCP are the socket's."""
    make_context("hunt-dead", f"unix://{short_dir}/nobody.sock", use=True)
    with engine_proxy() as (address, seen):
        monkeypatch.setenv("DOCKER_HOST", address)
        monkeypatch.setenv("DOCKER_CONTEXT", "hunt-dead")
        assert docker_cli("version").returncode == 0
        r = run_cli(["capture", TAG, "--json"])
        v = run_cli(["verify", TAG])
        assert r.exit_code == 0, r.stderr
        assert v.exit_code == 0, v.stderr
        assert seen
    assert r.json()["image_id"] == recorded["image"]


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DOCKER_HOST", ""),
        ("DOCKER_CONTEXT", ""),
        ("DOCKER_CONTEXT", "default"),
        ("DOCKER_HOST", "unix://"),
    ],
)
def test_what_means_the_local_socket_is_the_local_socket(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    var: str,
    value: str,
) -> None:
    """As for the docker CLI: an empty variable counts as unset, the context "default"
    is the local socket, and so is ``unix://`` (escrow looked for a socket at ``/``)."""
    monkeypatch.setenv(var, value)
    assert docker_cli("version").returncode == 0
    r = run_cli(["capture", TAG, "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["image_id"] == recorded["image"]


def test_a_missing_unix_socket_is_named(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = f"unix://{short_dir}/nobody.sock"
    monkeypatch.setenv("DOCKER_HOST", host)
    for args in (["capture", TAG], ["verify", TAG]):
        r = run_cli(args)
        assert r.exit_code == 3, r.stderr
        assert f"The Docker Engine at {host} is not reachable" in one_sentence(r.stderr)


# -- DOCKER_HOST's form, and TLS --------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("tcp://127.0.0.1:notaport", "The Docker Engine address tcp://127.0.0.1:notaport"),
        ("ssh://nobody@127.0.0.1:1", "ssh://nobody@127.0.0.1:1 is reached over SSH"),
    ],
)
def test_an_address_escrow_cannot_use_is_one_sentence(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    said: str,
) -> None:
    """Regression: a DOCKER_HOST with a port that is not a number was a traceback, and
    an ssh:// one "not reachable" when what is missing is the SDK's SSH package."""
    monkeypatch.setenv("DOCKER_HOST", host)
    for args in (["capture", TAG], ["verify", TAG]):
        r = run_cli(args)
        assert r.exit_code == 3, (args, r.stdout, r.stderr)
        assert said in one_sentence(r.stderr)


def test_tls_verify_with_missing_files_is_one_sentence(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: DOCKER_TLS_VERIFY with a DOCKER_CERT_PATH that holds no certificates
    was a traceback (TLSParameterError) from `escrow build`, and "not reachable" from
    `escrow verify`."""
    missing = short_dir / "no-certs"
    with engine_proxy() as (address, _):
        monkeypatch.setenv("DOCKER_HOST", address)
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        monkeypatch.setenv("DOCKER_CERT_PATH", str(missing))
        assert docker_cli("version").returncode != 0  # the docker CLI refuses too
        app = write_tree(short_dir / "app", {"Dockerfile": f"FROM {BASE_TAG}\nRUN true\n"})
        for args in (["build", str(app), "-t", "hunt-endpoint-app:tls"], ["verify", TAG]):
            r = run_cli(args)
            assert r.exit_code == 3, (args, r.stdout, r.stderr)
            line = one_sentence(r.stderr)
            assert address in line and f"{missing}/ca.pem" in line, line
            assert "DOCKER_TLS_VERIFY" in r.stderr


def test_a_cert_path_without_tls_verify_is_ignored_as_by_the_docker_cli(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: DOCKER_CERT_PATH alone turned TLS on (a traceback when it held no
    certificates); the docker CLI uses it only with DOCKER_TLS_VERIFY (or DOCKER_TLS)."""
    with engine_proxy() as (address, seen):
        monkeypatch.setenv("DOCKER_HOST", address)
        monkeypatch.setenv("DOCKER_CERT_PATH", str(short_dir / "no-certs"))
        assert docker_cli("version").returncode == 0
        r = run_cli(["capture", TAG, "--json"])
        v = run_cli(["verify", TAG])
        assert seen
    assert r.exit_code == 0, r.stderr
    assert v.exit_code == 0, v.stderr
    assert r.json()["image_id"] == recorded["image"]


def test_tls_settings_do_not_stop_the_local_socket(
    recorded: dict[str, Any], module_home: Path, docker_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: with DOCKER_TLS_VERIFY set (and no certificates) and no DOCKER_HOST,
    `escrow build`/`capture` used the local socket, but `escrow verify IMAGE` said the
    engine was not reachable. TLS is for TCP engines; both now use the socket."""
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(docker_home / "no-certs"))
    for args in (["capture", TAG], ["verify", TAG]):
        r = run_cli(args)
        assert r.exit_code == 0, (args, r.stderr)


def _certificates(folder: Path) -> ssl.SSLContext:
    """A CA (``folder/ca.pem``) and, signed by it, a server certificate for 127.0.0.1;
    the server's TLS context."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = certificate("hunt-endpoint CA", ca_key, "hunt-endpoint CA", ca_key, True)
    server = certificate("127.0.0.1", server_key, "hunt-endpoint CA", ca_key, False)
    folder.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "server.pem").write_bytes(server.public_bytes(pem))
    (folder / "server-key.pem").write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server-key.pem")
    return context


def test_an_engine_behind_tls_is_reached_as_the_docker_cli_reaches_it(
    recorded: dict[str, Any],
    module_home: Path,
    docker_home: Path,
    short_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DOCKER_TLS_VERIFY with DOCKER_CERT_PATH holding the engine's CA (and no client
    certificate): escrow speaks TLS and checks the engine's certificate, as the docker
    CLI does; against another CA it says so; DOCKER_TLS alone speaks TLS unchecked.

    Regressions: the SDK demanded cert.pem and key.pem (a traceback without them), and
    requests let REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the engine's CA (docker-py
    issue 2433): the check failed whenever they were set, as they are on many machines."""
    certs, other = short_dir / "certs", short_dir / "other"
    server_tls = _certificates(certs)
    _certificates(other)  # a CA that did not sign the engine's certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other / "ca.pem"))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other / "ca.pem"))
    with engine_proxy(tls=server_tls) as (address, seen):
        monkeypatch.setenv("DOCKER_HOST", address)
        monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
        monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
        assert docker_cli("version").returncode == 0
        r = run_cli(["capture", TAG, "--json"])
        v = run_cli(["verify", TAG])
        assert r.exit_code == 0, r.stderr
        assert v.exit_code == 0, v.stderr
        assert r.json()["image_id"] == recorded["image"]
        assert any(line.startswith("GET ") for line in seen), seen

        monkeypatch.setenv("DOCKER_CERT_PATH", str(other))
        assert docker_cli("version").returncode != 0
        for args in (["capture", TAG], ["verify", TAG]):
            bad = run_cli(args)
            assert bad.exit_code == 3, (args, bad.stderr)
            line = one_sentence(bad.stderr)
            assert address in line and "certificate that could not be verified" in line, line

        monkeypatch.delenv("DOCKER_TLS_VERIFY")
        monkeypatch.setenv("DOCKER_TLS", "1")
        assert docker_cli("version").returncode == 0
        for args in (["capture", TAG], ["verify", TAG]):
            unchecked = run_cli(args)
            assert unchecked.exit_code == 0, (args, unchecked.stderr)
