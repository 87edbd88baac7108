"""Unusual but legitimate (and malformed) inputs of ``escrow build``, ``capture`` and
``record``, as a build pipeline meets them: Dockerfiles the classic builder reads
(a byte-order mark, a name continued over lines, blank lines inside an instruction,
quotes, global ARGs built from other ARGs), context file names that are not UTF-8, a
``.dockerignore`` saved with a byte-order mark, a Dockerfile given as a pipe, a
recorded command that leaves a process running, and image ID prefixes."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.capture import dockerfile as dfparse
from escrow.capture.context import ContextStream, make_context, read_dockerignore
from escrow.capture.record import record_command
from escrow.errors import InputError
from tests.conftest import BASE_TAG

from .conftest import show, write_tree

BASE_REPO = BASE_TAG.split(":")[0]


def _stages(text: str, args: dict[str, str] | None = None) -> list[tuple[str, str | None]]:
    return [(s.reference, s.name) for s in dfparse.parse(text, args).stages]


# --- the Dockerfile, read as the classic builder reads it --------------------------


def test_a_byte_order_mark_is_not_part_of_the_first_instruction() -> None:
    """Editors on Windows save a BOM; the builder drops it (the file was refused as
    "line 1 (\\ufeffFROM) comes before any FROM")."""
    assert _stages("\ufeffFROM base:1 AS b\nRUN true\n") == [("base:1", "b")]
    # a directive on the first line still counts
    lines = dfparse.logical_lines("\ufeff# escape=`\nFROM base\nRUN echo a `\n b\n")
    assert [(i.keyword, i.args) for i in lines] == [("FROM", "base"), ("RUN", "echo a b")]


def test_a_continued_line_is_joined_to_the_next_with_nothing_between() -> None:
    """``FROM registry/team/\\`` + ``app:1`` names ``registry/team/app:1`` (it was
    refused as malformed, and a ``COPY --from`` split so named the image ``registry/``)."""
    assert _stages("FROM registry.local/team/\\\napp:1\n") == [("registry.local/team/app:1", None)]
    # as for the builder, a continued line keeps its leading spaces: two words here
    with pytest.raises(InputError, match="malformed"):
        dfparse.parse("FROM registry.local/team/\\\n  app:1\n")
    df = dfparse.parse("FROM base\nCOPY --from=registry.local/tools/\\\nlint:2 /lint /lint\n")
    assert [c.reference for c in df.copy_sources()] == ["registry.local/tools/lint:2"]
    # whitespace at the join still separates words
    assert dfparse.logical_lines("RUN make \\\n    all\n")[0].args == "make all"


def test_blank_and_comment_lines_inside_an_instruction_are_skipped() -> None:
    """The builder skips an empty continuation line (with a warning); escrow ended the
    instruction there, so ``FROM \\`` + a blank line "named no image"."""
    text = "FROM \\\n\n   base:1 AS b\nRUN echo a \\\n  # a comment\n\n  && echo b\nCMD x\n"
    lines = dfparse.logical_lines(text)
    assert [(i.keyword, i.args, i.line) for i in lines] == [
        ("FROM", "base:1 AS b", 1),
        ("RUN", "echo a && echo b", 4),
        ("CMD", "x", 8),
    ]
    assert _stages(text) == [("base:1", "b")]


def test_a_tab_separates_the_keyword_as_a_space_does() -> None:
    assert _stages("FROM\tbase:1\tAS\tb\nRUN\ttrue\n") == [("base:1", "b")]
    assert [i.keyword for i in dfparse.logical_lines("FROM\tx\nRUN\ttrue\n")] == ["FROM", "RUN"]


def test_only_a_newline_ends_a_line() -> None:
    """A form feed or U+2028 inside a RUN is part of its line, as for the builder."""
    lines = dfparse.logical_lines('FROM x\nRUN printf "a\x0cb\u2028c" > /f\nCMD y\r\n')
    assert [i.keyword for i in lines] == ["FROM", "RUN", "CMD"]
    assert lines[2].args == "y"


def test_a_global_arg_default_is_expanded_with_the_args_before_it() -> None:
    """``ARG IMAGE=${REGISTRY}/app:1`` then ``FROM $IMAGE`` (refused: "expands to
    '${REGISTRY}/app:1', which is not an image reference")."""
    text = (
        "ARG REGISTRY=registry.local\nARG TAG\n"
        'ARG IMAGE="${REGISTRY}/team/app:${TAG:-1}"\nFROM $IMAGE\n'
    )
    assert _stages(text) == [("registry.local/team/app:1", None)]
    assert _stages(text, {"REGISTRY": "mirror", "TAG": "2"}) == [("mirror/team/app:2", None)]
    # a value given with --build-arg is taken as it is, not expanded again
    assert _stages(text, {"IMAGE": "other/app:3"}) == [("other/app:3", None)]
    # the recorded default is the one written (quotes removed), not an expansion
    assert dfparse.parse(text).global_args[2] == ("IMAGE", "${REGISTRY}/team/app:${TAG:-1}")


def test_quotes_are_removed_as_the_builder_removes_them() -> None:
    """``FROM "base:1"`` names ``base:1`` (escrow tried to pull ``"base:1"``)."""
    assert _stages('FROM "base:1"\n') == [("base:1", None)]
    assert _stages('ARG R=registry.local\nFROM "$R/app:1"\n') == [("registry.local/app:1", None)]
    assert _stages('ARG T\nFROM app:${T:-"1"}\n') == [("app:1", None)]
    assert _stages("ARG A=one B='two three'\nFROM app:$A\n") == [("app:one", None)]
    assert dfparse.parse("ARG A=one B='two three'\nFROM x\n").global_args == (
        ("A", "one"),
        ("B", "two three"),
    )
    # nothing is expanded inside single quotes: a malformed name, named before the build
    with pytest.raises(InputError, match=r"expands to '\$R/app:1', which is not an image"):
        dfparse.parse("ARG R=registry.local\nFROM '$R/app:1'\n")


def test_an_unknown_directive_ends_the_directives() -> None:
    """The classic builder stops reading directives at ``# foo=bar``: a later
    ``# escape=`` is a comment."""
    lines = dfparse.logical_lines("# foo=bar\n# escape=`\nFROM base\nRUN echo a `\nb\n")
    assert [i.keyword for i in lines] == ["FROM", "RUN", "B"]
    lines = dfparse.logical_lines("# syntax=docker/dockerfile:1\n# escape=`\nFROM b\nRUN a `\nb\n")
    assert [i.keyword for i in lines] == ["FROM", "RUN"]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("ARG V\nFROM ${V-base}\n", "missing ':' in substitution"),
        ('FROM "base\n', 'looking for matching "'),
        ("FROM ${V:-base\n", "missing '}'"),
        ("ARG V=${X:?needed}\nFROM base\n", "X: needed"),
    ],
    ids=["no-colon", "open-quote", "open-brace", "required"],
)
def test_what_the_builder_cannot_expand_is_one_sentence(text: str, said: str) -> None:
    with pytest.raises(InputError) as e:
        dfparse.parse(text)
    assert e.value.message.startswith("The ") and "cannot be expanded" in e.value.message
    assert said in e.value.message and "\n" not in e.value.message
    assert e.value.exit_code == 2


