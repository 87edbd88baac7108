"""Synthetic build manifests: signed variants of tests/assets/build-manifest.example.json.

Used by the pack tests and ``bench/pack_bench.py`` to fill a real ledger with many
builds without running as many Docker builds.  Each variant has its own image ID,
diff IDs, build ID and times, derived from its number, so packs of them are
deterministic.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "build-manifest.example.json"


def _h(*parts: object) -> str:
    return hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()


def manifest_variant(
    n: int,
    *,
    project: str = "example",
    status: str = "succeeded",
    created_by: str | None = None,
    label: str | None = None,
    base_image_id: str | None = None,
) -> dict[str, Any]:
    st: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    st = copy.deepcopy(st)
    p = st["predicate"]
    image_id = "sha256:" + _h(project, n, "image")
    minute = n % 60
    hour = 10 + (n // 60) % 12
    p["build"]["id"] = _h(project, n, "build")[:32]
    p["build"]["project"] = project
    p["build"]["startedOn"] = f"2026-12-01T{hour:02d}:{minute:02d}:00.000000Z"
    p["build"]["finishedOn"] = f"2026-12-01T{hour:02d}:{minute:02d}:02.500000Z"
    if base_image_id is not None:
        p["inputs"]["baseImages"][0]["imageId"] = base_image_id
    for i, layer in enumerate(p["layers"]):
        layer["diffId"] = "sha256:" + _h(project, n, "layer", i)
        if created_by is not None and i == len(p["layers"]) - 1:
            layer["createdBy"] = created_by
    if label is not None:
        p["image"]["config"]["Labels"] = {"org.example.note": label}
    if status == "failed":
        p["build"]["status"] = "failed"
        p["steps"][-1]["exitCode"] = 1
        p.pop("image", None)
        p.pop("layers", None)
        p.pop("history", None)
        p["build"]["failure"] = {
            "step": 3,
            "instruction": "RUN echo built > /built",
            "exitCode": 1,
            "message": "The command '/bin/sh -c echo built > /built' returned a non-zero code: 1",
            "logTail": "sh: cannot create /built: Read-only file system\n",
        }
        st["subject"] = [
            {"name": "escrow-example/app:latest", "digest": {"sha256": _h(project, n, "recipe")}}
        ]
    else:
        p["image"]["id"] = image_id
        p["steps"][-1]["imageId"] = image_id
        st["subject"][0]["digest"]["sha256"] = image_id.removeprefix("sha256:")
    return st
