"""`escrow build` reads the built image's config (its deposit save) ahead, in a thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from escrow.capture.build import _ahead

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_answer_and_errors_come_through() -> None:
    asked: list[str] = []

    def config_of(image_id: str) -> dict[str, Any]:
        asked.append(image_id)
        if image_id == "sha256:bad":
            raise ValueError("no such image")
        return {"id": image_id}

    read = _ahead(config_of, "sha256:a")
    assert read("sha256:a") == {"id": "sha256:a"}
    assert read("sha256:b") == {"id": "sha256:b"}  # another image: asked directly
    assert asked == ["sha256:a", "sha256:b"]
    with pytest.raises(ValueError, match="no such image"):
        _ahead(config_of, "sha256:bad")("sha256:bad")


def test_an_interrupted_build_does_not_wait_for_the_save() -> None:
    """Ctrl-C or an error after the build: the process ends without waiting for the
    save of a (large) image that was started ahead."""
    script = textwrap.dedent(
        """
        import time
        from escrow.capture.build import _ahead
        _ahead(lambda image_id: time.sleep(60) or {}, "sha256:big")
        raise KeyboardInterrupt
        """
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=50
    )
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    assert time.monotonic() - start < 50
