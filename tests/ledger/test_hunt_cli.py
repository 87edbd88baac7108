"""The ledger's command line misused as an auditor or a pipeline would (a bug hunt).

* an envelope posted without a key ID (DSSE makes it optional, cosign writes ``""``) is
  appended after its signature is checked with every registered key; `ledger verify`
  checks it the same way instead of calling the entry forged;
* `escrow post` of JSON nested too deeply is rejected with one sentence, not a traceback;
* `escrow post FILE | head -1` (a reader that goes away) still appends every envelope;
* `escrow post ""` and `escrow ledger leaf N >&-` say what is wrong;
* `escrow log --since ""` is refused (as the server's `since=` is), not taken for no
  filter; `--until 20261206` includes that whole day as `--until 2026-12-06` does; and
  RFC 3339's lower-case ``t`` and ``z`` are read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ledger_helpers import LedgerEnv

ESCROW = [sys.executable, "-c", "from escrow.cli.entry import main; main()"]


def _lines(env: LedgerEnv, count: int, tag: str) -> list[dict[str, Any]]:
    return [json.loads(env.envelope(n, tag=tag).to_bytes()) for n in range(count)]


def _write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _size(env: LedgerEnv) -> int:
    with env.open() as lg:
        return lg.size()


def test_envelope_without_key_id_verifies(cli_env: LedgerEnv, cli: Any, tmp_path: Path) -> None:
    no_id, empty_id = _lines(cli_env, 2, "hunt-keyid")
    del no_id["signatures"][0]["keyid"]
    empty_id["signatures"][0]["keyid"] = ""
    r = cli(["post", "--json", str(_write(tmp_path / "in.jsonl", [no_id, empty_id]))])
    assert r.exit_code == 0, r.stdout + r.stderr
    assert [x["status"] for x in r.json()["results"]] == ["appended", "appended"]
    r = cli(["ledger", "verify", "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    report = r.json()
    assert report["ok"] is True
    assert report["problems"] == []
    assert report["signatures_checked"] == report["entries_checked"]


def test_envelope_without_key_id_by_a_stranger_is_still_refused(
    cli_env: LedgerEnv, cli: Any, tmp_path: Path
) -> None:
    from escrow.signing.keys import SigningKey

    doc = json.loads(cli_env.envelope(0, tag="hunt-stranger", key=SigningKey.generate()).to_bytes())
    doc["signatures"][0]["keyid"] = ""
    r = cli(["post", str(_write(tmp_path / "in.jsonl", [doc]))])
    assert r.exit_code == 1
    assert "not signed by a key registered in this ledger" in r.stdout
    assert cli(["ledger", "verify"]).exit_code == 0


def test_post_of_json_nested_too_deeply(cli_env: LedgerEnv, cli: Any, tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    good = json.dumps(_lines(cli_env, 1, "hunt-deep")[0]).encode()
    for data, statuses in (
        (deep, ["rejected"]),
        (deep + b"\n" + good + b"\n", ["rejected", "appended"]),
    ):
        src = tmp_path / "deep.jsonl"
        src.write_bytes(data)
        r = cli(["post", "--json", str(src)])
        assert r.exit_code == 1, r.stderr
        assert "Traceback" not in r.stderr
        results = r.json()["results"]
        assert [x["status"] for x in results] == statuses
        assert results[0]["error"] == "The envelope is not valid JSON (it is nested too deeply)."


def _post_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """`escrow post ARGS` whose stdout is a pipe nobody reads any more (`| head -0`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first result is written
    try:
        return subprocess.run(
            [*ESCROW, "post", *args],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)


def test_post_appends_everything_when_its_reader_goes_away(
    cli_env: LedgerEnv, tmp_path: Path
) -> None:
    before = _size(cli_env)
    src = _write(tmp_path / "in.jsonl", _lines(cli_env, 6, "hunt-pipe"))
    r = _post_into_closed_pipe(str(src))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "Stdout was closed at line 1" in r.stderr
    assert "6 envelopes handled (6 appended, 0 already there, 0 rejected)" in r.stderr
    assert _size(cli_env) == before + 6
    # --json: the one document at the end finds the pipe closed; all were appended
    src = _write(tmp_path / "more.jsonl", _lines(cli_env, 3, "hunt-pipe-json"))
    r = _post_into_closed_pipe("--json", str(src))
    assert r.returncode == 0, r.stderr
    assert "Stdout was closed before the results" in r.stderr
    assert _size(cli_env) == before + 9


def test_post_with_an_empty_file_argument(cli_env: LedgerEnv, cli: Any) -> None:
    r = cli(["post", ""])
    assert r.exit_code == 2
    assert "The FILE argument is empty." in r.stderr
    assert r.stdout == ""


def _with_stdout_closed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESCROW, *args],
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.close(1),  # noqa: PLW1509 - the child starts with fd 1 closed
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )


def test_commands_started_with_stdout_closed(cli_env: LedgerEnv) -> None:
    r = _with_stdout_closed("ledger", "leaf", "0")
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "There is nowhere to write the leaf: stdout is closed." in r.stderr
    r = _with_stdout_closed("ledger", "verifier-key")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr


def test_log_refuses_an_empty_since_or_until(cli_env: LedgerEnv, cli: Any) -> None:
    for option in ("--since", "--until"):
        r = cli(["log", option, ""])
        assert r.exit_code == 2, r.stdout
        assert f"{option} '' is not a date or an RFC 3339 time." in r.stderr
        assert r.stdout == ""


def test_log_until_a_basic_format_date_includes_that_day(cli_env: LedgerEnv, cli: Any) -> None:
    entries = cli(["log", "--json"]).json()["entries"]
    day = entries[-1]["integrated_at"][:10]  # 2026-12-06
    for option in ("--until", "--since"):
        extended = cli(["log", "--json", option, day])
        basic = cli(["log", "--json", option, day.replace("-", "")])
        assert extended.exit_code == basic.exit_code == 0, basic.stderr
        assert basic.json()["entries"] == extended.json()["entries"]
    assert cli(["log", "--json", "--until", day.replace("-", "")]).json()["entries"]


def test_log_reads_rfc3339_times_with_a_lower_case_t_and_z(cli_env: LedgerEnv, cli: Any) -> None:
    first = cli(["log", "--json"]).json()["entries"][0]["integrated_at"]  # …T07:03:22.123456Z
    for option in ("--since", "--until"):
        upper = cli(["log", "--json", option, first])
        lower = cli(["log", "--json", option, first.lower()])
        assert upper.exit_code == lower.exit_code == 0, lower.stderr
        assert lower.json()["entries"] == upper.json()["entries"]
    assert cli(["log", "--json", "--since", first.lower()]).json()["entries"]
