"""Words for counts in messages: ``count(1, "entry", "entries")`` is ``1 entry``."""

from __future__ import annotations

import codecs


def count(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the word for it: ``one`` when ``n == 1``, else ``many`` (``one + "s"``)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


# C0 controls but newline and tab, DEL, and C1 controls (U+009B is a one-character CSI)
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
del _CONTROLS[0x0A], _CONTROLS[0x09]
# the explicit bidirectional embeddings, overrides and isolates (U+202A–U+202E,
# U+2066–U+2069): on a terminal that lays out right-to-left text they reverse or reorder
# what follows on the line ("evil\u202e" makes a row's "failed" read "deliaf"), as the
# audit pack shows them as [U+202E]; right-to-left scripts themselves are left as they are
_CONTROLS.update({c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))})


def printable(text: str) -> str:
    """``text`` with every terminal control character written as ``\\xNN`` (and each explicit
    bidirectional formatting character as ``\\u202e``), so that a name recorded by someone
    else (a project, a tag, a key or token name, a server's message) cannot move the cursor,
    rewrite lines, send escape sequences to the terminal or reorder the rest of its line."""
    return text.translate(_CONTROLS)


def one_line(text: str) -> str:
    """``text`` as one item of a list printed a line each (a file name in a context's
    changes): :func:`printable`, and a line feed or tab written ``\\x0a``/``\\x09`` too, so
    that a name cannot begin a line of its own and pass for another item."""
    return printable(text).replace("\n", "\\x0a").replace("\t", "\\x09")


def cell_width(text: str) -> int:
    """The columns ``text`` takes on a terminal: two for a wide character (CJK, most
    emoji), none for a combining mark or a format character, one for the others."""
    import unicodedata

    width = 0
    for c in text:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Mn", "Me", "Cf"):
            continue
        width += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return width


def padded(text: str, width: int) -> str:
    """``text`` (shown :func:`printable`) padded with spaces to ``width`` terminal columns,
    so that the columns of a table stay aligned after a wide or escaped character."""
    text = printable(text)
    return text + " " * max(width - cell_width(text), 0)


#: characters of a failed step's log tail kept (``build.failure.logTail``) and shown
LOG_TAIL_CHARS = 4000


def cut_tail(text: str, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of ``text``, at most ``chars`` characters, "…" first when it was cut."""
    return text if len(text) <= chars else "…" + text[len(text) - chars + 1 :]


#: what a character of escrow's own messages is written as where the output's encoding
#: lacks it (``PYTHONIOENCODING=ascii``, a Latin-1 terminal): ASCII that reads the same
#: (``…`` as ``...``, as :mod:`escrow.capture.progress` shows it)
ASCII_STAND_INS = {
    "…": "...",
    "—": "--",
    "–": "-",
    "─": "-",
    "→": "->",
    "←": "<-",
    "‘": "'",
    "’": "'",
    "“": '"',
    "”": '"',
    "≥": ">=",
    "≤": "<=",
    "±": "+/-",
    "×": "x",
}

#: the name of the error handler (:func:`codecs.register_error`) of escrow's human text:
#: see :func:`_readable`
READABLE = "escrow.readable"


def _readable(error: UnicodeError) -> tuple[str | bytes, int]:
    """Write a character the stream's encoding lacks readably, never fail: its ASCII
    stand-in (``…`` as ``...``, ``—`` as ``--``), else its escape as Python's stderr writes
    it (``\\xe9``, ``\\u65e5``); a byte of a file name that is not UTF-8 (decoded with
    ``surrogateescape``) as the byte it is, as Python's stdout does in the C locale (one
    that a Latin-1 terminal takes for a C1 control as ``\\x9b``, as :func:`printable` does)."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    c = error.object[error.start]
    if "\udca0" <= c <= "\udcff":
        return bytes([ord(c) - 0xDC00]), error.start + 1
    if "\udc80" <= c <= "\udc9f":
        return f"\\x{ord(c) - 0xDC00:02x}", error.start + 1
    stand_in = ASCII_STAND_INS.get(c)
    if stand_in is None:
        code = ord(c)
        stand_in = (
            f"\\x{code:02x}"
            if code < 0x100
            else f"\\u{code:04x}"
            if code < 0x10000
            else f"\\U{code:08x}"
        )
    return stand_in, error.start + 1


codecs.register_error(READABLE, _readable)