# --- the context --------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    """The name was found only once the engine had built (and tagged) the image."""
    ctx = write_tree(tmp_path / "c", {"Dockerfile": "FROM scratch\n", "ok.txt": "x"})
    (ctx / os.fsdecode(b"caf\xe9.txt")).write_text("latin-1 name")
    with pytest.raises(InputError) as e:
        ContextStream(ctx, None)  # what `escrow build` makes before it asks the engine
    assert "caf\\xe9.txt" in e.value.message and "not valid UTF-8" in e.value.message
    assert e.value.message.isprintable()
    with pytest.raises(InputError):
        make_context(ctx, None, keep_archive=False)
    # excluded, it is no longer in the way
    (ctx / ".dockerignore").write_text("caf*\n")
    with make_context(ctx, None) as made:
        assert sorted(f["path"] for f in made.files) == [".dockerignore", "Dockerfile", "ok.txt"]


def test_a_dockerignore_saved_with_a_byte_order_mark_excludes_its_first_pattern(
    tmp_path: Path,
) -> None:
    """The docker CLI drops the BOM; escrow read the first pattern as ``\\ufeffsecrets``
    and sent (and deposited) the folder it excludes."""
    ctx = write_tree(
        tmp_path / "c",
        {"Dockerfile": "FROM scratch\n", "secrets/key": "k", "app.txt": "a"},
    )
    (ctx / ".dockerignore").write_bytes(b"\xef\xbb\xbfsecrets\r\n")
    assert read_dockerignore(ctx) == ["secrets"]
    with make_context(ctx, None) as made:
        assert sorted(f["path"] for f in made.files) == [".dockerignore", "Dockerfile", "app.txt"]


def test_a_dockerignore_that_is_not_utf8(tmp_path: Path) -> None:
    """A Latin-1 comment is a comment; a Latin-1 pattern is one clear sentence (both
    were a UnicodeDecodeError traceback)."""
    ctx = write_tree(tmp_path / "c", {"Dockerfile": "FROM scratch\n", "logs/a": "x"})
    (ctx / ".dockerignore").write_bytes(b"# \xdcbersetzungen\nlogs\n")
    assert read_dockerignore(ctx) == ["logs"]
    (ctx / ".dockerignore").write_bytes(b"logs\n\xdcbersetzungen\n")
    with pytest.raises(InputError) as e:
        read_dockerignore(ctx)
    assert e.value.message == f"Line 2 of {ctx / '.dockerignore'} is not valid UTF-8."


