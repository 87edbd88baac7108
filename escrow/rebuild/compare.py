"""Compare two layers entry by entry, and two images layer by layer.

Two entries at the same path compare equal when their type, permission bits,
uid, gid, content (size and SHA-256), link target, device numbers and xattrs
agree.  Everything else a tar archive carries — mtime/atime/ctime, the header
format (ustar, pax, GNU), user and group *names*, other pax records, the order
of the entries, the layer's compression — is ignored, and each of those that
actually differed is named as a *normalisation* ("mtime", "entry-order", …), so
an ``equivalent`` verdict says exactly what had to be overlooked.

Whiteouts: a ``.wh.NAME`` entry deletes ``NAME`` from the layers below.  When
only the rebuilt layer deletes a path, the path is reported ``removed``; when
only the original deletes it, ``added``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from escrow.errors import EscrowError
from escrow.rebuild.layers import Entry, EntryType, LayerIndex, display

#: differences kept per layer in documents; the total is always counted
MAX_DIFFERENCES = 500


class Verdict(StrEnum):
    IDENTICAL = "identical"
    EQUIVALENT = "equivalent"
    DIFFERENT = "different"
    NOT_REPRODUCED = "not-reproduced"
    UNKNOWN = "unknown"


class Kind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CONTENT = "content"
    MODE = "mode"
    OWNER = "owner"
    TYPE = "type"
    LINK = "link"


_KIND_ORDER = {k: i for i, k in enumerate(Kind)}


@dataclass(frozen=True)
class PathDifference:
    path: str
    kind: Kind
    original: Entry | None = None
    rebuilt: Entry | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": display(self.path), "kind": str(self.kind)}
        if self.original is not None:
            d["original"] = self.original.info()
        if self.rebuilt is not None:
            d["rebuilt"] = self.rebuilt.info()
        if self.note:
            d["note"] = self.note
        return d

    def describe(self) -> str:
        """One line for people: ``/etc/app.conf: mode 0644 -> 0600``."""
        a, b = self.original, self.rebuilt
        path = display(self.path)
        if self.kind is Kind.ADDED:
            return f"{path}: added" + (f" ({self.note})" if self.note else "")
        if self.kind is Kind.REMOVED:
            return f"{path}: removed" + (f" ({self.note})" if self.note else "")
        assert a is not None and b is not None
        if self.kind is Kind.CONTENT:
            return (
                f"{path}: content {a.size} bytes sha256:{(a.sha256 or '')[:12]} -> "
                f"{b.size} bytes sha256:{(b.sha256 or '')[:12]}"
            )
        if self.kind is Kind.MODE:
            text = f"{path}: mode {a.mode:04o} -> {b.mode:04o}"
            if a.xattrs != b.xattrs:
                text += f" (xattrs {_xattr_names(a)} -> {_xattr_names(b)})"
            return text
        if self.kind is Kind.OWNER:
            return f"{path}: owner {a.uid}:{a.gid} -> {b.uid}:{b.gid}"
        if self.kind is Kind.LINK:
            return f"{path}: link -> {display(a.link or '')!r} became {display(b.link or '')!r}"
        return f"{path}: type {a.type} -> {b.type}"


def _xattr_names(e: Entry) -> str:
    return ",".join(display(k) for k, _ in e.xattrs) or "none"


@dataclass
class LayerComparison:
    """The file-level comparison of two layers."""

    differences: list[PathDifference]
    normalisations: list[str]
    original_entries: int
    rebuilt_entries: int

    @property
    def verdict(self) -> Verdict:
        return Verdict.DIFFERENT if self.differences else Verdict.EQUIVALENT


def _pair(path: str, a: Entry, b: Entry) -> list[PathDifference]:
    a_wh, b_wh = a.type is EntryType.WHITEOUT, b.type is EntryType.WHITEOUT
    if a_wh and b_wh:
        return []
    if b_wh:
        return [PathDifference(path, Kind.REMOVED, a, None, "the rebuilt layer deletes it")]
    if a_wh:
        return [PathDifference(path, Kind.ADDED, None, b, "the original layer deletes it")]
    if a.type != b.type or a.device != b.device:
        return [PathDifference(path, Kind.TYPE, a, b)]
    out: list[PathDifference] = []
    if a.link != b.link:
        out.append(PathDifference(path, Kind.LINK, a, b))
    if a.type is EntryType.FILE and (a.size != b.size or a.sha256 != b.sha256):
        out.append(PathDifference(path, Kind.CONTENT, a, b))
    if a.mode != b.mode or a.xattrs != b.xattrs:
        out.append(PathDifference(path, Kind.MODE, a, b))
    if a.uid != b.uid or a.gid != b.gid:
        out.append(PathDifference(path, Kind.OWNER, a, b))
    return out


def _only(path: str, e: Entry, *, in_original: bool) -> PathDifference:
    if e.type is EntryType.WHITEOUT:
        if in_original:
            return PathDifference(path, Kind.ADDED, note="only the original layer deletes it")
        return PathDifference(path, Kind.REMOVED, note="only the rebuilt layer deletes it")
    # a directory entry in one layer only: usually its contents changed underneath
    note = "a directory entry in this layer only" if e.type is EntryType.DIR else None
    if in_original:
        return PathDifference(path, Kind.REMOVED, e, None, note)
    return PathDifference(path, Kind.ADDED, None, e, note)


def compare_indexes(original: LayerIndex, rebuilt: LayerIndex) -> LayerComparison:
    """Compare two indexed layers; see the module docstring for what counts."""
    a, b = original.entries, rebuilt.entries
    differences: list[PathDifference] = []
    found: set[str] = set()
    common: list[str] = []
    for path, ea in a.items():
        eb = b.get(path)
        if eb is None:
            differences.append(_only(path, ea, in_original=True))
            continue
        common.append(path)
        differences.extend(_pair(path, ea, eb))
        if ea.mtime != eb.mtime:
            found.add("mtime")
        if ea.atime != eb.atime:
            found.add("atime")
        if ea.ctime != eb.ctime:
            found.add("ctime")
        if ea.fmt != eb.fmt:
            found.add("tar-format")
        if ea.uname != eb.uname or ea.gname != eb.gname:
            found.add("owner-names")
        if ea.pax != eb.pax:
            found.add("pax-headers")
    differences.extend(
        _only(path, eb, in_original=False) for path, eb in b.items() if path not in a
    )
    # entry order: the common paths, in original order, must be increasing in rebuilt order
    common.sort(key=lambda p: a[p].order)
    last = -1
    for p in common:
        if b[p].order < last:
            found.add("entry-order")
            break
        last = b[p].order
    if original.compression != rebuilt.compression:
        found.add("compression")
    if original.duplicates != rebuilt.duplicates:
        found.add("duplicate-entries")
    differences.sort(key=lambda d: (d.path, _KIND_ORDER[d.kind]))
    if not differences and not found:
        # same entries, same metadata, different bytes: tar padding or end-of-archive blocks
        found.add("archive-bytes")
    return LayerComparison(
        differences=differences,
        normalisations=sorted(found),
        original_entries=original.count,
        rebuilt_entries=rebuilt.count,
    )


EMPTY_LAYER = LayerIndex(entries={}, count=0)


# ---------------------------------------------------------------------------
# images


class LayerSource(Protocol):
    """Where file-level comparison gets a layer's entries from (the engine, or a fake)."""

    def index(self, side: str, diff_id: str) -> LayerIndex:
        """Entries of layer ``diff_id`` of the ``"original"`` or ``"rebuilt"`` image.

        Raises :class:`~escrow.errors.EscrowError` when the layer cannot be read.
        """
        ...


