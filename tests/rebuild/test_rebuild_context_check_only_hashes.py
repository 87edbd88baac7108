"""The context check of ``escrow rebuild`` hashes the files; it writes no archive (the
build sends its own), so a large context is not written out once more for nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from escrow.errors import InputError

from .conftest import Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_context_check_writes_no_archive(
    recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import escrow.capture.context as context_module
    from escrow.rebuild.verify import check_context

    built = recorder.build(
        {"Dockerfile": "FROM escrow-test/base:latest\nCOPY data.bin /d\n", "data.bin": "x" * 4096}
    )
    sinks: list[Any] = []
    real = context_module._write_archive

    def watched(root: Any, names: Any, extra: Any, sink: Any) -> Any:
        sinks.append(sink)
        return real(root, names, extra, sink)

    monkeypatch.setattr(context_module, "_write_archive", watched)
    predicate = built.statement["predicate"]

    digest = check_context(predicate, built.context, built.context / "Dockerfile", None)

    assert digest == predicate["inputs"]["context"]["treeDigest"]
    assert sinks == [None]

    # and a differing context is still told file by file
    (built.context / "data.bin").write_text("y" * 4096)
    with pytest.raises(InputError, match=r"changed: data.bin \(content\)"):
        check_context(predicate, built.context, built.context / "Dockerfile", None)
