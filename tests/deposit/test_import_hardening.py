"""`escrow deposit import` of tampered archives: unsigned data is checked against the signed
statement and the verified ledger entry, every mismatch with what the archive promises is
exit 1 (exit 2 only for what is not a deposit archive at all), nothing is stored when an
import is refused, and a corrupt stored blob is repaired from the archive."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.deposit.conftest import Builds

Change = Callable[[list[tuple[tarfile.TarInfo, bytes]]], list[tuple[tarfile.TarInfo, bytes]]]


@dataclass
class Exported:
    tar: Path
    index: int
    verifier: str
    statement: dict[str, Any]
    toc: dict[str, Any]
    record: dict[str, Any]
    members: list[tuple[tarfile.TarInfo, bytes]]


def _members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(path) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            out.append((m, f.read() if f is not None else b""))
    return out


def _write(members: list[tuple[tarfile.TarInfo, bytes]], dst: Path) -> Path:
    with tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m, data in members:
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))
    return dst


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, docker_client: Any) -> Iterator[Exported]:
    """One build, deposited and exported (made once: each test imports a changed copy)."""
    root = tmp_path_factory.mktemp("hardening")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ESCROW_HOME", str(root / "vendor"))
        for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
            mp.delenv(var, raising=False)
        assert run_cli(["init"]).exit_code == 0
        builds = Builds(root / "work")
        builds.make_base()
        try:
            ctx = builds.context({"app.txt": "hardening\n", "other.txt": "plain text\n"})
            (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
            index, statement = builds.build(ctx, project="vendor-app")
            r = run_cli(["deposit", str(index), "--context", str(ctx)])
            assert r.exit_code == 0, r.stderr
            out = root / "deposit.tar"
            r = run_cli(["deposit", "export", str(index), "-o", str(out), "--json"])
            assert r.exit_code == 0, r.stderr
            verifier = r.json()["verifierKey"]
        finally:
            builds.cleanup()
    members = _members(out)
    blobs = {m.name.rsplit("/", 1)[-1]: data for m, data in members}
    toc = json.loads(blobs["TOC.json"])
    record = json.loads(blobs[toc["entries"][0]["record"]])
    yield Exported(out, index, verifier, statement, toc, record, members)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The escrow agent's side: a fresh ESCROW_HOME."""
    home = tmp_path / "agent"
    monkeypatch.setenv("ESCROW_HOME", str(home))
    for var in ("ESCROW_DB_URL", "ESCROW_KEY", "ESCROW_KEY_PASSPHRASE", "ESCROW_SERVER"):
        monkeypatch.delenv(var, raising=False)
    assert run_cli(["init"]).exit_code == 0
    return home


def _stored(home: Path) -> list[Path]:
    store = home / "deposits"
    found = [p for p in (store / "blobs").rglob("*") if p.is_file()]
    found += [p for p in (store / "refs").rglob("*") if p.is_file()]
    return found


def _import(path: Path, *extra: str) -> Any:
    return run_cli(["deposit", "import", str(path), *extra])


def _refused(result: Any, code: int, *words: str) -> None:
    assert result.exit_code == code, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# -- helpers that change one thing


def _edit_json(name: str, edit: Callable[[dict[str, Any]], None]) -> Change:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
        out = []
        for m, data in members:
            if m.name == name:
                doc = json.loads(data)
                edit(doc)
                data = json.dumps(doc, indent=2).encode()
            out.append((m, data))
        return out

    return change


def _edit_toc(edit: Callable[[dict[str, Any]], None]) -> Change:
    return _edit_json("TOC.json", edit)


def _drop(pred: Callable[[str], bool]) -> Change:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
        return [(m, d) for m, d in members if not pred(m.name)]

    return change


def _tampered(exported: Exported, tmp_path: Path, change: Change) -> Path:
    import copy

    members = [(copy.copy(m), d) for m, d in exported.members]
    return _write(change(members), tmp_path / "tampered.tar")