@dataclass
class LayerResult:
    index: int
    original: str | None
    rebuilt: str | None
    created_by: str | None
    verdict: Verdict
    comparison: LayerComparison | None = None
    note: str | None = None
    #: the rebuilt image's index of this layer, when it is not ``index`` (``escrow diff``
    #: matches the layers of two images by their commands, see :func:`pair_items`)
    rebuilt_index: int | None = None
    #: the command that made the rebuilt image's layer, when it is not ``created_by``
    #: (two layers of different commands paired by position)
    rebuilt_created_by: str | None = None
    #: the ``note`` names what to do about the layer not compared (the error's own hint,
    #: such as how to repair a damaged deposit): no generic advice is added to it
    advised: bool = False

    def to_dict(self, limit: int = MAX_DIFFERENCES) -> dict[str, Any]:
        d: dict[str, Any] = {
            "index": self.index,
            "original": self.original,
            "rebuilt": self.rebuilt,
            "verdict": str(self.verdict),
        }
        if self.rebuilt_index is not None:
            d["rebuiltIndex"] = self.rebuilt_index
        if self.created_by is not None:
            d["createdBy"] = self.created_by
        if self.rebuilt_created_by is not None:
            d["rebuiltCreatedBy"] = self.rebuilt_created_by
        c = self.comparison
        if self.verdict is Verdict.EQUIVALENT and c is not None:
            d["normalisations"] = list(c.normalisations)
        if self.verdict is Verdict.DIFFERENT:
            diffs = c.differences if c is not None else []
            d["differences"] = [x.to_dict() for x in diffs[:limit]]
            if len(diffs) > limit:
                d["truncated"] = True
                d["differenceCount"] = len(diffs)
            if c is not None and c.normalisations:
                d["normalisations"] = list(c.normalisations)
        if c is not None:
            d["entries"] = {"original": c.original_entries, "rebuilt": c.rebuilt_entries}
        if self.note:
            d["note"] = self.note
        return d


