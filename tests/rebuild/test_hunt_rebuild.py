"""`escrow rebuild` misused: an --origin without --imported, and -t naming an image of the
user's with --rm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Recorder
from .test_rebuild import BASE


def test_origin_without_imported_is_refused_before_anything(cli: Any, escrow_home: Path) -> None:
    """Regression: --origin without --imported was ignored, and the entry of that index in
    the local ledger (another build than the imported one meant) was rebuilt."""
    before = cli(["log", "--json"]).stdout
    r = cli(["rebuild", "0", "--origin", "escrow.local/ledger", "-q"])
    assert r.exit_code == 2, r.stderr
    assert "--origin names the ledger of an imported entry and needs --imported" in r.stderr
    assert "Traceback" not in r.stderr
    assert cli(["log", "--json"]).stdout == before


@pytest.mark.docker
@pytest.mark.slow
def test_rm_gives_the_tag_back_to_the_image_it_named_before(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    """Regression: `escrow rebuild N -t TAG --rm` with TAG naming an image already (here the
    original build's own tag) moved TAG to the rebuilt image, then removed it: the user's
    image was left with no name."""
    built = recorder.build({"Dockerfile": BASE + "ENV HUNT=1\n"})
    assert built.image_id is not None
    r = cli(
        [
            "rebuild",
            str(built.index),
            "--context",
            str(built.context),
            "-q",
            "--json",
            "--rm",
            "-t",
            built.tag,
        ]
    )
    assert r.exit_code == 0, r.stderr
    rebuilt = r.json()["rebuiltImage"]
    assert rebuilt != built.image_id
    assert docker_client.images.get(built.tag).id == built.image_id
    import docker.errors

    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(rebuilt)
