"""Words for counts in messages: ``count(1, "entry", "entries")`` is ``1 entry``."""

from __future__ import annotations


def count(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the word for it: ``one`` when ``n == 1``, else ``many`` (``one + "s"``)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


# C0 controls but newline and tab, DEL, and C1 controls (U+009B is a one-character CSI)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
del _CONTROLS[0x0A], _CONTROLS[0x09]


def printable(text: str) -> str:
    """``text`` with every terminal control character written as ``\\xNN``, so that a name
    recorded by someone else (a project, a tag, a key or token name, a server's message)
    cannot move the cursor, rewrite lines or send escape sequences to the terminal."""
    return text.translate(_CONTROLS)
