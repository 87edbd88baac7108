"""Just enough Dockerfile parsing to name every base image before the build.

Handles parser directives (``# escape=``), comments, line continuations,
global ``ARG``s (before the first ``FROM``) with their defaults overridden by
``--build-arg``, variable substitution in ``FROM`` (``$V``, ``${V}``,
``${V:-word}``, ``${V:+word}``), ``FROM --platform=… IMAGE AS name``,
``FROM <earlier stage>`` and ``FROM scratch``, and the images ``COPY --from``
names (the classic builder takes its value as written: a stage's index or name,
else an image).  Everything else about the build is what the engine reports while
it runs.

Lines are read as the classic builder's parser reads them (moby's
``frontend/dockerfile/parser`` of the engine's release): a UTF-8 byte-order mark
is dropped, only ``\n`` ends a line, directives stop at the first line that is
not a known one (``escape``, ``syntax``), a continued line is joined to the next
with no space added, and blank and comment lines inside a continued instruction
are skipped.  ``FROM`` words and global ``ARG`` defaults are expanded as the
builder's shell lexer does (quotes removed, ``${V:-"word"}``, earlier ``ARG``s).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from escrow.errors import InputError

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
#: the parser directives the classic builder knows; any other line ends the directives
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax"})
#: what separates an instruction's keyword from its arguments (moby's ``tokenWhitespace``)
_KEYWORD_SPACE = re.compile(r"[\t\v\f\r ]+")
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
    return _flags_and_rest(args)[0]


def _flags_and_rest(args: str) -> tuple[list[tuple[str, str]], str]:
    """:func:`_builder_flags`, and the arguments that follow the flags."""
    out: list[tuple[str, str]] = []
    pos, end = 0, len(args)
    while True:
        while pos < end and args[pos].isspace():
            pos += 1
        if not args.startswith("--", pos):
            return out, args[pos:]
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
            return out, args[pos:]
        out.append((text, args[start:pos]))


def _physical_lines(text: str) -> list[str]:
    """The Dockerfile's lines as the builder's parser scans them: a UTF-8 byte-order
    mark dropped, split at ``\\n`` only (a form feed or U+2028 inside a ``RUN`` does not
    end its line), each line's final ``\\r`` dropped."""
    lines = text.removeprefix("\ufeff").split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _escape_token(lines: list[str]) -> str:
    """The escape character the parser directives at the top choose (``\\`` unless
    ``# escape=`\\```); the directives end at the first line that is not a directive
    the classic builder knows (``# foo=bar`` ends them, and a later ``# escape=`` is a
    comment)."""
    escape = "\\"
    for raw in lines:
        m = _DIRECTIVE.match(raw.strip())
        if not m or m.group(1).lower() not in _KNOWN_DIRECTIVES:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    return escape


