"""Just enough Dockerfile parsing to name every base image before the build.

Handles parser directives (``# escape=``), comments, line continuations,
global ``ARG``s (before the first ``FROM``) with their defaults overridden by
``--build-arg``, variable substitution in ``FROM`` (``$V``, ``${V}``,
``${V:-word}``, ``${V:+word}``), ``FROM --platform=… IMAGE AS name``,
``FROM <earlier stage>`` and ``FROM scratch``, and the images ``COPY --from``
names (the classic builder takes its value as written: a stage's index or name,
else an image).  Everything else about the build is what the engine reports while
it runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from escrow.errors import InputError

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def _is_reference(text: str) -> bool:
    """Whether ``text`` parses as an image reference (or ID) as the engine reads one."""
    from escrow.registry.reference import Reference

    try:
        Reference.parse(text)
    except InputError:
        return False
    return True


# A NamedTuple, not a frozen dataclass: made at import on the way to `escrow build`'s
# request, where a frozen dataclass costs ~0.5 ms of start-up and this ~0.1 ms
# (docs/DESIGN-NOTES.md, "Start-up of escrow build").
class Instruction(NamedTuple):
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # the rest of the logical line, continuations joined
    line: int  # 1-based line of its first physical line

    @property
    def text(self) -> str:
        return f"{self.keyword} {self.args}".rstrip()


@dataclass(frozen=True)
class Stage:
    index: int
    name: str | None
    reference: str  # after ARG substitution
    raw_reference: str  # as written
    platform: str | None
    #: index of the earlier stage this one starts from, when ``FROM <stage>``
    from_stage: int | None
    instruction: Instruction

    @property
    def is_scratch(self) -> bool:
        return self.from_stage is None and self.reference.lower() == "scratch"

    @property
    def is_image(self) -> bool:
        return self.from_stage is None and not self.is_scratch


class Dockerfile(NamedTuple):
    instructions: tuple[Instruction, ...]
    global_args: tuple[tuple[str, str | None], ...]
    stages: tuple[Stage, ...]

    def images(self) -> list[Stage]:
        """Stages that start from an image (neither ``scratch`` nor an earlier stage)."""
        return [s for s in self.stages if s.is_image]

    def stage_index(self, target: str) -> int:
        for s in self.stages:
            if s.name is not None and s.name == target.lower():
                return s.index
        raise InputError(
            f"The Dockerfile has no stage named {target!r}.",
            hint="Use the name given with FROM … AS NAME.",
        )

    def copy_sources(self) -> list[CopySource]:
        """The images ``COPY --from=…`` copies files from, in the stages this Dockerfile
        keeps (all, or those up to a ``--target``), in order.

        As the classic builder reads the flag (``--from``, lower case; quotes and
        backslash escapes removed): a number is a stage's index, the name of an *earlier*
        stage is that stage (case aside), anything else an image -- the name of this stage
        or of a later one too, since the builder looks names up among the stages it has
        built.  The image is taken as written: the builder expands no ``ARG`` in it.
        """
        out: list[CopySource] = []
        stage: Stage | None = None
        for ins in self.instructions:
            if ins.keyword == "FROM":
                stage = next((s for s in self.stages if s.instruction is ins), None)
                if stage is None:
                    break  # past the target stage
                continue
            if stage is None or ins.keyword != "COPY":
                continue
            flag = _copy_from(ins)
            if flag is None:
                continue
            source, written = flag
            if not source or source.isdigit():
                continue
            if any(s.name == source.lower() for s in self.stages[: stage.index]):
                continue  # an earlier stage
            out.append(CopySource(stage.index, ins, source, written))
        return out


class CopySource(NamedTuple):
    """An image a ``COPY --from=IMAGE`` of a stage copies files from."""

    stage: int
    instruction: Instruction
    reference: str
    #: the flag as written in the instruction (``--from="name:tag"``)
    written: str = ""


def _copy_from(ins: Instruction) -> tuple[str, str] | None:
    """The value of a ``COPY``'s ``--from`` flag and the flag as written, if it has one.

    The builder's flag names are case-sensitive (``--FROM=`` is refused as an unknown
    flag), and their values lose their quotes and backslash escapes."""
    for word, written in _builder_flags(ins.args):
        key, _, value = word[2:].partition("=")
        if key == "from":
            return value, written
    return None


def _builder_flags(args: str) -> list[tuple[str, str]]:
    """The leading ``--flag[=value]`` words of an instruction's arguments as the builder
    reads them (``extractBuilderFlags`` of the Dockerfile parser: quotes removed,
    ``\\`` escapes the next character, ``--`` ends the flags), each with its text as
    written."""
    out: list[tuple[str, str]] = []
    pos, end = 0, len(args)
    while True:
        while pos < end and args[pos].isspace():
            pos += 1
        if not args.startswith("--", pos):
            return out
        start = pos
        word: list[str] = []
        quote: str | None = None
        while pos < end:
            ch = args[pos]
            if quote is None:
                if ch.isspace():
                    break
                if ch in "'\"":
                    quote = ch
                    pos += 1
                    continue
            elif ch == quote:
                quote = None
                pos += 1
                continue
            if ch == "\\":
                pos += 1
                if pos == end:
                    break  # a backslash at the end is dropped
                ch = args[pos]
            word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return out
        out.append((text, args[start:pos]))


def logical_lines(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, continuations joined."""
    lines = text.splitlines()
    escape = "\\"
    # parser directives: only at the very top, before any comment or instruction
    for raw in lines:
        m = _DIRECTIVE.match(raw.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for no, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if not buf:
            start = no
        body = raw.rstrip()
        if body.endswith(escape):
            buf.append(body[: -len(escape)])
            continue
        buf.append(body)
        out.append(_instruction(" ".join(p.strip() for p in buf if p.strip()), start))
        buf = []
    if buf:
        out.append(_instruction(" ".join(p.strip() for p in buf if p.strip()), start))
    return out


def _instruction(logical: str, line: int) -> Instruction:
    keyword, _, args = logical.partition(" ")
    return Instruction(keyword.upper(), args.strip(), line)


def substitute(text: str, values: Mapping[str, str | None]) -> str:
    """Expand ``$V``, ``${V}``, ``${V:-word}`` and ``${V:+word}`` from ``values``."""

    def repl(m: re.Match[str]) -> str:
        name = m.group("braced") or m.group("plain")
        value = values.get(name)
        op = m.group("op")
        if op == "-":
            return value if value else m.group("word")
        if op == "+":
            return m.group("word") if value else ""
        return value or ""

    return _VAR.sub(repl, text)


def _split_arg(args: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for part in args.split():
        name, eq, default = part.partition("=")
        out.append((name, _unquote(default) if eq else None))
    return out


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def parse(text: str, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    """Parse a Dockerfile and resolve every stage's base (after ``ARG`` substitution)."""
    build_args = dict(build_args or {})
    instructions = logical_lines(text)
    if not instructions:
        raise InputError("The Dockerfile is empty.", hint="It needs at least one FROM.")
    global_args: list[tuple[str, str | None]] = []
    scope: dict[str, str | None] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "ARG" and not stages:
            for name, default in _split_arg(ins.args):
                global_args.append((name, default))
                scope[name] = build_args.get(name, default)
            continue
        if ins.keyword != "FROM":
            if not stages:
                raise InputError(
                    f"The Dockerfile's line {ins.line} ({ins.keyword}) comes before any FROM.",
                    hint="A Dockerfile must start with FROM (only ARG may precede it).",
                )
            continue
        stages.append(_stage(ins, len(stages), stages, scope))
    return Dockerfile(tuple(instructions), tuple(global_args), tuple(stages))


def _stage(
    ins: Instruction, index: int, earlier: list[Stage], scope: Mapping[str, str | None]
) -> Stage:
    words = ins.args.split()
    platform: str | None = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        key, _, value = flag[2:].partition("=")
        if key == "platform":
            platform = substitute(value, scope) or None
    if not words:
        raise InputError(f"The FROM on line {ins.line} of the Dockerfile names no image.")
    raw_ref = words[0]
    name: str | None = None
    if len(words) >= 3 and words[1].upper() == "AS":
        name = words[2].lower()
    elif len(words) != 1:
        raise InputError(
            f"The FROM on line {ins.line} of the Dockerfile is malformed: {ins.text!r}.",
            hint="Write FROM [--platform=P] IMAGE [AS NAME].",
        )
    ref = substitute(raw_ref, scope)
    if not ref:
        raise InputError(
            f"The FROM on line {ins.line} of the Dockerfile expands to an empty image name.",
            hint="Pass the missing --build-arg or give the ARG a default.",
        )
    from_stage = next((s.index for s in earlier if s.name == ref.lower()), None)
    if (
        from_stage is None
        and "$" in raw_ref
        and ref.lower() != "scratch"
        and not _is_reference(ref)
    ):
        # the engine says only "invalid reference format"; escrow would otherwise try to
        # pull the malformed name (``base:`` from ``base:${TAG}`` with TAG unset)
        empty = sorted(
            {
                str(m.group("braced") or m.group("plain"))
                for m in _VAR.finditer(raw_ref)
                if not scope.get(str(m.group("braced") or m.group("plain")))
            }
        )
        raise InputError(
            f"The FROM on line {ins.line} of the Dockerfile expands to {ref!r}, which is not "
            "an image reference"
            + (
                f" ({', '.join('$' + n for n in empty)} {'is' if len(empty) == 1 else 'are'} empty)"
                if empty
                else ""
            )
            + ".",
            hint="Pass the missing --build-arg or give the ARG a default.",
        )
    return Stage(index, name, ref, raw_ref, platform, from_stage, ins)
