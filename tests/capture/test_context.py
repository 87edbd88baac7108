"""The context archive: Docker's own file selection, hashed once, sent as-is."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path
from typing import Any

import docker.utils.build as sdk
import pytest

from escrow.blobs import BlobStore
from escrow.capture.context import make_context, tree_digest
from escrow.documents.canonical import canonical_bytes
from escrow.errors import InputError

from .conftest import write_tree

IGNORE = "*.log\n!keep.log\nsecret/\n# a comment\n\nbuild/**/*.o\n"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = write_tree(
        tmp_path / "ctx",
        {
            "Dockerfile": "FROM scratch\nCOPY . /\n",
            ".dockerignore": IGNORE,
            "app.py": "print('hi')\n",
            "debug.log": "noise\n",
            "keep.log": "kept\n",
            "sub/nested.log": "nested logs are not matched by *.log\n",
            "secret/key.pem": "PRIVATE\n",
            "build/x/y.o": b"\x7fELF",
            "build/x/y.c": "int main;\n",
            "bin/tool": b"#!/bin/sh\necho tool\n",
            "long/" + "n" * 120 + ".txt": "a name longer than a ustar header holds\n",
            "ünïcödé.txt": "non-ASCII name\n",
        },
    )
    os.chmod(root / "bin" / "tool", 0o755)
    os.symlink("app.py", root / "link.py")
    os.link(root / "app.py", root / "hard.py")
    return root


def _members(data: bytes) -> list[tuple[Any, ...]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        out = []
        for m in t:
            f = t.extractfile(m) if m.isfile() else None
            content = f.read() if f is not None else None
            out.append(
                (m.name, m.type, m.mode, m.size, m.linkname, m.uid, m.gid, int(m.mtime), content)
            )
        return out


@pytest.mark.parametrize("ignore", [True, False], ids=["with-dockerignore", "without"])
def test_the_archive_holds_what_the_docker_sdk_would_send(tree: Path, ignore: bool) -> None:
    """Same entries, types, modes, owners, link targets and contents as the SDK's
    ``docker.utils.build.tar``; modification times in whole seconds, as the docker
    CLI sends them."""
    patterns = None
    if ignore:
        patterns = [ln.strip() for ln in IGNORE.splitlines() if ln.strip() and ln[0] != "#"]
    else:
        (tree / ".dockerignore").unlink()
    with sdk.tar(str(tree), exclude=patterns, dockerfile=("Dockerfile", None)) as reference:
        theirs = reference.read()
    with make_context(tree) as ctx:
        ours = ctx.rewind().read()
    assert _members(ours) == _members(theirs)
    assert len(ours) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(ours)) as t:
        assert all(m.mtime == int(m.mtime) for m in t)


def test_dockerignore_is_honoured_with_dockers_own_rules(tree: Path) -> None:
    with make_context(tree) as ctx:
        paths = {f["path"] for f in ctx.files}
    assert {"app.py", "keep.log", "sub/nested.log", "build/x/y.c", ".dockerignore"} <= paths
    assert not paths & {"debug.log", "secret", "secret/key.pem", "build/x/y.o"}


def test_every_entry_is_recorded_with_type_mode_size_digest_and_link(tree: Path) -> None:
    with make_context(tree) as ctx:
        by_path = {f["path"]: f for f in ctx.files}
        assert [f["path"] for f in ctx.files] == sorted(by_path)
        assert ctx.file_count == len(ctx.files)
        members = {m.name: m for m in tarfile.open(fileobj=ctx.rewind())}
    assert set(members) == set(by_path)
    app = (tree / "app.py").read_bytes()
    assert by_path["app.py"] == {
        "path": "app.py",
        "type": "file",
        "mode": 0o644,
        "size": len(app),
        "sha256": hashlib.sha256(app).hexdigest(),
    }
    assert by_path["bin/tool"]["mode"] == 0o755
    assert by_path["link.py"] == {
        "path": "link.py",
        "type": "symlink",
        "mode": 0o777,
        "size": 0,
        "linkTarget": "app.py",
    }
    assert by_path["hard.py"]["type"] == "hardlink" and by_path["hard.py"]["linkTarget"] == "app.py"
    assert by_path["sub"]["type"] == "dir" and "sha256" not in by_path["sub"]


def test_the_archive_digest_is_of_the_bytes_sent(tree: Path) -> None:
    with make_context(tree) as ctx:
        data = ctx.rewind().read()
        assert ctx.archive_sha256 == hashlib.sha256(data).hexdigest()
        assert ctx.archive_size == len(data)


def test_tree_digest_is_the_sha256_of_the_rfc8785_file_list(tree: Path) -> None:
    with make_context(tree) as ctx:
        assert ctx.tree_digest == hashlib.sha256(canonical_bytes(ctx.files)).hexdigest()
        assert ctx.tree_digest == tree_digest(ctx.files)


@pytest.mark.parametrize(
    "files",
    [
        [{"path": "é/ü😀", "type": "file", "mode": 420, "size": 3, "sha256": "a" * 64}],
        [{"path": 'quote"back\\slash\ttab\x01ctl', "type": "dir", "mode": 493, "size": 0}],
        [{"path": "a", "type": "symlink", "mode": 511, "size": 0, "linkTarget": "/x y"}],
    ],
    ids=["unicode", "escapes", "symlink"],
)
def test_the_fast_file_list_encoding_equals_rfc8785(files: list[dict[str, object]]) -> None:
    assert tree_digest(files) == hashlib.sha256(canonical_bytes(files)).hexdigest()


def test_a_change_to_any_file_changes_the_tree_digest(tree: Path) -> None:
    with make_context(tree) as ctx:
        before = ctx.tree_digest
    (tree / "sub" / "nested.log").write_text("changed\n")
    with make_context(tree) as ctx:
        assert ctx.tree_digest != before
    os.chmod(tree / "app.py", 0o600)
    with make_context(tree) as ctx2:
        assert ctx2.tree_digest != ctx.tree_digest


def test_the_archive_keeps_what_was_recorded_when_files_change_afterwards(tree: Path) -> None:
    with make_context(tree) as ctx:
        (tree / "app.py").write_text("print('edited during the build')\n")
        member = tarfile.open(fileobj=ctx.rewind()).extractfile("app.py")
        assert member is not None and member.read() == b"print('hi')\n"


def test_a_long_file_list_goes_to_the_blob_store(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "big", {"Dockerfile": "FROM scratch\n"})
    for i in range(30):
        (root / f"f{i:03}").write_text(str(i))
    blobs = BlobStore(tmp_path / "blobs")
    with make_context(root) as ctx:
        doc = ctx.to_manifest(blobs, inline_limit=10)
        assert "files" not in doc and doc["fileCount"] == 31
        assert doc["filesBlob"]["sha256"] == ctx.tree_digest
        assert blobs.get(doc["filesBlob"]["sha256"]) == canonical_bytes(ctx.files)
        small = ctx.to_manifest(blobs)
        assert small["files"] == ctx.files and "filesBlob" not in small


def test_a_dockerfile_outside_the_context_is_added_like_the_sdk_does(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "ctx", {"a.txt": "a\n"})
    outside = tmp_path / "recipes" / "app.Dockerfile"
    write_tree(outside.parent, {"app.Dockerfile": "FROM scratch\nCOPY a.txt /\n"})
    with make_context(root, outside) as ctx:
        assert ctx.dockerfile_in_archive is not None
        assert ctx.dockerfile_in_archive.startswith(".dockerfile.")
        assert ctx.dockerfile_path == str(outside.resolve())
        names = tarfile.open(fileobj=ctx.rewind()).getnames()
        assert ctx.dockerfile_in_archive in names and ".dockerignore" in names
        ignore = tarfile.open(fileobj=ctx.rewind()).extractfile(".dockerignore")
        assert ignore is not None
        assert ctx.dockerfile_in_archive in ignore.read().decode()


def test_dockerfile_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_tree(tmp_path / "ctx", {"docker/Dockerfile.prod": "FROM scratch\n"})
    monkeypatch.chdir(root)
    with make_context(root, "docker/Dockerfile.prod") as ctx:
        assert ctx.dockerfile_in_archive == "docker/Dockerfile.prod"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing-dir", "does not exist"),
        ("a-file", "is not a directory"),
        ("no-dockerfile", "There is no Dockerfile"),
    ],
)
def test_bad_contexts_are_input_errors(tmp_path: Path, setup: str, message: str) -> None:
    target = tmp_path / "ctx"
    if setup == "a-file":
        target.write_text("x")
    elif setup == "no-dockerfile":
        target.mkdir()
    with pytest.raises(InputError, match=message):
        make_context(target)


def test_without_keeping_the_archive_the_file_list_is_the_same(tree: Path) -> None:
    with make_context(tree) as kept, make_context(tree, keep_archive=False) as hashed:
        assert (kept.files, kept.tree_digest) == (hashed.files, hashed.tree_digest)
        assert hashed.archive is None and hashed.archive_sha256 is None
        doc = hashed.to_manifest(None)
        assert "archiveDigest" not in doc and "archiveSize" not in doc
        assert isinstance(kept.rewind().read(1), bytes)


def _tarfile_archive(root: Path, names: list[str]) -> bytes:
    """The archive Python's own tarfile writes for ``names`` (mtimes in whole seconds)."""
    out = io.BytesIO()
    with tarfile.open(mode="w", fileobj=out, format=tarfile.PAX_FORMAT) as t:
        for name in names:
            info = t.gettarinfo(str(root / name), arcname=name)
            if info is None:
                continue
            info.mtime = int(info.mtime)
            if info.isfile():
                with open(root / name, "rb") as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
    return out.getvalue()


