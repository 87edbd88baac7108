"""``escrow rebuild`` verdicts that must not claim more than was compared (real engine)."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Recorder
from .test_rebuild import BASE, next_second, rebuild, verdict_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_original_image_gone_and_not_deposited_is_unknown_not_different(
    cli: Any, recorder: Recorder, docker_client: Any
) -> None:
    """A reproducible step whose original layer cannot be read any more: its diff ID differs
    (mtimes), but nothing says its files do, so the verdict is unknown, naming the layer."""
    built = recorder.build({"Dockerfile": BASE + "RUN echo same > /f\n"})
    docker_client.images.remove(built.tag)  # no deposit either: the recorder makes none
    next_second()
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 1, r.stderr
    verdict = verdict_of(r)
    assert verdict["overall"] == "unknown", verdict
    last = verdict["layers"][-1]
    assert [(m["kind"], m["name"], m["digest"]) for m in verdict["missing"]] == [
        ("other", f"layer {last['index']}", last["original"])
    ]
    assert "not in the Docker Engine" in verdict["missing"][0]["reason"]
    human = cli(
        ["rebuild", str(built.index), "--context", str(built.context), "-q", "--rm"]
        + ["--tag", recorder.tag("human")]
    )
    assert human.exit_code == 1
    assert "): unknown" in human.stdout and f"layer {last['index']}" in human.stdout


def test_uncompared_layer_with_a_config_difference_stays_different() -> None:
    """A config field that differs is known without reading any layer: ``different``."""
    from escrow.rebuild.compare import ConfigDifference, ImageComparison, LayerResult, Verdict
    from escrow.rebuild.verify import verdict_document

    layer = LayerResult(
        2, "sha256:" + "a" * 64, "sha256:" + "b" * 64, "RUN x", Verdict.DIFFERENT, note="n"
    )
    only = ImageComparison("sha256:" + "c" * 64, "sha256:" + "d" * 64, [layer])
    assert verdict_document(only)["overall"] == "unknown"
    config = ImageComparison(
        "sha256:" + "c" * 64,
        "sha256:" + "d" * 64,
        [layer],
        [ConfigDifference("config.Env", ["A=1"], ["A=2"])],
    )
    doc = verdict_document(config)
    assert doc["overall"] == "different" and "missing" not in doc


def test_diff_of_a_rebuild_verdict_names_the_build_it_verified(
    cli: Any, recorder: Recorder
) -> None:
    built = recorder.build({"Dockerfile": BASE + "ENV A=1\n"})
    r = rebuild(cli, recorder, built.index, built.context)
    assert r.exit_code == 0, r.stderr
    verdict_index = r.json()["entry"]["index"]
    d = cli(["diff", str(built.index), str(verdict_index)])
    assert d.exit_code == 2
    assert f"rebuild verdict of entry {built.index}" in d.stderr, d.stderr
    assert f"escrow show {verdict_index}" in d.stderr


def _cli_build(cli: Any, recorder: Recorder, files: dict[str, str], *extra: str) -> int:
    ctx = recorder.context(files)
    r = cli(
        ["build", str(ctx), "-t", recorder.tag(ctx.name), "--no-deposit", "-q", "--json"]
        + list(extra)
    )
    assert r.exit_code == 0, r.stderr
    return int(r.json()["index"])


def test_rebuild_keeps_a_secret_named_with_secret_hidden(cli: Any, recorder: Recorder) -> None:
    """A build arg made secret with ``--secret NAME`` (no pattern matches it): the rebuild
    hides it as the build did, so the history compares equal and the value never reaches
    the signed verdict."""
    value = "xyzzy-plugh-4711"
    index = _cli_build(
        cli,
        recorder,
        {"Dockerfile": BASE + "ARG MYVAL\nRUN echo ${#MYVAL} > /len\n"},
        "--build-arg",
        f"MYVAL={value}",
        "--secret",
        "MYVAL",
    )
    ctx = recorder.root / f"ctx{recorder.count}"
    r = rebuild(cli, recorder, index, ctx, "--build-arg", f"MYVAL={value}")
    assert value not in r.stdout and value not in r.stderr
    assert r.exit_code == 0, r.stdout
    verdict = verdict_of(r)
    assert verdict["overall"] in ("identical", "equivalent"), verdict
    assert verdict["config"] == []
    shown = cli(["show", str(r.json()["entry"]["index"]), "--json"])
    assert value not in shown.stdout


def test_secret_label_is_given_again_with_label(cli: Any, recorder: Recorder) -> None:
    files = {"Dockerfile": BASE + "RUN echo l > /l\n"}
    index = _cli_build(cli, recorder, files, "--label", "API_TOKEN=abc123", "--label", "team=x")
    ctx = recorder.root / f"ctx{recorder.count}"
    missing = rebuild(cli, recorder, index, ctx)
    assert missing.exit_code == 1
    (item,) = verdict_of(missing)["missing"]
    assert (item["kind"], item["name"]) == ("label", "API_TOKEN")
    assert "--label" in item["reason"]
    wrong = rebuild(cli, recorder, index, ctx, "--label", "API_TOKEN=nope")
    assert wrong.exit_code == 2 and "API_TOKEN" in wrong.stderr
    right = rebuild(cli, recorder, index, ctx, "--label", "API_TOKEN=abc123")
    assert right.exit_code == 0, right.stderr
    assert verdict_of(right)["overall"] in ("identical", "equivalent")
    assert "abc123" not in right.stdout
