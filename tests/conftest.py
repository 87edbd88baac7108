"""Shared fixtures: a fresh ESCROW_HOME, the CLI in-process, the real Docker Engine.

The Docker Engine and PostgreSQL are started by ``scripts/test.sh``; a test
that needs one and cannot reach it fails (it never skips silently).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ASSETS = Path(__file__).parent / "assets"
BASE_TAG = "escrow-test/base:latest"


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        import json

        return json.loads(self.stdout)


def run_cli(args: list[str], *, input: str | bytes | None = None) -> Result:
    """Run ``escrow ARGS`` in this process, capturing stdout/stderr and the exit code."""
    from escrow.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    raw = input.encode() if isinstance(input, str) else (input or b"")
    stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr, sys.stdin = out, err, stdin
    code = 0
    try:
        main(list(args))
    except SystemExit as e:
        code = int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Any:
    return run_cli


@pytest.fixture
def escrow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, initialised ESCROW_HOME (SQLite ledger, build and log keys)."""
    home = tmp_path / "escrow-home"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in (
        "ESCROW_DB_URL",
        "ESCROW_KEY",
        "ESCROW_KEY_PASSPHRASE",
        "ESCROW_SERVER",
        "ESCROW_TSA_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    r = run_cli(["init"])
    assert r.exit_code == 0, r.stderr
    return home


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure here means no engine
        pytest.fail(f"The Docker Engine is not reachable ({e}); scripts/test.sh starts it.")
    yield client
    client.close()


def dangling_images() -> set[str]:
    """IDs of the engine's dangling images (no tag, no tagged child); empty without an engine."""
    try:
        out = subprocess.run(
            ["docker", "images", "-q", "--no-trunc", "-f", "dangling=true"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(out.stdout.split()) if out.returncode == 0 else set()


def remove_dangling_since(before: set[str]) -> int:
    """Remove the dangling images that were not dangling at ``before`` (what a run of
    builds left: each rebuild of a tag leaves the previous image untagged); return how
    many.  Images others left are not touched; one a container still uses stays."""
    made = sorted(dangling_images() - before)
    for chunk in (made[i : i + 100] for i in range(0, len(made), 100)):
        subprocess.run(["docker", "rmi", *chunk], capture_output=True, timeout=600)
    return len(made)


def _is_worker(config: pytest.Config) -> bool:
    """Whether this process is one of pytest-xdist's workers (not the run's controller)."""
    return hasattr(config, "workerinput")


_DANGLING_BEFORE = pytest.StashKey[set[str]]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if not _is_worker(session.config):
        session.config.stash[_DANGLING_BEFORE] = dangling_images()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The suite builds hundreds of images; those it leaves untagged are removed at its
    end (thousands had piled up on the development machine and slowed the engine) — by
    the run's controller once every worker is done, never by a worker while the other
    still holds images it made."""
    before = session.config.stash.get(_DANGLING_BEFORE, None)
    if before is not None:
        remove_dangling_since(before)


#: fixtures through which a test reaches the Docker Engine or the test registry
ENGINE_FIXTURES = frozenset({"docker_client", "base_image", "registry", "private_registry"})
#: a module that runs the docker CLI itself or opens its own engine client
_ENGINE_CODE = re.compile(r"""["']docker["']\s*,|\bDOCKER\b|docker\.from_env""")
_engine_modules: dict[Path, bool] = {}


def uses_engine(item: pytest.Item) -> bool:
    """Whether a test reaches the Docker Engine or the registry (or may: a module that
    calls the docker CLI counts whole)."""
    if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    if item.get_closest_marker("docker") or item.get_closest_marker("registry"):
        return True
    path = item.path
    if path not in _engine_modules:
        _engine_modules[path] = bool(_ENGINE_CODE.search(path.read_text(encoding="utf-8")))
    return _engine_modules[path]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run on one pytest-xdist worker")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's, which reads the group
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """scripts/test.sh runs the suite on two workers (pytest-xdist, ``--dist loadgroup``):
    every test that uses the engine goes to one of them, one at a time as in a serial
    run — they build, tag, remove and count images on the one engine — and the rest
    (ledger, server, PostgreSQL, packs) to either."""
    for item in items:
        if uses_engine(item):
            item.add_marker(pytest.mark.xdist_group("engine"))


@pytest.hookimpl(trylast=True)  # after pytest-xdist's, which puts the group in the test's id
def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop a run whose workers would not keep the engine's tests together: pytest-xdist
    groups them by a suffix it adds to each test's id, which pytest 9.2's structured ids
    silently drop (pytest-xdist issue 1386) — the engine's tests then ran on both workers
    at once, and tests that count the engine's images failed now and then."""
    if not (_is_worker(session.config) and session.config.getvalue("loadgroup")):
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") and not item.nodeid.endswith("@engine"):
            session.config.stash[_UNGROUPED] = (
                "pytest-xdist does not group the tests that use the Docker Engine with this "
                f"pytest ({pytest.__version__}): install the versions in constraints.txt "
                "(scripts/setup.sh does), or run with ESCROW_TEST_WORKERS=0."
            )
            return


_UNGROUPED = pytest.StashKey[str]()


@pytest.fixture(autouse=True)
def _engine_tests_grouped(request: pytest.FixtureRequest) -> None:
    """Every test fails, saying why, in a run that does not keep the engine's tests together."""
    problem = request.config.stash.get(_UNGROUPED, None)
    if problem:
        pytest.fail(problem, pytrace=False)


def build_base_image(tag: str = BASE_TAG) -> str:
    """Build a tiny FROM-scratch image holding Debian's static busybox; return its ID."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    ctx = Path(os.environ.get("TMPDIR", "/tmp")) / f"escrow-base-{os.getpid()}"
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'ENV PATH=/bin\nCMD ["sh"]\n'
    )
    subprocess.run(["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True)
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        check=True,
        capture_output=True,
        text=True,
    )
    shutil.rmtree(ctx, ignore_errors=True)
    return out.stdout.strip()


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """ID of ``escrow-test/base:latest`` (built once per session if missing)."""
    try:
        return str(docker_client.images.get(BASE_TAG).id)
    except Exception:  # noqa: BLE001 - docker.errors.ImageNotFound; built below
        return build_base_image()


def option_help(help_text: str, option: str) -> str:
    """The help of ``option`` in a command's ``--help`` text, its wrapped lines joined."""
    lines = help_text.split("Options:", 1)[1].splitlines()
    out: list[str] = []
    for line in lines:
        if line.lstrip().startswith(option + " "):
            out.append(line)
        elif out and line.startswith(" " * 10) and not line.lstrip().startswith("-"):
            out.append(line)
        elif out:
            break
    return " ".join(" ".join(out).split())
