"""Where escrow keeps its state, and how settings are resolved.

Precedence: command-line option > environment variable > ``config.json`` in
``ESCROW_HOME`` > default.  The embedded default is a SQLite ledger and keys
under ``ESCROW_HOME`` (``$XDG_DATA_HOME/escrow``, i.e. ``~/.local/share/escrow``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from escrow.errors import InputError

#: A new ledger's origin, unless ``origin`` is set in config.json before it is made:
#: this prefix and 8 random hex digits.  A checkpoint names its log by its origin (C2SP
#: tlog-checkpoint), so no two ledgers may share one: deposits from several ledgers are
#: told apart by it, and a witness keeps one state per origin.  Ledgers made before
#: this (origin ``escrow.local/ledger``) keep theirs: it is in every checkpoint they signed.
LOG_ORIGIN_PREFIX = "escrow.local/ledger/"


def new_origin() -> str:
    """A fresh origin for a new ledger (:data:`LOG_ORIGIN_PREFIX` + 8 random hex digits)."""
    import secrets

    return LOG_ORIGIN_PREFIX + secrets.token_hex(4)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed, for printing: all of it up to the last
    ``@`` before the path, query or fragment (where a URL parser ends it: a raw ``@`` in a
    password is part of the password)."""
    return hide_query_secrets(re.sub(r"(?<=//)[^/?#]*@", "", url, count=1))


#: Query parameters of a URL that hold a secret: libpq reads a connection's password
#: (and its client key's) from them, ``postgresql://db/ledger?password=…``.
_SECRET_QUERY = re.compile(r"([?&](?:ssl)?password=)[^&#]*", re.IGNORECASE)


def hide_query_secrets(url: str) -> str:
    """``url`` with the values of its ``password`` and ``sslpassword`` query parameters
    written ``***``."""
    return _SECRET_QUERY.sub(r"\1***", url)


def canonical_db_url(url: str) -> str:
    """``url`` with the scheme ``postgres`` (libpq's and many hosting services' spelling,
    which SQLAlchemy no longer reads) written ``postgresql``; any other URL as it is."""
    scheme, sep, rest = url.partition("://")
    if sep and (scheme == "postgres" or scheme.startswith("postgres+")):
        return f"postgresql{scheme.removeprefix('postgres')}://{rest}"
    return url


def default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "escrow"


# A NamedTuple, not a frozen dataclass: made at import on the way to `escrow build`'s
# request, where a frozen dataclass costs ~0.5 ms of start-up and this ~0.1 ms
# (docs/DESIGN-NOTES.md, "Start-up of escrow build").
class Settings(NamedTuple):
    home: Path
    db_url: str
    key_path: Path
    log_key_path: Path
    passphrase: str | None
    origin: str | None  # for a new ledger (config.json's "origin"); None: new_origin()
    server: str | None
    token: str | None

    @property
    def blobs_dir(self) -> Path:
        return self.home / "blobs"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"


def _file_config(home: Path) -> dict[str, Any]:
    path = home / "config.json"
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if text.strip() else {}
    except (OSError, ValueError) as e:
        raise InputError(
            f"Cannot read the configuration file {path}: {e}.",
            hint="Fix or remove the file.",
        ) from e
    if not text.strip():
        raise InputError(
            f"The configuration file {path} is empty; it must hold a JSON object.",
            hint="Write {} in it, or remove it.",
        )
    if not isinstance(data, dict):
        raise InputError(f"The configuration file {path} must hold a JSON object.")
    for name, value in data.items():
        _check_config_value(path, name, value)
    return data


#: the keys config.json takes (README "Configuration"); each a string, but
#: ``secret_patterns``, a list of strings.  ``null`` stands for a key left out.
CONFIG_KEYS = (
    "db_url",
    "key",
    "log_key",
    "server",
    "token",
    "deposit_store",
    "secret_patterns",
    "origin",
)


def _check_config_value(path: Path, name: str, value: Any) -> None:
    """Refuse a key config.json does not take (a misspelt ``db_ulr`` silently left the
    ledger where it was not wanted) and a value of the wrong type (a number for ``key``
    or ``server`` ended in a traceback)."""
    if name not in CONFIG_KEYS:
        raise InputError(
            f"The configuration file {path} has the key {name!r}, which escrow does not know.",
            hint=f"Use only {', '.join(CONFIG_KEYS)}.",
        )
    if value is None:
        return
    if name == "secret_patterns":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            given = (
                "a list holding other things than strings"
                if isinstance(value, list)
                else _json_type(value)
            )
            raise InputError(
                f"The configuration file {path} gives secret_patterns as {given}; "
                "it must be a list of strings."
            )
    elif not isinstance(value, str):
        raise InputError(
            f"The configuration file {path} gives {name} as {_json_type(value)}; "
            "it must be a string."
        )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a string"


def _config_path(home: Path, value: str) -> Path:
    """A path config.json gives: ``~`` is the user's home; a relative path is relative to
    ESCROW_HOME, where the file is (not to the folder the command runs in)."""
    return home / Path(value).expanduser()


def _check_home(home: Path, source: str | None) -> None:
    """Refuse a home that is a file (or lies under one), for every command alike: else
    each would report what it then fails to find there (no ledger, no key) and `escrow
    init` would refuse what they advise."""
    blocking = next((p for p in [home, *home.parents] if p.exists() and not p.is_dir()), None)
    if blocking is None:
        return
    what = source or "The escrow home"
    if blocking == home:
        raise InputError(f"{what} ({home}) is a file, not a folder.")
    raise InputError(f"{what} ({home}) cannot be a folder: {blocking} is a file.")


def load_settings(
    *,
    home: str | Path | None = None,
    db_url: str | None = None,
    key: str | Path | None = None,
    server: str | None = None,
    token: str | None = None,
) -> Settings:
    env = os.environ
    home_path = Path(home or env.get("ESCROW_HOME") or default_home()).expanduser()
    _check_home(home_path, "--home" if home else "ESCROW_HOME" if env.get("ESCROW_HOME") else None)
    cfg = _file_config(home_path)
    url = (
        db_url
        or env.get("ESCROW_DB_URL")
        or cfg.get("db_url")
        or (f"sqlite:///{home_path / 'ledger.db'}")
    )
    key_path = Path(
        key
        or env.get("ESCROW_KEY")
        or (cfg.get("key") and _config_path(home_path, cfg["key"]))
        or home_path / "keys" / "build.key.pem"
    )
    return Settings(
        home=home_path,
        db_url=canonical_db_url(str(url)),
        key_path=key_path,
        log_key_path=(
            _config_path(home_path, cfg["log_key"])
            if cfg.get("log_key")
            else home_path / "keys" / "log.key.pem"
        ),
        passphrase=env.get("ESCROW_KEY_PASSPHRASE") or None,
        origin=str(cfg["origin"]) if cfg.get("origin") else None,
        server=server or env.get("ESCROW_SERVER") or cfg.get("server") or None,
        token=token or env.get("ESCROW_TOKEN") or cfg.get("token") or None,
    )
