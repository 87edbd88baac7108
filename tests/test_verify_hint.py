"""`escrow verify` of a registry tag the engine lacks says how to check it in the registry."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_a_registry_tag_not_in_the_engine_is_pointed_at_its_digest_form(
    escrow_home: Path,
) -> None:
    r = run_cli(["verify", "127.0.0.1:5999/team/app:1"])

    assert r.exit_code == 2
    assert "neither a ledger index, an image ID nor an image in the engine" in r.stderr
    assert "127.0.0.1:5999/team/app@sha256:…" in r.stderr
    # a loopback registry is reached over plain HTTP: skopeo must be told so
    assert "skopeo inspect --tls-verify=false docker://127.0.0.1:5999/team/app:1" in r.stderr


def test_a_registry_over_tls_is_inspected_as_it_is(escrow_home: Path) -> None:
    r = run_cli(["verify", "registry.example.com/team/app:1"])

    assert r.exit_code == 2
    assert "skopeo inspect docker://registry.example.com/team/app:1" in r.stderr


def test_a_plain_name_still_points_at_the_log(escrow_home: Path) -> None:
    r = run_cli(["verify", "nosuch-image:1"])

    assert r.exit_code == 2
    assert "Use `escrow log` to list entries." in r.stderr
    assert "@sha256" not in r.stderr
