"""``escrow keys --help``: its summary names every keys command (it left out ``retire``)."""

from __future__ import annotations

from typing import Any

from escrow.cli.keys_cmd import keys


def test_summary_names_every_subcommand(cli: Any) -> None:
    r = cli(["keys", "--help"])
    assert r.exit_code == 0, r.stderr
    summary = " ".join(r.stdout.split("Options:", 1)[0].split())
    for name in keys.commands:
        assert name in summary, name
    top = cli(["--help"])
    line = next(x for x in top.stdout.splitlines() if x.strip().startswith("keys "))
    assert "retire" in line


def test_module_docstring_names_retire() -> None:
    import escrow.cli.keys_cmd as module

    first = (module.__doc__ or "").splitlines()[0]
    assert "retire" in first
