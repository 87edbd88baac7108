"""`escrow rebuild` and `escrow diff` of complex builds on the real engine: multi-stage
Dockerfiles (a middle ``--target``, ``COPY --from`` a stage and an image), a global ``ARG``
in ``FROM``, a secret build arg, a ``.dockerignore``, a base tag moved since the build, and
a step that is not reproducible."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.rebuild.conftest import Recorded, Recorder

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE = "escrow-test/base:latest"


class HuntRecorder(Recorder):
    def tag(self, name: str) -> str:
        tag = f"hunt-rb-{self.run}:{name}"
        self.tags.append(tag)
        return tag


@pytest.fixture
def rec(
    escrow_home: Path, docker_client: Any, base_image: str, tmp_path: Path
) -> Iterator[Recorder]:
    r = HuntRecorder(tmp_path / "contexts", docker_client)
    yield r
    r.cleanup()


def _rebuild(cli: Any, rec: Recorder, built: Recorded, *extra: str, context: bool = True) -> Any:
    where = ["--context", str(built.context)] if context else []
    return cli(
        ["rebuild", str(built.index), *where, "--json", "-q", "-t", rec.tag(f"rb{built.index}")]
        + list(extra)
    )


def _cat(docker_client: Any, image: str, path: str) -> bytes:
    out: bytes = docker_client.containers.run(image, ["cat", path], remove=True)
    return out


def _entry_text(cli: Any, index: int) -> str:
    """Everything the ledger holds for entry ``index``: its JSON and its decoded payload."""
    doc = cli(["show", str(index), "--json"]).json()
    payload = base64.b64decode(doc["envelope"]["payload"]).decode()
    return json.dumps(doc) + payload


# -- a moved base: the pinned rebuild must send the context as the build did ------------


def _moving_base(rec: Recorder, generation: int) -> Recorded:
    ctx = rec.context({"Dockerfile": f"FROM {BASE}\nRUN echo {generation} > /generation\n"})
    return rec.build({}, context=ctx, name="base", project="hunt-base")


@pytest.mark.parametrize(
    ("ignore", "copied"),
    [
        # the recipe goes under a name the .dockerignore excludes (here secret.txt)
        ("secret.txt\n*.log\n", [".dockerignore", "Dockerfile", "a.txt"]),
        # the .dockerignore names the Dockerfile: the recipe goes under its name
        ("Dockerfile\n", [".dockerignore", "a.txt", "debug.log", "secret.txt"]),
    ],
)
def test_a_pinned_rebuild_copies_the_contexts_own_dockerignore(
    cli: Any, rec: Recorder, docker_client: Any, ignore: str, copied: list[str]
) -> None:
    """Regression: when a base tag had moved, the rebuild built a Dockerfile with its FROM
    lines pinned, sent as a Dockerfile outside the context: the context's .dockerignore
    then went to the engine with that file's name appended, and a `COPY . /app` copied
    it so — a reproducible build read as "different" (content /app/.dockerignore)."""
    base = _moving_base(rec, 1)
    built = rec.build(
        {
            "Dockerfile": f"FROM {base.tag}\nCOPY . /app\n",
            ".dockerignore": ignore,
            "a.txt": "a\n",
            "secret.txt": "left out\n",
            "debug.log": "left out\n",
        },
        name="app",
    )
    assert built.image_id is not None
    _moving_base(rec, 2)  # the tag moves on; the recorded base stays in the engine
    r = _rebuild(cli, rec, built)
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["statement"]["predicate"]["rebuild"]["pinning"] == "rewritten-from"
    assert doc["verdict"] in ("identical", "equivalent"), doc["statement"]["predicate"]["verdict"]
    rebuilt = doc["rebuiltImage"]
    assert _cat(docker_client, rebuilt, "/app/.dockerignore") == ignore.encode()
    listing = docker_client.containers.run(rebuilt, ["ls", "-A", "/app"], remove=True).split()
    assert sorted(listing) == [name.encode() for name in copied]
    assert _cat(docker_client, rebuilt, "/generation") == b"1\n"


def test_a_pinned_rebuild_of_a_dockerfile_outside_the_context_is_reproduced(
    cli: Any, rec: Recorder, tmp_path: Path
) -> None:
    """Regression: a Dockerfile outside the context goes to the engine under a name made
    from its bytes, which the .dockerignore sent beside it names; pinned, the rebuild's
    Dockerfile had other bytes, so another name, and a `COPY . /app` differed."""
    base = _moving_base(rec, 1)
    ctx = rec.context({".dockerignore": "*.log\n", "a.txt": "a\n"}, name="outside-ctx")
    recipe = tmp_path / "recipes" / "Dockerfile.app"
    recipe.parent.mkdir()
    recipe.write_text(f"FROM {base.tag}\nCOPY . /app\n")
    r = cli(["build", str(ctx), "-f", str(recipe), "-t", rec.tag("outside"), "-q", "--json"])
    assert r.exit_code == 0, r.stderr
    index = r.json()["index"]
    _moving_base(rec, 2)
    r = cli(
        ["rebuild", str(index), "--context", str(ctx), "--json", "-q", "--rm"]
        + ["-t", rec.tag("outside-rb")]
    )
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = r.json()
    assert doc["statement"]["predicate"]["rebuild"]["pinning"] == "rewritten-from"
    assert doc["verdict"] in ("identical", "equivalent"), doc["statement"]["predicate"]["verdict"]


# -- a multi-stage build: global ARG in FROM, a secret, a middle target, a date ---------

_MULTI = f"""ARG BASE={BASE}
FROM ${{BASE}} AS builder
ARG API_TOKEN
RUN test -n "$API_TOKEN" && date +%s%N > /stamp && echo built > /built
FROM ${{BASE}} AS middle
COPY --from=builder /stamp /stamp
COPY --from=builder /built /built
COPY --from={BASE} /bin/busybox /bb
COPY keep.txt /keep.txt
FROM scratch AS final
COPY --from=middle /built /built
"""


def test_a_multi_stage_rebuild_names_the_step_and_file_and_keeps_the_secret(
    cli: Any, rec: Recorder, docker_client: Any
) -> None:
    token = "hunt-rb-t0ken-value-91f3"
    built = rec.build(
        {
            "Dockerfile": _MULTI,
            ".dockerignore": "drop.txt\n",
            "keep.txt": "keep\n",
            "drop.txt": "dropped\n",
        },
        name="multi",
        build_args=(("API_TOKEN", token),),
    )
    assert built.statement["predicate"]["build"]["status"] == "succeeded"
    # --target a middle stage: the recorder builds the last stage, so build it by the CLI
    r = cli(
        ["build", str(built.context), "-t", rec.tag("middle"), "--target", "middle", "-q"]
        + ["--json", "--build-arg", f"API_TOKEN={token}"]
    )
    assert r.exit_code == 0, r.stderr
    middle = r.json()["index"]
    inputs = cli(["show", str(middle), "--json"]).json()["statement"]["predicate"]["inputs"]
    assert inputs["target"] == "middle"
    assert [b["stageName"] for b in inputs["baseImages"]] == ["builder", "middle"]
    assert [(c["line"], c["reference"]) for c in inputs["copyFromImages"]] == [(8, BASE)]
    # an ignored file changed since: not part of the context, so no mismatch
    (built.context / "drop.txt").write_text("changed since\n")

    # the secret not given again: unknown, said in one sentence, exit 1, recorded
    r = cli(["rebuild", str(middle), "--context", str(built.context), "-q", "--rm"])
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "missing build-arg API_TOKEN: recorded as a salted digest; give it with --build-arg" in (
        r.stdout
    )
    assert r.stderr.strip().count("\n") == 0, r.stderr
    # a wrong value: refused before anything is built or recorded (exit 2)
    size = len(cli(["log", "--json"]).json()["entries"])
    r = cli(
        ["rebuild", str(middle), "--context", str(built.context), "-q", "--rm"]
        + ["--build-arg", "API_TOKEN=wrong"]
    )
    assert r.exit_code == 2, r.stderr
    assert "The value given for the build argument API_TOKEN is not the recorded one" in r.stderr
    assert len(cli(["log", "--json"]).json()["entries"]) == size

    # given again: the date step makes /stamp differ, copied into the middle stage
    r = cli(
        ["rebuild", str(middle), "--context", str(built.context), "-q", "--json", "--rm"]
        + ["-t", rec.tag("middle-rb"), "--build-arg", f"API_TOKEN={token}"]
    )
    assert r.exit_code == 1, r.stderr
    doc = r.json()
    assert doc["verdict"] == "different"
    verdict = doc["statement"]["predicate"]["verdict"]
    differing = [
        (layer["createdBy"], [(d["path"], d["kind"]) for d in layer.get("differences", [])])
        for layer in verdict["layers"]
        if layer["verdict"] == "different"
    ]
    assert len(differing) == 1, verdict["layers"]
    assert " in /stamp " in differing[0][0]
    assert differing[0][1] == [("/stamp", "content")]
    # the other layers of the middle stage are the same files
    assert [layer["verdict"] for layer in verdict["layers"]] == [
        "identical",  # the base's two layers
        "identical",
        "different",  # COPY --from=builder /stamp
        "equivalent",  # COPY --from=builder /built: the file's time only
        "identical",  # COPY --from=escrow-test/base:latest
        "identical",  # COPY keep.txt
    ], verdict["layers"]
    # in the config, only the history item of that COPY (the digest of what it copied)
    assert [
        (c["field"].endswith(".createdBy"), " in /stamp " in c["original"])
        for c in verdict["config"]
    ] == [(True, True)], verdict["config"]
    # the secret is in no entry
    for index in range(size + 1):
        assert token not in _entry_text(cli, index)
    # verify shows the verdict the build stands by (its latest conclusive one)
    r = cli(["verify", str(middle), "--json"])
    assert r.json()["rebuild_verdict"] == "different"
    assert "rebuild    verdict: different" in cli(["verify", str(middle)]).stdout

    # the whole build against the middle target: every input that differs is named
    r = cli(["diff", str(built.index), str(middle)])
    assert r.exit_code == 0, r.stderr
    inputs_text = r.stdout.split("Inputs\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert inputs_text == [
        "  stage 2: base image scratch removed",  # the final stage, beyond the target
        "  build arg API_TOKEN: secret, not comparable (salted hashes)",
        "  target: (not set) -> middle",
    ], r.stdout
    assert token not in r.stdout


# -- escrow diff of two builds with other build args and another base ------------------


def test_diff_pairs_a_changed_step_with_itself_beside_a_base_layer_one_side_lacks(
    cli: Any, rec: Recorder
) -> None:
    """Regression: the layers of a step whose build arg changed, after a base with one
    layer more, were paired by position — the base's extra layer with that step ("made in
    entry B by: |1 FLAVOUR=plain …") and the step itself "only in entry A" — while the
    history beside them was paired right."""
    base = _moving_base(rec, 1)
    files = {
        "Dockerfile": f"ARG BASE={base.tag}\nFROM ${{BASE}}\nARG FLAVOUR=plain\n"
        'RUN echo "$FLAVOUR" > /flavour\n'
    }
    a = rec.build(files, name="flavour-a", build_args=(("FLAVOUR", "spicy"),))
    b = rec.build({}, context=a.context, name="flavour-b", build_args=(("BASE", BASE),))
    r = cli(["diff", str(a.index), str(b.index), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = r.json()
    assert [(c["stage"], c["change"]) for c in doc["inputs"]["baseImages"]] == [(0, "reference")]
    assert [(c["name"], c["change"]) for c in doc["inputs"]["buildArgs"]] == [
        ("BASE", "added"),
        ("FLAVOUR", "removed"),
    ]
    layers = doc["image"]["layers"]
    pairs = [
        (layer.get("createdBy"), layer.get("rebuiltCreatedBy"), layer["verdict"])
        for layer in layers
        if layer["verdict"] != "identical"
    ]
    assert pairs == [
        ("/bin/sh -c echo 1 > /generation", None, "different"),
        (
            '|1 FLAVOUR=spicy /bin/sh -c echo "$FLAVOUR" > /flavour',
            '|1 FLAVOUR=plain /bin/sh -c echo "$FLAVOUR" > /flavour',
            "different",
        ),
    ], layers
    text = cli(["diff", str(a.index), str(b.index)]).stdout
    assert f"only in entry {a.index}  /bin/sh -c echo 1 > /generation" in text
    assert f"only in entry {a.index}  |1 FLAVOUR" not in text