def test_a_dockerfile_that_is_a_pipe_or_a_folder_is_named_as_such(tmp_path: Path) -> None:
    """``-f <(generate)`` was "There is no Dockerfile at /dev/fd/63"."""
    ctx = write_tree(tmp_path / "c", {"Dockerfile": "FROM scratch\n"})
    fifo = tmp_path / "df.pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError) as e:
        ContextStream(ctx, fifo)
    assert e.value.message == f"The Dockerfile {fifo} is not a regular file (a pipe or a device)."
    with pytest.raises(InputError) as e:
        ContextStream(ctx, ctx)
    assert e.value.message == f"The Dockerfile {ctx} is a directory."


def test_a_syntax_line_is_not_blamed_when_the_engine_refuses_a_dockerfile() -> None:
    """The classic builder reads ``# syntax=`` as a comment: a typo (``RUNN``) in a
    Dockerfile that has one was explained as "BuildKit-only syntax (a `# syntax=`
    frontend) … write a heredoc as RUN lines"."""
    from escrow.capture.build import _buildkit_hint

    assert _buildkit_hint(b"# syntax=docker/dockerfile:1\nFROM a\nRUNN echo hi\n") is None
    hint = _buildkit_hint(b"# syntax=docker/dockerfile:1\nFROM a\nRUN <<EOF\necho\nEOF\n")
    assert hint is not None and "(heredocs)" in hint and "syntax=" not in hint


# --- escrow record ------------------------------------------------------------------


def test_record_refuses_a_command_whose_name_is_empty(tmp_path: Path) -> None:
    """``escrow record -- "$BUILD_TOOL" build`` with the variable unset was recorded as
    "cannot run : Permission denied" (exit 126)."""
    from escrow.errors import UsageError

    blobs = BlobStore(tmp_path / "home" / "blobs")
    with pytest.raises(UsageError) as e:
        record_command(["", "build"], context=tmp_path, blobs=blobs)
    assert e.value.message == "The name of the command to record is empty."
    assert e.value.exit_code == 2


def test_record_ends_when_the_command_exits_though_a_process_it_left_holds_its_output(
    tmp_path: Path,
) -> None:
    """``nohup server &`` in a build script keeps the output pipe open: escrow waited
    for that process to end (forever, for a daemon) and recorded what it wrote later,
    and the time, as the command's."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    script = (
        # the background process holds stdout until the test opens the gate
        f"(read line < {gate}; echo late-output-of-the-background-process) &\n"
        "echo the-command-itself\n"
    )
    blobs = BlobStore(tmp_path / "home" / "blobs")
    work = tmp_path / "w"
    work.mkdir()
    done: list[Any] = []
    runner = threading.Thread(
        target=lambda: done.append(record_command(["sh", "-c", script], context=work, blobs=blobs)),
        daemon=True,
    )
    runner.start()
    runner.join(timeout=60)  # a guard against a hang, not a measure of speed
    ended_by_itself = not runner.is_alive()
    fd = os.open(gate, os.O_WRONLY)  # let the background process go
    os.write(fd, b"go\n")
    os.close(fd)
    runner.join()
    assert ended_by_itself, "escrow record waited for the process the command left running"
    outcome = done[0]
    assert outcome.exit_code == 0 and outcome.status == "succeeded"
    log = blobs.path(outcome.statement["predicate"]["command"]["log"]["sha256"]).read_bytes()
    assert log == b"the-command-itself\n"


# --- against the engine ---------------------------------------------------------------


def _image_id(ref: str) -> str | None:
    out = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True
    )
    return out.stdout.strip() if out.returncode == 0 else None


def _rmi(*refs: str) -> None:
    subprocess.run(["docker", "rmi", *refs], capture_output=True)


@pytest.mark.docker
def test_escrow_build_reads_the_dockerfile_as_the_engine_does(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """One Dockerfile with a BOM, a global ARG made of another, a FROM continued over a
    blank line, quotes and a tab: escrow refused it; the engine builds it, and the
    recorded bases are the images the engine used."""
    registry, _, name = BASE_REPO.rpartition("/")
    text = (
        "\ufeff# syntax=docker/dockerfile:1\n"
        f"ARG NS={registry}\n"
        'ARG IMAGE="${NS}/' + name + ':${TAG:-latest}"\n'
        "FROM \\\n\n  $IMAGE AS first\n"
        "RUN echo built > /built\n"
        'FROM\t"${NS}/\\\n' + name + ':latest"\n'
        "COPY --from=first /built /built\n"
    )
    ctx = tmp_path / "c"
    ctx.mkdir()
    (ctx / "Dockerfile").write_bytes(text.encode("utf-8"))
    tag = "escrow-test/hunt-inputs-parse:1"
    try:
        r = cli(["build", str(ctx), "-t", tag, "--no-deposit", "--json"])
        assert r.exit_code == 0, r.stderr
        bases = show(r.json()["index"])["predicate"]["inputs"]["baseImages"]
        assert [(b["stage"], b["reference"], b["imageId"]) for b in bases] == [
            (0, BASE_TAG, base_image),
            (1, BASE_TAG, base_image),
        ]
        assert r.json()["image_id"] == _image_id(tag)
    finally:
        _rmi(tag)


@pytest.mark.docker
def test_escrow_build_refuses_a_name_that_is_not_utf8_before_it_builds(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """It built and tagged the image, then refused to record it."""
    ctx = write_tree(tmp_path / "c", {"Dockerfile": f"FROM {BASE_TAG}\nRUN true\n"})
    (ctx / os.fsdecode(b"r\xe9sum\xe9.txt")).write_text("x")
    tag = "escrow-test/hunt-inputs-latin1:1"
    before = cli(["log", "--json"]).stdout
    try:
        r = cli(["build", str(ctx), "-t", tag, "--no-deposit"])
        assert r.exit_code == 2, r.stderr
        assert "r\\xe9sum\\xe9.txt" in r.stderr and "not valid UTF-8" in r.stderr
        assert "step 1" not in r.stderr  # no step ran
        assert _image_id(tag) is None
        assert cli(["log", "--json"]).stdout == before
    finally:
        _rmi(tag)


@pytest.mark.docker
def test_escrow_build_records_a_context_folder_whose_name_is_not_utf8(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """The folder name is the default project: the build ran, then "The document cannot
    be canonicalised" (exit 2) and nothing was recorded."""
    ctx = write_tree(
        tmp_path / os.fsdecode(b"app-\xff"), {"Dockerfile": f"FROM {BASE_TAG}\nRUN true\n"}
    )
    tag = "escrow-test/hunt-inputs-folder:1"
    try:
        r = cli(["build", str(ctx), "-t", tag, "--no-deposit", "--json"])
        assert r.exit_code == 0, ascii(r.stderr)  # its path is not UTF-8
        assert r.json()["project"] == "app-\\xff"
        statement = show(r.json()["index"])
        assert statement["predicate"]["build"]["project"] == "app-\\xff"
        assert statement["predicate"]["image"]["id"] == _image_id(tag)
    finally:
        _rmi(tag)