def logical_lines(text: str) -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, continuations joined."""
    return _logical_lines(text)[1]


def _join(line: str, more: str) -> str:
    """A continued line and the next, as the parser joins them (with nothing between):
    whitespace at the join becomes one space, which splits words the same way."""
    if not line or not more:
        return line + more
    if line[-1].isspace() or more[0].isspace():
        return line.rstrip() + " " + more.lstrip()
    return line + more


def _logical_lines(text: str) -> tuple[str, list[Instruction]]:
    """The escape character and the instructions (moby's ``parser.Parse``): an
    instruction's first line has its leading whitespace dropped; a line ending in the
    escape character (spaces or tabs after it aside) goes on with the next, joined with
    no space; blank and comment lines inside a continued instruction are skipped."""
    lines = _physical_lines(text)
    escape = _escape_token(lines)
    continued = re.compile(re.escape(escape) + r"[ \t]*$")
    out: list[Instruction] = []
    no, end = 0, len(lines)
    while no < end:
        first = lines[no].lstrip()
        no += 1
        start = no
        if first.startswith("#"):
            continue
        line, more = continued.sub("", first), bool(continued.search(first))
        if not more and not line:
            continue
        while more and no < end:
            raw = lines[no]
            no += 1
            if raw.lstrip().startswith("#") or not raw.strip():
                continue  # a comment or a blank line inside the instruction
            more = bool(continued.search(raw))
            line = _join(line, continued.sub("", raw))
        out.append(_instruction(line, start))
    return escape, out


def _instruction(logical: str, line: int) -> Instruction:
    keyword, *rest = _KEYWORD_SPACE.split(logical.strip(), maxsplit=1)
    return Instruction(keyword.upper(), rest[0].strip() if rest else "", line)


class _LexError(ValueError):
    """A word the builder's shell lexer refuses (``${V-x}``, an unmatched quote)."""


class _Word:
    """One word expanded as the classic builder's shell lexer (``shell.Lex.ProcessWord``)
    expands it: quotes removed (nothing is expanded inside ``'…'``), the escape character
    escapes the next one, ``$V``, ``${V}``, ``${V:-word}``, ``${V:+word}`` and
    ``${V:?message}``, whose ``word`` is itself expanded."""

    _SPECIAL = "@*#?-$!0"

    def __init__(self, text: str, values: Mapping[str, str | None], escape: str) -> None:
        self.text, self.pos, self.values, self.escape = text, 0, values, escape

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def take(self) -> str | None:
        ch = self.peek()
        if ch is not None:
            self.pos += 1
        return ch

    def process(self, stop: str | None = None) -> str:
        out: list[str] = []
        while (ch := self.peek()) is not None:
            if ch == stop:
                self.pos += 1
                return "".join(out)
            if ch == "'":
                out.append(self.single_quoted())
            elif ch == '"':
                out.append(self.double_quoted())
            elif ch == "$":
                out.append(self.dollar())
            else:
                self.pos += 1
                if ch == self.escape:
                    escaped = self.take()
                    if escaped is None:
                        break  # an escape at the end is dropped
                    ch = escaped
                out.append(ch)
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while (ch := self.take()) != "'":
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching '")
            out.append(ch)
        return "".join(out)

    def double_quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch is None:
                raise _LexError('unexpected end of statement while looking for matching "')
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape and self.peek() in ('"', "$", self.escape):
                ch = str(self.take())
            elif ch == self.escape and self.peek() is None:
                continue
            out.append(ch)

    def name(self) -> str:
        ch = self.peek()
        if ch is not None and ch.isdigit():
            start = self.pos
            while (c := self.peek()) is not None and c.isdigit():
                self.pos += 1
            return self.text[start : self.pos]
        if ch is not None and ch in self._SPECIAL:
            self.pos += 1
            return ch
        start = self.pos
        while (c := self.peek()) is not None and (c.isalnum() or c == "_"):
            self.pos += 1
        return self.text[start : self.pos]

    def dollar(self) -> str:
        self.pos += 1
        if self.peek() != "{":
            name = self.name()
            return (self.values.get(name) or "") if name else "$"
        self.pos += 1
        if self.peek() is None:
            raise _LexError("syntax error: missing '}'")
        if self.peek() in ("{", "}", ":"):
            raise _LexError("syntax error: bad substitution")
        name = self.name()
        ch = self.take()
        if ch == "}":
            return self.values.get(name) or ""
        if ch != ":":
            raise _LexError("missing ':' in substitution")
        modifier = self.take()
        try:
            word = self.process("}")
        except _LexError:
            if self.peek() is None:
                raise _LexError("syntax error: missing '}'") from None
            raise
        value = self.values.get(name)
        if modifier == "+":
            return word if value else ""
        if modifier == "-":
            return value or word
        if modifier == "?":
            if value is None:
                raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        raise _LexError(f"unsupported modifier ({modifier}) in substitution")


def substitute(text: str, values: Mapping[str, str | None], escape: str = "\\") -> str:
    """Expand ``text`` as the builder's shell lexer does: ``$V``, ``${V}``, ``${V:-word}``
    and ``${V:+word}`` from ``values`` (``None``: not set), quotes removed.  Raises
    :class:`ValueError` for a word the builder refuses (``${V-word}``, an open quote)."""
    return _Word(text, values, escape).process()


def _words(args: str, escape: str) -> list[str]:
    """An ``ARG``'s words, split at whitespace outside quotes, quotes and escapes kept
    (moby's ``parseWords``)."""
    out: list[str] = []
    word: list[str] = []
    quote: str | None = None
    in_word = False
    pos, end = 0, len(args)
    while pos < end:
        ch = args[pos]
        pos += 1
        if quote is None:
            if ch.isspace():
                if in_word:
                    out.append("".join(word))
                word, in_word = [], False
                continue
            in_word = True
            if ch in "'\"":
                quote = ch
            elif ch == escape:
                if pos == end:
                    continue  # an escape at the end is dropped
                word.append(ch)
                ch = args[pos]
                pos += 1
            word.append(ch)
            continue
        if ch == quote:
            quote = None
        elif ch == escape and quote != "'":
            if pos == end:
                continue
            word.append(ch)
            ch = args[pos]
            pos += 1
        word.append(ch)
    if in_word:
        out.append("".join(word))
    return out


def _unquote(s: str) -> str:
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def _expanded(text: str, scope: Mapping[str, str | None], escape: str, ins: Instruction) -> str:
    """``text`` of ``ins`` expanded with the global ``ARG``s; :class:`InputError`, in
    the builder's words, for what its lexer refuses."""
    try:
        return substitute(text, scope, escape)
    except _LexError as e:
        raise InputError(
            f"The {ins.keyword} on line {ins.line} of the Dockerfile cannot be expanded: "
            f"{e} in {text!r}.",
            hint="Write ${NAME}, ${NAME:-default} or ${NAME:+alternative}.",
        ) from None


def parse(text: str, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    """Parse a Dockerfile and resolve every stage's base (after ``ARG`` substitution)."""
    build_args = dict(build_args or {})
    escape, instructions = _logical_lines(text)
    if not instructions:
        raise InputError("The Dockerfile is empty.", hint="It needs at least one FROM.")
    global_args: list[tuple[str, str | None]] = []
    scope: dict[str, str | None] = {}
    stages: list[Stage] = []
    for ins in instructions:
        if ins.keyword == "ARG" and not stages:
            for word in _words(ins.args, escape):
                name, eq, default = word.partition("=")
                global_args.append((name, _unquote(default) if eq else None))
                # a global ARG's default is expanded with the ARGs before it, a value
                # given with --build-arg is taken as it is (as the classic builder does)
                value = _expanded(default, scope, escape, ins) if eq else None
                scope[name] = build_args.get(name, value)
            continue
        if ins.keyword != "FROM":
            if not stages:
                raise InputError(
                    f"The Dockerfile's line {ins.line} ({ins.keyword}) comes before any FROM.",
                    hint="A Dockerfile must start with FROM (only ARG may precede it).",
                )
            continue
        stages.append(_stage(ins, len(stages), stages, scope, escape))
    return Dockerfile(tuple(instructions), tuple(global_args), tuple(stages))


def _stage(
    ins: Instruction,
    index: int,
    earlier: list[Stage],
    scope: Mapping[str, str | None],
    escape: str = "\\",
) -> Stage:
    flags, rest = _flags_and_rest(ins.args)
    platform: str | None = None
    for flag, _ in flags:
        key, _, value = flag[2:].partition("=")
        if key == "platform":
            platform = _expanded(value, scope, escape, ins) or None
    words = rest.split()
    if not words:
        raise InputError(f"The FROM on line {ins.line} of the Dockerfile names no image.")
    raw_ref = words[0]
    name: str | None = None
    if len(words) == 3 and words[1].upper() == "AS":
        name = words[2].lower()
    elif len(words) != 1:
        raise InputError(
            f"The FROM on line {ins.line} of the Dockerfile is malformed: {ins.text!r}.",
            hint="Write FROM [--platform=P] IMAGE [AS NAME].",
        )
    ref = _expanded(raw_ref, scope, escape, ins)
    if not ref:
        raise InputError(
            f"The FROM on line {ins.line} of the Dockerfile expands to an empty image name.",
            hint="Pass the missing --build-arg or give the ARG a default.",
        )
    from_stage = next((s.index for s in earlier if s.name == ref.lower()), None)
    if (
        from_stage is None
        and ref != raw_ref
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
