"""Secrets never recorded in plain text: salted SHA-256, scrubbed everywhere."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from escrow.capture.secrets import (
    DEFAULT_SECRET_PATTERNS,
    Redactor,
    secret_patterns,
    strip_url_credentials,
)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("API_TOKEN", True),
        ("github_token", True),
        ("DB_PASSWORD", True),
        ("PASSWD", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("GOOGLE_CREDENTIALS", True),
        ("PRIVATE_KEY_PATH", True),
        ("STRIPE_API_KEY", True),
        ("VERSION", False),
        ("GREETING", False),
        ("PATH", False),
    ],
)
def test_default_patterns(name: str, secret: bool) -> None:
    assert Redactor(DEFAULT_SECRET_PATTERNS).is_secret(name) is secret


def test_named_secrets_and_configured_patterns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Redactor(names=["license"]).is_secret("LICENSE")
    monkeypatch.delenv("ESCROW_SECRET_PATTERNS", raising=False)
    (tmp_path / "config.json").write_text('{"secret_patterns": ["pin"]}')
    assert secret_patterns(tmp_path) == ("PIN",)
    monkeypatch.setenv("ESCROW_SECRET_PATTERNS", "otp, cookie")
    assert secret_patterns(tmp_path) == ("OTP", "COOKIE")
    assert secret_patterns(None) == ("OTP", "COOKIE")


def test_a_secret_build_arg_is_a_salted_sha256_an_auditor_can_check() -> None:
    r = Redactor()
    record = r.build_arg("API_TOKEN", "tok-123456")
    assert set(record) == {"name", "secret", "salt", "sha256"} and record["secret"] is True
    salt = bytes.fromhex(record["salt"])
    assert len(salt) == 16
    assert record["sha256"] == hashlib.sha256(salt + b"tok-123456").hexdigest()
    assert r.build_arg("VERSION", "1.0") == {"name": "VERSION", "value": "1.0"}


def test_values_are_scrubbed_from_text_history_lines_and_documents() -> None:
    r = Redactor()
    r.build_arg("API_TOKEN", "tok-123456")
    assert r.text("curl -H 'auth: tok-123456'") == "curl -H 'auth: [secret API_TOKEN]'"
    history = "|2 API_TOKEN=tok-123456 V=1 /bin/sh -c echo $API_TOKEN"
    assert r.text(history) == "|2 API_TOKEN=[secret API_TOKEN] V=1 /bin/sh -c echo $API_TOKEN"
    assert r.text(r.text(history)) == r.text(history)  # scrubbing twice changes nothing
    doc = r.document({"a": ["x tok-123456 y", {"b": "tok-123456"}], "sha256": "tok-123456", "n": 3})
    assert doc == {
        "a": ["x [secret API_TOKEN] y", {"b": "[secret API_TOKEN]"}],
        "sha256": "tok-123456",
        "n": 3,
    }
    assert r.data(b"log: tok-123456\n\xff") == b"log: [secret API_TOKEN]\n\xff"


def test_short_secret_values_in_history_are_scrubbed_too() -> None:
    r = Redactor()
    once = r.text("|1 MY_TOKEN=ab /bin/sh -c true")
    assert once == "|1 MY_TOKEN=[secret MY_TOKEN] /bin/sh -c true"
    assert r.document({"h": once}) == {"h": once}


def test_digests_are_never_mangled_by_a_hex_like_secret() -> None:
    r = Redactor()
    r.learn("API_TOKEN", "abcd")
    digest = "sha256:" + "abcd" * 16
    assert r.document({"imageId": digest, "x": "abcd"}) == {
        "imageId": digest,
        "x": "[secret API_TOKEN]",
    }


def test_url_credentials_are_stripped_and_remembered() -> None:
    assert strip_url_credentials("git clone https://bob:pw@git.example/x.git") == (
        "git clone https://git.example/x.git"
    )
    r = Redactor()
    record = r.build_arg("PIP_INDEX_URL", "https://bob:hunter22@pypi.example/simple")
    assert record["value"] == "https://pypi.example/simple"
    assert record["credentialsStripped"] is True and record["secret"] is False
    assert "hunter22" not in r.text("using bob:hunter22 as login")


def test_runtime_env_with_secret_names_is_replaced() -> None:
    r = Redactor()
    env = r.env(["PATH=/bin", "DB_PASSWORD=hunter22", "MIRROR=https://u:p4ss@m.example/"])
    assert env == ["PATH=/bin", "DB_PASSWORD=[secret DB_PASSWORD]", "MIRROR=https://m.example/"]
    assert r.text("echo hunter22") == "echo [secret DB_PASSWORD]"


def test_environment_values_are_learned() -> None:
    r = Redactor()
    r.learn_env({"CI_JOB_TOKEN": "job-token-xyz", "HOME": "/root"})
    assert r.text("token=job-token-xyz home=/root") == "token=[secret CI_JOB_TOKEN] home=/root"