@dataclass(frozen=True)
class ConfigDifference:
    field: str
    original: Any
    rebuilt: Any

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "original": self.original, "rebuilt": self.rebuilt}


@dataclass
class ImageComparison:
    original_image: str | None
    rebuilt_image: str | None
    layers: list[LayerResult]
    config: list[ConfigDifference] = field(default_factory=list)
    #: the names of the secret values the two images' recorded configs and histories
    #: hide (``[secret NAME]``), when the image IDs differ: equal as recorded, they may
    #: differ in the images (two builds of the same recipe with another password in an
    #: ``ENV``), so no comparison of the records can say they are the same
    hidden: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        if self.original_image is not None and self.original_image == self.rebuilt_image:
            return Verdict.IDENTICAL
        verdicts = {layer.verdict for layer in self.layers}
        if self.config or Verdict.DIFFERENT in verdicts:
            return Verdict.DIFFERENT
        if Verdict.EQUIVALENT in verdicts:
            return Verdict.EQUIVALENT
        return Verdict.IDENTICAL

    @property
    def normalisations(self) -> list[str]:
        names = {
            n
            for layer in self.layers
            if layer.comparison is not None and layer.verdict is Verdict.EQUIVALENT
            for n in layer.comparison.normalisations
        }
        return sorted(names)


#: the note on a layer whose diff IDs differ and whose files were not compared (no
#: layer source given; after a colon, why the source could not give them)
NOT_COMPARED = "diff IDs differ; files not compared"


def _layer_list(predicate: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (str(layer["diffId"]), layer.get("createdBy")) for layer in predicate.get("layers") or []
    ]


