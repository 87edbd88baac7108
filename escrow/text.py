"""Words for counts in messages: ``count(1, "entry", "entries")`` is ``1 entry``."""

from __future__ import annotations


def count(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the word for it: ``one`` when ``n == 1``, else ``many`` (``one + "s"``)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
