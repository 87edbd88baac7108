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
from collections.abc import Iterable, Mapping
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

    def data(self, data: bytes) -> bytes:
        """Bytes (a log) with every known secret value and URL credential removed (the
        credentials first, as :meth:`text` does)."""
        data = _URL_CREDENTIALS_B.sub(lambda m: m.group("scheme"), data)
        values = self._values_to_scrub()
        if values:
            table = {
                v.encode("utf-8", "surrogateescape"): self._values[v].encode("utf-8")
                for v in values
            }
            pattern = re.compile(b"|".join(re.escape(v) for v in table))
            data = pattern.sub(lambda m: table[m.group(0)], data)
        return data

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
