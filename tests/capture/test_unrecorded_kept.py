"""A build whose ledger cannot be reached at its end is not lost: the signed entry is kept
under ESCROW_HOME/unrecorded/ and `escrow post FILE` appends it later.

Regression: a build that ran while the PostgreSQL ledger went down ended with "The ledger
database … is unavailable" (exit 3) and nothing of it was kept — the image built, its
record (steps, inputs, layers) gone for good."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgkit import fresh_pg_database
from sqlalchemy.engine import make_url

from tests.capture.conftest import write_tree
from tests.conftest import BASE_TAG

ESCROW = str(Path(sys.executable).parent / "escrow")


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from fresh_pg_database("escrow_unrecorded")


def _env(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESCROW_")}
    return {**env, "ESCROW_HOME": str(home), "ESCROW_DB_URL": db_url}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ESCROW, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _admin(url: str) -> psycopg.Connection:
    u = make_url(url)
    admin = u.set(drivername="postgresql", database="postgres").render_as_string(False)
    return psycopg.connect(admin, autocommit=True)


def _kept_file(stderr: str) -> Path:
    marker = "the signed entry is kept as "
    assert marker in stderr, stderr
    return Path(stderr.split(marker, 1)[1].split(",", 1)[0])


def _post_and_verify(kept: Path, env: dict[str, str], tag: str) -> None:
    r = _run(["post", str(kept)], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("appended "), r.stdout
    index = r.stdout.split()[1]
    r = _run(["verify", index, "--json"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    image_id = subprocess.run(
        ["/usr/bin/docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    r = _run(["verify", image_id], env)  # the recorded build is the image the engine holds
    assert r.returncode == 0, r.stderr


@pytest.mark.usefixtures("base_image")
def test_ledger_down_at_the_end_of_a_build_keeps_the_signed_entry(
    tmp_path: Path, pg_url: str
) -> None:
    home = tmp_path / "home"
    env = _env(home, pg_url)
    assert _run(["init"], env).returncode == 0
    ctx = write_tree(
        tmp_path / "ctx",
        {"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 3 && echo made > /made.txt\n"},
    )
    tag = "escrow-test/unrecorded:down-at-end"
    build = subprocess.Popen(
        [ESCROW, "build", str(ctx), "-t", tag, "--build-arg", f"BASE={BASE_TAG}", "--no-deposit"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert build.stderr is not None
    seen = []
    for line in build.stderr:  # the ledger was opened when the build started
        seen.append(line)
        if line.startswith("step 3/3"):
            break
    else:
        pytest.fail("".join(seen))
    name = make_url(pg_url).database
    with _admin(pg_url) as conn:  # the database goes away while the engine builds
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
    out, err = build.communicate(timeout=300)
    err = "".join(seen) + err
    try:
        assert build.returncode == 3, err
        assert "is unavailable" in err and "Nothing is lost" in err, err
        kept = _kept_file(err)
        assert kept.parent == home / "unrecorded" and kept.is_file()
        assert out == ""
        assert [p.name for p in kept.parent.iterdir()] == [kept.name]  # no temporary left
    finally:
        with _admin(pg_url) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    _post_and_verify(kept, env, tag)
    subprocess.run(["/usr/bin/docker", "image", "rm", "-f", tag], capture_output=True)


@pytest.mark.usefixtures("base_image")
def test_ledger_never_answering_does_not_stop_the_build(tmp_path: Path, pg_url: str) -> None:
    """The ledger cannot be opened while the engine builds: the build goes on (it stopped,
    "nothing is recorded", before), the entry is signed with the key all the same and kept."""
    home = tmp_path / "home"
    env = _env(home, pg_url)
    assert _run(["init"], env).returncode == 0
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "ARG BASE\nFROM ${BASE}\nRUN sleep 6\n"})
    tag = "escrow-test/unrecorded:never-answers"
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = make_url(pg_url).set(host="127.0.0.1", port=port)
        url = url.update_query_dict({"connect_timeout": "2"})  # known during the build
        r = _run(
            ["build", str(ctx), "-t", tag, "--build-arg", f"BASE={BASE_TAG}", "--no-deposit"],
            _env(home, url.render_as_string(hide_password=False)),
        )
    assert r.returncode == 3, r.stderr
    assert "escrow: warning: The ledger database" in r.stderr
    assert "The build goes on" in r.stderr and "step 3 ok" in r.stderr
    assert "the build was stopped" not in r.stderr
    assert r.stderr.count("escrow: warning:") == 1
    _post_and_verify(_kept_file(r.stderr), env, tag)
    subprocess.run(["/usr/bin/docker", "image", "rm", "-f", tag], capture_output=True)


def test_a_refused_key_keeps_nothing(tmp_path: Path, pg_url: str) -> None:
    """Only an unreachable ledger keeps the entry: a key the ledger refuses (revoked)
    still stops the command as before, and nothing is written under unrecorded/."""
    home = tmp_path / "home"
    env = _env(home, pg_url)
    assert _run(["init"], env).returncode == 0
    keyid = _run(["keys", "list", "--json"], env)
    assert keyid.returncode == 0
    assert _run(["keys", "revoke", "build", "--reason", "test"], env).returncode == 0
    r = _run(["record", "--", "true"], env)
    assert r.returncode == 3, r.stderr
    assert "revoked" in r.stderr and "kept" not in r.stderr
    assert not (home / "unrecorded").exists()


@pytest.mark.usefixtures("base_image")
def test_a_server_that_cannot_be_reached_keeps_the_signed_entry(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `escrow serve` (ESCROW_SERVER) the same: the server down for the whole
    build, the entry is kept, and posted later (here to the local ledger, where the same
    build key is registered)."""
    import escrow.server.client as client

    monkeypatch.setattr(client, "RETRY_FOR_S", 0.5)  # the client retries for 30 s
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = write_tree(tmp_path / "ctx", {"Dockerfile": "ARG BASE\nFROM ${BASE}\n"})
    tag = "escrow-test/unrecorded:server"
    monkeypatch.setenv("ESCROW_SERVER", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ESCROW_TOKEN", "escrow_pipeline_token")
    r = cli(["build", str(ctx), "-t", tag, "--build-arg", f"BASE={BASE_TAG}", "--no-deposit"])
    assert r.exit_code == 3, r.stderr
    kept = _kept_file(r.stderr)
    assert kept.parent == escrow_home / "unrecorded"
    assert "escrow_pipeline_token" not in r.stderr
    monkeypatch.delenv("ESCROW_SERVER")
    _post_and_verify(kept, {**os.environ}, tag)
    subprocess.run(["/usr/bin/docker", "image", "rm", "-f", tag], capture_output=True)
