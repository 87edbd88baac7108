"""URLs are printed without their credentials (errors, the pack's pages, logs), whatever
the password holds: a raw ``@`` in it left the part after that ``@`` in the text (an
operator's ESCROW_DB_URL of ``postgresql://escrow:p@ss@db/escrow`` showed ``ss@db``)."""

from __future__ import annotations

import pytest

from escrow.config import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://escrow:secret@db:5432/escrow",
            "postgresql+psycopg://db:5432/escrow",
        ),
        ("postgresql+psycopg://escrow:p@ss@db/escrow", "postgresql+psycopg://db/escrow"),
        ("https://u:a@b@c@tsa.example/tsr?x=1", "https://tsa.example/tsr?x=1"),
        ("https://tsa.example/tsr?who=a@b", "https://tsa.example/tsr?who=a@b"),
        ("https://tsa.example/path/a@b", "https://tsa.example/path/a@b"),
        ("oci://user@registry.example:5000/escrow", "oci://registry.example:5000/escrow"),
        ("sqlite:////var/lib/escrow/ledger.db", "sqlite:////var/lib/escrow/ledger.db"),
    ],
)
def test_credentials_are_removed_whole(url: str, shown: str) -> None:
    assert redact_url(url) == shown