def _with_record(exported: Exported, edit: Callable[[dict[str, Any]], None]) -> Change:
    """Replace the deposit record by an edited one (a new, well-formed blob, listed in the TOC)."""

    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
        record = json.loads(json.dumps(exported.record))
        edit(record)
        data = json.dumps(record, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        out = []
        for m, d in members:
            if m.name == "TOC.json":
                toc = json.loads(d)
                toc["entries"][0]["record"] = digest
                toc["blobs"].append({"sha256": digest, "size": len(data)})
                d = json.dumps(toc).encode()
            out.append((m, d))
        info = tarfile.TarInfo(f"blobs/sha256/{digest[:2]}/{digest}")
        info.mode = 0o444
        out.append((info, data))
        return out

    return change


# ---------------------------------------------------------------------------
# 1. unsigned TOC and record fields


def test_an_untampered_export_imports_with_the_signed_project(
    exported: Exported, agent: Path
) -> None:
    r = _import(exported.tar, "--verifier-key", exported.verifier, "--json")
    assert r.exit_code == 0, r.stderr
    entry = r.json()["entries"][0]
    assert entry["project"] == "vendor-app"
    assert entry["imageId"] == exported.statement["predicate"]["image"]["id"]


def _set_entry(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(toc: dict[str, Any]) -> None:
        toc["entries"][0].update(fields)

    return edit


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        pytest.param({"project": "evil"}, "project", id="project"),
        pytest.param({"imageId": "sha256:" + "0" * 64}, "imageId", id="image-id"),
        pytest.param({"project": "evil", "imageId": "sha256:" + "0" * 64}, "project", id="both"),
        pytest.param({"integratedAt": "2001-01-01T00:00:00.000000Z"}, "integratedAt", id="time"),
        pytest.param({"integratedAt": "yesterday"}, "integratedAt", id="bad-time"),
    ],
)
def test_toc_fields_that_disagree_with_the_signed_entry_are_tampering(
    exported: Exported, agent: Path, tmp_path: Path, fields: dict[str, Any], field: str
) -> None:
    bad = _tampered(exported, tmp_path, _edit_toc(_set_entry(**fields)))
    r = _import(bad, "--verifier-key", exported.verifier)
    _refused(r, 1, field, f"entry {exported.index}")
    assert "evil" not in r.stdout
    assert _stored(agent) == []
    assert "evil" not in run_cli(["deposit", "stats", "--json"]).stdout


def test_a_toc_time_later_than_the_record_is_tampering(
    exported: Exported, agent: Path, tmp_path: Path
) -> None:
    bad = _tampered(
        exported, tmp_path, _edit_toc(_set_entry(integratedAt="2999-01-01T00:00:00.000000Z"))
    )
    _refused(_import(bad), 1, "integratedAt")
    assert _stored(agent) == []


