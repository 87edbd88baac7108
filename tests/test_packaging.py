"""escrow as a user or a CI image gets it: built into an sdist and a wheel, installed.

The development environment installs escrow in editable mode, where the package data
(``schemas/``, ``reports/``) is read from the checkout.  Here the sdist is built from a
copy of the source tree, the wheel from that sdist alone (as ``python -m build`` and
``pip install escrow-*.tar.gz`` do), and the wheel is installed into a fresh virtual
environment whose only escrow is the wheel's and whose other packages are escrow's
runtime dependencies (no test or development tool).  From a folder outside the
repository, with no Docker Engine to reach, the installed ``escrow`` then loads every
kind of package data: the JSON Schemas (record, export, schema validate), the pack's
template and style sheet (a rendered, signed and verified pack).
"""

from __future__ import annotations

import email.parser
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow]

#: what the copy of the source tree leaves out (the tree's own ignored folders, for speed)
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".*_cache", ".hypothesis", "out", "build", "dist"
)


def _run(args: list[Any], **kw: Any) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


def _hatchling(args: list[str], cwd: Path) -> None:
    try:
        import hatchling  # noqa: F401
    except ImportError:
        pytest.fail(
            "hatchling (escrow's build backend, a dev dependency) is not installed: "
            "run scripts/setup.sh, or pip install -e '.[dev]' -c constraints.txt"
        )
    _run([sys.executable, "-m", "hatchling", "build", *args], cwd=cwd)


def _runtime_tops(requires: list[str]) -> set[str]:
    """Top-level entries of site-packages that the closure of ``requires`` (the wheel's
    ``Requires-Dist``, without the ``dev`` extra) installed."""
    seen: dict[str, frozenset[str]] = {}
    todo = [(Requirement(text), frozenset({""})) for text in requires]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras):
            continue
        key, wanted = canonicalize_name(req.name), frozenset({"", *req.extras})
        if key in seen and wanted <= seen[key]:
            continue
        seen[key] = seen.get(key, frozenset()) | wanted
        todo += [(Requirement(t), seen[key]) for t in md.distribution(key).requires or []]
    tops = set()
    for key in seen:
        for f in md.distribution(key).files or []:
            if f.parts[0] not in ("..", "__pycache__"):
                tops.add(f.parts[0])
    return tops


def _venv_with_wheel(tmp: Path, wheel: Path, requires: list[str]) -> Path:
    """A fresh venv holding the wheel; the runtime dependencies come from the
    development venv's site-packages through a folder of links (escrow's own
    entries, the editable install's among them, are not linked)."""
    site = Path(md.distribution("docker").locate_file(""))
    deps = tmp / "deps"
    deps.mkdir()
    for top in sorted(_runtime_tops(requires)):
        if (site / top).exists():
            (deps / top).symlink_to(site / top)
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    (purelib / "escrow-runtime-deps.pth").write_text(f"{deps}\n")
    _run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q"]
        + ["--no-index", "--no-deps", "--disable-pip-version-check", wheel]
    )
    return venv


_INSIDE = r"""
import importlib, json, pkgutil, sys
import escrow
from escrow._resources import data_dir
failed = {}
for m in pkgutil.walk_packages(escrow.__path__, "escrow."):
    try:
        importlib.import_module(m.name)
    except BaseException as e:
        failed[m.name] = repr(e)
from escrow.config import load_settings
from escrow.ledger.store import Ledger
from escrow.server.app import app_from_env
# each chunk in its own `python -m escrow.ledger._verify_worker`
report = Ledger.open(load_settings(), create=False, readonly=True).verify(workers=2, chunk_size=1)
paths = app_from_env().openapi()["paths"]
print(json.dumps({
    "escrow": escrow.__file__,
    "schemas": str(data_dir("schemas")),
    "reports": str(data_dir("reports")),
    "failed": failed,
    "modules": sorted(n for n in sys.modules if n.split(".")[0] == "escrow"),
    "foreign": sorted(
        n for n in sys.modules
        if n.split(".")[0] in ("tests", "bench", "scripts", "pytest", "hypothesis", "in_toto",
                               "securesystemslib", "schemathesis", "mypy", "hatchling")
    ),
    "verify_ok": report.ok,
    "routes": len(paths),
}))
"""


