"""Secrets are never recorded in plain text.

A build argument or environment variable whose name matches a secret pattern
(by default any name containing TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL,
PRIVATE, API_KEY or ACCESS_KEY; ``ESCROW_SECRET_PATTERNS`` or
``"secret_patterns"`` in ``ESCROW_HOME/config.json`` replaces the list), or
that is named with ``--secret NAME``, is recorded as::

    {"name": "API_TOKEN", "secret": true, "salt": "<32 hex>", "sha256": "<hex>"}

with ``sha256 = SHA-256(salt_bytes || value_utf8)``, so an auditor holding the
value can check it.  Wherever the value would otherwise appear — step texts,
logs, the image history (the classic builder writes ``|1 API_TOKEN=… /bin/sh
-c …``), the runtime ``Env`` — it is replaced by ``[secret NAME]``.  The
user-info part of URLs (``https://user:pass@host``) is stripped from every
recorded string the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

DEFAULT_SECRET_PATTERNS: tuple[str, ...] = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE",
    "API_KEY",
    "ACCESS_KEY",
)

#: shorter values are hashed but not searched for in free text (they would match everywhere)
MIN_SCRUB_LENGTH = 4

#: ``scheme://userinfo@``.  A scheme starts after a character that is not a letter and is at
#: most 64 characters long: unbounded, the search tried every letter of a long run of them
#: (a 2 MB line of a build's log) and scanned to its end each time — hours, not milliseconds.
_SCHEME = r"(?<![A-Za-z])[A-Za-z][A-Za-z0-9+.\-]{0,63}://"
_URL_CREDENTIALS = re.compile(rf"(?P<scheme>{_SCHEME})(?P<userinfo>[^/@\s]+)@")
_URL_CREDENTIALS_B = re.compile(rf"(?P<scheme>{_SCHEME})(?P<userinfo>[^/@\s]+)@".encode())
_DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
#: the ``|N K=V K=V ...`` prefix of a classic-builder RUN history line
_HISTORY_ARGS = re.compile(r"^\|(?P<n>\d+) ")


def secret_patterns(home: Path | None = None) -> tuple[str, ...]:
    """The configured secret name patterns (env > config file > default).

    A variable set but naming no pattern (``ESCROW_SECRET_PATTERNS=``, as a CI template
    with an undefined value writes it) counts as unset, as every other escrow variable's
    empty value does: it used to leave no pattern at all, so every secret build arg was
    recorded, signed, in plain text.  To turn the patterns off, give config.json's
    ``"secret_patterns": []``."""
    env = os.environ.get("ESCROW_SECRET_PATTERNS")
    named = tuple(p.strip().upper() for p in (env or "").split(",") if p.strip())
    if named:
        return named
    if home is not None:
        try:
            cfg = json.loads((home / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            cfg = {}
        pats = cfg.get("secret_patterns") if isinstance(cfg, dict) else None
        if isinstance(pats, list):
            return tuple(str(p).upper() for p in pats)
    return DEFAULT_SECRET_PATTERNS


def strip_url_credentials(text: str) -> str:
    """``https://user:pass@host/x`` → ``https://host/x`` (every URL in ``text``)."""
    if "://" not in text:  # none can match (found at once; the pattern tries each letter)
        return text
    return _URL_CREDENTIALS.sub(lambda m: m.group("scheme"), text)


def url_userinfo(text: str) -> list[str]:
    return [m.group("userinfo") for m in _URL_CREDENTIALS.finditer(text)]


