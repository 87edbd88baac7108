"""``deposit import`` of a TOC whose ``consistency`` is hostile, and ``--save-checkpoint``
given a path that is a link or a folder (hostile-input review): a failed check is exit 1,
bad input exit 2, never a traceback, and nothing is stored by a refused import."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.deposit import test_import_checkpoint as _ic
from tests.deposit.test_import_checkpoint import Vendor, _import, _snapshot

vendor = _ic.vendor  # the fixtures: a vendor's ledger and deposits, an agent's store
agent = _ic.agent


def _with_consistency(src: Path, out: Path, value: Any) -> Path:
    with tarfile.open(src) as tin, tarfile.open(out, "w") as tout:
        for m in tin:
            f = tin.extractfile(m)
            data = f.read() if f is not None else b""
            if m.name == "TOC.json":
                toc = json.loads(data)
                toc["consistency"] = value(toc.get("consistency"))
                data = json.dumps(toc).encode()
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
    return out


def _set(**kw: Any) -> Any:
    return lambda c: {**c, **kw}


@pytest.mark.parametrize(
    "value",
    [
        lambda c: "a string",
        lambda c: [c],
        _set(oldSize=True),
        _set(oldSize=-1),
        _set(oldSize=0),
        _set(oldSize=10**40),
        _set(oldSize="1"),
        _set(oldRootHash="zz" * 32),
        _set(oldRootHash=None),
        _set(proof="00" * 32),
        _set(proof=[1, 2]),
        lambda c: {**c, "proof": ["00" * 32] * 200_000},
        lambda c: {**c, "oldSize": c["oldSize"] + 5},
    ],
    ids=[
        "string",
        "list",
        "bool-size",
        "negative",
        "zero",
        "huge",
        "string-size",
        "not-hex-root",
        "no-root",
        "proof-string",
        "proof-ints",
        "huge-proof",
        "old-larger",
    ],
)
def test_a_hostile_consistency_field_is_refused_and_nothing_stored(
    vendor: Vendor, agent: Path, tmp_path: Path, value: Any
) -> None:
    archive = _with_consistency(vendor.dep2, tmp_path / "bad.tar", value)
    before = _snapshot(agent)
    for extra in ((), ("--since-checkpoint", str(vendor.c1))):
        r = _import(agent, archive, *extra)
        assert r.exit_code == 1, (r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert _snapshot(agent) == before


def test_save_checkpoint_replaces_a_link_not_its_target(
    vendor: Vendor, agent: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not to be overwritten\n")
    link = tmp_path / "saved.txt"
    os.symlink(target, link)
    r = _import(agent, vendor.dep2, "--save-checkpoint", str(link))
    assert r.exit_code == 0, r.stderr
    assert target.read_text() == "not to be overwritten\n"
    assert not link.is_symlink() and link.read_text().startswith(vendor.c2.read_text()[:20])


def test_save_checkpoint_to_a_folder_is_refused_before_importing(
    vendor: Vendor, agent: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    before = _snapshot(agent)
    r = _import(agent, vendor.dep2, "--save-checkpoint", str(folder))
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert _snapshot(agent) == before
    assert list(folder.iterdir()) == [] and list(tmp_path.glob(".a-folder.*")) == []