def pair_items(
    a: Sequence[str | None], b: Sequence[str | None], align: bool = False
) -> list[tuple[int | None, int | None]]:
    """The indexes of ``a`` and ``b`` compared with each other (None: an item one side only
    has). By position; with ``align``, matched by their texts (layers and history items by
    the command that made them), so that items one side inserts — the layers of another base
    image, a new step — are named as such instead of shifting every later comparison. Runs
    that do not match are matched again by their commands less what a changed input
    alters (the build args a ``RUN`` names in front, the digest of what a ``COPY`` copied:
    :func:`_command_of`), so that a step that only changed is paired with itself rather
    than with a step the other side lacks; the rest are paired by position, the longer
    run's rest unpaired."""
    if not align:
        return [
            (i if i < len(a) else None, i if i < len(b) else None)
            for i in range(max(len(a), len(b)))
        ]
    out: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(a=list(a), b=list(b), autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "replace":
            loose = difflib.SequenceMatcher(
                a=[_command_of(x) for x in a[i1:i2]],
                b=[_command_of(x) for x in b[j1:j2]],
                autojunk=False,
            )
            out.extend(
                (None if k1 is None else i1 + k1, None if k2 is None else j1 + k2)
                for k1, k2 in _by_position(loose.get_opcodes())
            )
            continue
        out.extend(
            (i1 + k if i1 + k < i2 else None, j1 + k if j1 + k < j2 else None)
            for k in range(max(i2 - i1, j2 - j1))
        )
    return out


def _by_position(
    opcodes: Sequence[tuple[str, int, int, int, int]],
) -> list[tuple[int | None, int | None]]:
    """The pairs of ``SequenceMatcher`` opcodes, each run paired by position."""
    return [
        (i1 + k if i1 + k < i2 else None, j1 + k if j1 + k < j2 else None)
        for _op, i1, i2, j1, j2 in opcodes
        for k in range(max(i2 - i1, j2 - j1))
    ]


#: the build args the classic builder writes in front of a ``RUN``'s command
#: (``|2 A=1 B=[secret B] /bin/sh -c …``), and the digest of what a ``COPY``/``ADD``
#: copied (``COPY file:<sha256> in /x``)
_RUN_ARGS = re.compile(r"\|(\d+) ")
_RUN_ARG = re.compile(r"[^\s=]+=(?:\[secret [^\]]*\]|\S*) ")
_COPIED = re.compile(r"\b(file|dir|multi):[0-9a-f]{64}\b")


def _command_of(text: str | None) -> str | None:
    """A history item's command less its build args and the digest of what it copied."""
    if text is None:
        return None
    m = _RUN_ARGS.match(text)
    if m:
        rest = text[m.end() :]
        for _ in range(int(m.group(1))):
            arg = _RUN_ARG.match(rest)
            if arg is None:
                break
            rest = rest[arg.end() :]
        text = rest
    return _COPIED.sub(r"\1:…", text)


def layer_pairs(
    original: Mapping[str, Any], rebuilt: Mapping[str, Any], align: bool = False
) -> list[tuple[str | None, str | None]]:
    """The diff IDs of two build-manifest predicates compared with each other (see
    :func:`pair_items`)."""
    a, b = _layer_list(original), _layer_list(rebuilt)
    return [
        (a[i][0] if i is not None else None, b[j][0] if j is not None else None)
        for i, j in pair_items([x[1] for x in a], [x[1] for x in b], align)
    ]


def wanted_layers(
    original: Mapping[str, Any], rebuilt: Mapping[str, Any], align: bool = False
) -> tuple[set[str], set[str]]:
    """The diff IDs of each side that :func:`compare_images` compares file by file: those
    paired with another diff ID, or with none, on the other side (:func:`layer_pairs`)."""
    pairs = layer_pairs(original, rebuilt, align)
    return (
        {a for a, b in pairs if a is not None and a != b},
        {b for a, b in pairs if b is not None and a != b},
    )


#: fields of ``image`` compared besides ``image.config``; creation times are not compared
_IMAGE_FIELDS = ("os", "architecture", "variant", "author", "comment")
_HISTORY_FIELDS = ("createdBy", "emptyLayer", "comment", "author")


#: runtime config fields for which ``null`` (or no key), ``[]``, ``{}`` and ``""`` all mean
#: "not set", so compare equal.  Engines spell "nothing" differently: the Dockerfile builder
#: writes ``"Labels": null`` where ``docker commit`` (hence ``escrow capture``) writes
#: ``"Labels": {}``, and OCI configs (BuildKit, buildah, kaniko) leave empty fields out.
#:
#: Docker reads each of these by length, never by null-ness, for the *image's* value: the
#: daemon's ``getEntrypointAndArgs`` runs ``Entrypoint[0]`` only when ``len(Entrypoint) != 0``
#: and appends Cmd either way, and a container whose Entrypoint and Cmd are both empty is
#: refused with "No command specified" whichever of ``null`` and ``[]`` they are.  Checked on
#: the engine: ``ENTRYPOINT ["echo","hi"]`` prints ``hi`` with ``Cmd: null`` and with
#: ``Cmd: []`` (``CMD []``); an image with ``Cmd: []`` and no Entrypoint fails exactly as one
#: with ``Cmd: null``.  So ``Cmd``/``Entrypoint`` ``null`` vs ``[]`` is no run-time difference.
#: Env, Labels, ExposedPorts and Volumes are iterated; the builder runs OnBuild triggers by
#: iterating and uses its default shell when ``len(Shell) == 0``; an empty WorkingDir, User
#: or StopSignal means ``/``, root and SIGTERM, as an unset one does.
#:
#: Only *empty* values are merged: ``Entrypoint: [""]`` (``ENTRYPOINT [""]``, which the
#: engine runs as no entrypoint too) is a value a recipe wrote, not a spelling of nothing,
#: and is still reported against ``null``, as is any value with content.  ``Healthcheck``
#: is left out: it is an object with its own conventions (``{"Test": ["NONE"]}`` disables
#: an inherited check), not a list or map.
_EMPTY_IS_UNSET = frozenset(
    {
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Shell",
        "OnBuild",
    }
)


def _config_value(key: str, value: Any) -> Any:
    """``value`` as compared: None for an empty value of a field in ``_EMPTY_IS_UNSET``."""
    if key in _EMPTY_IS_UNSET and isinstance(value, list | dict | str) and not value:
        return None
    return value


def compare_config(
    original: Mapping[str, Any], rebuilt: Mapping[str, Any], *, align: bool = False
) -> list[ConfigDifference]:
    """The image fields of two build-manifest predicates that differ, creation times aside:
    the runtime config field by field (an empty list, map or string the same as none, see
    ``_EMPTY_IS_UNSET``), the platform, and the history's commands.  A difference reports
    the values as recorded; with ``align`` the history items are matched by their commands
    (:func:`pair_items`), an item named ``history[I->J]`` when its indexes differ."""
    img_a, img_b = original.get("image") or {}, rebuilt.get("image") or {}
    cfg_a, cfg_b = img_a.get("config") or {}, img_b.get("config") or {}
    out = [
        ConfigDifference(f"config.{key}", cfg_a.get(key), cfg_b.get(key))
        for key in sorted(set(cfg_a) | set(cfg_b))
        if _config_value(key, cfg_a.get(key)) != _config_value(key, cfg_b.get(key))
    ]
    out.extend(
        ConfigDifference(key, img_a.get(key), img_b.get(key))
        for key in _IMAGE_FIELDS
        if img_a.get(key) != img_b.get(key)
    )
    hist_a, hist_b = original.get("history") or [], rebuilt.get("history") or []
    texts_a = [h.get("createdBy") for h in hist_a]
    texts_b = [h.get("createdBy") for h in hist_b]
    for i, j in pair_items(texts_a, texts_b, align):
        ha = hist_a[i] if i is not None else None
        hb = hist_b[j] if j is not None else None
        if ha is None or hb is None:
            at = i if i is not None else j
            out.append(ConfigDifference(f"history[{at}]", _strip_created(ha), _strip_created(hb)))
            continue
        name = f"history[{i}]" if i == j else f"history[{i}->{j}]"
        out.extend(
            ConfigDifference(f"{name}.{key}", ha.get(key), hb.get(key))
            for key in _HISTORY_FIELDS
            if ha.get(key) != hb.get(key)
        )
    return out


def _strip_created(entry: Mapping[str, Any] | None) -> Any:
    if entry is None:
        return None
    return {k: v for k, v in entry.items() if k != "created"}


def compare_layers(
    original: Sequence[tuple[str, str | None]],
    rebuilt: Sequence[tuple[str, str | None]],
    source: LayerSource | None,
    *,
    progress: Callable[[str], None] | None = None,
    align: bool = False,
) -> list[LayerResult]:
    """Layer ``i`` of one image against layer ``i`` of the other (with ``align``, the layers
    matched by their commands, :func:`pair_items`): identical diff IDs need no more;
    differing ones are compared file by file through ``source`` (when given)."""
    results: list[LayerResult] = []
    pairs = pair_items([x[1] for x in original], [x[1] for x in rebuilt], align)
    for ia, ib in pairs:
        a_id, a_by = original[ia] if ia is not None else (None, None)
        b_id, b_by = rebuilt[ib] if ib is not None else (None, None)
        created_by = a_by if a_by is not None else b_by
        i = ia if ia is not None else ib
        assert i is not None
        moved = ib if ia is not None and ib is not None and ib != ia else None
        # two layers made by different commands, paired by position: name both
        other_by = b_by if ia is not None and ib is not None and b_by != a_by else None
        if a_id is not None and a_id == b_id:
            results.append(
                LayerResult(i, a_id, b_id, created_by, Verdict.IDENTICAL, rebuilt_index=moved)
            )
            continue
        if source is None:
            results.append(
                LayerResult(
                    i,
                    a_id,
                    b_id,
                    created_by,
                    Verdict.DIFFERENT,
                    note=NOT_COMPARED,
                    rebuilt_index=moved,
                    rebuilt_created_by=other_by,
                )
            )
            continue
        if progress is not None:
            progress(f"comparing the files of layer {i}")
        try:
            a_index = source.index("original", a_id) if a_id is not None else EMPTY_LAYER
            b_index = source.index("rebuilt", b_id) if b_id is not None else EMPTY_LAYER
        except EscrowError as e:
            results.append(
                LayerResult(
                    i,
                    a_id,
                    b_id,
                    created_by,
                    Verdict.DIFFERENT,
                    note=f"{NOT_COMPARED}: {e.diagnostics()}",
                    rebuilt_index=moved,
                    rebuilt_created_by=other_by,
                    advised=e.hint is not None,
                )
            )
            continue
        comparison = compare_indexes(a_index, b_index)
        if a_id is None or b_id is None:
            verdict = Verdict.DIFFERENT
            comparison.normalisations = [
                n for n in comparison.normalisations if n != "archive-bytes"
            ]
        else:
            verdict = comparison.verdict
        note = None
        if a_id is None:
            note = "the rebuild has an extra layer"
        elif b_id is None:
            note = "the rebuild lacks this layer"
        results.append(
            LayerResult(i, a_id, b_id, created_by, verdict, comparison, note, moved, other_by)
        )
    return results


def compare_images(
    original: Mapping[str, Any],
    rebuilt: Mapping[str, Any],
    source: LayerSource | None,
    *,
    progress: Callable[[str], None] | None = None,
    align: bool = False,
) -> ImageComparison:
    """Compare the images of two build-manifest predicates (image ID, config, layers); with
    ``align``, layers and history items are matched by their commands (:func:`pair_items`)
    rather than by position, as two different builds need."""
    a_img = (original.get("image") or {}).get("id")
    b_img = (rebuilt.get("image") or {}).get("id")
    same = a_img is not None and a_img == b_img
    layers = compare_layers(
        _layer_list(original),
        _layer_list(rebuilt),
        None if same else source,
        progress=progress,
        align=align,
    )
    config = [] if same else compare_config(original, rebuilt, align=align)
    hidden = [] if same else sorted(hidden_secrets(original) | hidden_secrets(rebuilt))
    return ImageComparison(a_img, b_img, layers, config, hidden)


#: how a recorded text names a secret value it hid (``Redactor.placeholder``)
_SECRET = re.compile(r"\[secret ([^\]\s]+)\]")


def hidden_secrets(predicate: Mapping[str, Any]) -> set[str]:
    """The names of the secret values a build manifest's image config (``Env``, ``Labels``,
    …) and history (the build args a ``RUN`` used) record only as ``[secret NAME]``."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.update(_SECRET.findall(value))
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk((predicate.get("image") or {}).get("config"))
    walk([h.get("createdBy") for h in predicate.get("history") or [] if isinstance(h, Mapping)])
    return found