def test_the_archive_is_byte_identical_to_tarfiles_own(tree: Path) -> None:
    os.mkfifo(tree / "pipe")
    (tree / ".dockerignore").unlink()
    with make_context(tree) as ctx:
        ours = ctx.rewind().read()
        names = [f["path"] for f in ctx.files]
    assert "pipe" in names and "ünïcödé.txt" in names
    assert ours == _tarfile_archive(tree, names)


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "a.txt", "size": 5, "mtime": 1_700_000_000, "uname": "root", "gname": "root"},
        {"name": "dir", "type": tarfile.DIRTYPE, "mode": 0o755},
        {"name": "dir/", "type": tarfile.DIRTYPE},
        {"name": "l", "type": tarfile.SYMTYPE, "linkname": "../target", "mode": 0o777},
        {"name": "h", "type": tarfile.LNKTYPE, "linkname": "a.txt"},
        {"name": "x" * 100},
        {"name": "x" * 101},
        {"name": "d/" + "y" * 99, "type": tarfile.DIRTYPE},
        {"name": "ünï"},
        {"name": "a", "linkname": "é", "type": tarfile.SYMTYPE},
        {"name": "a", "uid": 8**7, "gid": 5},
        {"name": "a", "size": 8**11},
        {"name": "a", "mtime": 1.5},
        {"name": "a", "uname": "u" * 33},
        {"name": "fifo", "type": tarfile.FIFOTYPE},
        {"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
        {"name": "bad\udcff", "size": 1},
    ],
)
def test_fast_headers_equal_tobuf(fields: dict[str, Any]) -> None:
    from escrow.capture.context import tar_header

    info = tarfile.TarInfo(fields.pop("name"))
    for key, value in fields.items():
        setattr(info, key, value)
    assert tar_header(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_the_describer_equals_gettarinfo(tree: Path) -> None:
    from escrow.capture.context import _Describer

    os.mkfifo(tree / "pipe")
    ours = _Describer()
    theirs = tarfile.open(mode="w", fileobj=io.BytesIO())
    for name in ["app.py", "hard.py", "link.py", "sub", "pipe", "bin/tool", "ünïcödé.txt"]:
        a = ours.describe(str(tree / name), name)
        b = theirs.gettarinfo(str(tree / name), arcname=name)
        assert a is not None and b is not None
        b.mtime = int(b.mtime)
        keys = (
            "name",
            "mode",
            "uid",
            "gid",
            "size",
            "mtime",
            "type",
            "linkname",
            "uname",
            "gname",
            "devmajor",
            "devminor",
        )
        assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}, name


def test_the_streamed_archive_is_the_spooled_one(tree: Path) -> None:
    from escrow.capture.context import ContextStream

    stream = ContextStream(tree, None)
    sent = b"".join(stream.chunks())
    streamed = stream.result()
    with make_context(tree) as spooled:
        assert sent == spooled.rewind().read()
        assert streamed.archive_sha256 == hashlib.sha256(sent).hexdigest() == spooled.archive_sha256
        assert streamed.archive_size == len(sent)
        assert (streamed.files, streamed.tree_digest) == (spooled.files, spooled.tree_digest)


def test_a_file_gone_before_it_is_read_fails_the_stream_with_an_input_error(tree: Path) -> None:
    from escrow.capture.context import ContextStream

    stream = ContextStream(tree, None)  # the walk is done here
    (tree / "app.py").unlink()
    for _ in stream.chunks():
        pass
    with pytest.raises(InputError, match="app.py"):
        stream.result()