def _edit_record_entry(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        record["entry"].update(fields)

    return edit


def _edit_base_reference(record: dict[str, Any]) -> None:
    record["baseImages"][0]["reference"] = "evil.example/base:1"


def _edit_recipe_path(record: dict[str, Any]) -> None:
    record["recipe"]["path"] = "Evilfile"


def _edit_image(record: dict[str, Any]) -> None:
    record["image"]["imageId"] = "sha256:" + "0" * 64


def _edit_archive_digest(record: dict[str, Any]) -> None:
    record["context"]["archiveDigest"] = "0" * 64


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        pytest.param(_edit_record_entry(project="evil"), "project", id="entry-project"),
        pytest.param(_edit_record_entry(imageId="sha256:" + "0" * 64), "imageId", id="entry-image"),
        pytest.param(_edit_record_entry(buildId="evil"), "buildId", id="entry-build-id"),
        pytest.param(_edit_record_entry(index=999), "index", id="entry-index"),
        pytest.param(
            _edit_record_entry(integratedAt="2001-01-01T00:00:00.000000Z"),
            "integratedAt",
            id="entry-time",
        ),
        pytest.param(_edit_base_reference, "base image", id="base-reference"),
        pytest.param(_edit_recipe_path, "recipe", id="recipe-path"),
        pytest.param(_edit_image, "image", id="image"),
        pytest.param(_edit_archive_digest, "context", id="context-archive-digest"),
    ],
)
def test_record_fields_that_disagree_with_the_signed_predicate_are_tampering(
    exported: Exported,
    agent: Path,
    tmp_path: Path,
    edit: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    bad = _tampered(exported, tmp_path, _with_record(exported, edit))
    r = _import(bad, "--verifier-key", exported.verifier)
    _refused(r, 1, "deposit record", field, f"entry {exported.index}")
    assert _stored(agent) == []


# ---------------------------------------------------------------------------
# 2. a record that is not a deposit record


def test_a_record_pointing_at_a_blob_that_is_not_json(
    exported: Exported, agent: Path, tmp_path: Path
) -> None:
    plain = hashlib.sha256(b"plain text\n").hexdigest()
    assert any(m.name.endswith(plain) for m, _ in exported.members)

    def edit(toc: dict[str, Any]) -> None:
        toc["entries"][0]["record"] = plain

    r = _import(_tampered(exported, tmp_path, _edit_toc(edit)))
    _refused(r, 1, "is not a deposit record", f"entry {exported.index}")
    assert _stored(agent) == []


def test_a_record_of_another_type(exported: Exported, agent: Path, tmp_path: Path) -> None:
    def edit(record: dict[str, Any]) -> None:
        record["type"] = "something-else"

    r = _import(_tampered(exported, tmp_path, _with_record(exported, edit)))
    _refused(r, 1, "is not a deposit record")
    assert _stored(agent) == []


# ---------------------------------------------------------------------------
# 3. a corrupt stored blob is repaired by importing again


def test_importing_again_replaces_a_corrupt_stored_blob(exported: Exported, agent: Path) -> None:
    assert _import(exported.tar).exit_code == 0
    plain = hashlib.sha256(b"plain text\n").hexdigest()
    path = agent / "deposits" / "blobs" / "sha256" / plain[:2] / plain
    os.chmod(path, 0o644)
    path.write_bytes(b"rotten\n")
    bad = run_cli(["deposit", "check", "--imported", str(exported.index), "--verify"])
    assert bad.exit_code == 1, bad.stderr + bad.stdout  # a failed check, naming the blob
    assert f"missing corrupt blob ({plain[:16]}" in bad.stdout, bad.stdout

    r = _import(exported.tar, "--json")
    assert r.exit_code == 0, r.stderr
    assert plain in r.stderr  # says which blob it replaced
    assert r.json()["blobsRepaired"] == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == plain
    r = run_cli(["deposit", "check", "--imported", str(exported.index), "--verify"])
    assert r.exit_code == 0, r.stderr + r.stdout


def test_deposit_check_of_a_corrupt_stored_envelope_is_a_failed_check(
    exported: Exported, agent: Path
) -> None:
    assert _import(exported.tar).exit_code == 0
    data = next(d for m, d in exported.members if m.name == exported.toc["entries"][0]["envelope"])
    digest = hashlib.sha256(data).hexdigest()
    path = agent / "deposits" / "blobs" / "sha256" / digest[:2] / digest
    os.chmod(path, 0o644)
    path.write_bytes(b"{}")
    bad = run_cli(["deposit", "check", "--imported", str(exported.index)])
    assert digest in bad.stderr and "corrupted" in bad.stderr, bad.stderr
    assert bad.exit_code == 1, bad.stderr + bad.stdout


def test_importing_again_replaces_a_corrupt_stored_envelope(
    exported: Exported, agent: Path
) -> None:
    assert _import(exported.tar).exit_code == 0
    data = next(d for m, d in exported.members if m.name == exported.toc["entries"][0]["envelope"])
    digest = hashlib.sha256(data).hexdigest()
    path = agent / "deposits" / "blobs" / "sha256" / digest[:2] / digest
    os.chmod(path, 0o644)
    path.write_bytes(b"{}")
    bad = run_cli(["deposit", "check", "--imported", str(exported.index)])
    assert bad.exit_code == 1, bad.stderr + bad.stdout
    assert digest in bad.stderr and "corrupted" in bad.stderr, bad.stderr
    r = _import(exported.tar, "--json")
    assert r.exit_code == 0, r.stderr
    assert digest in r.stderr
    assert r.json()["blobsRepaired"] == 1
    assert path.read_bytes() == data
    r = run_cli(["deposit", "check", "--imported", str(exported.index)])
    assert r.exit_code == 0, r.stderr + r.stdout


# ---------------------------------------------------------------------------
# 4. every mismatch with what the archive promises is exit 1


def _blob_of_size(exported: Exported, pick: str) -> str:
    sizes = sorted((b["size"], b["sha256"]) for b in exported.toc["blobs"])
    return sizes[-1][1] if pick == "largest" else sizes[0][1]


def _resize(exported: Exported) -> Change:
    digest = _blob_of_size(exported, "largest")

    def edit(toc: dict[str, Any]) -> None:
        for b in toc["blobs"]:
            if b["sha256"] == digest:
                b["size"] += 1

    return _edit_toc(edit)


def _extra_blob(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    data = b"not listed\n"
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest[:2]}/{digest}")
    return [*members, (info, data)]


def _extra_key(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [*members, (tarfile.TarInfo("keys/" + "ab" * 32 + ".pem"), b"x")]


def _flip_byte(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    for m, d in members:
        if m.name.startswith("blobs/") and len(d) > 1000:
            d = d[:500] + bytes([d[500] ^ 1]) + d[501:]
        out.append((m, d))
    return out


def _verifier_file(
    members: list[tuple[tarfile.TarInfo, bytes]],
) -> list[tuple[tarfile.TarInfo, bytes]]:
    return [
        (m, b"escrow.other/ledger+00000000+AAAA\n" if m.name == "verifier-key.txt" else d)
        for m, d in members
    ]


CASES: dict[str, tuple[Callable[[Exported], Change], tuple[str, ...]]] = {
    "blob-removed": (
        lambda e: _drop(lambda n: n.endswith(_blob_of_size(e, "largest"))),
        ("lacks the blob",),
    ),
    "size-changed": (_resize, ("listed size",)),
    "key-file-removed": (lambda e: _drop(lambda n: n.startswith("keys/")), ("keys/",)),
    "verifier-key-removed": (
        lambda e: _drop(lambda n: n == "verifier-key.txt"),
        ("verifier-key.txt",),
    ),
    "verifier-key-changed": (lambda e: _verifier_file, ("verifier-key.txt",)),
    "envelope-removed": (
        lambda e: _drop(lambda n: n == e.toc["entries"][0]["envelope"]),
        ("entries/",),
    ),
    "checkpoint-removed": (lambda e: _drop(lambda n: n == "checkpoint.txt"), ("checkpoint.txt",)),
    "extra-blob": (lambda e: lambda m: _extra_blob(m), ("does not list",)),
    "extra-key": (lambda e: lambda m: _extra_key(m), ("does not list",)),
    "flipped-byte": (lambda e: _flip_byte, ("SHA-256",)),
    "toc-removed": (lambda e: _drop(lambda n: n == "TOC.json"), ("TOC.json",)),
    "toc-not-json": (
        lambda e: lambda m: [(i, b"{not json" if i.name == "TOC.json" else d) for i, d in m],
        ("TOC.json",),
    ),
    "no-entries": (lambda e: _edit_toc(lambda t: t.update(entries=[])), ("no entries",)),
    "entry-not-a-mapping": (
        lambda e: _edit_toc(lambda t: t.update(entries=["x"])),
        ("table of contents",),
    ),
    "blobs-not-a-list": (
        lambda e: _edit_toc(lambda t: t.update(blobs={"a": 1})),
        ("table of contents",),
    ),
    "leaf-hash-not-hex": (
        lambda e: _edit_toc(lambda t: t["entries"][0].update(inclusionProof=["zz"])),
        ("table of contents",),
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_tampered_archive_is_exit_1_and_stores_nothing(
    case: str, exported: Exported, agent: Path, tmp_path: Path
) -> None:
    make, words = CASES[case]
    bad = _tampered(exported, tmp_path, make(exported))
    _refused(_import(bad), 1, *words)
    assert "which its table of contents names" not in _import(bad).stderr
    assert _stored(agent) == []


def test_a_missing_context_file_is_named(exported: Exported, agent: Path, tmp_path: Path) -> None:
    plain = hashlib.sha256(b"plain text\n").hexdigest()

    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[tuple[tarfile.TarInfo, bytes]]:
        out = [(m, d) for m, d in members if not m.name.endswith(plain)]
        return _edit_toc(lambda t: t.update(blobs=[b for b in t["blobs"] if b["sha256"] != plain]))(
            out
        )

    r = _import(_tampered(exported, tmp_path, change))
    _refused(r, 1, "other.txt")
    assert "context context file" not in r.stderr
    assert _stored(agent) == []


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"not a tar at all", id="not-a-tar"),
        pytest.param(None, id="an-empty-tar"),
    ],
)
def test_what_is_not_a_deposit_archive_is_exit_2(
    content: bytes | None, agent: Path, tmp_path: Path
) -> None:
    path = tmp_path / "x.tar"
    if content is None:
        _write([], path)
    else:
        path.write_bytes(content)
    r = _import(path)
    _refused(r, 2)
    assert _stored(agent) == []


# ---------------------------------------------------------------------------
# 5. a malformed --verifier-key


@pytest.mark.parametrize("key", ["garbage", "a+b+c", "name+0011aabb+AAAA"])
def test_a_malformed_pinned_verifier_key_is_a_usage_error(
    key: str, exported: Exported, agent: Path
) -> None:
    r = _import(exported.tar, "--verifier-key", key)
    _refused(r, 2, "not a note verifier key (<name>+<8 hex>+<base64>)")
    assert "pinned" not in r.stderr
    assert _stored(agent) == []


# ---------------------------------------------------------------------------
# the imported entries, listed


def test_deposit_imports_lists_what_rebuild_imported_takes(exported: Exported, agent: Path) -> None:
    """No command listed the imported entries: the agent only saw them in each import's
    output."""
    r = run_cli(["deposit", "imports"])  # as `deposit stats`: a store that is not there
    assert r.exit_code == 3, r.stderr
    assert "There is no deposit store" in r.stderr
    (agent / "deposits").mkdir()
    r = run_cli(["deposit", "imports"])
    assert r.exit_code == 0, r.stderr
    assert "No entries are imported" in r.stderr
    assert _import(exported.tar).exit_code == 0
    r = run_cli(["deposit", "imports", "--json"])
    assert r.exit_code == 0, r.stderr
    rows = r.json()["imports"]
    assert [(x["index"], x["project"], x["verifierKey"]) for x in rows] == [
        (exported.index, "vendor-app", exported.verifier)
    ]
    assert rows[0]["imageId"] == exported.statement["predicate"]["image"]["id"]
    text = run_cli(["deposit", "imports"]).stdout
    key_hash = exported.verifier.split("+")[1]
    assert f"(key {key_hash})" in text
    assert f"entry {exported.index} " in text and "vendor-app" in text
