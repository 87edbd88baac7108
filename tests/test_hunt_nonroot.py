"""escrow for a user who is not root: scripts/setup.sh and scripts/example.sh with a clone
and an environment root made, and an engine socket the user may not reach.  Each test
makes its own user (CI runs as root) and removes it; each failure is one clear message,
exit 3, saying what to do, and nothing is attempted before it."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from escrow.capture.engine import _check_socket
from escrow.errors import EscrowError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def user() -> Iterator[str]:
    """A new user who is not root, in no group but its own; removed afterwards."""
    name = f"escrow-t{os.getpid()}"
    subprocess.run(["useradd", "-m", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "-r", name], check=False, capture_output=True)


@pytest.fixture
def root_dir() -> Iterator[Path]:
    """A folder owned by root that every user may read (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="escrow-nonroot-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


def _clone(root: Path) -> Path:
    """A clone as root made it: the scripts, pyproject.toml and constraints.txt, and an
    environment (``.venv``) whose tools are stand-ins: ``docker`` answers, ``escrow``
    says it was run."""
    for name in ("scripts/setup.sh", "scripts/example.sh", "pyproject.toml", "constraints.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    for name in ("base", "app"):
        (root / "examples" / name).mkdir(parents=True)
    venv = root / ".venv"
    _script(venv / "bin" / "docker", "exit 0\n")
    _script(venv / "bin" / "escrow", 'echo "escrow was run: $*" >&2\n')
    _script(venv / "bin" / "python", "exit 0\n")
    want = hashlib.sha256(
        (root / "pyproject.toml").read_bytes() + (root / "constraints.txt").read_bytes()
    ).hexdigest()
    (venv / ".escrow-installed").write_text(want + "\n")
    return root


def _run_as(user: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    home = pwd.getpwnam(user).pw_dir
    return subprocess.run(
        ["runuser", "-u", user, "--", "env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}"]
        + [f"{k}={v}" for k, v in env.items()]
        + list(args),
        capture_output=True,
        text=True,
        cwd="/",
        timeout=120,
    )


def _refused(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Errno" not in r.stderr, r.stderr
    assert "escrow was run" not in r.stderr, r.stderr
    return r.stderr


def test_setup_with_roots_environment_it_cannot_run(user: str, root_dir: Path) -> None:
    """The environment's Python lies in a folder only root may enter (a pyenv Python under
    /root): setup.sh tried `python3 -m venv` over root's environment and ended (exit 1)
    with ``Error: [Errno 13] Permission denied: '.../.venv/pyvenv.cfg'``."""
    root = _clone(root_dir)
    private = root / "private"
    _script(private / "python3", "exit 0\n")
    private.chmod(0o700)
    (root / ".venv" / "bin" / "python").unlink()
    (root / ".venv" / "bin" / "python").symlink_to(private / "python3")
    err = _refused(_run_as(user, "bash", str(root / "scripts" / "setup.sh")))
    assert f"the Python environment in {root}/.venv cannot be run by {user}" in err
    assert f"its Python, {private}/python3" in err
    assert "a clone of your own" in err


def test_setup_without_an_environment_in_a_clone_root_made(user: str, root_dir: Path) -> None:
    """No ``.venv`` yet in a clone the user may not write: `python3 -m venv` failed with
    its own traceback-like error and exit 1."""
    root = _clone(root_dir)
    shutil.rmtree(root / ".venv")
    _script(root / "bin" / "docker", "exit 0\n")  # the engine answers
    r = _run_as(user, "bash", str(root / "scripts" / "setup.sh"), PATH=f"{root}/bin:/usr/bin:/bin")
    err = _refused(r)
    assert f"there is no Python environment in {root}/.venv yet" in err
    assert f"{user} may not write {root}:" in err
    assert "run bash scripts/setup.sh once as root" in err
    assert not (root / ".venv").exists()


def test_setup_with_an_out_of_date_environment_it_may_not_write(user: str, root_dir: Path) -> None:
    """pyproject.toml changed since root set up: setup.sh ran pip into root's environment
    and said only "the Python environment could not be installed"."""
    root = _clone(root_dir)
    (root / ".venv" / ".escrow-installed").write_text("0" * 64 + "\n")
    _script(root / ".venv" / "bin" / "python", '[ "$1" = -c ] && exit 0\necho pip ran >&2\n')
    err = _refused(_run_as(user, "bash", str(root / "scripts" / "setup.sh")))
    assert f"the Python environment in {root}/.venv is not up to date" in err
    assert f"{user} may not write {root}/.venv:" in err
    assert "pip ran" not in err


def test_example_refuses_an_output_folder_it_may_not_write_before_building(
    user: str, root_dir: Path
) -> None:
    """``out/`` of a clone root made: the example built and recorded everything, then failed
    writing the pack (exit 2, "Give -o a path whose folders can be created")."""
    root = _clone(root_dir)
    (root / "out").mkdir()
    err = _refused(_run_as(user, "bash", str(root / "scripts" / "example.sh")))
    assert f"[example] cannot write the audit pack in {root}/out (not a folder {user} may" in err
    assert "set ESCROW_EXAMPLE_OUT to a folder you can write" in err


def test_example_writes_where_escrow_example_out_says(user: str, root_dir: Path) -> None:
    """The way out the refusal names works: the example runs through."""
    root = _clone(root_dir)
    (root / "out").mkdir()
    home = pwd.getpwnam(user).pw_dir
    r = _run_as(user, "bash", str(root / "scripts" / "example.sh"), ESCROW_EXAMPLE_OUT=f"{home}/o")
    assert r.returncode == 0, r.stderr
    assert "escrow was run: pack verify" in r.stderr
    assert r.stdout == f"audit pack: {home}/o/example-pack.pdf\n"


def test_engine_socket_in_a_folder_the_user_may_not_enter(user: str, root_dir: Path) -> None:
    """A socket in a folder only its owner may enter (a rootless engine's /run/user/UID):
    `escrow build` said the engine "is not reachable" and to start it, when it was running
    and the user was not permitted."""
    private = root_dir / "run"
    private.mkdir(mode=0o700)
    sock = private / "docker.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock))
    read, write = os.pipe()
    info = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:  # the child becomes the user (what it runs is imported already), and asks
        code = 0
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(info.pw_gid)
            os.setuid(info.pw_uid)
            os.environ["DOCKER_HOST"] = f"unix://{sock}"
            try:
                _check_socket(f"unix://{sock}")
                os.write(write, b"no error")
            except EscrowError as e:
                os.write(write, f"{e.exit_code} {e.diagnostics()}".encode())
        except BaseException as e:
            os.write(write, f"child failed: {e!r}".encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    os.waitpid(pid, 0)
    listener.close()
    assert said == (
        f"3 Permission to use the Docker Engine at unix://{sock} was denied. "
        "Ask the engine's owner for access, or point DOCKER_HOST at an engine you may use."
    )
