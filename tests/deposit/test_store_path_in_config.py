"""``deposit_store`` in ``config.json``: a folder is relative to ESCROW_HOME, where the file
is, as its ``key`` and ``log_key`` paths are, not to the folder the command runs in (a build
in one folder deposited into a store that a check run from another folder did not find);
``~`` is the user's home; an ``oci://`` store is taken as written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from escrow.deposit.store import store_location


@pytest.mark.parametrize(
    ("given", "where"),
    [
        ("stores/deposits", "HOME/stores/deposits"),
        ("~/deposits", "USER/deposits"),
        ("/srv/deposits", "/srv/deposits"),
        ("oci://127.0.0.1:5000/team/deposits", "oci://127.0.0.1:5000/team/deposits"),
    ],
)
def test_a_store_in_config_json_is_found_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str, where: str
) -> None:
    home, user, elsewhere = tmp_path / "home", tmp_path / "user", tmp_path / "elsewhere"
    for folder in (home, user, elsewhere):
        folder.mkdir()
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.delenv("ESCROW_DEPOSIT_STORE", raising=False)
    monkeypatch.chdir(elsewhere)
    (home / "config.json").write_text(json.dumps({"deposit_store": given}))
    expected = where.replace("HOME", str(home)).replace("USER", str(user))
    assert store_location(home) == expected
