"""What changed between two build manifests: inputs, steps, image and layers (``escrow diff``)."""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from escrow.errors import InputError
from escrow.rebuild.compare import (
    NOT_COMPARED,
    ConfigDifference,
    ImageComparison,
    LayerResult,
    LayerSource,
    Verdict,
    compare_images,
)
from escrow.rebuild.layers import display

#: unified-diff context lines around each Dockerfile change
DIFF_CONTEXT = 1


@dataclass(frozen=True)
class Side:
    """One entry being compared: its ledger index and build-manifest predicate."""

    index: int
    predicate: Mapping[str, Any]

    def summary(self) -> dict[str, Any]:
        build = self.predicate.get("build") or {}
        image = self.predicate.get("image") or {}
        return {
            "index": self.index,
            "buildId": build.get("id"),
            "project": build.get("project"),
            "status": build.get("status"),
            "startedOn": build.get("startedOn"),
            "imageId": image.get("id"),
            "tags": list(image.get("tags") or []),
        }


# ---------------------------------------------------------------------------
# context files


def file_list(context: Mapping[str, Any], blobs: Any | None) -> list[dict[str, Any]] | None:
    """The recorded context file list, inline or from the blob store; None when unavailable."""
    if isinstance(context.get("files"), list):
        return list(context["files"])
    ref = context.get("filesBlob")
    if ref is None or blobs is None:
        return None
    digest = str(ref.get("sha256", ""))
    if digest not in blobs:
        return None
    try:
        data = json.loads(blobs.get(digest))
    except (InputError, ValueError):  # a damaged blob store: the list is not available
        return None
    return list(data) if isinstance(data, list) else None


