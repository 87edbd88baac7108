"""A secret given to the recorded command as the word after its option
(``--password VALUE``, not ``--password=VALUE``) is hidden on the recorded command
line and wherever else it appears; ``--password-stdin``, ``--password-file PATH`` and
the like name where the secret is, not the secret, and are kept."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from escrow.blobs import BlobStore
from escrow.capture.record import _argv_record, _learn_argv
from escrow.capture.secrets import Redactor
from tests.capture.conftest import show, write_tree


def _record(argv: list[str]) -> tuple[list[str], Redactor]:
    """``argv`` as ``record_command`` records it: learnt first, then recorded."""
    redactor = Redactor()
    _learn_argv(argv, redactor)
    return _argv_record(argv, redactor), redactor


def test_a_password_given_as_the_next_word_is_hidden() -> None:
    recorded, redactor = _record(["tool", "login", "--password", "hunter2-Pw-8812", "--verbose"])
    assert recorded == ["tool", "login", "--password", "[secret password]", "--verbose"]
    assert "hunter2-Pw-8812" not in redactor.text("logged in with hunter2-Pw-8812")


def test_a_short_value_after_a_dashed_secret_option_is_hidden() -> None:
    recorded, _ = _record(["tool", "--api-key", "abc", "deploy"])
    assert recorded == ["tool", "--api-key", "[secret api-key]", "deploy"]
    assert "abc" not in recorded


def test_a_single_dash_secret_option_takes_the_next_word() -> None:
    recorded, _ = _record(["tool", "-Token", "tk-551-zulu"])
    assert recorded == ["tool", "-Token", "[secret Token]"]


def test_a_token_given_as_the_next_word_is_hidden_in_the_log_too() -> None:
    value = "tok-Value-7731-indigo"
    recorded, redactor = _record(["sh", "-c", 'echo "$2"', "sh", "--token", value])
    assert recorded[-2:] == ["--token", "[secret token]"]
    log = redactor.data(f"using {value}\n".encode())
    assert log == b"using [secret token]\n"
    assert redactor.text(f"echo {value}") == "echo [secret token]"


@pytest.mark.parametrize(
    "option", ["--password-stdin", "--PASSWORD-STDIN", "--token-env", "--secret-path"]
)
def test_an_option_that_says_where_the_secret_is_keeps_its_next_word(option: str) -> None:
    argv = ["docker", "login", "-u", "ci", option, "registry.example"]
    recorded, redactor = _record(argv)
    assert recorded == argv
    assert redactor.text("pushing to registry.example") == "pushing to registry.example"
    assert redactor.secret_count == 0


@pytest.mark.parametrize("option", ["--password-file", "--secret-file", "--Password-File"])
def test_a_secret_file_option_keeps_its_path(option: str) -> None:
    argv = ["tool", option, "/run/secrets/registry-pw"]
    recorded, redactor = _record(argv)
    assert recorded == argv
    assert redactor.text("read /run/secrets/registry-pw") == "read /run/secrets/registry-pw"


def test_a_secret_option_as_the_last_word_has_no_value() -> None:
    recorded, redactor = _record(["tool", "--password"])
    assert recorded == ["tool", "--password"]
    assert redactor.secret_count == 0


def test_a_secret_option_followed_by_an_option_has_no_value() -> None:
    recorded, redactor = _record(["tool", "--password", "-x", "other"])
    assert recorded == ["tool", "--password", "-x", "other"]
    assert redactor.secret_count == 0


def test_the_joined_forms_are_still_hidden() -> None:
    recorded, _ = _record(
        [
            "docker",
            "build",
            "--build-arg",
            "TOKEN=x",
            "--build-arg=API_TOKEN=yz",
            "--password=pw-joined-4410",
            "GITHUB_TOKEN=gh",
            ".",
        ]
    )
    assert recorded == [
        "docker",
        "build",
        "--build-arg",
        "TOKEN=[secret TOKEN]",
        "--build-arg=API_TOKEN=[secret API_TOKEN]",
        "--password=[secret password]",
        "GITHUB_TOKEN=[secret GITHUB_TOKEN]",
        ".",
    ]


def test_an_ordinary_option_and_its_value_are_untouched() -> None:
    argv = ["tool", "--name", "value", "--tag", "v1.2", "-o", "out.txt"]
    recorded, redactor = _record(argv)
    assert recorded == argv
    assert redactor.secret_count == 0


def test_record_keeps_a_next_word_password_out_of_the_ledger_blobs_and_manifest(
    escrow_home: Path, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the CLI: the command echoes the value it was given after ``--password``;
    neither the signed manifest, the log, the ledger database nor any blob keeps it."""
    ctx = write_tree(tmp_path / "argv-next-ctx", {"Makefile": "all:\n"})
    monkeypatch.chdir(ctx)
    value = "nextword-S3cr3t-6620"
    r = cli(
        [
            "record",
            "--json",
            "--",
            sys.executable,
            "-c",
            "import sys; print('login with', sys.argv[2])",
            "--password",
            value,
        ]
    )
    assert r.exit_code == 0, r.stderr
    assert value not in r.stdout and value not in r.stderr
    st = show(r.json()["index"])
    cmd = st["predicate"]["command"]
    assert cmd["argv"][-2:] == ["--password", "[secret password]"]
    manifest = json.dumps(st)
    assert value not in manifest and "[secret password]" in manifest
    log = BlobStore(escrow_home / "blobs").get(cmd["log"]["sha256"])
    assert log == b"login with [secret password]\n"
    files = [p for p in escrow_home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("ledger.db") for p in files)
    assert any(b"[secret password]" in p.read_bytes() for p in files)
    for path in files:
        assert value.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    ("argv", "secret"),
    [
        (["sh", "-c", "docker login -u ci -p Pw-4471-oscar registry.example"], "Pw-4471-oscar"),
        (["bash", "-lc", "deploy --token 'Tk 9931 kilo' --now"], "Tk 9931 kilo"),
        (["ssh", "ci@host", "tool --password=Pw-5521-lima"], "Pw-5521-lima"),
        # a script inside a script
        (["sh", "-c", 'bash -c "skopeo login -p Pw-6612-mike r.example"'], "Pw-6612-mike"),
    ],
)
def test_a_secret_inside_a_script_word_is_hidden(argv: list[str], secret: str) -> None:
    """`sh -c "docker login -p PW"`: the command line inside one word was not searched,
    and the password was recorded in the script and in the log."""
    recorded, redactor = _record(argv)
    assert all(secret not in word for word in recorded), recorded
    assert secret not in redactor.text(f"Login with {secret} succeeded")
    assert secret.encode() not in redactor.data(f"echo {secret}\n".encode())


def test_a_script_word_without_secrets_is_kept() -> None:
    argv = ["sh", "-c", "make -j4 image && docker push app:1 # it's done"]
    recorded, _ = _record(argv)
    assert recorded == argv


def test_a_variable_reference_inside_a_script_word_is_no_secret_value() -> None:
    argv = ["sh", "-c", 'docker login -p "$REGISTRY_PASSWORD" r.example && deploy --token=${TK}']
    recorded, redactor = _record(argv)
    assert recorded == argv
    assert redactor.text("the $REGISTRY_PASSWORD variable") == "the $REGISTRY_PASSWORD variable"
