"""The command line as a new user reads it: ``escrow --help`` and every command's and
subcommand's ``--help``, its usage errors and its shell completion.

Properties over every command (listed from ``COMMANDS`` and the click groups), not frozen
text: the same option is spelled, shown and described alike wherever it appears; a help
text names only placeholders and options the user can see; numbers are "integers", not
click's "integer range"; a mistyped command is said to be one, with the commands it may
mean; completion offers what exists.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from escrow.cli.main import COMMANDS
from escrow.cli.main import cli as escrow_cli
from tests.conftest import option_help, run_cli

ROOT = Path(__file__).resolve().parents[2]
ESCROW = str(Path(sys.executable).with_name("escrow"))

#: ``ledger checkpoint`` and ``ledger leaf`` were being changed elsewhere while the rest
#: was made consistent: they still show click's own ``INTEGER RANGE`` / "(default: …)"
LEFT_ALONE: set[tuple[str, str]] = set()


def _commands() -> Iterator[tuple[str, click.Command]]:
    """Every command and subcommand, by its path (``deposit export``)."""
    ctx = click.Context(escrow_cli)
    for name in COMMANDS:
        top = escrow_cli.get_command(ctx, name)
        assert top is not None, name
        yield from _walk(top, (name,))


def _walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, (*path, name))


def _options(flag: str) -> dict[str, click.Option]:
    """The option spelled ``flag`` of each command that has one."""
    found: dict[str, click.Option] = {}
    for path, cmd in _commands():
        for p in cmd.params:
            if isinstance(p, click.Option) and flag in p.opts + p.secondary_opts:
                found[path] = p
    return found


def _metavar(cmd: click.Command, p: click.Parameter) -> str:
    return p.make_metavar(click.Context(cmd))


def _help_of(path: str) -> str:
    r = run_cli([*path.split(), "--help"])
    assert r.exit_code == 0, (path, r.stderr)
    return r.stdout


# -- the same option, alike everywhere ------------------------------------------------


def test_every_json_option_reads_alike() -> None:
    found = _options("--json")
    assert len(found) > 30, sorted(found)
    assert {(tuple(o.opts), o.is_flag, o.help) for o in found.values()} == {
        (("--json",), True, "Print one JSON document on stdout and nothing else.")
    }


def test_every_quiet_option_is_spelled_and_said_alike() -> None:
    """``-q, --quiet`` says what it silences and that errors still show (``build`` and
    ``record`` said only "No progress on stderr.", and ``record -q`` also hides the
    command's own output)."""
    found = {**_options("-q"), **_options("--quiet")}
    assert {"build", "record", "rebuild", "pack"} <= set(found), sorted(found)
    for path, o in found.items():
        assert o.opts == ["-q", "--quiet"] and o.is_flag, path
        assert o.help is not None and o.help.startswith("No progress on stderr"), (path, o.help)
        assert "errors" in o.help, (path, o.help)
    assert "output" in (found["record"].help or "")


def test_every_passphrase_prompt_reads_alike() -> None:
    found = _options("--passphrase-prompt")
    assert {"sign", "export", "keys generate", "keys rotate"} <= set(found), sorted(found)
    texts = {o.help for o in found.values()}
    assert len(texts) == 1, {k: o.help for k, o in found.items()}
    (text,) = texts
    assert text is not None and "ESCROW_KEY_PASSPHRASE" in text


@pytest.mark.parametrize(
    "flag",
    [
        "--project",
        "--since",
        "--until",
        "--tree-size",
        "--context",
        "--file",
        "--workdir",
        "--deposit-store",
        "--since-checkpoint",
        "--origin",
        "--name",
        "--workers",
    ],
)
def test_the_same_option_shows_the_same_metavar(flag: str) -> None:
    """``--context PATH`` (capture, record) against ``--context DIRECTORY`` (deposit add,
    rebuild), ``-f, --file PATH`` against ``FILE``, and the like."""
    found = _options(flag)
    assert len(found) >= 2, (flag, sorted(found))
    commands = dict(_commands())
    shown = {
        path: _metavar(commands[path], o)
        for path, o in found.items()
        if (path, flag) not in LEFT_ALONE
    }
    assert len(set(shown.values())) == 1, shown


def test_no_help_shows_click_range_type_names() -> None:
    """click shows a bounded number as ``INTEGER RANGE``, which reads as if a range such as
    3-9 were asked for: every one has a metavar saying what it is (N, INDEX, BYTES…)."""
    shown = {
        (path, p.opts[0] if isinstance(p, click.Option) else p.name): _metavar(cmd, p)
        for path, cmd in _commands()
        for p in cmd.params
        if not (isinstance(p, click.Option) and p.is_flag)
    }
    ranged = {k: v for k, v in shown.items() if "RANGE" in v and k not in LEFT_ALONE}
    assert not ranged, ranged


def test_defaults_are_shown_as_click_shows_them() -> None:
    """``[default: …]`` as click writes the defaults it shows, not ``(default: …)`` in some
    options and ``[default: …]`` in others."""
    bad = {
        (path, o.opts[0]): o.help
        for path, cmd in _commands()
        for o in cmd.params
        if isinstance(o, click.Option)
        and "(default:" in (o.help or "")
        and (path, o.opts[0]) not in LEFT_ALONE
    }
    assert not bad, bad


def test_a_new_key_type_is_said_for_the_command_at_hand() -> None:
    """``keys generate --type`` spoke of ``rotate`` and ``keys rotate --type`` of
    ``generate`` ("default: Ed25519 for generate, the old key's for rotate")."""
    generate = option_help(_help_of("keys generate"), "--type")
    rotate = option_help(_help_of("keys rotate"), "--type")
    assert "rotate" not in generate and "ed25519" in generate, generate
    assert "generate" not in rotate and "old key" in rotate, rotate


def test_global_options_show_what_readme_names() -> None:
    """README: ``escrow --home DIR``, ``--db-url URL``, ``--server URL``, ``--token TOKEN``."""
    text = " ".join(_help_of("").split())
    for shown in ("--db-url URL", "--server URL", "--token TOKEN"):
        assert shown in text, shown
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`--db-url URL`, `--server URL`, `--token TOKEN`" in readme


# -- what a help text names ------------------------------------------------------------

#: capitalised words that are not placeholders
_WORDS = {
    "API", "CA", "COPY", "DSSE", "ECDSA", "FIFO", "FROM", "HTTP", "ID", "JSON", "MB", "OCI",
    "PAE", "PDF", "PEM", "PKCS", "RFC", "SHA", "SLSA", "TOC", "TSA", "URI", "URL", "UTC",
    "UTF",
}  # fmt: skip


def _placeholders(text: str) -> set[str]:
    """The upper-case placeholders a help text uses (``INDEX``, ``FILE``), leaving out what
    is quoted (`escrow …`), environment variables, a column's name, a value written after
    an option (``--after LAST_INDEX``) and image references (``HOST[:PORT]/REPO``)."""
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"--[a-z-]+[ =][A-Z_.]+", "", text)
    text = re.sub(r"HOST(\[:PORT\])?/REPO", "", text)
    text = re.sub(r"\b[A-Z]+ column", "", text)
    words = set(re.findall(r"(?<![\w$/.<-])([A-Z][A-Z_]+)(?![\w<])", text))
    return {w for w in words if w not in _WORDS and not w.startswith(("ESCROW_", "DOCKER_"))}


