"""``escrow log --help``: --image takes a short ID the engine resolves; --limit is explained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import option_help


def test_image_and_limit_help(cli: Any) -> None:
    r = cli(["log", "--help"])
    assert r.exit_code == 0, r.stderr
    image = option_help(r.stdout, "--image")
    assert "short ID" in image and "Docker Engine" in image
    assert "(sha256:…)" not in image
    limit = option_help(r.stdout, "--limit")
    assert "--after" in limit and "page" in limit
    assert "unique prefix" in option_help(r.stdout, "--signer")


def test_a_short_image_id_lists_the_entry(
    cli: Any, escrow_home: Path, base_image: str, docker_client: Any
) -> None:
    """What the help says: the 12 digits the IMAGE column shows select the image's entries."""
    r = cli(["capture", base_image, "--json"])
    assert r.exit_code == 0, r.stderr
    index, image_id = r.json()["index"], r.json()["image_id"]
    short = image_id.removeprefix("sha256:")[:12]
    listed = cli(["log", "--image", short, "--json"])
    assert listed.exit_code == 0, listed.stderr
    assert [e["index"] for e in listed.json()["entries"]] == [index]
    table = cli(["log", "--image", short])
    assert short in table.stdout
