"""`escrow show`, `escrow verify` and `escrow log` on bad input, a damaged entry, a failed
build and an unreachable Docker Engine: one clear sentence and the documented exit code."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from escrow.config import load_settings
from escrow.documents.canonical import canonical_bytes
from escrow.ledger.store import Ledger
from escrow.signing.dsse import Envelope
from escrow.signing.keys import SigningKey

ASSETS = Path(__file__).parent / "assets"


def _example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ASSETS / "build-manifest.example.json").read_text())
    return data


def _failed_build() -> dict[str, Any]:
    """The example manifest as a build that failed at step 3 with exit code 2."""
    st = copy.deepcopy(_example())
    pred = st["predicate"]
    pred["build"]["status"] = "failed"
    pred["build"]["failure"] = {
        "step": 3,
        "instruction": "RUN false",
        "exitCode": 2,
        "message": "The command '/bin/sh -c false' returned a non-zero code: 2",
        "logTail": "",
    }
    for key in ("image", "layers", "history"):
        pred.pop(key, None)
    recipe = pred["inputs"]["recipe"]
    st["subject"] = [{"name": f"recipe:{recipe['path']}", "digest": {"sha256": recipe["sha256"]}}]
    return st


def _append(statement: dict[str, Any]) -> int:
    """Sign ``statement`` with the configured build key and append it; its index."""
    settings = load_settings()
    key = SigningKey.load(settings.key_path)
    with Ledger.open(settings) as lg:
        entry, _ = lg.append(Envelope(payload=canonical_bytes(statement)).signed_by(key))
    return entry.index


def _set_stored_envelope(home: Path, index: int, data: bytes) -> None:
    with sqlite3.connect(home / "ledger.db") as db:
        db.execute("UPDATE ledger_entry SET envelope = ? WHERE idx = ?", (data, index))


@pytest.fixture
def no_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """DOCKER_HOST pointing at a socket nobody listens on; the host as escrow names it."""
    host = f"unix://{tmp_path / 'no-engine.sock'}"
    monkeypatch.setenv("DOCKER_HOST", host)
    return host


# -- 1. `escrow show` of an entry whose stored envelope was tampered with --------------------


def _flip_payload_byte(envelope: bytes) -> bytes:
    """The envelope with the first base64 digit of its payload changed so that the payload
    no longer decodes to UTF-8 JSON (``eyJ`` is ``{"``; ``/`` makes the first byte 0xFC)."""
    doc = json.loads(envelope)
    assert doc["payload"].startswith("e")
    doc["payload"] = "/" + doc["payload"][1:]
    return json.dumps(doc, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "damage",
    [_flip_payload_byte, lambda _: b"not json at all"],
    ids=["payload-byte-flipped", "not-json"],
)
def test_show_of_a_tampered_entry_says_so_in_one_sentence(
    escrow_home: Path, cli: Any, damage: Any
) -> None:
    """Regression: `escrow show N` printed a traceback (UnicodeDecodeError / JSONDecodeError)."""
    index = _append(_example())
    with sqlite3.connect(escrow_home / "ledger.db") as db:
        (data,) = db.execute("SELECT envelope FROM ledger_entry WHERE idx = ?", (index,)).fetchone()
    _set_stored_envelope(escrow_home, index, damage(bytes(data)))

    for args in (["show", str(index)], ["show", str(index), "--json"]):
        r = cli(args)
        assert r.exit_code == 1, r.stdout + r.stderr
        assert "Traceback" not in r.stderr
        assert f"entry {index}" in r.stderr
        assert "tampered with or corrupted" in r.stderr
        assert "escrow ledger verify" in r.stderr
        assert r.stdout == ""


def test_show_of_an_intact_entry_still_prints_it(escrow_home: Path, cli: Any) -> None:
    index = _append(_example())
    r = cli(["show", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert doc["statement"] == _example()
    assert doc["envelope"]["payloadType"] == "application/vnd.in-toto+json"


# -- 2. resolving a target needs the engine, and it is unreachable ----------------------------


def test_verify_an_image_reference_without_engine_is_an_environment_error(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    """Regression: exit 2, 'neither a ledger index, an image ID nor an image in the engine'."""
    r = cli(["verify", "some/image:tag"])
    assert r.exit_code == 3, r.stdout + r.stderr
    assert f"The Docker Engine at {no_engine} is not reachable" in r.stderr
    assert "DOCKER_HOST" in r.stderr
    assert "neither" not in r.stderr


def test_log_by_short_image_id_without_engine_is_an_environment_error(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    """Regression: `escrow log --image 185cf08891bc` said no image has that short ID (exit 2)
    without asking the engine.  The ledger expands a short ID of a recorded image without
    the engine; one it does not hold is named as such, with the engine not reachable."""
    r = cli(["log", "--image", "185cf08891bc"])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "no image ID recorded in the ledger begins with it" in r.stderr
    assert "the Docker Engine, which could expand a short ID" in r.stderr
    assert "is not reachable" in r.stderr
    index = _append(_example())
    short = _example()["predicate"]["image"]["id"].removeprefix("sha256:")[:12]
    r = cli(["log", "--image", short, "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [index]
    r = cli(["log", "--image", "app:latest"])  # a name: only the engine knows it
    assert r.exit_code == 3, r.stdout + r.stderr
    assert f"The Docker Engine at {no_engine} is not reachable" in r.stderr


def test_targets_that_need_no_engine_still_work_without_it(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    index = _append(_example())
    image_id = _example()["predicate"]["image"]["id"]
    assert cli(["verify", image_id]).exit_code == 0
    r = cli(["log", "--image", image_id, "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [index]


def test_verify_json_marks_the_image_check_skipped_without_engine(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    """Regression: with the engine down the image check was silently left out of --json."""
    index = _append(_example())
    r = cli(["verify", str(index), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["ok"] is True
    checks = {c["name"]: c for c in doc["checks"]}
    assert checks["signature"]["ok"] is True and checks["signature"]["skipped"] is False
    image = checks["image"]
    assert image["skipped"] is True
    assert f"Docker Engine at {no_engine} is not reachable" in image["detail"]

    human = cli(["verify", str(index)])
    assert human.exit_code == 0
    assert "skip image" in human.stdout and "not reachable" in human.stdout


def test_an_entry_with_no_image_has_no_skipped_image_check(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    r = cli(["verify", "0", "--json"])  # the build key's registration: no image
    assert r.exit_code == 0, r.stdout + r.stderr
    assert [c["name"] for c in r.json()["checks"]] == ["signature", "inclusion"]


@pytest.mark.docker
def test_an_image_the_running_engine_lacks_is_still_a_usage_error(
    escrow_home: Path, cli: Any, docker_client: Any
) -> None:
    r = cli(["log", "--image", "000000000000"])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "No image in the Docker Engine has the short ID 000000000000" in r.stderr
    r = cli(["log", "--image", "no-such-image:1"])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert "no image in the Docker Engine has that short ID or name" in r.stderr


# -- 3. `escrow log --signer` takes the key ID prefix `escrow keys list` shows ---------------


def _build_keyid() -> str:
    settings = load_settings()
    return SigningKey.load(settings.key_path).public.keyid


def test_log_signer_accepts_the_short_key_id(escrow_home: Path, cli: Any) -> None:
    """Regression: `--signer` matched only the full 64-hex ID; the 16 hex digits `escrow keys
    list` shows printed `No entries.`"""
    index = _append(_example())
    keyid = _build_keyid()
    listed = cli(["keys", "list"])
    assert keyid[:16] in listed.stdout
    for given in (keyid[:16], keyid[:16].upper(), keyid):
        r = cli(["log", "--signer", given, "--json"])
        assert r.exit_code == 0, r.stderr
        assert [e["index"] for e in r.json()["entries"]] == [index], given


def test_log_signer_matches_the_log_key_by_prefix(escrow_home: Path, cli: Any) -> None:
    """Key events are signed by the ledger's log key, not a registered key."""
    full = cli(["log", "--kind", "key-event", "--json"]).json()["entries"][0]["signer"]
    r = cli(["log", "--signer", full[:12], "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [0]


def test_log_signer_unknown_prefix_is_a_usage_error(escrow_home: Path, cli: Any) -> None:
    keyid = _build_keyid()
    unknown = ("0" if keyid[0] != "0" else "1") * 16
    r = cli(["log", "--signer", unknown])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert f"No key ID of this ledger begins with {unknown!r}" in r.stderr
    assert "escrow keys list" in r.stderr


def test_log_signer_ambiguous_prefix_is_a_usage_error(
    escrow_home: Path, cli: Any, tmp_path: Path
) -> None:
    settings = load_settings()
    with Ledger.open(settings) as lg:
        log_keyid = next(iter(lg.entries(limit=1))).signer
        keyids = {log_keyid, _build_keyid()}
        # register keys until two registered IDs share their first hex digit
        while len({k[0] for k in keyids}) == len(keyids):
            key = SigningKey.generate()
            lg.register_key(key.public, f"k{len(keyids)}")
            keyids.add(key.public.keyid)
    firsts = [k[0] for k in keyids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    r = cli(["log", "--signer", shared])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert f"The key ID prefix {shared!r} is ambiguous" in r.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [("--signer", "zz"), ("--signer", ""), ("--diff-id", "nothex"), ("--diff-id", "sha256:abc")],
)
def test_log_filter_that_is_not_hex_is_a_usage_error(
    escrow_home: Path, cli: Any, option: str, value: str
) -> None:
    """Regression: a malformed --signer or --diff-id silently matched nothing (`No entries.`)."""
    r = cli(["log", option, value])
    assert r.exit_code == 2, r.stdout + r.stderr
    assert option in r.stderr and "No entries" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_log_by_diff_id_still_matches(escrow_home: Path, cli: Any) -> None:
    index = _append(_example())
    diff_id = _example()["predicate"]["layers"][0]["diffId"]
    for given in (diff_id, diff_id.removeprefix("sha256:")):
        r = cli(["log", "--diff-id", given, "--json"])
        assert r.exit_code == 0, r.stderr
        assert [e["index"] for e in r.json()["entries"]] == [index]


# -- 4. `escrow verify` of a recorded failed build --------------------------------------------


def test_verify_of_a_failed_build_says_the_build_failed(escrow_home: Path, cli: Any) -> None:
    """Regression: it printed just `Entry N verified.`, as for a build that succeeded."""
    index = _append(_failed_build())
    r = cli(["verify", str(index)])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert (
        f"Entry {index} verified: the record is intact; the recorded build failed "
        "(step 3, exit code 2)." in r.stderr
    )

    j = cli(["verify", str(index), "--json"])
    assert j.exit_code == 0, j.stderr
    doc = j.json()
    assert doc["ok"] is True
    assert doc["status"] == "failed"
    assert doc["failure"]["step"] == 3 and doc["failure"]["exitCode"] == 2


def test_verify_of_a_succeeded_build_reports_its_status(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    index = _append(_example())
    r = cli(["verify", str(index)])
    assert r.exit_code == 0
    assert f"Entry {index} verified." in r.stderr and "failed" not in r.stderr
    assert cli(["verify", str(index), "--json"]).json()["status"] == "succeeded"


def test_verify_of_an_image_never_recorded_is_a_failed_check(
    escrow_home: Path, cli: Any, no_engine: str
) -> None:
    """Regression: a CI gate `escrow verify IMAGE` saw exit 2 (bad input) for an image
    built without escrow; the answer to "is it recorded?" is no: exit 1."""
    _append(_example())
    r = cli(["verify", "sha256:" + "ab" * 32])
    assert r.exit_code == 1, r.stderr
    assert "No build of image sha256:abab" in r.stderr and "is recorded" in r.stderr
    # a registry's manifest digest is not an image ID: the hint says how to check one
    assert "manifest digest" in r.stderr and f"HOST/REPO@sha256:{'ab' * 32}" in r.stderr
