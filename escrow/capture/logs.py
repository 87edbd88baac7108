"""Read recorded logs back from the blob store (``escrow logs``)."""

from __future__ import annotations

import hashlib
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
        digest = item["log"]["sha256"]
        if digest == _EMPTY:  # a step that printed nothing: no blob to read
            item["data"] = b""
            continue
        try:
            item["data"] = blobs.get(digest)
        except InputError as e:  # which step's log, not only which blob
            why = e.message.rstrip(".")
            raise InputError(
                f"The entry has no readable log of step {item['step']} "
                f"({_short(item['instruction'])}): {why[:1].lower()}{why[1:]}.",
                hint=e.hint,
            ) from e
    return items


#: the SHA-256 of no bytes: the log of a step that printed nothing
_EMPTY = hashlib.sha256(b"").hexdigest()


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
