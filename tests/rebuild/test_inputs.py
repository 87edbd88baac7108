"""Pure input checks of ``escrow rebuild`` and the manifest diff helpers (no engine)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from escrow.errors import InputError, UsageError
from escrow.rebuild.manifests import diff_file_lists, diff_steps
from escrow.rebuild.verify import check_build_args, rewrite_from_lines

ID_A = "sha256:" + "a" * 64
ID_B = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("text", "ids", "expected"),
    [
        ("FROM base:1\nRUN x\n", {0: ID_A}, f"FROM {ID_A}\nRUN x\n"),
        (
            "ARG BASE=base:1\nFROM --platform=linux/amd64 ${BASE} AS build\nRUN x\n"
            "FROM build\nFROM other:2 as final\n",
            {0: ID_A, 2: ID_B},
            f"ARG BASE=base:1\nFROM --platform=linux/amd64 {ID_A} AS build\nRUN x\n"
            f"FROM build\nFROM {ID_B} as final\n",
        ),
        ("from base:1\n", {0: ID_A}, f"from {ID_A}\n"),
    ],
    ids=["simple", "args-platform-stages", "lower-case"],
)
def test_rewrite_from_lines(text: str, ids: dict[int, str], expected: str) -> None:
    assert rewrite_from_lines(text, {}, ids) == expected


def test_rewrite_refuses_a_from_split_over_lines() -> None:
    with pytest.raises(InputError, match="spans lines"):
        rewrite_from_lines("FROM \\\n  base:1\n", {}, {0: ID_A})


def _secret(name: str, value: str) -> dict[str, Any]:
    salt = bytes(range(16))
    return {
        "name": name,
        "secret": True,
        "salt": salt.hex(),
        "sha256": hashlib.sha256(salt + value.encode()).hexdigest(),
    }


PRED = {"inputs": {"buildArgs": [{"name": "V", "value": "1"}, _secret("API_TOKEN", "tok")]}}


def test_build_args_recorded_values_and_missing_secrets() -> None:
    args, missing = check_build_args(PRED, {})
    assert args == [("V", "1")]
    assert [(m["kind"], m["name"]) for m in missing] == [("build-arg", "API_TOKEN")]
    args, missing = check_build_args(PRED, {"API_TOKEN": "tok"})
    assert args == [("V", "1"), ("API_TOKEN", "tok")] and missing == []


@pytest.mark.parametrize(
    ("given", "error"),
    [({"API_TOKEN": "wrong"}, InputError), ({"V": "2"}, UsageError), ({"NEW": "x"}, UsageError)],
    ids=["wrong-secret", "changed-plain-value", "unrecorded-arg"],
)
def test_build_args_refused(given: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        check_build_args(PRED, given)


def test_file_list_diff() -> None:
    a = [
        {"path": "a", "type": "file", "mode": 420, "size": 1, "sha256": "1"},
        {"path": "b", "type": "file", "mode": 420, "size": 1, "sha256": "1"},
        {"path": "gone", "type": "file", "mode": 420, "size": 1, "sha256": "1"},
    ]
    b = [
        {"path": "a", "type": "file", "mode": 493, "size": 1, "sha256": "1"},
        {"path": "b", "type": "file", "mode": 420, "size": 2, "sha256": "2"},
        {"path": "new", "type": "file", "mode": 420, "size": 1, "sha256": "1"},
    ]
    assert diff_file_lists(a, b) == {
        "added": ["new"],
        "removed": ["gone"],
        "changed": [{"path": "a", "kinds": ["mode"]}, {"path": "b", "kinds": ["content"]}],
    }


def test_step_diff_aligns_instructions() -> None:
    def steps(*texts: str, codes: dict[int, int] | None = None) -> list[dict[str, Any]]:
        return [
            {"index": i + 1, "instruction": t, "exitCode": (codes or {}).get(i, 0)}
            for i, t in enumerate(texts)
        ]

    a = steps("FROM x", "COPY a /a", "RUN make", "CMD run")
    b = steps("FROM x", "COPY a /a", "RUN make test", "LABEL v=2", "CMD run", codes={4: 1})
    changes = [
        (
            c["change"],
            (c["original"] or {}).get("instruction"),
            (c["rebuilt"] or {}).get("instruction"),
        )
        for c in diff_steps(a, b)
    ]
    assert changes == [
        ("changed", "RUN make", "RUN make test"),
        ("added", None, "LABEL v=2"),
        ("exit-code", "CMD run", "CMD run"),
    ]
