"""`escrow verify` of images as engineers name them: by tag, by short ID, with --json.

Found by a bug hunt with real builds: a short ID that begins several of the engine's
image IDs (the engine then finds none) was resolved through the ledger's index to the one
recorded image beginning with it and reported "verified"; a tag given to an image built
without escrow was answered with an image ID only, never saying it was the name's image;
and with ``--json`` a target that could not be checked (unknown name, no engine, no
record) printed nothing on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_TAG
from tests.pack.synth import manifest_variant

pytestmark = pytest.mark.filterwarnings("ignore:The Result.tuples:DeprecationWarning")


def _docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Tagger:
    """A unique tag under hunt-t/ and the images built under it (removed afterwards)."""

    def __init__(self) -> None:
        self.name = f"hunt-t/verify-{uuid.uuid4().hex[:12]}:1"
        self.made: list[str] = []
        self.env = dict(os.environ)  # the engine's address, before a test points it away

    def build(self, ctx: Path) -> str:
        """Build a new image (a label of its own) under the tag; its ID."""
        ctx.mkdir(parents=True, exist_ok=True)
        (ctx / "Dockerfile").write_text(f"FROM {BASE_TAG}\nLABEL hunt={uuid.uuid4().hex}\n")
        _docker("build", "-q", "-t", self.name, str(ctx))
        self.made.append(_docker("image", "inspect", "-f", "{{.Id}}", self.name))
        return self.made[-1]


@pytest.fixture
def tagger(base_image: str) -> Iterator[Tagger]:
    t = Tagger()
    yield t
    for image in reversed(t.made):
        subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True, env=t.env)


def _one_document(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout)  # a second document would not parse
    return doc


def test_a_name_given_to_an_image_built_without_escrow_is_named(
    escrow_home: Path, cli: Any, tagger: Tagger, tmp_path: Path
) -> None:
    tag = tagger.name
    recorded = tagger.build(tmp_path / "a")
    r = cli(["capture", tag, "--json"])
    assert r.exit_code == 0, r.stderr
    index = r.json()["index"]
    # the same tag rebuilt without escrow: the engine's image is not the recorded one
    other = tagger.build(tmp_path / "b")
    assert other != recorded

    r = cli(["verify", tag])
    assert r.exit_code == 1
    assert f"{tag} is image {other} in the Docker Engine" in r.stderr
    assert "built without escrow" in r.stderr and "by its index" in r.stderr
    assert r.stdout == ""

    r = cli(["verify", tag, "--json"])
    assert r.exit_code == 1
    doc = _one_document(r.stdout)
    assert doc["ok"] is False and doc["target"] == tag
    assert f"{tag} is image {other}" in doc["error"]

    # the recorded build still verifies by its index, its image compared by ID
    r = cli(["verify", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    image = next(c for c in r.json()["checks"] if c["name"] == "image")
    assert image["ok"] and not image["skipped"]


def test_json_failures_of_a_target_are_one_document(
    escrow_home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, base_image: str
) -> None:
    missing = f"hunt-t/missing-{uuid.uuid4().hex[:12]}:1"
    r = cli(["verify", missing, "--json"])
    assert r.exit_code == 2
    doc = _one_document(r.stdout)
    assert doc == {"ok": False, "target": missing, "error": doc["error"]}
    assert "neither a ledger index" in doc["error"]

    r = cli(["verify", "7", "--json"])  # no such entry
    assert r.exit_code == 2
    assert _one_document(r.stdout)["ok"] is False

    # the engine unreachable: a name cannot be resolved (exit 3), still one document
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    r = cli(["verify", BASE_TAG, "--json"])
    assert r.exit_code == 3
    doc = _one_document(r.stdout)
    assert doc["ok"] is False and "not reachable" in doc["error"]


def test_an_index_verifies_without_the_engine_saying_the_image_was_not_compared(
    escrow_home: Path, cli: Any, monkeypatch: pytest.MonkeyPatch, tagger: Tagger, tmp_path: Path
) -> None:
    tag = tagger.name
    tagger.build(tmp_path / "a")
    r = cli(["capture", tag, "--json"])
    assert r.exit_code == 0, r.stderr
    index = r.json()["index"]
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    r = cli(["verify", str(index), "--json"])
    assert r.exit_code == 0, r.stderr
    checks = {c["name"]: c for c in r.json()["checks"]}
    assert checks["signature"]["ok"] and checks["inclusion"]["ok"]
    assert checks["image"]["skipped"] and "not reachable" in checks["image"]["detail"]


class _AmbiguousEngine:
    """An engine holding two images whose IDs begin with the same digits: its own
    lookup of that short ID finds none."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def image_facts(self, ref: str) -> None:
        return None

    def image_ids_starting(self, digits: str) -> list[str]:
        return [i for i in self.ids if i.removeprefix("sha256:").startswith(digits)]


def test_a_short_id_several_engine_images_begin_with_is_refused(escrow_home: Path) -> None:
    from escrow.config import load_settings
    from escrow.errors import InputError
    from escrow.ledger.store import Ledger
    from escrow.signing.dsse import sign_statement
    from escrow.signing.keys import SigningKey
    from escrow.verification import resolve_target

    settings = load_settings()
    st = manifest_variant(1, project="hunt")
    recorded = str(st["predicate"]["image"]["id"])
    short = recorded.removeprefix("sha256:")[:4]
    unrecorded = "sha256:" + short + "f" * 60  # built without escrow, same first digits
    with Ledger.open(settings) as ledger:
        entry = ledger.append(sign_statement(st, SigningKey.load(settings.key_path)))[0]
        # the ledger alone (no engine) knows one image with these digits: that is its entry
        assert resolve_target(ledger, short).index == entry.index
        # with the engine holding another image that begins with them, the short ID is
        # ambiguous: not silently the recorded one
        with pytest.raises(InputError) as e:
            resolve_target(ledger, short, _AmbiguousEngine([recorded, unrecorded]))
    assert e.value.message.startswith(
        f"The short ID {short} is the beginning of two image IDs in the Docker Engine"
    )
    assert "Give more of its digits" in e.value.diagnostics()
    # digits no recorded image begins with: not "no image in the engine has" them
    other = next(d for d in "abcdef" if not recorded.startswith("sha256:" + d))  # no index
    engine = _AmbiguousEngine(["sha256:" + other + "0" * 63, "sha256:" + other + "1" * 63])
    with Ledger.open(settings) as ledger, pytest.raises(InputError) as e:
        resolve_target(ledger, other, engine)
    assert "is the beginning of two image IDs in the Docker Engine" in e.value.message


def test_an_image_captured_twice_names_the_older_entry(
    escrow_home: Path, cli: Any, tagger: Tagger, tmp_path: Path
) -> None:
    """Each capture is an observation at its time; `escrow verify IMAGE` verifies the
    latest, and said nothing of the other entry of the same image."""
    tag = tagger.name
    tagger.build(tmp_path / "a")
    first = cli(["capture", tag, "--json"]).json()["index"]
    second = cli(["capture", tag, "--json"]).json()["index"]

    r = cli(["verify", tag])
    assert r.exit_code == 0, r.stderr
    assert (
        f"escrow: {tag} is recorded by entry {second}, which is verified, and before it by "
        f"entry {first} (verify one of those by its index)." in r.stderr
    )
    doc = _one_document(cli(["verify", tag, "--json"]).stdout)
    assert (doc["index"], doc["other_entries"]) == (second, [first])
    # by its index, the older one alone
    assert _one_document(cli(["verify", str(first), "--json"]).stdout)["other_entries"] == []
