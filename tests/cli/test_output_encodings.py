"""Output when stdout and stderr are not UTF-8 (``PYTHONIOENCODING=ascii`` or ``latin-1``,
a Latin-1 locale; ``LC_ALL=C``, which Python coerces to UTF-8).

* An exact format -- a signed checkpoint note (C2SP signed note: its signature line begins
  with an em dash), a verifier key, an exported document, a ``--json`` document (ASCII,
  ``\\u00e9``) -- is written as the same UTF-8 bytes whatever the encoding: a verifier fed
  a checkpoint whose "—" was re-encoded or escaped fails.  ``ledger checkpoint`` and
  ``export`` ended in a ``UnicodeEncodeError`` traceback instead, and ``ledger
  verifier-key`` wrote a non-ASCII log name in Latin-1, which its key hash does not cover.
* Human text (tables, messages, help) is written in the stream's encoding, what it lacks
  readably ("…" as "...", "—" as "--", "é" as "\\xe9" in ASCII) and never fails: ``log``,
  ``diff``, ``verify``, ``--help`` ended in a traceback with exit 1 on a Latin-1 stdout.

Every command runs as a process, as the streams' encodings are set when Python starts.
"""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "ledger"))

from ledger_helpers import manifest, raw_sign  # noqa: E402

from escrow.config import load_settings  # noqa: E402
from escrow.ledger.checkpoint import verify_checkpoint  # noqa: E402
from escrow.ledger.store import Ledger  # noqa: E402
from escrow.signing.keys import SigningKey  # noqa: E402
from tests.conftest import run_cli  # noqa: E402

ESCROW = str(Path(sys.executable).with_name("escrow"))

#: the log's name, in every checkpoint it signs and in its verifier key
ORIGIN = "example.org/journal-café"
PROJECT = "café—日本…"


