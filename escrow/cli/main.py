"""Entry point: the ``escrow`` click group.

Commands are registered by module path and imported only when invoked, so
``escrow log`` does not pay for WeasyPrint or the Docker SDK.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from escrow import __version__
from escrow.cli import stdout
from escrow.cli.app import App, file_in_the_way
from escrow.errors import EscrowError

#: command name -> "module:attribute" (a click.Command)
COMMANDS: dict[str, str] = {
    "init": "escrow.cli.init_cmd:init",
    "build": "escrow.cli.build_cmd:build",
    "capture": "escrow.cli.build_cmd:capture",
    "record": "escrow.cli.build_cmd:record",
    "verify": "escrow.cli.verify_cmd:verify",
    "log": "escrow.cli.log_cmd:log",
    "show": "escrow.cli.log_cmd:show",
    "logs": "escrow.cli.build_cmd:logs",
    "ledger": "escrow.cli.ledger_cmd:ledger",
    "post": "escrow.cli.ledger_cmd:post",
    "pack": "escrow.cli.pack_cmd:pack",
    "keys": "escrow.cli.keys_cmd:keys",
    "sign": "escrow.cli.documents_cmd:sign",
    "schema": "escrow.cli.documents_cmd:schema",
    "export": "escrow.cli.documents_cmd:export",
    "rebuild": "escrow.cli.rebuild_cmd:rebuild",
    "diff": "escrow.cli.rebuild_cmd:diff",
    "deposit": "escrow.cli.deposit_cmd:deposit",
    "gc": "escrow.cli.deposit_cmd:gc",
    "serve": "escrow.cli.server_cmd:serve",
    "tokens": "escrow.cli.server_cmd:tokens",
    "attach": "escrow.cli.registry_cmd:attach",
}


class LazyGroup(click.Group):
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _pipe_errors():  # --help and --version write while parsing
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _pipe_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """click suggests a close command from ``self.commands``, which a lazy group
        leaves empty: ``escrow verfy`` said only "No such command", not "Did you mean
        'verify'?" as ``escrow ledger veriy`` does."""
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as e:
            raise click.exceptions.NoSuchCommand(
                e.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                return None  # not built yet
            raise
        cmd = getattr(module, attr)
        assert isinstance(cmd, click.Command)
        return cmd


class _Unswallowed(Exception):
    """An ``OSError`` carried past click, which ends every ``Broken pipe`` with a silent 1."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@contextlib.contextmanager
def _pipe_errors() -> Iterator[None]:
    """A ``Broken pipe`` is stdout's reader gone (end quietly, :mod:`escrow.cli.stdout`)
    or a connection's failure (said as any other system error is), never click's silent
    status 1, which here means that a check failed."""
    try:
        yield
    except OSError as e:
        if e.errno != errno.EPIPE:
            raise
        if stdout.is_closed_stdout(e):
            stdout.discard()
            raise stdout.Closed() from e
        raise _Unswallowed(e) from e


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="escrow")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--home", type=click.Path(file_okay=False), help="ESCROW_HOME for this run.")
@click.option("--db-url", metavar="URL", help="Ledger database URL (ESCROW_DB_URL).")
@click.option("--server", metavar="URL", help="Work against this escrow server (ESCROW_SERVER).")
@click.option("--token", metavar="TOKEN", help="Bearer token for --server (ESCROW_TOKEN).")
@click.pass_context
def cli(
    ctx: click.Context,
    debug: bool,
    home: str | None,
    db_url: str | None,
    server: str | None,
    token: str | None,
) -> None:
    """Record phoenix Docker builds as signed manifests in a tamper-evident ledger,
    verify and rebuild them, and render signed PDF audit packs.

    Exit codes: 0 success; 1 a check failed; 2 usage or input error;
    3 environment error (Docker engine or database unreachable, key locked);
    130/143 stopped by Ctrl-C/SIGTERM; 141 the reader of stdout went away.
    """
    overrides: dict[str, Any] = {}
    if home:
        overrides["home"] = home
    if db_url:
        overrides["db_url"] = db_url
    if server:
        overrides["server"] = server
    if token:
        overrides["token"] = token
    ctx.obj = App(debug=debug, overrides=overrides)


def main(argv: list[str] | None = None) -> None:
    """The ``escrow`` command; ``argv`` given: in-process (tests), no exit-time shortcut."""
    if argv is None:
        # The process ends when the command does: leave the objects of this run out
        # of the collections interpreter shutdown makes (~70 ms with the ledger loaded).
        import atexit
        import gc

        atexit.register(gc.freeze)
    stdout.readable_streams()  # human text never fails on a stream that is not UTF-8
    restore = _sigterm_unwinds() if argv is None else None
    try:
        _main(sys.argv[1:] if argv is None else argv)
    finally:
        if restore is not None:
            restore()


def _sigterm_unwinds() -> Callable[[], None]:
    """Make SIGTERM (a cancelled CI job, ``docker stop``, ``kill``) stop any command as
    Ctrl-C does -- :class:`~escrow.errors.Terminated` unwinds it, so that what it was
    writing is removed (a deposit import's staging folder in ESCROW_HOME, a partial pack or
    export), and it says so and exits 143 -- instead of ending the process where it stood,
    without a word, leaving those behind.  Commands that pass SIGTERM on (``escrow
    record``) or stop by it themselves (``escrow serve``) set their own handler meanwhile.
    Returns what puts the previous handler back."""
    from escrow.errors import sigterm_raises_terminated

    return sigterm_raises_terminated()


def _main(args: list[str]) -> None:
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="escrow", standalone_mode=False)
    except EscrowError as e:
        if debug:
            raise
        App.say(f"escrow: error: {e.diagnostics()}")
        sys.exit(e.exit_code)
    except click.exceptions.Abort as e:
        from escrow.errors import Terminated

        if isinstance(e.__cause__, Terminated):  # click turns it into Abort
            App.say("escrow: terminated.")
            sys.exit(143)
        App.say("escrow: aborted.")
        sys.exit(130)
    except click.ClickException as e:
        if isinstance(e, click.BadParameter):
            _name_the_variable(e)
        if isinstance(e, click.MissingParameter):
            e = _one_line(e)
        e.show(file=sys.stderr)
        sys.exit(2 if e.exit_code == 2 else e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except OSError as e:
        _fail_on_os_error(e, debug)
    except _Unswallowed as e:
        _fail_on_os_error(e.error, debug)
    except stdout.Closed:
        sys.exit(stdout.STATUS)
    sys.exit(0)


def _fail_on_os_error(e: OSError, debug: bool) -> None:
    """A system failure no command foresaw: one sentence, not a traceback."""
    if debug or e.errno is None:
        raise e
    click.echo(f"escrow: error: {_os_error(e)}", file=sys.stderr)
    sys.exit(2 if e.errno in _BAD_PATH else 3)


def _one_line(e: click.MissingParameter) -> click.ClickException:
    """A missing option with choices, said on one line ("Missing option '--role'. Choose
    from: pipeline, auditor, admin."): click lists the choices one per line, tab-indented."""
    message = " ".join(e.format_message().split())
    if not message.endswith((".", "?")):
        message += "."
    return click.UsageError(message, ctx=e.ctx)


def _name_the_variable(e: click.BadParameter) -> None:
    """A bad value that came from an option's environment variable (``envvar=``) is named
    as that variable: "Invalid value for ESCROW_SERVER_MAX_BODY (from the environment)",
    not for ``--max-body``, which the user never typed."""
    import os

    from click.core import ParameterSource

    param, ctx = e.param, e.ctx
    if param is None or ctx is None or param.name is None or not param.envvar:
        return
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
    set_ = [n for n in names if os.environ.get(n)]
    e.param_hint = f"{(set_ or names)[0]} (from the environment)"


#: errors that say the path given is wrong (exit 2), not that the machine is (exit 3)
_BAD_PATH = {errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG}


def _os_error(e: OSError) -> str:
    """``Cannot use /x/y: Not a directory.`` (``Cannot write: No space left on device.`` when
    the error names no file) and what to do."""
    import re

    where = f" {e.filename}" if e.filename else ""
    if e.filename:  # escrow's temporary file (``.NAME.XXXXXXXX``): name the file it becomes
        head, _, name = str(e.filename).rpartition("/")
        temporary = re.fullmatch(r"\.(.+)\.[a-z0-9_]{8}", name)
        if temporary is not None:
            where = f" {head}/{temporary.group(1)}" if head else f" {temporary.group(1)}"
    reason = e.strerror or str(e)
    if e.filename and e.errno in (errno.ENOTDIR, errno.EEXIST):
        from pathlib import Path

        path = Path(str(e.filename))
        blocking = file_in_the_way(path, itself=e.errno == errno.EEXIST)
        if blocking is not None:
            where, reason = f" {path}", f"{blocking} is a file, not a folder"
    if e.errno in _BAD_PATH:
        hint = "Check the path (a folder in it may be a file, or missing)."
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "Free some space and run the command again."
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = f"Check the permissions of {'that path' if where else 'the paths it uses'}."
    else:
        hint = "Run it again with --debug for the details."
    if not where:  # no file named (ENOSPC on a write, say): say what failed, not "use"
        doing = "write" if e.errno in _WRITING else "complete a file operation"
        return f"Cannot {doing}: {reason}. {hint}"
    return f"Cannot use{where}: {reason}. {hint}"


#: errors only a write gives
_WRITING = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


if __name__ == "__main__":
    main()
