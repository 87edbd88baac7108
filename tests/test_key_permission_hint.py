"""A signing key the user may not read says what to do.

Regression: in a home root made, `escrow build`/`capture`/`record` as another user said
"The signing key …/build.key.pem cannot be read: Permission denied." and nothing more.
(The suite runs as root, whom no permission stops: the refusal is given as the kernel
gives it.)"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from escrow.errors import KeyLocked
from escrow.signing.keyfile import read_key_file


def test_a_key_the_user_may_not_read_has_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "build.key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")

    def refused(self: Path) -> bytes:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(KeyLocked) as e:
        read_key_file(key, None)
    assert e.value.message == f"The signing key {key} cannot be read: Permission denied."
    assert e.value.hint is not None and "Run as the key's owner" in e.value.hint


def test_a_folder_in_its_place_keeps_the_plain_sentence(tmp_path: Path) -> None:
    with pytest.raises(KeyLocked) as e:
        read_key_file(tmp_path, None)
    assert "cannot be read: Is a directory." in e.value.message
    assert e.value.hint is None