def _shown_names(cmd: click.Command) -> set[str]:
    """The placeholders a command's usage and options show (a group's with its
    subcommands')."""
    names: set[str] = set()
    for p in cmd.params:
        if not (isinstance(p, click.Option) and p.is_flag):
            names |= set(re.findall(r"[A-Z][A-Z_]+", _metavar(cmd, p)))
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            names |= _shown_names(sub)
    return names


def test_help_names_only_placeholders_the_user_sees() -> None:
    """``deposit export`` spoke of INDEX… under ``Usage: … INDEXES...``, ``schema
    validate`` of FILE(s) under ``FILES...``, ``keys rotate`` of "key NAME" where only
    ``--name TEXT`` showed."""
    wrong = {}
    for path, cmd in _commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        unknown = set().union(*(_placeholders(t) for t in texts)) - _shown_names(cmd)
        if unknown:
            wrong[path] = sorted(unknown)
    assert not wrong, wrong


def test_help_names_only_options_there_are() -> None:
    """An option a help text names is the command's own, a subcommand's (a group's
    summary), a global one (``escrow --server``), or quoted as another command's."""
    root = {o for p in escrow_cli.params for o in p.opts + p.secondary_opts}

    def opts(cmd: click.Command) -> set[str]:
        own = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                own |= opts(sub)
        return own

    wrong = {}
    for path, cmd in _commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        named = set()
        for t in texts:
            t = re.sub(r"`[^`]*`", "", t)
            t = re.sub(r"escrow [a-z -]+ --[a-z-]+", "", t)  # another command's option
            t = t.replace("COPY --from", "")  # Dockerfile syntax
            named |= set(re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", t))
        unknown = named - opts(cmd) - root
        if unknown:
            wrong[path] = sorted(unknown)
    assert not wrong, wrong


def test_no_help_points_into_the_repository() -> None:
    """A user of the installed package has no docs/ (``export --help`` sent them to the
    project's docs/slsa.md)."""
    for path, cmd in _commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for t in texts:
            assert not re.search(r"\b(docs|tests|scripts|examples)/|README", t), (path, t)


# -- usage errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["show", "x"],
        ["log", "--limit", "x"],
        ["deposit", "check", "x"],
        ["deposit", "1x"],
        ["serve", "--port", "x"],
        ["verify", "--threshold", "x"],
        ["export", "--slsa", "x"],
    ],
)
def test_a_bad_number_is_said_to_be_no_integer(args: list[str]) -> None:
    """Not "'x' is not a valid integer range." (click's name for a bounded integer)."""
    r = run_cli(args)
    assert r.exit_code == 2, r.stderr
    error = r.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"Error: Invalid value for '[^']+': '1?x' is not a valid integer\.", error)


