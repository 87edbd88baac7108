"""`escrow build -t X -t X --push` (a pipeline that adds the same tag from two variables)
pushed X twice and listed it twice in `pushed`; the tag is now taken once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import Bases, skopeo_digest


def test_the_same_tag_given_twice_is_pushed_once(
    cli: Any, escrow_home: Path, registry: str, bases: Bases
) -> None:
    base_ref, _, _ = bases.push(registry, "v1")
    app_ref = f"{registry}/escrow-test/app-{bases.run}:twice"
    bases.local.append(app_ref)
    ctx = bases.app(base_ref)
    r = cli(["build", str(ctx), "-t", app_ref, "-t", app_ref, "--push", "--json", "--no-deposit"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    (pushed,) = doc["pushed"]
    assert pushed["reference"] == app_ref
    assert pushed["digest"] == skopeo_digest(app_ref)
