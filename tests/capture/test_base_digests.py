"""Which registry digest a base image is recorded with (``inputs.baseImages[].repoDigest``)."""

from __future__ import annotations

from typing import Any

import pytest

from escrow.capture import dockerfile
from escrow.capture.build import resolve_bases

A, B, C = ("sha256:" + c * 64 for c in "abc")


class _Engine:
    """An engine that has one image, known by ``RepoDigests``."""

    def __init__(self, repo_digests: list[str]) -> None:
        self.repo_digests = repo_digests

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return {"Id": "sha256:" + "9" * 64, "RepoDigests": self.repo_digests}


@pytest.mark.parametrize(
    ("reference", "repo_digests", "expected"),
    [
        # Regression: the digest of whichever repository came first was recorded, so a
        # base pushed elsewhere under another name got that other manifest's digest.
        ("review/base:4", [f"127.0.0.1:5000/review/zzz@{A}"], None),
        (
            "review/base:4",
            [f"127.0.0.1:5000/review/zzz@{A}", f"review/base@{B}"],
            f"review/base@{B}",
        ),
        (
            "127.0.0.1:5000/base:1",
            [f"other/base@{A}", f"127.0.0.1:5000/base@{C}"],
            f"127.0.0.1:5000/base@{C}",
        ),
        ("127.0.0.1:5000/base", [f"127.0.0.1:5000/base@{C}"], f"127.0.0.1:5000/base@{C}"),
        ("docker.io/library/debian:12", [f"debian@{A}"], f"debian@{A}"),
        ("local/only:1", [], None),
    ],
)
def test_the_digest_recorded_is_of_the_repository_the_from_line_names(
    reference: str, repo_digests: list[str], expected: str | None
) -> None:
    df = dockerfile.parse(f"FROM {reference}\nRUN true\n", {})
    records, pulled = resolve_bases(df, _Engine(repo_digests))  # type: ignore[arg-type]
    assert not pulled
    assert records[0]["repoDigest"] == expected