class Redactor:
    """Knows the secret values of one recording and keeps them out of it."""

    def __init__(
        self, patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS, names: Iterable[str] = ()
    ) -> None:
        self.patterns = tuple(p.upper() for p in patterns if p)
        self.names = {n.upper() for n in names}
        self._salts: dict[str, bytes] = {}
        #: plain value -> replacement
        self._values: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    # -- classification ----------------------------------------------------
    def is_secret(self, name: str) -> bool:
        upper = name.upper()
        return upper in self.names or any(p in upper for p in self.patterns)

    def _salt(self, name: str) -> bytes:
        if name not in self._salts:
            self._salts[name] = os.urandom(16)
        return self._salts[name]

    def digest(self, name: str, value: str) -> dict[str, Any]:
        salt = self._salt(name)
        return {
            "name": name,
            "secret": True,
            "salt": salt.hex(),
            # a value that is not UTF-8 (raw bytes from the environment or argv, kept by
            # Python as lone surrogates) is hashed as those bytes
            "sha256": hashlib.sha256(salt + value.encode("utf-8", "surrogateescape")).hexdigest(),
        }

    @staticmethod
    def placeholder(name: str) -> str:
        return f"[secret {name}]"

    def learn(self, name: str, value: str) -> None:
        """Remember ``value`` as the secret ``name``: it is scrubbed from every text."""
        if value and value not in self._values:
            self._values[value] = self.placeholder(name)
            self._pattern = None

    def learn_env(self, environ: Mapping[str, str]) -> None:
        for name, value in environ.items():
            if self.is_secret(name):
                self.learn(name, value)
            for info in url_userinfo(value):
                self.learn(name, info)

    # -- records -------------------------------------------------------------
    def build_arg(self, name: str, value: str | None) -> dict[str, Any]:
        """The ``inputs.buildArgs[]`` record of one build argument."""
        if value is None:
            return {"name": name, "value": None}
        if self.is_secret(name):
            self.learn(name, value)
            return self.digest(name, value)
        stripped = strip_url_credentials(value)
        if stripped != value:
            for info in url_userinfo(value):
                self.learn(name, info)
            record = self.digest(name, value)
            record.update({"value": stripped, "credentialsStripped": True})
            record["secret"] = False
            return record
        return {"name": name, "value": value}

    def labels(self, labels: Mapping[str, str] | None) -> dict[str, str] | None:
        """The image's ``Labels`` with the values of secret-named labels replaced."""
        if labels is None:
            return None
        out: dict[str, str] = {}
        for name, value in labels.items():
            if self.is_secret(name):
                self.learn(name, str(value))
                out[name] = self.placeholder(name)
            else:
                out[name] = self.text(str(value))
        return out

    def config_digests(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``predicate.image.secrets``: the secret-named ``Env`` values and ``Labels`` of a
        runtime ``config`` (which the manifest records as ``[secret NAME]``) as salted
        SHA-256 records (:meth:`digest`) with ``"in"`` naming the field, so an auditor
        holding a value can check it.  One salt per name in a build: a build argument
        passed on to an ``ENV`` of the same name has the same digest."""
        out: list[dict[str, Any]] = []
        for entry in config.get("Env") or []:
            name, eq, value = str(entry).partition("=")
            if eq and self.is_secret(name):
                out.append({"in": "Env", **self.digest(name, value)})
        for name, value in (config.get("Labels") or {}).items():
            if self.is_secret(name):
                out.append({"in": "Labels", **self.digest(name, str(value))})
        return out

    def env(self, entries: list[str] | None) -> list[str] | None:
        """A runtime ``Env`` list with secret values replaced."""
        if entries is None:
            return None
        out: list[str] = []
        for entry in entries:
            name, eq, value = entry.partition("=")
            if eq and self.is_secret(name):
                self.learn(name, value)
                out.append(f"{name}={self.placeholder(name)}")
            else:
                out.append(self.text(entry))
        return out

    # -- scrubbing -------------------------------------------------------------
    def _values_to_scrub(self) -> list[str]:
        """The values searched for in free text, longest first (so that a value holding
        another is replaced whole)."""
        return sorted(
            (v for v in self._values if len(v) >= MIN_SCRUB_LENGTH), key=len, reverse=True
        )

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None:
            values = self._values_to_scrub()
            if values:
                self._pattern = re.compile("|".join(re.escape(v) for v in values))
        return self._pattern

    def text(self, text: str) -> str:
        """``text`` with every known secret value and URL credential removed."""
        if not text:
            return text
        # URL credentials first: a learned value inside one (its password) must not leave
        # "https://[secret NAME]@host" behind, which the URL pattern no longer strips
        text = self._history_args(strip_url_credentials(text))
        pattern = self._compiled()
        if pattern is not None:
            text = pattern.sub(lambda m: self._values[m.group(0)], text)
        return text

    def _history_args(self, text: str) -> str:
        """Scrub ``|N NAME=value …`` build-arg prefixes whatever the value's length.

        Idempotent: an argument already replaced by its placeholder is kept.
        """
        m = _HISTORY_ARGS.match(text)
        if not m:
            return text
        n = int(m.group("n"))
        words = text[m.end() :].split(" ")
        out: list[str] = []
        i = taken = 0
        while taken < n and i < len(words):
            name, eq, value = words[i].partition("=")
            if eq and value == "[secret" and i + 1 < len(words) and words[i + 1] == f"{name}]":
                out += words[i : i + 2]
                i += 2
            elif eq and self.is_secret(name):
                self.learn(name, value)
                out.append(f"{name}={self.placeholder(name)}")
                i += 1
            else:
                out.append(words[i])
                i += 1
            taken += 1
        return " ".join([f"|{n}", *out, *words[i:]])

    def _byte_table(self, values: Iterable[str] | None = None) -> dict[bytes, bytes]:
        """The values searched for in bytes (all known, or those of ``values``), longest
        first, each with its placeholder."""
        wanted = None if values is None else set(values)
        return {
            v.encode("utf-8", "surrogateescape"): self._values[v].encode("utf-8")
            for v in self._values_to_scrub()
            if wanted is None or v in wanted
        }

    def data(self, data: bytes) -> bytes:
        """Bytes (a log) with every known secret value and URL credential removed (the
        credentials first, as :meth:`text` does)."""
        if b"://" in data:  # none can match otherwise (found at once)
            data = _URL_CREDENTIALS_B.sub(lambda m: m.group("scheme"), data)
        table = self._byte_table()
        return _ValueCut(table).feed(data, final=True) if table else data

    def known_values(self) -> frozenset[str]:
        """The secret values known now (for :meth:`stream_since`)."""
        return frozenset(self._values)

    def stream(self) -> StreamScrub:
        """:meth:`data` of a log that comes in pieces (:class:`StreamScrub`), with the
        values known now."""
        return StreamScrub(self._byte_table())

    def stream_since(self, known: frozenset[str]) -> StreamScrub | None:
        """The values learnt since ``known`` (:meth:`known_values`) alone, as a
        :class:`StreamScrub` without the URL credentials (removed already); ``None`` when
        none was."""
        table = self._byte_table(v for v in self._values if v not in known)
        return StreamScrub(table, urls=False) if table else None

    def document(self, doc: Any, *, _key: str = "") -> Any:
        """A deep copy of a JSON document with every string scrubbed (digests left alone)."""
        if isinstance(doc, str):
            if _key in ("sha256", "salt") or _DIGEST.match(doc):
                return doc
            return self.text(doc)
        if isinstance(doc, list):
            return [self.document(v, _key=_key) for v in doc]
        if isinstance(doc, dict):
            return {k: self.document(v, _key=k) for k, v in doc.items()}
        return doc

    @property
    def secret_count(self) -> int:
        return len(self._values)


#: the bytes that end a URL's user-info (``[^/@\s]`` of :data:`_URL_CREDENTIALS_B`)
_USERINFO_ENDS = tuple(bytes([c]) for c in b"/@ \t\n\r\x0b\x0c")
#: a scheme and ``://`` ending where the search ends (a URL's user-info may follow)
_SCHEME_SEP_B = re.compile(rf"{_SCHEME}\Z".encode())
#: the beginning of a scheme cut at the end: letters, ``:`` or ``:/`` (``//`` may follow)
_SCHEME_CUT_B = re.compile(rb"(?<![A-Za-z])[A-Za-z][A-Za-z0-9+.\-]{0,63}(?::/?)?\Z")
#: the end of a piece searched for the last user-info end first (most lines are shorter)
_NEAR_END = 4096


def _replaced_before(
    found: Iterator[re.Match[bytes]],
    text: bytes,
    start: int,
    end: int,
    replace: Callable[[re.Match[bytes]], bytes],
) -> tuple[bytes, int]:
    """``text`` from ``start`` with the matches ``found`` that begin before ``end``
    replaced, up to where it is decided: ``end``, or the end of a match past it; and that
    place (what follows it is kept back for the next piece)."""
    out: list[bytes] = []
    pos = start
    for m in found:
        if m.start() >= end:
            break
        out += (text[pos : m.start()], replace(m))
        pos = m.end()
    cut = max(pos, end)
    out.append(text[pos:cut])
    return b"".join(out), cut


class _UrlCut:
    """:data:`_URL_CREDENTIALS_B` removed from bytes that come in pieces.

    What is sent on is final: a match, or a place where none can start, is decided by
    the bytes seen. Kept back are the bytes from the first place where a URL with
    credentials may begin but is not decided yet -- a scheme (at most 64 characters)
    and ``://`` cut at the end, or a scheme, ``://`` and a user-info that has not ended
    (it ends at the first ``/``, ``@`` or white space, so within its line)."""

    def __init__(self) -> None:
        self._carry = b""
        #: the byte sent on last (what the scheme's look-behind sees)
        self._prev = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        text = self._prev + self._carry + data
        start = len(self._prev)
        end = len(text) if final else self._undecided(text, start)
        # a URL has ``://``: without one, the pattern is not tried at each letter
        found = _URL_CREDENTIALS_B.finditer(text, start) if b"://" in text else iter(())
        out, cut = _replaced_before(found, text, start, end, lambda m: m.group("scheme"))
        if cut > start:
            self._prev = text[cut - 1 : cut]
        self._carry = text[cut:]
        return out

    @staticmethod
    def _undecided(text: bytes, start: int) -> int:
        """Where the first URL not decided by ``text`` may begin (``len(text)``: none)."""
        size = len(text)
        near = max(start, size - _NEAR_END)
        last = max(text.rfind(c, near) for c in _USERINFO_ENDS)
        if last < 0 and near > start:  # none near the end: a long run, look at all of it
            last = max(text.rfind(c, start) for c in _USERINFO_ENDS)
        run = max(last + 1, start)  # where the bytes after the last user-info end begin
        hold = size
        if run - 3 >= start and text[run - 3 : run] == b"://":
            m = _SCHEME_SEP_B.search(text, max(start, run - 68), run)
            if m is not None:
                hold = m.start()
        m = _SCHEME_CUT_B.search(text, max(start, size - 67))
        if m is not None:
            hold = min(hold, m.start())
        return hold


class _ValueCut:
    """Secret values replaced in bytes that come in pieces: the last (longest value - 1)
    bytes are kept back, where a value may have begun."""

    def __init__(self, table: Mapping[bytes, bytes]) -> None:
        self._table = dict(table)
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self._table))
        self._keep = max(len(v) for v in self._table) - 1
        self._carry = b""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        text = self._carry + data
        end = len(text) if final else len(text) - self._keep
        found = self._pattern.finditer(text)
        out, cut = _replaced_before(found, text, 0, end, lambda m: self._table[m.group(0)])
        self._carry = text[cut:]
        return out


class StreamScrub:
    """:meth:`Redactor.data` of a log that comes in pieces, in bounded memory: what
    :meth:`feed` and :meth:`close` return, joined, is what :meth:`Redactor.data` gives
    for the whole log (with the values of ``table``) -- a value or a URL's credentials
    split between two pieces too. Kept back between pieces: the longest value's length
    less one byte, and a URL whose user-info has not ended yet."""

    def __init__(self, table: Mapping[bytes, bytes], *, urls: bool = True) -> None:
        self._urls = _UrlCut() if urls else None
        self._values = _ValueCut(table) if table else None

    def feed(self, data: bytes) -> bytes:
        if self._urls is not None:
            data = self._urls.feed(data)
        return self._values.feed(data) if self._values is not None else data

    def close(self) -> bytes:
        """The rest, once the log has ended."""
        data = self._urls.feed(b"", final=True) if self._urls is not None else b""
        return self._values.feed(data, final=True) if self._values is not None else data
