"""A rebuild that lacks a base image says how to put it back, not only that it is missing."""

from __future__ import annotations

from typing import Any

from escrow.cli.rebuild_cmd import _render_verdict


def _statement(missing: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "predicate": {
            "project": "app",
            "original": {"index": 7, "imageId": "sha256:" + "a" * 64},
            "rebuild": {"imageId": None},
            "verdict": {"overall": "unknown", "missing": missing},
        }
    }


def test_a_missing_base_image_says_how_to_put_it_back() -> None:
    text = _render_verdict(
        _statement(
            [
                {
                    "kind": "base-image",
                    "name": "team/base:1",
                    "digest": "sha256:" + "b" * 64,
                    "reason": "image sha256:bbbbbbbbbbbb is not in the Docker Engine",
                }
            ]
        )
    )
    assert "missing base-image team/base:1" in text
    assert "docker load" in text and "docker pull" in text
    assert "`escrow show 7`" in text


def test_other_missing_inputs_get_no_base_image_advice() -> None:
    text = _render_verdict(
        _statement([{"kind": "build-arg", "name": "TOKEN", "reason": "secret, not given again"}])
    )
    assert "missing build-arg TOKEN" in text
    assert "docker load" not in text
