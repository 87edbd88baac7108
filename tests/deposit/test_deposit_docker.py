"""Deposits on the real Docker Engine: deposit, check, rebuild from the deposit alone,
export/import into a fresh ESCROW_HOME, gc."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.deposit.conftest import Builds, docker

pytestmark = pytest.mark.docker


def _store_blobs(home: Path) -> set[str]:
    root = home / "deposits" / "blobs" / "sha256"
    return {p.name for p in root.glob("*/*")} if root.is_dir() else set()


def test_deposit_check_and_rebuild_from_the_deposit_alone(
    builds: Builds, cli: Any, escrow_home: Path
) -> None:
    ctx = builds.context({"app.txt": "hello\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile())
    (ctx / "outside-link").symlink_to("/etc/hostname")  # a link of the user's own, kept as is
    index, statement = builds.build(ctx)

    r = cli(["deposit", "check", str(index), "--json"])
    assert r.exit_code == 1, r.stderr
    assert r.json()["missing"][0]["kind"] == "deposit"

    r = cli(["deposit", str(index), "--json"])  # no --context: the context is missing
    assert r.exit_code == 1, r.stderr
    kinds = {m["kind"] for m in r.json()["missing"]}
    assert "context" in kinds and "base-image" not in kinds

    r = cli(["deposit", str(index), "--context", str(ctx), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["complete"] and {"context", "dockerfile", "base-images", "image"} <= set(
        doc["deposited"]
    )
    r = cli(["deposit", "check", str(index), "--verify", "--json"])
    assert r.exit_code == 0, r.stderr
    assert r.json()["complete"] and r.json()["verifiedBlobs"] > 5

    # the base layers are stored by diff ID, uncompressed
    blobs = _store_blobs(escrow_home)
    for layer in statement["predicate"]["layers"]:
        assert layer["diffId"].removeprefix("sha256:") in blobs

    # the engine loses the image and its base, the original context is gone
    image_id = statement["predicate"]["image"]["id"]
    docker("rmi", "-f", builds.tags[-1])
    docker("rmi", "-f", builds.base_tag)
    assert docker("image", "inspect", builds.base_id, check=False).returncode != 0
    assert docker("image", "inspect", image_id, check=False).returncode != 0
    shutil.rmtree(ctx)

    tag = builds.rebuild_tag()
    r = cli(["rebuild", str(index), "-q", "-t", tag, "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    doc = r.json()
    assert doc["verdict"] in ("identical", "equivalent")
    assert doc["statement"]["predicate"]["rebuild"]["inputsFrom"] == "deposit"
    # the RUN layer's files were compared against the deposited original layer
    layers = doc["statement"]["predicate"]["verdict"]["layers"]
    assert all("files not compared" not in (x.get("note") or "") for x in layers)
    assert docker("image", "inspect", builds.base_id, check=False).returncode == 0


def test_deposit_check_lists_a_missing_layer(builds: Builds, cli: Any, escrow_home: Path) -> None:
    ctx = builds.context({"app.txt": "x\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, statement = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    base_layer = json.loads(
        docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", builds.base_id).stdout
    )[0]
    path = escrow_home / "deposits" / "blobs" / "sha256"
    hexid = base_layer.removeprefix("sha256:")
    (path / hexid[:2] / hexid).unlink()
    r = cli(["deposit", "check", str(index), "--json"])
    assert r.exit_code == 1
    missing = r.json()["missing"]
    assert [m["kind"] for m in missing] == ["base-image"]
    assert missing[0]["digest"] == base_layer
    # without the deposit and without --context, rebuild says what to do
    r = cli(["rebuild", str(index), "-q"])
    assert r.exit_code == 2
    assert "incomplete" in r.stderr


def test_export_import_rebuild_in_a_fresh_home(
    builds: Builds, cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = builds.context({"app.txt": "escrow\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile())
    index, statement = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    out = tmp_path / "deposit.tar"
    r = cli(["deposit", "export", str(index), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    verifier = r.json()["verifierKey"]

    # another machine: a fresh ESCROW_HOME, no image, no base, no context
    other = tmp_path / "agent-home"
    monkeypatch.setenv("ESCROW_HOME", str(other))
    assert cli(["init"]).exit_code == 0
    docker("rmi", "-f", builds.tags[-1])
    docker("rmi", "-f", builds.base_tag)
    shutil.rmtree(ctx)

    r = cli(["deposit", "import", str(out), "--verifier-key", "escrow.other/ledger+00000000+AAAA"])
    assert r.exit_code == 2, r.stderr  # not a verifier key at all
    assert "is not a note verifier key" in r.stderr
    assert not _store_blobs(other)
    # a well-formed verifier key, of another ledger: the deposit's checkpoint fails its check
    import base64

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from tests.ledger.test_independent_reference import note_key_hash

    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    name = verifier.split("+", 1)[0]
    another = f"{name}+{note_key_hash(name, raw).hex()}+" + base64.b64encode(b"\x01" + raw).decode()
    r = cli(["deposit", "import", str(out), "--verifier-key", another])
    assert r.exit_code == 1, r.stderr
    assert "is not the one you pinned (--verifier-key); refused" in r.stderr, r.stderr
    assert not _store_blobs(other)

    r = cli(["deposit", "import", str(out), "--verifier-key", verifier, "--json"])
    assert r.exit_code == 0, r.stderr
    imported = r.json()["entries"][0]
    assert imported["index"] == index
    # not pretending: the local ledger does not hold the entry
    assert cli(["deposit", "check", str(index)]).exit_code == 2
    assert cli(["deposit", "check", "--imported", str(index)]).exit_code == 0

    tag = builds.rebuild_tag()
    r = cli(["rebuild", "--imported", str(index), "-q", "-t", tag, "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    doc = r.json()
    assert doc["verdict"] in ("identical", "equivalent")
    assert doc["statement"]["predicate"]["original"]["leafHash"] == imported["leafHash"]
    assert doc["statement"]["predicate"]["original"]["index"] == index
    assert doc["statement"]["predicate"]["rebuild"]["originalFrom"] == "imported-deposit"


def test_gc_keeps_what_retained_entries_need(builds: Builds, cli: Any, escrow_home: Path) -> None:
    indexes = []
    for i in range(3):
        ctx = builds.context({"app.txt": f"day {i}\n", "shared.txt": "same every day\n"})
        (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
        index, _ = builds.build(ctx, project="gc-test")
        assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
        indexes.append(index)

    stats = cli(["deposit", "stats", "--json"]).json()
    assert stats["projects"]["gc-test"]["entries"] == 3
    assert stats["bytesSavedByDedup"] > 0  # the base layers and shared.txt are stored once

    before = _store_blobs(escrow_home)
    # a span longer than the calendar ("keep forever") keeps every entry
    forever = cli(["gc", "--keep-days", "1000000", "--json"])
    assert forever.exit_code == 0, forever.stderr
    assert sorted(forever.json()["projects"]["gc-test"]["retained"]) == indexes
    dry = cli(["gc", "--keep-last", "1", "--json"]).json()
    assert dry["applied"] is False and dry["reclaimBytes"] > 0
    assert _store_blobs(escrow_home) == before  # a dry run removes nothing
    project = dry["projects"]["gc-test"]
    assert project["retained"] == [indexes[-1]]
    assert sorted(project["dropped"]) == indexes[:-1]

    r = cli(["gc", "--keep-last", "1", "--apply", "--json"])
    assert r.exit_code == 0, r.stderr
    assert len(_store_blobs(escrow_home)) < len(before)
    assert cli(["deposit", "check", str(indexes[-1]), "--verify"]).exit_code == 0
    for dropped in indexes[:-1]:
        r = cli(["deposit", "check", str(dropped)])
        assert r.exit_code == 1
        # it said "nothing was deposited", of an entry that was, before gc removed it
        assert "nothing was deposited" not in r.stdout + r.stderr
        assert "`escrow gc --apply` removed it" in r.stdout + r.stderr


def _rewrite(src: Path, dst: Path, change: Any) -> None:
    import io
    import tarfile

    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for m in tin:
            data = tin.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            data = change(m.name, data)
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data))


def _flip_layer(name: str, data: bytes) -> bytes:
    if name.startswith("blobs/") and len(data) > 100_000:
        return data[:-600] + bytes(b ^ 1 for b in data[-600:-599]) + data[-599:]
    return data


def _edit_envelope(name: str, data: bytes) -> bytes:
    if name.startswith("entries/"):
        doc = json.loads(data)
        doc["payloadType"] = "application/vnd.in-toto+json "
        return json.dumps(doc).encode()
    return data


def _edit_checkpoint(name: str, data: bytes) -> bytes:
    if name == "checkpoint.txt":
        lines = data.decode().split("\n")
        lines[1] = str(int(lines[1]) + 1)
        return "\n".join(lines).encode()
    return data


def _drop_key_history(name: str, data: bytes) -> bytes:
    if name == "TOC.json":
        doc = json.loads(data)
        doc.pop("keyEvents")
        return json.dumps(doc).encode()
    return data


def _empty_key_history(name: str, data: bytes) -> bytes:
    if name == "TOC.json":
        doc = json.loads(data)
        doc["keyEvents"] = []
        return json.dumps(doc).encode()
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_flip_layer, "does not match its SHA-256"),
        (_edit_envelope, "leaf hash"),
        (_edit_checkpoint, "checkpoint"),
        (_drop_key_history, "lacks the key history"),
        (_empty_key_history, "does not show registered"),
    ],
    ids=[
        "altered-layer",
        "altered-envelope",
        "altered-checkpoint",
        "no-key-history",
        "signer-not-registered",
    ],
)
def test_import_of_an_altered_deposit_stores_nothing(
    builds: Builds,
    cli: Any,
    escrow_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    change: Any,
    message: str,
) -> None:
    ctx = builds.context({"app.txt": "alter\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    good = tmp_path / "good.tar"
    assert cli(["deposit", "export", str(index), "-o", str(good)]).exit_code == 0
    bad = tmp_path / "bad.tar"
    _rewrite(good, bad, change)
    monkeypatch.setenv("ESCROW_HOME", str(tmp_path / "agent"))
    assert cli(["init"]).exit_code == 0
    r = cli(["deposit", "import", str(bad)])
    # an archive from an older escrow is bad input (2); an altered one a failed check (1)
    assert r.exit_code == (2 if change is _drop_key_history else 1), r.stderr
    assert message in r.stderr, r.stderr
    assert not _store_blobs(tmp_path / "agent")
    assert not (tmp_path / "agent" / "deposits" / "refs").exists()
    assert cli(["deposit", "import", str(good)]).exit_code == 0


def _store_bytes(home: Path) -> int:
    root = home / "deposits" / "blobs" / "sha256"
    return sum(p.stat().st_size for p in root.glob("*/*")) if root.is_dir() else 0


def test_bytes_new_counts_what_the_deposit_added(
    builds: Builds, cli: Any, escrow_home: Path
) -> None:
    """`bytesNew` said 0 whenever the blobs were not written by a `docker save` (the
    context, logs, and layers read from the engine's own store, the usual path)."""
    ctx = builds.context({"app.txt": "some bytes of the context\n" * 50})
    (ctx / "Dockerfile").write_text(builds.dockerfile())
    index, _ = builds.build(ctx)
    before = _store_bytes(escrow_home)
    r = cli(["deposit", str(index), "--context", str(ctx), "--json"])
    assert r.exit_code == 0, r.stderr
    added = _store_bytes(escrow_home) - before
    assert added > 1300  # the context's file alone is 1,300 bytes
    assert r.json()["bytesNew"] == added
    # the same deposit again adds nothing (not even a new copy of its record), and says so
    again = cli(["deposit", str(index), "--context", str(ctx), "--json"])
    assert again.exit_code == 0, again.stderr
    assert again.json()["bytesNew"] == 0 == _store_bytes(escrow_home) - before - added
    assert again.json()["record"] == r.json()["record"]
    assert cli(["gc", "--json"]).json()["unreferenced"]["blobs"] == 0


def test_importing_again_keeps_the_import_unless_the_proof_is_fresher(
    builds: Builds, cli: Any, escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Importing the same archive twice said "imported 1 entry" again and left the first
    import record unreferenced; an archive from a larger tree still updates the proof."""
    ctx = builds.context({"app.txt": "again\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    first = tmp_path / "first.tar"
    assert cli(["deposit", "export", str(index), "-o", str(first)]).exit_code == 0

    agent = tmp_path / "agent-home"
    monkeypatch.setenv("ESCROW_HOME", str(agent))
    assert cli(["init"]).exit_code == 0
    r = cli(["deposit", "import", str(first), "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["new"] for e in r.json()["entries"]] == [True]
    ref = agent / "deposits" / "refs" / "imports" / r.json()["entries"][0]["leafHash"]
    record = ref.read_text()

    r = cli(["deposit", "import", str(first)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("imported 0 entries (1 entry imported before, kept) from ledger")
    assert "(imported before)" in r.stdout
    assert ref.read_text() == record  # the same record, still referenced

    # the vendor's ledger grows; the same entry exported again carries a fresher proof
    monkeypatch.setenv("ESCROW_HOME", str(escrow_home))
    later = builds.context({"app.txt": "later\n"}, name="later")
    (later / "Dockerfile").write_text(builds.dockerfile(run=False))
    builds.build(later)
    second = tmp_path / "second.tar"
    assert cli(["deposit", "export", str(index), "-o", str(second)]).exit_code == 0
    monkeypatch.setenv("ESCROW_HOME", str(agent))
    r = cli(["deposit", "import", str(second), "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["new"] for e in r.json()["entries"]] == [True]
    assert ref.read_text() != record
    assert (
        json.loads(
            (agent / "deposits")
            .joinpath("blobs", "sha256", ref.read_text().strip()[:2], ref.read_text().strip())
            .read_text()
        )["treeSize"]
        == r.json()["treeSize"]
        > index + 1
    )


def test_a_missing_base_image_is_named_in_the_hint_not_the_context(
    builds: Builds, cli: Any, escrow_home: Path
) -> None:
    """With the context given and matching, an incomplete deposit still told the user to
    pass --context; what is missing is the base image, which the engine no longer has."""
    ctx = builds.context({"app.txt": "base gone\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile(run=False))
    index, _ = builds.build(ctx)
    docker("rmi", "-f", builds.tags[-1])  # the image, then its base
    docker("rmi", "-f", builds.base_tag)
    r = cli(["deposit", str(index), "--context", str(ctx)])
    assert r.exit_code == 1, r.stderr
    assert "missing base-image " + builds.base_tag in r.stdout
    assert "--context" not in r.stderr
    assert f"The engine no longer has the base image {builds.base_tag}" in r.stderr


def test_rebuild_with_context_takes_a_missing_base_from_the_deposit(
    builds: Builds, cli: Any, escrow_home: Path
) -> None:
    """`rebuild N --context DIR` recorded `unknown` ("not in the Docker Engine") for a base
    image the deposit held, and compared no files of a layer the engine no longer had;
    `rebuild N` without --context took both from the deposit."""
    ctx = builds.context({"app.txt": "base from the deposit\n"})
    (ctx / "Dockerfile").write_text(builds.dockerfile())
    index, _ = builds.build(ctx)
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    docker("rmi", "-f", builds.tags[-1])
    docker("rmi", "-f", builds.base_tag)
    assert docker("image", "inspect", builds.base_id, check=False).returncode != 0

    tag = builds.rebuild_tag()
    r = cli(["rebuild", str(index), "--context", str(ctx), "-t", tag, "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    doc = r.json()
    assert doc["verdict"] in ("identical", "equivalent")
    assert doc["statement"]["predicate"]["rebuild"]["basesFrom"] == "deposit"
    layers = doc["statement"]["predicate"]["verdict"]["layers"]
    assert all("files not compared" not in (x.get("note") or "") for x in layers)
    assert "loading the base image" in r.stderr
    assert docker("image", "inspect", builds.base_id, check=False).returncode == 0


def test_the_image_copy_from_names_is_deposited_and_loaded_back(
    builds: Builds, cli: Any, escrow_home: Path
) -> None:
    """An image a `COPY --from=IMAGE` copied files from was not deposited: a rebuild from
    the deposit alone could not run once the engine had lost it."""
    ctx = builds.context({"app.txt": "copied from\n"})
    (ctx / "Dockerfile").write_text(
        "FROM escrow-test/base:latest\n"
        f"COPY --from={builds.base_tag} /marker /marker\n"
        "COPY app.txt /app.txt\n"
    )
    index, statement = builds.build(ctx)
    assert statement["predicate"]["inputs"]["copyFromImages"][0]["imageId"] == builds.base_id
    assert cli(["deposit", str(index), "--context", str(ctx)]).exit_code == 0
    r = cli(["deposit", "check", str(index), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    docker("rmi", "-f", builds.tags[-1])
    docker("rmi", "-f", builds.base_tag)
    assert docker("image", "inspect", builds.base_id, check=False).returncode != 0

    r = cli(["rebuild", str(index), "--context", str(ctx), "-t", builds.rebuild_tag(), "--json"])
    assert r.exit_code == 0, r.stderr + r.stdout
    assert r.json()["verdict"] in ("identical", "equivalent")
    assert f"loading the base image {builds.base_tag}" in r.stderr
    assert docker("image", "inspect", builds.base_id, check=False).returncode == 0
