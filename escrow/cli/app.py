"""The application object every command gets in ``ctx.obj``: settings and output."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from escrow.config import Settings, load_settings

if TYPE_CHECKING:
    from escrow.ledger.store import Ledger


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

    def ledger(self) -> Ledger:
        """Open the local ledger (SQLite by default, ``ESCROW_DB_URL`` otherwise)."""
        from escrow.ledger.store import Ledger

        return Ledger.open(self.settings)

    # -- output ----------------------------------------------------------
    @staticmethod
    def emit_json(document: Any) -> None:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
        sys.stdout.flush()

    @staticmethod
    def say(message: str) -> None:
        """Human text: stderr."""
        click.echo(message, err=True)

    @staticmethod
    def out(message: str) -> None:
        """Human result text, when ``--json`` is not given: stdout."""
        click.echo(message)


pass_app = click.make_pass_decorator(App)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else."
)
