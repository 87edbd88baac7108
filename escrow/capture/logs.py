"""Read recorded logs back from the blob store (``escrow logs``)."""

from __future__ import annotations

from typing import Any

from escrow.blobs import BlobStore
from escrow.errors import InputError


def entry_logs(
    statement: dict[str, Any], blobs: BlobStore, step: int | None = None
) -> list[dict[str, Any]]:
    """``[{"step", "instruction", "log", "data"}]`` for a build manifest's steps.

    A recorded command (``escrow record``) has one log, its output, as step 1.
    """
    predicate = statement.get("predicate") or {}
    items: list[dict[str, Any]] = []
    command = predicate.get("command")
    if command is not None:
        items.append(
            {"step": 1, "instruction": " ".join(command.get("argv") or []), "log": command["log"]}
        )
    else:
        items.extend(
            {"step": s["index"], "instruction": s["instruction"], "log": s["log"]}
            for s in predicate.get("steps") or []
        )
    if not items:
        raise InputError("The entry has no recorded logs (it is not a build with steps).")
    if step is not None:
        chosen = [i for i in items if i["step"] == step]
        if not chosen:
            known = ", ".join(str(i["step"]) for i in items)
            raise InputError(f"The entry has no step {step}.", hint=f"Its steps are: {known}.")
        items = chosen
    for item in items:
        item["data"] = blobs.get(item["log"]["sha256"])
    return items
