"""``escrow build`` of a build that prints a lot.

A RUN printing 200 MB of short lines took ~10x ``docker build``'s time: every output
line was scrubbed for the terminal (one call of ``Redactor.text`` each) even with
``-q``, when nothing is shown; and a line not ended yet was kept as one string that
each engine message was added to and that was searched whole for a newline each time
(quadratic in a long line with no newline). Now an output line is scrubbed only when
it is shown (a ``|N NAME=value`` line still is, for the values it teaches), a
command's many lines are written at once, and a line's pieces are searched once each.
"""

from __future__ import annotations

import io
import subprocess
import uuid
from pathlib import Path
from typing import Any

from escrow.capture.progress import NoProgress, PlainProgress
from escrow.capture.secrets import Redactor
from escrow.capture.steps import StepParser
from tests.capture.conftest import write_tree
from tests.conftest import run_cli

RUNNING = [
    {"stream": "Step 1/2 : FROM base\n"},
    {"stream": " ---> e619ec11273d\n"},
    {"stream": "Step 2/2 : RUN loud\n"},
    {"stream": " ---> Running in c114ee42ff20\n"},
]
DONE = [
    {"stream": "Removing intermediate container c114ee42ff20\n"},
    {"stream": " ---> f974126b0929\n"},
]


class _Counting:
    """A scrub that counts its calls (``Redactor.text`` underneath)."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor, self.calls = redactor, 0

    def __call__(self, text: str) -> str:
        self.calls += 1
        return self.redactor.text(text)


def _feed(parser: StepParser, messages: list[dict[str, Any]]) -> Any:
    for m in [*RUNNING, *messages, *DONE]:
        parser.feed(m)
    return parser.finish()


def test_a_long_line_over_many_messages_is_searched_once() -> None:
    """A 1 MB line in 10,000 messages: each character is searched for a newline once
    (it was searched again with every message after it: ~5,000 MB)."""
    pieces = [{"stream": f"{i:099d}"} for i in range(10_000)]
    messages = [*pieces, {"stream": "\nafter\n"}]
    parser = StepParser()
    result = _feed(parser, messages)
    fed = sum(len(str(m["stream"])) for m in [*RUNNING, *messages, *DONE])
    assert parser.scanned == fed
    line = "".join(str(p["stream"]) for p in pieces)
    assert bytes(result.steps[1].log) == (line + "\nafter\n").encode()
    assert result.steps[1].image_short == "f974126b0929"


def test_output_is_not_scrubbed_when_nothing_is_shown() -> None:
    """``-q``: the output lines are scrubbed for no one (the stored log is scrubbed
    whole); the step's text still is, and a ``|N NAME=value`` line still teaches its
    value -- then scrubbed from the stored log."""
    redactor = Redactor()
    scrub = _Counting(redactor)
    parser = StepParser(NoProgress(), scrub)
    lines = "".join(f"line {i}\n" for i in range(1000))
    result = _feed(
        parser,
        [
            {"stream": lines},
            {"stream": "|1 LOUD_PASSWORD=learnt-42-value /bin/sh -c true\n"},
            {"stream": lines + "later learnt-42-value\n"},
        ],
    )
    assert scrub.calls == 3  # the two step texts and the `|1` line (was 2,004)
    log = redactor.data(bytes(result.steps[1].log))
    assert b"learnt-42-value" not in log
    assert b"later [secret LOUD_PASSWORD]\n" in log
    assert log.count(b"line 999\n") == 2


def test_many_lines_at_once_are_shown_and_logged_as_one_at_a_time() -> None:
    """A command's lines in one message (written and shown together) give the log and
    the display that the same lines one message each give: blank lines, a secret, a
    line that looks like the builder's, a ``|N`` line, a carriage return."""
    redactor = Redactor()
    redactor.learn("LOUD_TOKEN", "tok-secret-value")
    chunks = [
        "a\n\nb tok-secret-value\n\r\nc\r\n",
        "d\nStep 9/9 : not a step\ne\n",
        "f\n|1 LOUD_PASSWORD=learnt-42-value x\ng learnt-42-value\n",
        "h https://user:pw@example.com/x\n\n\ni\n",
        "j\n ---> 0123456789ab\nk",
        "l\n",
    ]

    def run(messages: list[str]) -> tuple[str, bytes]:
        out = io.StringIO()
        r = Redactor()
        r.learn("LOUD_TOKEN", "tok-secret-value")
        result = _feed(StepParser(PlainProgress(out), r.text), [{"stream": m} for m in messages])
        return out.getvalue(), bytes(result.steps[1].log)

    one_each = [line + "\n" for line in "".join(chunks).split("\n")[:-1]]
    together, alone = run(chunks), run(one_each)
    assert together == alone
    shown, log = together
    assert "tok-secret-value" not in shown and "  | b [secret LOUD_TOKEN]\n" in shown
    assert "learnt-42-value" not in shown and "  | g [secret LOUD_PASSWORD]\n" in shown
    assert "pw@" not in shown and "  | kl\n" in shown
    assert log.endswith(b"\n ---> 0123456789ab\nkl\n")


def _dockerfile(base: str) -> str:
    # the value the `|1` line teaches is made by the shell: not in the Dockerfile's text
    return (
        f"FROM {base}\nARG LOUD_TOKEN\n"
        'RUN echo "token $LOUD_TOKEN" && yes "$LOUD_TOKEN in a loud line" | head -n 3000'
        ' && echo "|1 LOUD_PASSWORD=learnt-$((6*7))-value /bin/sh -c true"'
        ' && echo "later learnt-$((6*7))-value" && yes filler | head -n 3000\n'
    )


def test_a_loud_build_shows_and_stores_no_secret(
    module_home: Path, base_ref: str, tmp_path: Path
) -> None:
    """One real build shown (stderr not a terminal: every line written) and one with
    ``-q``: the secrets are neither shown nor stored, every line is."""
    secret = f"hunt-loud-{uuid.uuid4().hex}"
    ctx = write_tree(tmp_path / "loud", {"Dockerfile": _dockerfile(base_ref)})
    tags = [f"hunt-loud-test:{uuid.uuid4().hex[:8]}" for _ in range(2)]
    try:
        for tag, quiet in zip(tags, (False, True), strict=True):
            args = ["build", str(ctx), "-t", tag, "--build-arg", f"LOUD_TOKEN={secret}"]
            r = run_cli([*args, "--json", *(["-q"] if quiet else [])])
            assert r.exit_code == 0, r.stderr
            if quiet:
                assert "loud line" not in r.stderr
            else:
                assert secret not in r.stderr and "learnt-42-value" not in r.stderr
                assert r.stderr.count("  | [secret LOUD_TOKEN] in a loud line\n") == 3000
                assert "  | later [secret LOUD_PASSWORD]\n" in r.stderr
                assert r.stderr.count("  | filler\n") == 3000
            logs = run_cli(["logs", str(r.json()["index"]), "3"])
            assert logs.exit_code == 0, logs.stderr
            assert secret not in logs.stdout and "learnt-42-value" not in logs.stdout
            assert logs.stdout.count("[secret LOUD_TOKEN] in a loud line\n") == 3000
            assert "later [secret LOUD_PASSWORD]\n" in logs.stdout
            assert logs.stdout.count("filler\n") == 3000
    finally:
        for tag in tags:
            subprocess.run(["/usr/bin/docker", "rmi", "-f", tag], check=False, capture_output=True)
