"""Every ``--deposit-store`` option says the same: a folder or oci://HOST[:PORT]/REPO, and the
full default chain (ESCROW_DEPOSIT_STORE, config.json, ESCROW_HOME/deposits)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from escrow.cli.main import COMMANDS
from escrow.cli.main import cli as escrow_cli


def _walk(cmd: click.Command, path: tuple[str, ...]) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _walk(sub, (*path, name))


def _store_options() -> dict[str, click.Option]:
    ctx = click.Context(escrow_cli)
    found: dict[str, click.Option] = {}
    for name in COMMANDS:
        top = escrow_cli.get_command(ctx, name)
        assert top is not None
        for path, cmd in _walk(top, (name,)):
            for p in cmd.params:
                if isinstance(p, click.Option) and "--deposit-store" in p.opts:
                    found[path] = p
    return found


def test_every_deposit_store_option_reads_alike() -> None:
    found = _store_options()
    assert {"build", "rebuild", "deposit add", "deposit import", "gc"} <= set(found)
    texts = {(o.metavar, o.help) for o in found.values()}
    assert len(texts) == 1, {k: (o.metavar, o.help) for k, o in found.items()}
    ((metavar, help_text),) = texts
    assert metavar is not None and "oci://HOST[:PORT]/REPO" in metavar
    assert help_text is not None
    for part in ("ESCROW_DEPOSIT_STORE", "config.json", "ESCROW_HOME/deposits"):
        assert part in help_text


def test_rebuild_help_shows_it(cli: Any) -> None:
    r = cli(["rebuild", "--help"])
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "--deposit-store PATH|oci://HOST[:PORT]/REPO" in text
    assert "deposit_store in config.json" in text


def test_config_json_deposit_store_is_what_rebuild_uses(
    escrow_home: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """What the help says: without the option or the variable, config.json's deposit_store."""
    import json

    from escrow.deposit.store import store_location

    monkeypatch.delenv("ESCROW_DEPOSIT_STORE", raising=False)
    config = escrow_home / "config.json"
    config.write_text(json.dumps({"deposit_store": "oci://localhost:5000/escrow/deposits"}))
    assert store_location(escrow_home) == "oci://localhost:5000/escrow/deposits"