def _run(
    home: Path,
    args: list[str],
    *,
    encoding: str | None = "utf-8",
    lc_all: str = "C.UTF-8",
    cwd: Path | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[bytes]:
    """``escrow ARGS`` as a process on ``home``, its streams in ``encoding``
    (PYTHONIOENCODING; None: the locale's, ``lc_all``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESCROW_", "LC_", "LANG"))}
    env.update(ESCROW_HOME=str(home), LC_ALL=lc_all, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONIOENCODING", None)
    if encoding is not None:
        env["PYTHONIOENCODING"] = encoding
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([ESCROW, *args], env=env, cwd=cwd, timeout=120, check=False, **kwargs)


def _no_traceback(r: subprocess.CompletedProcess[bytes]) -> None:
    assert b"Traceback" not in r.stderr, r.stderr.decode("utf-8", "replace")
    assert b"UnicodeEncodeError" not in r.stderr, r.stderr.decode("utf-8", "replace")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ledger named :data:`ORIGIN`: entry 1 records a command that printed non-ASCII
    text, entry 2 a build of project :data:`PROJECT`, entry 3 one of project ``plain``."""
    root = tmp_path_factory.mktemp("encodings")
    home = root / "home"
    home.mkdir()
    (home / "config.json").write_text(json.dumps({"origin": ORIGIN}))
    r = run_cli(["--home", str(home), "init"])
    assert r.exit_code == 0, r.stderr
    work = root / "work"
    work.mkdir()
    (work / "main.c").write_text("int main(void) { return 0; }\n")
    printed = _run(home, ["record", "--", "printf", "caf\u00e9 \u2014 done\\n"], cwd=work)
    assert printed.returncode == 0, printed.stderr
    settings = load_settings(home=home)
    key = SigningKey.load(settings.key_path)
    with Ledger.open(settings) as lg:
        for n, project in enumerate((PROJECT, "plain")):
            statement = manifest(n, project=project, tag="encodings")
            statement["predicate"]["inputs"]["buildArgs"][0]["value"] = "ü—…"
            entry, _ = lg.append(raw_sign(statement, key))
            assert entry.index == n + 2
    return home


@pytest.fixture(scope="module")
def exact(home: Path) -> dict[str, bytes]:
    """What ``ledger checkpoint``, ``ledger verifier-key``, ``export --slsa 2`` and ``log
    --json`` write to a UTF-8 stdout."""
    out = {}
    for command in ("ledger checkpoint", "ledger verifier-key", "export --slsa 2", "log --json"):
        r = _run(home, command.split())
        assert r.returncode == 0, r.stderr
        out[command] = r.stdout
    return out


def test_the_utf8_output_is_a_checkpoint_its_key_verifies(exact: dict[str, bytes]) -> None:
    verifier_key = exact["ledger verifier-key"].decode("utf-8")
    assert verifier_key.startswith(f"{ORIGIN}+") and verifier_key.endswith("\n")
    note = exact["ledger checkpoint"].decode("utf-8")
    assert "\n\u2014 " in note  # the signature line
    assert verify_checkpoint(note, verifier_key.rstrip("\n")).origin == ORIGIN
    for document in ("export --slsa 2", "log --json"):
        assert PROJECT in json.dumps(json.loads(exact[document]), ensure_ascii=False)
    assert exact["log --json"].isascii()


#: how each way of running a command sets its streams' encoding
NOT_UTF8 = [
    pytest.param({"encoding": "ascii"}, id="ascii"),
    pytest.param({"encoding": "latin-1"}, id="latin-1"),
    pytest.param({"encoding": None, "lc_all": "C"}, id="LC_ALL=C"),
]


@pytest.mark.parametrize("how", NOT_UTF8)
def test_exact_formats_are_their_utf8_bytes(
    home: Path, exact: dict[str, bytes], how: dict[str, Any]
) -> None:
    """The signed checkpoint note, the verifier key (its name's UTF-8 is what its key hash
    covers), an exported statement (UTF-8 JSON, names as they are) and a ``--json``
    document."""
    commands = list(exact) if how.get("encoding") else ["ledger checkpoint"]
    for command in commands:
        r = _run(home, command.split(), **how)
        _no_traceback(r)
        assert r.returncode == 0, r.stderr
        assert r.stdout == exact[command], command


#: (PYTHONIOENCODING, args, exit code, stream, what it holds)
HUMAN: list[tuple[str, list[str], int, str, str]] = [
    ("ascii", ["log"], 0, "stdout", "caf\\xe9--\\u65e5\\u672c..."),
    ("latin-1", ["log"], 0, "stdout", "café--\\u65e5\\u672c..."),
    ("ascii", ["diff", "2", "3"], 0, "stdout", "(project caf\\xe9--\\u65e5\\u672c... / plain)"),
    ("latin-1", ["verify", "2"], 0, "stdout", "signed by build key "),
    ("ascii", ["logs", "1"], 0, "stderr", "-- step 1: printf"),
    ("latin-1", ["log", "--help"], 0, "stdout", "(sha256:...)"),
    ("ascii", ["keys", "export", "{log_key}"], 2, "stderr", "is the ledger's log key "),
]


@pytest.mark.parametrize(
    ("encoding", "args", "code", "stream", "text"),
    HUMAN,
    ids=[f"{h[0]}-{' '.join(h[1])}" for h in HUMAN],
)
def test_human_text_is_written_readably_and_never_fails(
    home: Path, encoding: str, args: list[str], code: int, stream: str, text: str
) -> None:
    """In the stream's encoding, what it lacks readably ("…" as "...", "—" as "--", "é"
    as "\\xe9" in ASCII); the exit code of the command."""
    log_key = SigningKey.load(load_settings(home=home).log_key_path).public.keyid[:16]
    r = _run(home, [a.format(log_key=log_key) for a in args], encoding=encoding)
    _no_traceback(r)
    assert r.returncode == code, r.stderr
    written = (r.stdout if stream == "stdout" else r.stderr).decode(encoding, "replace")
    assert text in written, written
    # nothing written in another encoding (UTF-8: not ASCII, C1 controls read as Latin-1)
    assert not [c for c in written if c == "\ufffd" or "\x80" <= c <= "\x9f"], written


def test_logs_on_a_terminal_that_is_not_utf8(home: Path) -> None:
    """On a terminal ``escrow logs`` shows a log as text, in the terminal's encoding."""
    main, terminal = pty.openpty()
    try:
        r = _run(home, ["logs", "1"], encoding="latin-1", stdout=terminal)
    finally:
        os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the terminal's other end is closed and all was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert "café -- done".encode("latin-1") in shown


def test_a_passphrase_on_stdin_is_its_bytes_whatever_stdin_encoding(escrow_home: Path) -> None:
    """Read from a pipe, a passphrase is the bytes given, as ESCROW_KEY_PASSPHRASE's are:
    ``PYTHONIOENCODING=ascii`` ended in a ``UnicodeDecodeError`` traceback."""
    r = _run(
        escrow_home,
        ["keys", "generate", "--name", "enc", "--passphrase-prompt"],
        encoding="ascii",
        input="pässwort\n".encode(),
        stdin=None,
    )
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    SigningKey.load(escrow_home / "keys" / "enc.key.pem", "pässwort")


def test_a_file_name_that_is_not_utf8_is_written_as_its_bytes(home: Path, tmp_path: Path) -> None:
    """A strict UTF-8 stdout (``PYTHONIOENCODING=utf-8``) ended in ``surrogates not
    allowed`` for a file name that is not UTF-8; it is written as the name's bytes."""
    leaf = run_cli(["--home", str(home), "ledger", "leaf", "2"])
    assert leaf.exit_code == 0, leaf.stderr
    name = os.fsencode(tmp_path) + b"/entry-\xff.json"
    Path(os.fsdecode(name)).write_text(leaf.stdout, encoding="utf-8")
    r = _run(home, ["schema", "validate", os.fsdecode(name)], encoding="utf-8")
    _no_traceback(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(name + b": valid build-manifest")


@pytest.mark.parametrize(
    "args", [["ledger", "checkpoint"], ["log", "--json"], ["export", "--slsa", "2"]]
)
def test_exact_formats_with_stdout_closed(home: Path, args: list[str]) -> None:
    """Started with stdout closed (``>&-``: Python's ``sys.stdout`` is None) they write
    nothing and end as ``ledger verifier-key`` does, not in an ``AttributeError``."""
    from escrow.cli.main import main

    err = io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = None, err  # type: ignore[assignment]
    try:
        with pytest.raises(SystemExit) as ended:
            main(["--home", str(home), *args])
    finally:
        sys.stdout, sys.stderr = saved
    assert ended.value.code == 0, err.getvalue()