def _ambiguous_prefix(base: str, tmp_path: Path) -> tuple[str, list[str]]:
    """A hex digit several of the engine's image IDs begin with (images are built until
    two do), and the tags made for it."""
    made: list[str] = []
    ctx = tmp_path / "many"
    ctx.mkdir()
    for n in range(17):  # 17 IDs: two begin with the same digit
        ids = subprocess.run(
            ["docker", "images", "-a", "-q", "--no-trunc"], capture_output=True, text=True
        ).stdout.split()
        firsts = [i.removeprefix("sha256:")[0] for i in set(ids)]
        shared = sorted({d for d in firsts if firsts.count(d) > 1})
        if shared:
            return shared[0], made
        (ctx / "Dockerfile").write_text(f"FROM {base}\nLABEL hunt.inputs={n}\n")
        tag = f"escrow-test/hunt-inputs-many:{n}"
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, str(ctx)], check=True, capture_output=True
        )
        made.append(tag)
    raise AssertionError("no two image IDs begin with the same digit")


@pytest.mark.docker
def test_capture_of_a_prefix_several_image_ids_begin_with_says_so(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """The engine answers "no such image" for it; escrow said the image does not exist."""
    prefix, made = _ambiguous_prefix(BASE_TAG, tmp_path)
    try:
        r = cli(["capture", prefix])
        assert r.exit_code == 2, r.stderr
        assert (
            f"The image {prefix} does not exist in the Docker Engine, or more than one "
            "image ID begins with it." in r.stderr
        )
    finally:
        if made:
            _rmi(*made)


@pytest.mark.docker
def test_capture_of_an_untagged_image_by_a_short_id_is_not_a_project_named_by_it(
    escrow_home: Path, cli: Any, base_image: str, tmp_path: Path
) -> None:
    """``escrow capture 3f9a2c1d`` recorded the project ``3f9a2c1d``."""
    ctx = write_tree(tmp_path / "c", {"Dockerfile": f"FROM {BASE_TAG}\nLABEL hunt.untagged=1\n"})
    image = subprocess.run(
        ["docker", "build", "-q", str(ctx)], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        short = image.removeprefix("sha256:")[:9]
        r = cli(["capture", short, "--json"])
        assert r.exit_code == 0, r.stderr
        assert r.json()["image_id"] == image
        assert r.json()["project"] == "default"
    finally:
        _rmi(image)