def test_the_installed_wheel_works_from_anywhere_with_its_own_package_data(
    tmp_path: Path,
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    schemas = sorted(p.name for p in (ROOT / "schemas").glob("*.json"))
    reports = sorted(p.name for p in (ROOT / "reports").iterdir() if p.is_file())
    assert len(schemas) >= 6 and "pack.html.j2" in reports and "pack.css" in reports

    # the sdist, from a copy of the tree in which the tests have run (Hypothesis's
    # example database is there, with its own .gitignore)
    tree = tmp_path / "tree"
    shutil.copytree(ROOT, tree, ignore=_NOT_COPIED, symlinks=True)
    (tree / ".hypothesis" / "examples" / "0a1b").mkdir(parents=True)
    (tree / ".hypothesis" / ".gitignore").write_text("*\n")
    (tree / ".hypothesis" / "examples" / "0a1b" / "2c3d").write_bytes(b"\x00example")
    dist = tmp_path / "dist"
    _hatchling(["-t", "sdist", "-d", str(dist)], cwd=tree)
    (sdist,) = dist.glob("escrow-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
        tar.extractall(tmp_path / "unpacked", filter="data")
    assert not [m for m in members if ".hypothesis" in m.split("/")], (
        "the sdist ships the local Hypothesis database"
    )
    for name in [
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "escrow/py.typed",
        "escrow/cli/entry.py",
    ]:
        assert name in members, name
    assert {f"schemas/{n}" for n in schemas} <= members
    assert {f"reports/{n}" for n in reports} <= members

    # the wheel, from the unpacked sdist alone
    (src,) = (tmp_path / "unpacked").iterdir()
    _hatchling(["-t", "wheel", "-d", str(dist)], cwd=src)
    (wheel,) = dist.glob("escrow-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = email.parser.Parser().parsestr(
            zf.read(f"escrow-{version}.dist-info/METADATA").decode()
        )
        entry_points = zf.read(f"escrow-{version}.dist-info/entry_points.txt").decode()
    assert meta["Version"] == version
    assert "escrow = escrow.cli.entry:main" in entry_points
    assert "escrow/py.typed" in names
    assert f"escrow-{version}.dist-info/licenses/LICENSE" in names  # the text License names
    assert meta["License-Expression"] == "Apache-2.0"
    assert {f"escrow/schemas/{n}" for n in schemas} <= names
    assert {f"escrow/reports/{n}" for n in reports} <= names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "escrow").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert not [n for n in names if n.split("/")[0] in ("tests", "bench", "scripts", "schemas")]

    venv = _venv_with_wheel(tmp_path, wheel, meta.get_all("Requires-Dist") or [])
    escrow = venv / "bin" / "escrow"
    work = tmp_path / "work"  # outside the repository: no file of the source tree at hand
    work.mkdir()
    (work / "input.txt").write_text("hunt-pkg\n")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ESCROW_", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update(
        ESCROW_HOME=str(tmp_path / "home"),
        DOCKER_HOST="unix:///nonexistent/engine.sock",  # nothing here needs the engine
        PYTHONDONTWRITEBYTECODE="1",
    )

    def escrow_json(*args: str) -> Any:
        cut = args.index("--") if "--" in args else len(args)  # --json before a command
        argv = [escrow, *args[:cut], "--json", *args[cut:]]
        return json.loads(_run(argv, cwd=work, env=env).stdout)

    assert _run([escrow, "--version"], cwd=work, env=env).stdout.strip() == (
        f"escrow, version {version}"
    )
    _run([escrow, "init"], cwd=work, env=env)
    listed = escrow_json("schema", "list")["schemas"]
    assert sorted(f"{s['name']}.schema.json" for s in listed) == schemas
    recorded = escrow_json("record", "--project", "hunt-pkg", "--", "true")
    assert recorded["index"] == 1 and recorded["status"] == "succeeded"
    escrow_json("export", "--slsa", "1", "-o", "slsa.json")
    assert escrow_json("schema", "validate", "slsa.json")["valid"] is True
    packed = escrow_json("pack", "--project", "hunt-pkg", "-o", "pack.pdf")
    assert packed["overall"] == "Verified", packed
    checked = escrow_json("pack", "verify", "pack.pdf")
    assert checked["ok"] is True and checked["builds"] == 1, checked
    assert [e["kind"] for e in escrow_json("log")["entries"]] == [
        "key-event",
        "build-manifest",
        "audit-pack",
    ]

    inside = json.loads(_run([venv / "bin" / "python", "-c", _INSIDE], cwd=work, env=env).stdout)
    installed = str(venv / "lib")
    assert inside["escrow"].startswith(installed), inside["escrow"]
    assert inside["schemas"].startswith(installed) and inside["reports"].startswith(installed)
    assert inside["failed"] == {}
    modules = {s.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for s in sources}
    assert set(inside["modules"]) >= modules, sorted(modules - set(inside["modules"]))
    assert inside["foreign"] == []
    assert inside["verify_ok"] is True
    assert inside["routes"] > 5
