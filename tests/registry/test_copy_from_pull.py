"""`escrow build --pull` pulls every base fresh and pins it by its manifest digest; an
image a `COPY --from` copies files from was left as the engine had it (possibly stale),
while `docker build --pull` refreshes both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .conftest import Bases, docker, skopeo_digest

pytestmark = [pytest.mark.registry, pytest.mark.docker]


def test_pull_refreshes_and_pins_the_copied_from_image(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, _, _ = bases.push(registry, "v0", tag="base")
    source_ref, _, _ = bases.push(registry, "v1", tag="data")
    ctx = bases.app(base_ref, tail=f"COPY --from={source_ref} /marker /marker\n")
    tag = f"escrow-test/app-{bases.run}:1"
    bases.local.append(tag)
    # the registry's tag moves on; the engine still holds the old image under it
    _, _, _ = bases.push(registry, "v2", tag="data-next")
    new_ref, new_id, new_digest = bases.push(registry, "v3", tag="data")
    bases.forget(new_ref)
    docker("build", "-q", "-t", source_ref, str(bases.root / "base-v1"))  # the stale image
    assert docker("image", "inspect", "-f", "{{.Id}}", source_ref).stdout.strip() != new_id

    r = cli(["build", str(ctx), "-t", tag, "-q", "--json", "--no-deposit", "--pull"])
    assert r.exit_code == 0, r.stderr
    from escrow.config import load_settings
    from escrow.ledger.store import Ledger

    with Ledger.open(load_settings()) as ledger:
        statement = ledger.get(r.json()["index"]).statement()
    (copied,) = statement["predicate"]["inputs"]["copyFromImages"]
    repo = source_ref.rsplit(":", 1)[0]
    assert copied["imageId"] == new_id
    assert copied["repoDigest"] == f"{repo}@{new_digest}" == f"{repo}@{skopeo_digest(source_ref)}"
    assert copied["pinnedBy"] == "tag"