def diff_file_lists(
    original: Sequence[Mapping[str, Any]], rebuilt: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``{"added": [...], "removed": [...], "changed": [{"path", "kinds"}]}`` by path."""
    a = {str(f["path"]): f for f in original}
    b = {str(f["path"]): f for f in rebuilt}
    changed = []
    for path in sorted(set(a) & set(b)):
        fa, fb = a[path], b[path]
        kinds = []
        if fa.get("type") != fb.get("type"):
            kinds.append("type")
        if fa.get("sha256") != fb.get("sha256") or fa.get("size") != fb.get("size"):
            kinds.append("content")
        if fa.get("mode") != fb.get("mode"):
            kinds.append("mode")
        if fa.get("linkTarget") != fb.get("linkTarget"):
            kinds.append("link")
        if kinds:
            changed.append({"path": path, "kinds": kinds})
    return {
        "added": sorted(set(b) - set(a)),
        "removed": sorted(set(a) - set(b)),
        "changed": changed,
    }


# ---------------------------------------------------------------------------
# inputs


def _not_recorded(what: str, sides: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
    """``"entry 22 records no build context"`` for the sides that lack ``what``."""
    lacking = [n for side, n in zip(sides, names, strict=True) if not side]
    verb = "records" if len(lacking) == 1 else "record"
    return f"{' and '.join(lacking)} {verb} no {what}"


def _context_diff(
    a: Mapping[str, Any], b: Mapping[str, Any], blobs: Any | None, names: tuple[str, str]
) -> dict[str, Any]:
    ca, cb = a.get("context") or {}, b.get("context") or {}
    out: dict[str, Any] = {
        "original": ca.get("treeDigest"),
        "rebuilt": cb.get("treeDigest"),
        "same": ca.get("treeDigest") == cb.get("treeDigest"),
    }
    if out["same"]:
        return out
    if not ca or not cb:  # a capture or a record made without --context
        out["note"] = _not_recorded("build context", (ca, cb), names)
        return out
    la, lb = file_list(ca, blobs), file_list(cb, blobs)
    if la is None or lb is None:
        lacking = [n for files, n in zip((la, lb), names, strict=True) if files is None]
        lists = "list of" if len(lacking) == 1 else "lists of"
        out["note"] = (
            f"tree digest changed (the recorded file {lists} {' and '.join(lacking)} "
            f"{'is' if len(lacking) == 1 else 'are'} not available)"
        )
    else:
        out.update(diff_file_lists(la, lb))
    return out


def _recipe_diff(
    a: Mapping[str, Any], b: Mapping[str, Any], names: tuple[str, str]
) -> dict[str, Any]:
    ra, rb = a.get("recipe") or {}, b.get("recipe") or {}
    out: dict[str, Any] = {
        "original": ra.get("path"),
        "rebuilt": rb.get("path"),
        "same": ra.get("sha256") == rb.get("sha256") and ra.get("path") == rb.get("path"),
    }
    if out["same"]:
        return out
    if not ra or not rb:  # a capture without -f, a record
        out["note"] = _not_recorded("Dockerfile", (ra, rb), names)
        return out
    if ra.get("sha256") == rb.get("sha256"):  # the same text from another file
        out["note"] = f"the same text, read from {ra.get('path')} and then {rb.get('path')}"
        return out
    ta, tb = ra.get("text"), rb.get("text")
    if ta is None or tb is None:
        out["note"] = "changed (the recorded Dockerfile text of one entry is not available)"
        return out
    lines = list(
        difflib.unified_diff(
            str(ta).splitlines(),
            str(tb).splitlines(),
            names[0],
            names[1],
            n=DIFF_CONTEXT,
            lineterm="",
        )
    )
    if not lines:  # two files, one text as recorded
        out["note"] = (
            "the same recorded text: the files differ only in what the record hides (a "
            "secret value, credentials in a URL) or cannot show (bytes that are not UTF-8)"
            if ta == tb
            else "the same lines: the files differ in their line endings or final newline"
        )
        return out
    out["diff"] = lines
    out["linesAdded"] = sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
    out["linesRemoved"] = sum(1 for x in lines if x.startswith("-") and not x.startswith("---"))
    return out


def _image_change(xa: Mapping[str, Any], xb: Mapping[str, Any]) -> str | None:
    """How an input image recorded on both sides changed: ``reference``, ``image`` (the
    same reference names another image, or another manifest of it), or None."""
    if xa.get("reference") != xb.get("reference"):
        return "reference"
    if xa.get("imageId") != xb.get("imageId") or (
        xa.get("repoDigest") and xb.get("repoDigest") and xa["repoDigest"] != xb["repoDigest"]
    ):
        return "image"
    return None


def _base_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    ba = {int(x["stage"]): x for x in a.get("baseImages") or []}
    bb = {int(x["stage"]): x for x in b.get("baseImages") or []}
    out = []
    for stage in sorted(set(ba) | set(bb)):
        xa, xb = ba.get(stage), bb.get(stage)
        if xa is None or xb is None:
            out.append(
                {
                    "stage": stage,
                    "change": "added" if xa is None else "removed",
                    "original": xa,
                    "rebuilt": xb,
                }
            )
            continue
        change = _image_change(xa, xb)
        if change is None:
            continue
        out.append(
            {
                "stage": stage,
                "change": change,
                "reference": xb.get("reference"),
                "original": {
                    "reference": xa.get("reference"),
                    "imageId": xa.get("imageId"),
                    "repoDigest": xa.get("repoDigest"),
                },
                "rebuilt": {
                    "reference": xb.get("reference"),
                    "imageId": xb.get("imageId"),
                    "repoDigest": xb.get("repoDigest"),
                },
            }
        )
    return out


def _arg_value(record: Mapping[str, Any] | None) -> str | None:
    if record is None:
        return None
    if record.get("secret"):
        return f"[secret {record.get('name')}]"
    value = record.get("value")
    return None if value is None else str(value)


def _secret_change(xa: Mapping[str, Any], xb: Mapping[str, Any]) -> str | None:
    """A secret recorded in both entries: None for one recording (same salt and digest),
    ``"value"`` when one salt gives two digests, else ``"not-comparable"`` (two salts)."""
    if xa.get("salt") != xb.get("salt"):
        return "not-comparable"
    return None if xa.get("sha256") == xb.get("sha256") else "value"


def _args_diff(
    a: Mapping[str, Any], b: Mapping[str, Any], key: str = "buildArgs"
) -> list[dict[str, Any]]:
    """Build args (or labels) added, removed or changed. A secret is recorded as a salted
    digest: one set in both entries under two salts is listed as ``not-comparable``; each
    entry naming a secret carries ``"secret": true``."""
    aa = {str(x["name"]): x for x in a.get(key) or []}
    ab = {str(x["name"]): x for x in b.get(key) or []}
    out = []
    for name in sorted(set(aa) | set(ab)):
        xa, xb = aa.get(name), ab.get(name)
        va, vb = _arg_value(xa), _arg_value(xb)
        if xa is None or xb is None:
            change: str | None = "added" if xa is None else "removed"
        elif xa.get("secret") and xb.get("secret"):
            change = _secret_change(xa, xb)
        else:
            change = "value" if va != vb else None
        if change is None:
            continue
        item: dict[str, Any] = {"name": name, "original": va, "rebuilt": vb, "change": change}
        if (xa or {}).get("secret") or (xb or {}).get("secret"):
            item["secret"] = True
        out.append(item)
    return out


def _simple(
    a: Mapping[str, Any], b: Mapping[str, Any], keys: Sequence[str]
) -> list[dict[str, Any]]:
    return [
        {"field": k, "original": a.get(k), "rebuilt": b.get(k)}
        for k in keys
        if a.get(k) != b.get(k)
    ]


def _copy_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The images ``COPY --from`` copied from, paired by stage and order in the stage (a
    line number moves with any edit above it)."""

    def keyed(inputs: Mapping[str, Any]) -> dict[tuple[int, int], Mapping[str, Any]]:
        out: dict[tuple[int, int], Mapping[str, Any]] = {}
        seen: dict[int, int] = {}
        for x in inputs.get("copyFromImages") or []:
            stage = int(x["stage"])
            out[(stage, seen.get(stage, 0))] = x
            seen[stage] = seen.get(stage, 0) + 1
        return out

    ca, cb = keyed(a), keyed(b)
    out: list[dict[str, Any]] = []
    for key in sorted(set(ca) | set(cb)):
        xa, xb = ca.get(key), cb.get(key)
        change = (
            ("added" if xa is None else "removed")
            if xa is None or xb is None
            else _image_change(xa, xb)
        )
        if change is None:
            continue
        out.append(
            {
                "stage": key[0],
                "change": change,
                "reference": (xb or xa or {}).get("reference"),
                "original": dict(xa) if xa is not None else None,
                "rebuilt": dict(xb) if xb is not None else None,
            }
        )
    return out


def trace_images(
    doc: dict[str, Any], built_by: Callable[[str, int], Mapping[str, Any] | None]
) -> None:
    """Name the recorded build that made each image of a base or ``COPY --from`` image that
    changed behind the same reference: ``builtBy`` (``index``, ``project``) beside its
    ``imageId`` on each side, from ``built_by(image_id, before_index)`` — the ledger's first
    succeeded build of that image before the entry of that side (a phoenix rebuild of the
    base, say).  An image no build made is left as it is."""
    before = {
        side: int(doc[side]["index"])
        for side in ("original", "rebuilt")
        if isinstance(doc.get(side), dict) and isinstance(doc[side].get("index"), int)
    }
    inputs = doc.get("inputs") or {}
    for item in [*(inputs.get("baseImages") or []), *(inputs.get("copyFromImages") or [])]:
        if item.get("change") != "image":
            continue
        for side in ("original", "rebuilt"):
            image = item.get(side) or {}
            if image.get("imageId") and side in before:
                maker = built_by(str(image["imageId"]), before[side])
                if maker is not None:
                    image["builtBy"] = dict(maker)


def built_by_text(image: Mapping[str, Any] | None) -> str:
    """`` (built by entry 4, example-base)`` for an image a recorded build made, else
    nothing."""
    maker = (image or {}).get("builtBy")
    if not isinstance(maker, dict):
        return ""
    project = f", {maker['project']}" if maker.get("project") else ""
    return f" (built by entry {maker.get('index')}{project})"


def diff_inputs(
    a: Mapping[str, Any], b: Mapping[str, Any], blobs: Any | None, names: tuple[str, str]
) -> dict[str, Any]:
    ia, ib = a.get("inputs") or {}, b.get("inputs") or {}
    out: dict[str, Any] = {
        "recipe": _recipe_diff(ia, ib, names),
        "context": _context_diff(ia, ib, blobs, names),
        "baseImages": _base_diff(ia, ib),
        "copyFromImages": _copy_diff(ia, ib),
        "buildArgs": _args_diff(ia, ib),
        "labels": _args_diff(ia, ib, "labels"),
        "other": _simple(ia, ib, ("target", "platform")),
    }
    sa, sb = ia.get("source") or {}, ib.get("source") or {}
    out["source"] = _simple(sa, sb, ("remote", "branch", "commit", "dirty"))
    return out


# ---------------------------------------------------------------------------
# steps


def _step(s: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "index": s.get("index"),
        "instruction": s.get("instruction"),
        "exitCode": s.get("exitCode"),
    }


def diff_steps(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    *,
    stopped: tuple[Stop | None, Stop | None] = (None, None),
) -> list[dict[str, Any]]:
    """Steps added, removed or changed (instruction text or exit code), aligned with difflib.

    ``stopped`` names, for each side whose build failed, the entry and the step it failed
    at: a step of the other side after that one was not run rather than removed or added
    (a failed build records no step after the failing one), and is reported as
    ``not-run`` with ``notRunIn`` (that entry's index)."""
    ta = [str(s.get("instruction")) for s in a]
    tb = [str(s.get("instruction")) for s in b]
    out: list[dict[str, Any]] = []
    matcher = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                if a[i].get("exitCode") != b[j].get("exitCode"):
                    out.append(
                        {"change": "exit-code", "original": _step(a[i]), "rebuilt": _step(b[j])}
                    )
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            sa = a[i1 + k] if i1 + k < i2 else None
            sb = b[j1 + k] if j1 + k < j2 else None
            change = (
                "changed"
                if sa is not None and sb is not None
                else ("added" if sa is None else "removed")
            )
            item: dict[str, Any] = {"change": change, "original": _step(sa), "rebuilt": _step(sb)}
            # the step one side has, after the step the other side's build failed at
            present, stop = (sa, stopped[1]) if sb is None else (sb, stopped[0])
            if change != "changed" and stop is not None and _after(present, stop.step):
                item.update(change="not-run", notRunIn=stop.index, failedAt=stop.step)
            out.append(item)
    return out


@dataclass(frozen=True)
class Stop:
    """A failed build: its entry's index and the step it failed at."""

    index: int
    step: int


def _after(step: Mapping[str, Any] | None, failed_at: int) -> bool:
    index = (step or {}).get("index")
    return isinstance(index, int) and index > failed_at


def _stop(side: Side) -> Stop | None:
    """Where the build of ``side`` stopped, when it failed at a known step."""
    build = side.predicate.get("build") or {}
    step = (build.get("failure") or {}).get("step")
    if build.get("status") != "failed" or not isinstance(step, int):
        return None
    return Stop(side.index, step)


# ---------------------------------------------------------------------------
# `escrow record` commands

#: fields of ``command`` compared (the duration always differs; the log is in the blob store)
COMMAND_FIELDS = ("argv", "cwd", "exitCode", "inputsChanged")


def _command(c: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if c is None else {k: c.get(k) for k in COMMAND_FIELDS}


def diff_command(a: Side, b: Side) -> list[dict[str, Any]] | None:
    """The ``command`` fields of two `escrow record` entries that differ (``command.argv``,
    ``command.cwd``, ``command.exitCode``, ``command.inputsChanged``); one ``command`` item
    with ``onlyIn`` (the entry's index) when only one entry ran a command; None when neither
    did."""
    ca, cb = a.predicate.get("command"), b.predicate.get("command")
    if ca is None and cb is None:
        return None
    if ca is None or cb is None:
        return [
            {
                "field": "command",
                "original": _command(ca),
                "rebuilt": _command(cb),
                "onlyIn": a.index if cb is None else b.index,
            }
        ]
    return [
        {"field": f"command.{k}", "original": ca.get(k), "rebuilt": cb.get(k)}
        for k in COMMAND_FIELDS
        if ca.get(k) != cb.get(k)
    ]


# ---------------------------------------------------------------------------
# the whole diff


def diff_manifests(
    a: Side,
    b: Side,
    *,
    blobs: Any | None = None,
    source: LayerSource | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The ``escrow diff`` document: summaries, inputs, steps, image and layers."""
    for side in (a, b):
        if "build" not in side.predicate or "inputs" not in side.predicate:
            raise InputError(f"Entry {side.index} is not a build manifest.")
    names = (f"entry {a.index}", f"entry {b.index}")
    inputs = diff_inputs(a.predicate, b.predicate, blobs, names)
    lacking = [s for s in (a, b) if not _records_bases(s)]
    if len(lacking) == 1:  # "removed" or "added" would be wrong: that entry never recorded them
        inputs["baseImages"] = []
        inputs["baseImagesNote"] = f"entry {lacking[0].index} records no base images"
    doc: dict[str, Any] = {
        "original": a.summary(),
        "rebuilt": b.summary(),
        "inputs": inputs,
        "command": diff_command(a, b),
        "steps": [],
        "filesCompared": source is not None,
    }
    lacking = [s for s in (a, b) if not _records_steps(s)]
    if not lacking:
        doc["steps"] = diff_steps(
            a.predicate.get("steps") or [],
            b.predicate.get("steps") or [],
            stopped=(_stop(a), _stop(b)),
        )
    elif len(lacking) == 1:
        how = _RECORDED_BY.get(str((lacking[0].predicate.get("build") or {}).get("kind")))
        doc["stepsNote"] = f"entry {lacking[0].index} records no steps" + (
            f" (recorded by `escrow {how}`)" if how else ""
        )
    if a.predicate.get("image") and b.predicate.get("image"):
        comparison = compare_images(a.predicate, b.predicate, source, progress=progress, align=True)
        doc["image"] = image_document(comparison, (a.index, b.index))
    else:
        doc["image"] = None
    return doc


#: the command that records each kind of entry other than a Dockerfile build escrow ran
_RECORDED_BY = {"image": "capture", "command": "record"}


def _records_steps(side: Side) -> bool:
    """Only a Dockerfile build escrow ran records its steps (a capture or a recorded
    command records none, which is no sign that a build had none)."""
    return bool((side.predicate.get("build") or {}).get("kind", "dockerfile") == "dockerfile")


def _records_bases(side: Side) -> bool:
    """Base images are recorded from a Dockerfile: by every Dockerfile build, and by a
    capture given its Dockerfile (``-f``); never by a recorded command."""
    return _records_steps(side) or bool((side.predicate.get("inputs") or {}).get("recipe"))


_HISTORY_ITEM = re.compile(r"^history\[\d+\]$")


def _layer_document(layer: LayerResult, indexes: tuple[int, int] | None) -> dict[str, Any]:
    """A layer of the comparison; one of a single image says ``onlyIn`` (that entry's index)
    instead of the comparison's "diff IDs differ" or rebuild wording."""
    d = layer.to_dict()
    if indexes is None or (layer.original is not None and layer.rebuilt is not None):
        return d
    d["onlyIn"] = indexes[0] if layer.rebuilt is None else indexes[1]
    note = str(d.pop("note", "") or "")
    if layer.comparison is None and note.startswith(NOT_COMPARED + ": "):
        d["note"] = "files not listed: " + note[len(NOT_COMPARED) + 2 :]
    return d


def _config_document(c: ConfigDifference, indexes: tuple[int, int] | None) -> dict[str, Any]:
    d = c.to_dict()
    if (
        indexes is not None
        and _HISTORY_ITEM.match(c.field)
        and (c.original is None) != (c.rebuilt is None)
    ):
        d["onlyIn"] = indexes[0] if c.rebuilt is None else indexes[1]
    return d


def image_document(c: ImageComparison, indexes: tuple[int, int] | None = None) -> dict[str, Any]:
    """The image part of ``escrow diff``; with ``indexes`` (the two entries), layers and
    history items of one image only are marked ``onlyIn``."""
    verdict = c.verdict
    doc: dict[str, Any] = {
        "verdict": str(verdict),
        "original": c.original_image,
        "rebuilt": c.rebuilt_image,
        "layers": [_layer_document(layer, indexes) for layer in c.layers],
        "config": [_config_document(d, indexes) for d in c.config],
    }
    if verdict is Verdict.EQUIVALENT:
        doc["normalisations"] = c.normalisations
    if c.hidden:  # recorded only as ``[secret NAME]``: not compared
        doc["secretsNotCompared"] = list(c.hidden)
    return doc


# ---------------------------------------------------------------------------
# human text


def short_id(image_id: Any) -> str:
    return str(image_id)[:19] if image_id else "(none)"


#: how a value that one entry does not set reads
NOT_SET = "(not set)"


def _json_short(value: Any, limit: int = 80) -> str:
    if value is None:
        return NOT_SET
    # as written (``ensure_ascii=False``): a label in Hebrew or a CJK build arg reads as
    # itself, not as ``\u05e9…`` cut in the middle of an escape; the text is shown
    # ``printable`` (control characters escaped) wherever it is printed
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    if value is None:
        return NOT_SET
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _code(exit_code: Any) -> str:
    return "(none)" if exit_code is None else str(exit_code)


def _failed(step: Mapping[str, Any]) -> str:
    """`` (failed, exit code 7)`` for a step whose command failed; empty otherwise."""
    code = step.get("exitCode")
    return "" if code in (0, None) else f" (failed, exit code {code})"


def _arg_line(kind: str, arg: Mapping[str, Any]) -> str:
    """``build arg V: 1 -> 2``; a secret reads ``set (secret)``, never its placeholder."""
    head = f"  {kind} {arg['name']}: "
    if arg["change"] == "not-comparable":
        return head + "secret, not comparable (salted hashes)"
    if arg.get("secret") and arg["change"] == "value" and arg["original"] == arg["rebuilt"]:
        return head + "secret, changed"

    def value(v: Any) -> str:
        return "set (secret)" if arg.get("secret") and v == f"[secret {arg['name']}]" else _text(v)

    return head + f"{value(arg['original'])} -> {value(arg['rebuilt'])}"


def _argv(argv: Any) -> str:
    return shlex.join(str(x) for x in argv) if isinstance(argv, list) else _text(argv)


#: how each compared ``command`` field is named in the report
_COMMAND_NAMES = {
    "command.argv": "command",
    "command.cwd": "working directory",
    "command.exitCode": "exit code",
    "command.inputsChanged": "changed its own inputs",
}


def render_command(changes: Sequence[Mapping[str, Any]]) -> list[str]:
    if not changes:
        return ["  same command line, working directory and exit code"]
    out = []
    for c in changes:
        if "onlyIn" in c:
            ran = c["original"] or c["rebuilt"] or {}
            out.append(f"  command: only in entry {c['onlyIn']}: {_argv(ran.get('argv'))}")
            continue
        show = _argv if c["field"] == "command.argv" else _text
        out.append(
            f"  {_COMMAND_NAMES.get(c['field'], c['field'])}: "
            f"{show(c['original'])} -> {show(c['rebuilt'])}"
        )
    return out


def _config_line(c: Mapping[str, Any]) -> str:
    if "onlyIn" in c:
        item = c["original"] if c["original"] is not None else c["rebuilt"]
        text = (
            display(str(item["createdBy"]))[:70]
            if isinstance(item, Mapping) and item.get("createdBy")
            else _json_short(item)
        )
        if isinstance(item, Mapping) and item.get("emptyLayer"):
            text += " (empty layer)"
        return f"  {c['field']}: only in entry {c['onlyIn']}: {text}"
    return f"  {c['field']}: {_changed(c['original'], c['rebuilt'])}"


#: characters of a long text shown before the place where two values first differ
_LEAD = 24


def _changed(a: Any, b: Any, limit: int = 80) -> str:
    """``A -> B`` for a config or history value, naming what changed where cutting both at
    ``limit`` would hide it: the keys of two maps (``Labels``) that differ, the items of two
    lists (``Env``) one lacks, and a long text from just before its first difference."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        keys = sorted(k for k in set(a) | set(b) if k not in a or k not in b or a[k] != b[k])
        if keys:
            return "; ".join(
                f"{k}: {_json_short(a[k]) if k in a else NOT_SET} -> "
                f"{_json_short(b[k]) if k in b else NOT_SET}"
                for k in keys
            )
    if isinstance(a, list) and isinstance(b, list):
        gone, new = [x for x in a if x not in b], [x for x in b if x not in a]
        if gone or new:
            return ", ".join(
                [f"-{_json_short(x)}" for x in gone] + [f"+{_json_short(x)}" for x in new]
            )
    if isinstance(a, str) and isinstance(b, str) and max(len(a), len(b)) + 2 > limit:
        same = len(os.path.commonprefix([a, b]))
        if same > _LEAD:  # start both just before the first difference
            start = same - _LEAD
            return f"…{_json_short(a[start:], limit)} -> …{_json_short(b[start:], limit)}"
    return f"{_json_short(a, limit)} -> {_json_short(b, limit)}"


def render_layers(
    layers: Sequence[Mapping[str, Any]], files_compared: bool, other: str = "the rebuild"
) -> list[str]:
    """The layer lines of a diff or a rebuild verdict; ``other`` names the second image
    (``the rebuild``, ``entry 12``) where its layer was made by another command."""
    out = []
    for layer in layers:
        verdict = layer["verdict"]
        by = f"  {display(str(layer['createdBy']))[:70]}" if layer.get("createdBy") else ""
        name = f"layer {layer['index']}"
        if "rebuiltIndex" in layer:  # matched with a layer at another place in the other image
            name += f" -> {layer['rebuiltIndex']}"
        if verdict == "identical":
            out.append(f"  {name}: identical{by}")
            continue
        only = "onlyIn" in layer
        state = f"only in entry {layer['onlyIn']}" if only else verdict
        line = f"  {name}: {state}"
        if layer.get("normalisations"):
            line += f" (normalised: {', '.join(layer['normalisations'])})"
        out.append(line + by)
        if layer.get("rebuiltCreatedBy"):
            out.append(f"      made in {other} by: {display(str(layer['rebuiltCreatedBy']))[:70]}")
        diffs = layer.get("differences") or []
        out.extend(f"      {d['kind']:<8} {d['path']}" + _detail(d) for d in diffs)
        if layer.get("truncated"):
            out.append(f"      … {layer['differenceCount'] - len(diffs)} more")
        if layer.get("note") == NOT_COMPARED and not files_compared:
            out.append(f"      ({NOT_COMPARED}; add --files)")
        elif layer.get("note"):
            out.append(f"      ({layer['note']})")
        elif verdict == "different" and not diffs and not files_compared and not only:
            out.append("      (files not compared; add --files)")
    return out


def _detail(d: Mapping[str, Any]) -> str:
    a, b = d.get("original") or {}, d.get("rebuilt") or {}
    kind = d["kind"]
    if kind == "content":
        if a.get("size") == b.get("size"):  # same size: the digests tell them apart
            return (
                f"  {a.get('size')} bytes, sha256 {str(a.get('sha256'))[:12]}… -> "
                f"{str(b.get('sha256'))[:12]}…"
            )
        return f"  {a.get('size')} -> {b.get('size')} bytes"
    if kind == "mode":
        text = f"  {a.get('mode', 0):04o} -> {b.get('mode', 0):04o}"
        if a.get("xattrs") != b.get("xattrs"):
            text += f"  xattrs {sorted(a.get('xattrs') or {})} -> {sorted(b.get('xattrs') or {})}"
        return text
    if kind == "owner":
        return f"  {a.get('uid')}:{a.get('gid')} -> {b.get('uid')}:{b.get('gid')}"
    if kind == "type":
        return f"  {a.get('type')} -> {b.get('type')}"
    if kind == "link":
        return f"  {a.get('linkTarget')!r} -> {b.get('linkTarget')!r}"
    if d.get("note"):
        return f"  ({d['note']})"
    return ""


#: context files the text report of `escrow diff` lists before "… N more"
CONTEXT_LINES_SHOWN = 40


def render_diff(doc: Mapping[str, Any]) -> str:
    """``escrow diff`` as a short report."""
    a, b = doc["original"], doc["rebuilt"]
    lines = [
        f"Entries {a['index']} and {b['index']} (project {a['project']}"
        + (f" / {b['project']}" if b["project"] != a["project"] else "")
        + ")"
    ]
    lines.extend(
        f"  {s['index']}: {s['startedOn']}  {s['status']}  {short_id(s['imageId'])}" for s in (a, b)
    )

    inputs = doc["inputs"]
    lines += ["", "Inputs"]
    quiet = True
    ctx = inputs["context"]
    if not ctx["same"]:
        quiet = False
        if "note" in ctx:
            lines.append(f"  context: {ctx['note']}")
        else:
            lines.append(
                f"  context: {len(ctx['changed'])} changed, {len(ctx['added'])} added, "
                f"{len(ctx['removed'])} removed"
            )
            from escrow.text import one_line  # a name with a line break: still one line

            files = [
                f"    changed  {one_line(c['path'])} ({', '.join(c['kinds'])})"
                for c in ctx["changed"]
            ]
            files += [f"    added    {one_line(p)}" for p in ctx["added"]]
            files += [f"    removed  {one_line(p)}" for p in ctx["removed"]]
            lines += files[:CONTEXT_LINES_SHOWN]
            if len(files) > CONTEXT_LINES_SHOWN:  # the steps and image must stay in sight
                lines.append(
                    f"    … {len(files) - CONTEXT_LINES_SHOWN} more (`--json` lists every file)"
                )
    recipe = inputs["recipe"]
    if not recipe["same"]:
        quiet = False
        if "diff" in recipe:
            lines.append(
                f"  Dockerfile: {recipe['linesRemoved']} line(s) removed, "
                f"{recipe['linesAdded']} added"
            )
            lines += [f"    {x}" for x in recipe["diff"][2:]]
        else:
            lines.append(f"  Dockerfile: {recipe['note']}")
    if inputs.get("baseImagesNote"):
        quiet = False
        lines.append(f"  base images: {inputs['baseImagesNote']}")

    def moved(base: Mapping[str, Any]) -> tuple[Any, ...]:
        was, now = base["original"], base["rebuilt"]
        return (
            base["reference"],
            was["imageId"],
            now["imageId"],
            was.get("repoDigest"),
            now.get("repoDigest"),
        )

    # a base of several stages that moved alike is one line, naming every stage
    stages: dict[tuple[Any, ...], list[str]] = {}
    for base in inputs["baseImages"]:
        if base["change"] == "image":
            stages.setdefault(moved(base), []).append(str(base["stage"]))
    for base in inputs["baseImages"]:
        quiet = False
        if base["change"] == "image":
            was, now = base["original"], base["rebuilt"]
            same = stages.pop(moved(base), None)
            if same is None:
                continue  # told with the first of its stages
            lines.append(
                f"  base image {base['reference']} (stage{'s' if len(same) > 1 else ''} "
                f"{', '.join(same)}): {short_id(was['imageId'])}{built_by_text(was)} -> "
                f"{short_id(now['imageId'])}{built_by_text(now)} (same reference, another image)"
            )
            made = [(x.get("builtBy") or {}).get("index") for x in (was, now)]
            if None not in made and made[0] != made[1]:
                lines.append(f"    `escrow diff {made[0]} {made[1]}` shows what changed in it")
            da, db = base["original"].get("repoDigest"), base["rebuilt"].get("repoDigest")
            if da and db and da != db:
                lines.append(
                    f"    the tag now points to another digest: {str(da).rsplit('@', 1)[-1]} -> "
                    f"{str(db).rsplit('@', 1)[-1]}"
                )
        elif base["change"] == "reference":
            lines.append(
                f"  base image of stage {base['stage']}: {base['original']['reference']} -> "
                f"{base['rebuilt']['reference']}"
            )
        else:  # one side only: name the image (a stage one build lacks, as of its --target)
            side = base["original"] or base["rebuilt"] or {}
            lines.append(
                f"  stage {base['stage']}: base image {side.get('reference')} {base['change']}"
            )
    for copy in inputs.get("copyFromImages") or []:
        quiet = False
        was, now = copy["original"] or {}, copy["rebuilt"] or {}
        if copy["change"] == "image":
            lines.append(
                f"  COPY --from image {copy['reference']} (stage {copy['stage']}): "
                f"{short_id(was.get('imageId'))}{built_by_text(was)} -> "
                f"{short_id(now.get('imageId'))}{built_by_text(now)} "
                "(same reference, another image)"
            )
        elif copy["change"] == "reference":
            lines.append(
                f"  COPY --from image of stage {copy['stage']}: {was.get('reference')} -> "
                f"{now.get('reference')}"
            )
        else:
            lines.append(
                f"  stage {copy['stage']}: COPY --from image {copy['reference']} {copy['change']}"
            )
    for arg in inputs["buildArgs"]:
        quiet = False
        lines.append(_arg_line("build arg", arg))
    for label in inputs.get("labels") or []:
        quiet = False
        lines.append(_arg_line("label", label))
    for item in [*inputs["other"], *inputs["source"]]:
        quiet = False
        lines.append(f"  {item['field']}: {_text(item['original'])} -> {_text(item['rebuilt'])}")
    if quiet:
        lines.append("  unchanged")

    command = doc.get("command")
    if command is not None:
        lines += ["", "Command"]
        lines += render_command(command)
    if command is None or doc["steps"] or doc.get("stepsNote"):  # a record has no steps
        lines += ["", "Steps"]
    if doc.get("stepsNote"):
        lines.append(f"  not compared: {doc['stepsNote']}")
    elif command is None and not doc["steps"]:
        lines.append("  same instructions, same exit codes")
    for s in doc["steps"]:
        sa, sb = s["original"], s["rebuilt"]
        if s["change"] == "not-run":
            step = sa or sb
            lines.append(
                f"  step {step['index']} not run in entry {s['notRunIn']} (its build failed "
                f"at step {s['failedAt']}): {step['instruction']}"
            )
        elif s["change"] == "added":
            lines.append(f"  + step {sb['index']}: {sb['instruction']}{_failed(sb)}")
        elif s["change"] == "removed":
            lines.append(f"  - step {sa['index']}: {sa['instruction']}{_failed(sa)}")
        elif s["change"] == "exit-code":
            lines.append(
                f"  step {sb['index']}: exit code {_code(sa['exitCode'])} -> "
                f"{_code(sb['exitCode'])}: {sb['instruction']}"
            )
        else:
            lines.append(f"  - step {sa['index']}: {sa['instruction']}{_failed(sa)}")
            lines.append(f"  + step {sb['index']}: {sb['instruction']}{_failed(sb)}")

    image = doc.get("image")
    lines += ["", "Image"]
    if image is None:
        lacking = [f"entry {s['index']}" for s in (a, b) if not s["imageId"]]
        lines.append(
            f"  not compared: {' and '.join(lacking or ['one entry'])} "
            f"record{'s' if len(lacking) < 2 else ''} no image"
        )
    else:
        lines.append(
            f"  {image['verdict']}: {short_id(image['original'])} -> {short_id(image['rebuilt'])}"
        )
        hidden = ", ".join(image.get("secretsNotCompared") or [])
        if image["verdict"] == "identical" and image["original"] != image["rebuilt"]:
            lines.append(
                f"  (same layers and configuration as recorded, which hides the secret values "
                f"{hidden}: the image IDs differ in the creation times and build-container "
                "fields, and may in those values)"
                if hidden
                else "  (same layers and configuration: the image IDs differ only in what no "
                "rebuild repeats, the creation times and build-container fields)"
            )
        elif hidden:
            lines.append(f"  secret values not compared (recorded hidden): {hidden}")
        lines += [_config_line(c) for c in image["config"]]
        lines += ["", "Layers"]
        lines += render_layers(
            image["layers"], doc.get("filesCompared", False), f"entry {b['index']}"
        )
    return "\n".join(lines)
