"""Base images pinned by digest: what the ledger says a base tag pointed to before.

Every build manifest records, per stage, the base reference, the registry
manifest digest it resolved to (``repoDigest``) and the image ID, so the
ledger keeps tag → digest per build.  :func:`moved_bases` asks it, through
its indexed columns (project, predicate type, integration time), for the
latest earlier build that used the same reference, and reports each base
tag that now points to another digest — the monthly base was rebuilt — with
both digests.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from escrow.documents.types import BUILD_MANIFEST

#: look-back windows, nearest first: the latest earlier build is usually recent
_WINDOWS = (timedelta(days=2), timedelta(days=40), timedelta(days=400), None)
_PAGE = 500


def pins_of(predicate: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """reference → {repoDigest, imageId} of the pinned bases of one build manifest."""
    out: dict[str, dict[str, Any]] = {}
    for b in (predicate.get("inputs") or {}).get("baseImages") or []:
        if b.get("source") not in (None, "image") or not b.get("reference"):
            continue
        if "@" in str(b["reference"]):
            continue  # a reference by digest cannot move
        out[str(b["reference"])] = {"repoDigest": b.get("repoDigest"), "imageId": b.get("imageId")}
    return out


def _latest_with(
    ledger: Any, refs: set[str], before: int, project: str | None
) -> dict[str, tuple[int, dict[str, Any]]]:
    found: dict[str, tuple[int, dict[str, Any]]] = {}
    now = datetime.now(UTC)
    for window in _WINDOWS:
        since = now - window if window is not None else None
        after: int | None = None
        while True:
            page = ledger.entries(
                project=project,
                predicate_type=BUILD_MANIFEST,
                since=since,
                after=after,
                limit=_PAGE,
            )
            for e in page:
                if e.index >= before:
                    continue
                for ref, pin in pins_of(e.statement()["predicate"]).items():
                    if ref in refs and pin.get("repoDigest"):
                        found[ref] = (e.index, pin)  # oldest first: the last one wins
            if len(page) < _PAGE or page[-1].index >= before:
                break
            after = page[-1].index
        if set(found) >= refs:
            break
    return found


def moved_bases(
    ledger: Any,
    predicate: Mapping[str, Any],
    *,
    before: int,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """The bases of ``predicate`` whose tag pointed to another digest in the latest
    earlier build (of ``project`` first, else of any project) that used it."""
    pins = {r: p for r, p in pins_of(predicate).items() if p.get("repoDigest")}
    if not pins:
        return []
    found = _latest_with(ledger, set(pins), before, project) if project else {}
    rest = set(pins) - set(found)
    if rest:
        found.update(_latest_with(ledger, rest, before, None))
    out: list[dict[str, Any]] = []
    for ref, pin in pins.items():
        if ref not in found:
            continue
        index, prev = found[ref]
        if prev.get("repoDigest") == pin["repoDigest"] and prev.get("imageId") == pin["imageId"]:
            continue
        out.append(
            {
                "reference": ref,
                "previous": {"index": index, **prev},
                "current": dict(pin),
                "message": (
                    f"the base tag {ref} now points to another digest: "
                    f"{_digest(prev.get('repoDigest'))} (entry {index}) -> "
                    f"{_digest(pin['repoDigest'])}"
                ),
            }
        )
    return out


def _digest(repo_digest: Any) -> str:
    return str(repo_digest).rsplit("@", 1)[-1] if repo_digest else "(no digest)"