def test_a_bad_seconds_value_is_said_to_be_no_number() -> None:
    r = run_cli(["serve", "--request-timeout", "soon"])
    assert r.exit_code == 2
    assert "'soon' is not a valid number." in r.stderr
    assert "range" not in r.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["verfy", "1"], "No such command 'verfy'. Did you mean 'verify'?"),
        (["ledgr"], "No such command 'ledgr'. Did you mean 'ledger'?"),
        (["deposit", "expor", "1"], "No such command 'expor'. Did you mean 'export'?"),
        (["deposit", "chek", "1"], "No such command 'chek'. Did you mean 'check'?"),
        (["keys", "generat"], "No such command 'generat'. Did you mean 'generate'?"),
    ],
)
def test_a_mistyped_command_is_named_with_what_it_may_mean(args: list[str], said: str) -> None:
    """``escrow verfy`` said only "No such command" (the lazily loaded top level gave
    click no commands to suggest from), and ``escrow deposit expor 1`` took the typo for
    ``deposit add``'s INDEX ("'expor' is not a valid integer range")."""
    r = run_cli(args)
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"Error: {said}", r.stderr


def test_deposit_index_still_means_deposit_add(escrow_home: Path) -> None:
    r = run_cli(["deposit", "0"])
    assert r.exit_code == 2
    assert "Entry 0 is not a build manifest" in r.stderr, r.stderr


def test_a_missing_option_with_choices_is_one_line() -> None:
    """click listed the choices one per line, tab-indented."""
    r = run_cli(["tokens", "create", "--name", "ci"])
    assert r.exit_code == 2
    error = r.stderr.strip().splitlines()[-1]
    assert error == "Error: Missing option '--role'. Choose from: pipeline, auditor, admin.", (
        r.stderr
    )
    assert "\t" not in r.stderr


# -- what a help text says the command does ---------------------------------------------


def test_schema_list_shows_the_title_its_help_promises() -> None:
    assert "title" in _help_of("schema list")
    listed = run_cli(["schema", "list", "--json"]).json()["schemas"]
    text = run_cli(["schema", "list"]).stdout
    for schema in listed:
        line = next(x for x in text.splitlines() if x.startswith(schema["name"] + " "))
        assert schema["id"] in line and schema["title"] in line, line


def test_deposit_check_lists_the_exit_codes_it_returns(escrow_home: Path) -> None:
    text = " ".join(_help_of("deposit check").split())
    assert "2 no such build entry" in text and "3 the ledger or the deposit store" in text
    r = run_cli(["deposit", "check", "99"])
    assert r.exit_code == 2, r.stderr


