"""SLSA Provenance v1 export: the mapping, checked against a schema written from the spec."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from escrow.config import load_settings
from escrow.documents.schemas import validate_document
from escrow.documents.slsa import provenance_statement
from escrow.documents.types import SLSA_BUILD_TYPE, SLSA_PROVENANCE
from escrow.errors import InputError
from escrow.ledger.store import Ledger
from escrow.signing.dsse import Envelope, sign_statement
from escrow.signing.keys import SigningKey

from .conftest import ASSETS, load

ORACLE = Draft202012Validator(load(ASSETS / "slsa-provenance-v1.schema.json"))


def oracle_errors(doc: Any) -> list[str]:
    return sorted(
        "/" + "/".join(map(str, e.absolute_path)) + ": " + e.message[:120]
        for e in ORACLE.iter_errors(doc)
    )


@pytest.fixture
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = load(ASSETS / "build-manifest.example.json")
    return data


def test_oracle_schema_is_valid_and_can_fail(manifest: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(ORACLE.schema)
    good = provenance_statement(manifest)
    assert oracle_errors(good) == []
    for mutate in (
        lambda d: d["predicate"]["runDetails"]["builder"].pop("id"),
        lambda d: d["predicate"]["buildDefinition"].pop("externalParameters"),
        lambda d: d["predicate"]["runDetails"]["metadata"].update(startedOn="2026-12-04 15:44"),
        lambda d: d["predicate"]["runDetails"]["byproducts"][0].pop("digest"),
        lambda d: d["predicate"]["buildDefinition"].update(parameters={}),
        lambda d: d["subject"][0]["digest"].update(sha256="XYZ"),
        lambda d: d.update(predicateType="https://slsa.dev/provenance/v0.2"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        assert oracle_errors(bad) != []


def test_example_manifest_maps_to_valid_slsa(manifest: dict[str, Any]) -> None:
    envelope = b'{"payload":"e30=","payloadType":"x","signatures":[]}'
    doc = provenance_statement(
        manifest, envelope=envelope, ledger={"ledgerIndex": 7, "leafHash": "ab" * 32}
    )
    assert oracle_errors(doc) == []
    assert validate_document(doc) == SLSA_PROVENANCE
    assert doc["subject"] == manifest["subject"]
    bd, rd = doc["predicate"]["buildDefinition"], doc["predicate"]["runDetails"]
    p = manifest["predicate"]
    assert bd["buildType"] == SLSA_BUILD_TYPE
    ext = bd["externalParameters"]
    assert ext["dockerfile"] == "Dockerfile"
    assert ext["context"] == "sha256:" + p["inputs"]["context"]["treeDigest"]
    assert ext["buildArgs"]["VERSION"] == "1.0"
    assert "target" not in ext  # null in the manifest: left out
    assert bd["internalParameters"]["phoenix"] == p["build"]["phoenix"]
    assert bd["internalParameters"]["engine"]["version"] == "20.10.24+dfsg1"
    deps = {d["name"]: d for d in bd["resolvedDependencies"]}
    base = deps["escrow-example/base:latest"]
    assert base["digest"] == {"sha256": p["inputs"]["baseImages"][0]["imageId"][7:]}
    assert base["annotations"]["digestOf"] == "image config" and "uri" not in base
    assert deps["context"]["digest"] == {"sha256": p["inputs"]["context"]["treeDigest"]}
    assert deps["Dockerfile"]["digest"] == {"sha256": p["inputs"]["recipe"]["sha256"]}
    assert deps["source"]["uri"] == (
        "git+https://git.example/team/app.git@4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    )
    assert deps["source"]["digest"] == {"gitCommit": "4b825dc642cb6eb9a060e54bf8d69288fbee4904"}
    assert rd["builder"] == {
        "id": "https://escrow.dev/builders/ci-runner-7",
        "version": {"escrow": "0.1.0", "docker": "20.10.24+dfsg1", "dockerApi": "1.41"},
    }
    assert rd["metadata"] == {
        "invocationId": p["build"]["id"],
        "startedOn": p["build"]["startedOn"],
        "finishedOn": p["build"]["finishedOn"],
    }
    names = [b["name"] for b in rd["byproducts"]]
    assert names == [
        "layer-0",
        "layer-1",
        "layer-2",
        "step-1.log",
        "step-2.log",
        "step-3.log",
        "step-4.log",
        "escrow-build-manifest.dsse.json",
    ]
    assert rd["byproducts"][0]["digest"] == {"sha256": p["layers"][0]["diffId"][7:]}
    env = rd["byproducts"][-1]
    assert env["digest"] == {"sha256": hashlib.sha256(envelope).hexdigest()}
    assert env["annotations"]["ledgerIndex"] == 7


def test_secret_build_args_stay_digests(manifest: dict[str, Any]) -> None:
    secret = next(a for a in manifest["predicate"]["inputs"]["buildArgs"] if a.get("secret"))
    doc = provenance_statement(manifest)
    value = doc["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"][secret["name"]]
    assert value == {"salt": secret["salt"], "sha256": secret["sha256"]}


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (
            {"stage": 0, "reference": "scratch", "imageId": None, "repoDigest": None},
            None,
        ),
        (
            {
                "stage": 1,
                "stageName": "run",
                "reference": "localhost:5000/team/base:1.2",
                "imageId": "sha256:" + "c" * 64,
                "repoDigest": "localhost:5000/team/base@sha256:" + "d" * 64,
            },
            {
                "uri": "pkg:docker/team/base@sha256%3A"
                + "d" * 64
                + "?repository_url=localhost%3A5000",
                "digest": {"sha256": "d" * 64},
                "digestOf": "registry manifest",
            },
        ),
    ],
    ids=["scratch-is-no-dependency", "pinned-registry-image"],
)
def test_base_image_dependencies(
    manifest: dict[str, Any], base: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    manifest["predicate"]["inputs"]["baseImages"] = [base]
    doc = provenance_statement(manifest)
    assert oracle_errors(doc) == []
    deps = [
        d
        for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d.get("annotations", {}).get("kind") == "base-image"
    ]
    if expected is None:
        assert deps == []
    else:
        (dep,) = deps
        assert dep["uri"] == expected["uri"]
        assert dep["digest"] == expected["digest"]
        assert dep["annotations"]["digestOf"] == expected["digestOf"]


@pytest.mark.parametrize(
    ("remote", "uri"),
    [
        ("git@github.com:org/repo.git", "git+ssh://git@github.com/org/repo.git@"),
        ("ssh://git@host/x.git", "git+ssh://git@host/x.git@"),
        ("", None),
    ],
    ids=["scp-like", "ssh-url", "no-remote"],
)
def test_source_uris(manifest: dict[str, Any], remote: str, uri: str | None) -> None:
    manifest["predicate"]["inputs"]["source"]["remote"] = remote
    doc = provenance_statement(manifest)
    assert oracle_errors(doc) == []
    (src,) = [
        d
        for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d["name"] == "source"
    ]
    assert src.get("uri", "").removesuffix(src["digest"]["gitCommit"]) == (uri or "")


def test_failed_builds_and_other_documents_have_no_slsa(manifest: dict[str, Any]) -> None:
    failed = copy.deepcopy(manifest)
    failed["predicate"]["build"]["status"] = "failed"
    with pytest.raises(InputError, match="succeeded build"):
        provenance_statement(failed)
    other = {**manifest, "predicateType": "https://escrow.dev/rebuild-verification/v1"}
    with pytest.raises(InputError, match="made from build manifests"):
        provenance_statement(other)


# -- escrow export --slsa, through the CLI and a real SQLite ledger ----------------------
@pytest.fixture
def recorded(escrow_home: Path, manifest: dict[str, Any]) -> tuple[int, bytes, SigningKey]:
    key = SigningKey.load(escrow_home / "keys" / "build.key.pem")
    ledger = Ledger.open(load_settings())
    entry, created = ledger.append(sign_statement(manifest, key))
    assert created
    return entry.index, entry.envelope, key


def test_export_slsa(
    cli: Any, recorded: tuple[int, bytes, SigningKey], manifest: dict[str, Any]
) -> None:
    index, envelope, _ = recorded
    r = cli(["export", "--slsa", str(index)])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert oracle_errors(doc) == []
    assert doc["subject"] == manifest["subject"]
    env = doc["predicate"]["runDetails"]["byproducts"][-1]
    assert env["digest"]["sha256"] == hashlib.sha256(envelope).hexdigest()
    assert env["annotations"]["ledgerIndex"] == index


def test_export_slsa_signed(
    cli: Any, recorded: tuple[int, bytes, SigningKey], tmp_path: Path
) -> None:
    index, _, key = recorded
    out = tmp_path / "provenance.dsse.json"
    r = cli(["export", "--slsa", str(index), "--sign", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    env = Envelope.from_bytes(out.read_bytes())
    assert env.verify([key.public]) == [key.keyid]
    assert oracle_errors(env.read_statement()) == []


@pytest.mark.parametrize(
    ("index", "fragment"),
    [("0", "key-event/v1 document, not a build manifest"), ("99", ""), ("-1", "")],
    ids=["key-event-entry", "no-such-entry", "negative"],
)
def test_export_refuses_what_is_not_a_build(
    cli: Any, recorded: tuple[int, bytes, SigningKey], index: str, fragment: str
) -> None:
    r = cli(["export", "--slsa", index])
    assert r.exit_code == 2, r.stderr
    assert r.stdout == ""
    assert fragment in r.stderr
    assert "Traceback" not in r.stderr


def test_export_output_is_json_for_jq(cli: Any, recorded: tuple[int, bytes, SigningKey]) -> None:
    r = cli(["export", "--slsa", str(recorded[0]), "--json"])
    assert r.exit_code == 0
    assert json.loads(r.stdout)["predicateType"] == SLSA_PROVENANCE


def test_golden_fixture_matches_the_mapping(manifest: dict[str, Any]) -> None:
    """tests/assets/documents/slsa-provenance.example.json is this mapping of the example."""
    envelope = b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[]}'
    ledger = {"ledgerIndex": 3, "leafHash": "5d3f" + "0" * 60, "origin": "escrow.local/ledger"}
    golden = load(ASSETS / "documents" / "slsa-provenance.example.json")
    assert provenance_statement(manifest, envelope=envelope, ledger=ledger) == golden
    assert oracle_errors(golden) == []


def test_labels_are_external_parameters(manifest: dict[str, Any]) -> None:
    m = copy.deepcopy(manifest)
    assert (
        "labels"
        not in provenance_statement(
            m, envelope=b"{}", ledger={"ledgerIndex": 1, "leafHash": "ab" * 32}
        )["predicate"]["buildDefinition"]["externalParameters"]
    )
    secret = {"name": "DEPLOY_TOKEN", "secret": True, "salt": "00" * 16, "sha256": "cd" * 32}
    m["predicate"]["inputs"]["labels"] = [{"name": "tier", "value": "1"}, secret]
    assert validate_document(m)
    doc = provenance_statement(m, envelope=b"{}", ledger={"ledgerIndex": 1, "leafHash": "ab" * 32})
    assert oracle_errors(doc) == []
    assert doc["predicate"]["buildDefinition"]["externalParameters"]["labels"] == {
        "tier": "1",
        "DEPLOY_TOKEN": {"salt": "00" * 16, "sha256": "cd" * 32},
    }


def test_an_output_path_under_a_file_is_one_sentence_exit_2(
    cli: Any, recorded: tuple[int, bytes, SigningKey], tmp_path: Path
) -> None:
    """Regression: an -o path that cannot be written was a FileExistsError traceback."""
    index, _, _ = recorded
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    r = cli(["export", "--slsa", str(index), "-o", str(blocker / "provenance.json")])
    assert r.exit_code == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("escrow: error: Cannot use ") and f"{blocker} is a file" in line
    assert "Traceback" not in r.stderr
