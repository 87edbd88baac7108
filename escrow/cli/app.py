"""The application object every command gets in ``ctx.obj``: settings and output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from escrow.config import Settings, load_settings

if TYPE_CHECKING:
    from escrow.ledger.store import Ledger
    from escrow.server.client import RemoteLedger


@dataclass
class App:
    """Carries configuration and the output conventions.

    * results go to stdout — one JSON document with ``--json``;
    * human text and progress go to stderr.
    """

    debug: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(**self.overrides)

    def ledger(self, *, readonly: bool = False) -> Ledger | RemoteLedger:
        """The ledger this run works on.

        A server when ``--server``/``ESCROW_SERVER`` is set (the client verifies every
        proof and checkpoint it is given), else the local one (SQLite by default,
        ``ESCROW_DB_URL`` otherwise).  ``readonly``: the command only reads (see
        :meth:`local_ledger`).
        """
        if self.settings.server:
            from escrow.server.client import RemoteLedger

            return _closed_after_command(RemoteLedger.open(self.settings))
        return self.local_ledger(readonly=readonly)

    def local_ledger(self, *, create: bool = False, readonly: bool = False) -> Ledger:
        """The local ledger, even when a server is configured (``init``, ``pack``, ``deposit
        export``, ``serve``, ``ledger checkpoint --tree-size``).

        Only ``escrow init`` creates one (``create=True``): a mistyped ESCROW_HOME must
        not look like an empty, healthy ledger.  ``readonly``: a SQLite ledger an older
        escrow made is read from a migrated copy and left as it is (said on stderr).
        """
        from escrow.ledger.store import Ledger

        ledger = Ledger.open(self.settings, create=create, readonly=readonly)
        if ledger.copied_from is not None:
            self.say(
                f"escrow: the ledger {ledger.copied_from} was made by an older escrow; it is "
                "read from a migrated copy and left as it is (the next command that writes "
                "to it migrates it)."
            )
        return _closed_after_command(ledger)

    # -- output ----------------------------------------------------------
    @staticmethod
    def emit_json(document: Any) -> None:
        """One JSON document on stdout, written as its bytes whatever the locale (ASCII:
        a character beyond it is escaped, ``"caf\\u00e9"``)."""
        from escrow.cli.stdout import write_bytes

        write_bytes((json.dumps(document, indent=2, sort_keys=False) + "\n").encode())

    @staticmethod
    def exact(text: str) -> None:
        """An exact format on stdout (a signed note, a verifier key, a document): its UTF-8
        bytes whatever the locale, as a verifier must be given them (see
        :mod:`escrow.cli.stdout`); nothing added, nothing escaped."""
        from escrow.cli.stdout import write_bytes

        write_bytes(text.encode("utf-8", "surrogateescape"))

    @staticmethod
    def say(message: str) -> None:
        """Human text: stderr (control characters shown escaped, see ``printable``; a
        character stderr's encoding lacks written readably, see :mod:`escrow.cli.stdout`)."""
        from escrow.text import printable

        # sys.stderr itself: click writes UTF-8 to an ASCII stream, whatever it was told
        click.echo(printable(message), file=sys.stderr)

    @staticmethod
    def out(message: str) -> None:
        """Human result text, when ``--json`` is not given: stdout (control characters shown
        escaped: names and messages recorded by others must not drive the terminal; a
        character stdout's encoding lacks written readably, see :mod:`escrow.cli.stdout`)."""
        from escrow.text import printable

        click.echo(printable(message), file=sys.stdout)


_L = TypeVar("_L", "Ledger", "RemoteLedger")


def _closed_after_command(ledger: _L) -> _L:
    """Close ``ledger`` when the running command ends (closing twice is harmless), so
    that a command need not hold it in a ``with`` block to release its connections."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(ledger.close)
    return ledger


pass_app = click.make_pass_decorator(App)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else."
)

#: ``--passphrase-prompt`` of every command that reads or writes a private key
passphrase_prompt_option = click.option(
    "--passphrase-prompt",
    is_flag=True,
    help="Ask for the key passphrase (one line of stdin when it is not a terminal) "
    "instead of reading ESCROW_KEY_PASSPHRASE.",
)


def complete_paths(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of a file argument that is not a ``click.Path`` (``-`` is stdin):
    the shell's own completion of paths, as a ``click.Path`` gets."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


class Integer(click.IntRange):
    """An integer within bounds, called an integer in errors and help: click's ``IntRange``
    calls itself an "integer range" ("'x' is not a valid integer range.", ``--limit INTEGER
    RANGE``), which reads as if a range such as 3-9 were asked for."""

    name = "integer"


class Number(click.FloatRange):
    """A number within bounds (click's ``FloatRange``, "float range" to a user)."""

    name = "number"


def file_in_the_way(path: Path, *, itself: bool = False) -> Path | None:
    """The first folder of ``path`` (or ``path`` itself, with ``itself``) that is a file."""
    candidates = [path, *path.parents] if itself else list(path.parents)
    return next((p for p in candidates if p.exists() and not p.is_dir()), None)