@pytest.mark.docker
def test_record_says_when_it_does_not_exit_with_the_command_s_code(escrow_home: Path) -> None:
    """``record --help`` said escrow exits with the command's own code, always: an --image
    the command did not make gives 1 although the command gave 0."""
    text = " ".join(_help_of("record").split())
    assert "1 when the command succeeded but the --image" in text, text
    r = run_cli(["record", "--image", "hunt-cli-help-never-built:1", "--", "true"])
    assert r.exit_code == 1, r.stderr


def test_record_quiet_keeps_the_command_s_output_off_stderr(
    escrow_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``record -q`` says: the command's output is not echoed, and is recorded."""
    monkeypatch.chdir(tmp_path)
    loud = run_cli(["record", "--json", "--", "sh", "-c", "echo hunt-cli-marker"])
    quiet = run_cli(["record", "-q", "--json", "--", "sh", "-c", "echo hunt-cli-marker"])
    assert loud.exit_code == quiet.exit_code == 0, (loud.stderr, quiet.stderr)
    assert "hunt-cli-marker" in loud.stderr
    assert "hunt-cli-marker" not in quiet.stderr
    logs = run_cli(["logs", str(quiet.json()["index"])])
    assert "hunt-cli-marker" in logs.stdout


# -- shell completion ----------------------------------------------------------------------


def _complete(words: str, cword: int) -> list[tuple[str, str]]:
    """What ``escrow``'s bash completion answers for ``words`` (click's protocol, as the
    script ``_ESCROW_COMPLETE=bash_source escrow`` prints asks it)."""
    from click.testing import CliRunner

    env = {"_ESCROW_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    r = CliRunner().invoke(escrow_cli, [], prog_name="escrow", env=env)
    assert r.exit_code == 0, r.output
    return [tuple(line.split(",", 1)) for line in r.stdout.splitlines()]  # type: ignore[misc]


def test_completion_offers_every_command_and_option() -> None:
    assert _complete("escrow ", 1) == [("plain", n) for n in sorted(COMMANDS)]
    for path, cmd in _commands():
        words = f"escrow {path} --"
        offered = {v for _, v in _complete(words, len(words.split()) - 1)}
        longs = {o for p in cmd.params for o in p.opts + p.secondary_opts if o.startswith("--")}
        assert offered == longs | {"--help"}, path


@pytest.mark.parametrize(
    ("words", "cword", "offered"),
    [
        ("escrow schema show ", 3, {"build-manifest", "slsa-provenance", "key-event"}),
        ("escrow schema validate --schema bu", 4, {"build-manifest"}),
        ("escrow log --kind ", 3, {"build-manifest", "audit-pack"}),
        ("escrow keys rotate --type ", 4, {"ed25519", "ecdsa-p256"}),
        ("escrow deposit ex", 2, {"export"}),
    ],
)
def test_completion_offers_values_that_exist(words: str, cword: int, offered: set[str]) -> None:
    got = _complete(words, cword)
    assert offered <= {v for _, v in got}, got
    assert all(kind == "plain" for kind, _ in got), got


@pytest.mark.parametrize(
    ("words", "cword"),
    [
        ("escrow sign ", 2),
        ("escrow post ", 2),
        ("escrow schema validate ", 3),
        ("escrow verify --envelope ", 3),
    ],
)
def test_completion_of_a_file_argument_completes_paths(words: str, cword: int) -> None:
    """These take '-' for stdin, so they are not click.Path: they completed nothing."""
    assert _complete(words, cword) == [("file", "")]


def test_the_bash_script_completes_through_the_installed_command(tmp_path: Path) -> None:
    """README: ``eval "$(_ESCROW_COMPLETE=bash_source escrow)"``, then the shell asks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESCROW_", "_ESCROW"))}
    env["PATH"] = f"{Path(ESCROW).parent}:{env.get('PATH', '')}"
    script = (
        'eval "$(_ESCROW_COMPLETE=bash_source escrow)"\n'
        "COMP_WORDS=(escrow ledger ver); COMP_CWORD=2; _escrow_completion escrow\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["verifier-key", "verify"], (r.stdout, r.stderr)
