"""Which ``COPY --from`` values name an image (an input of the build) and which a stage."""

from __future__ import annotations

from typing import Any

from escrow.capture import dockerfile as dfparse
from escrow.capture.build import resolve_copy_sources

DOCKERFILE = """\
FROM base:1 AS Tools
COPY --from=tools /a /a
FROM base:1 AS app
COPY --chown=1:1 --from=helper:2 /x /x
COPY --from=0 /t /t
COPY --from=TOOLS /t /t
COPY /ctx /ctx
COPY ["--from=not-a-flag", "/y"]
FROM base:1
COPY --from=registry.example:5000/team/data@sha256:{digest} /d /d
COPY --from=app /x /x
""".replace("{digest}", "a" * 64)


def test_images_are_told_from_stages() -> None:
    df = dfparse.parse(DOCKERFILE)
    found = [(c.stage, c.instruction.line, c.reference) for c in df.copy_sources()]
    assert found == [
        # a stage's own name is an image: the classic builder looks names up among the
        # stages built before it (Docker 20.10 copies from the image ``tools``)
        (0, 2, "tools"),
        (1, 4, "helper:2"),
        (2, 10, f"registry.example:5000/team/data@sha256:{'a' * 64}"),
    ]


def test_a_target_keeps_only_its_stages_copy_sources() -> None:
    df = dfparse.parse(DOCKERFILE)
    built = df._replace(stages=df.stages[: df.stage_index("app") + 1])
    assert [c.reference for c in built.copy_sources()] == ["tools", "helper:2"]


class _Engine:
    """Knows one image; pulls nothing."""

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        return {"Id": "sha256:" + "b" * 64, "RepoDigests": []} if ref == "helper:2" else None


def test_capture_records_a_copy_source_the_engine_lacks_without_an_id() -> None:
    records = resolve_copy_sources(dfparse.parse(DOCKERFILE), _Engine(), strict=False)  # type: ignore[arg-type]
    assert [(r["reference"], r["imageId"]) for r in records] == [
        ("tools", None),
        ("helper:2", "sha256:" + "b" * 64),
        (f"registry.example:5000/team/data@sha256:{'a' * 64}", None),
    ]


def test_diff_reports_a_copied_from_image_whose_manifest_digest_changed() -> None:
    """As for base images: the same image ID under another manifest digest (the tag moved
    to a manifest of the same image, e.g. re-pushed with another media type) is a change."""
    from escrow.rebuild.manifests import diff_inputs

    def inputs(digest: str) -> dict[str, Any]:
        copied = {
            "stage": 1,
            "line": 4,
            "reference": "reg.example/data:7",
            "imageId": "sha256:" + "b" * 64,
            "repoDigest": f"reg.example/data@sha256:{digest * 64}",
        }
        return {"inputs": {"copyFromImages": [copied]}}

    changes = diff_inputs(inputs("1"), inputs("2"), None, ("a", "b"))["copyFromImages"]
    assert [(c["stage"], c["change"]) for c in changes] == [(1, "image")]
    assert diff_inputs(inputs("1"), inputs("1"), None, ("a", "b"))["copyFromImages"] == []
