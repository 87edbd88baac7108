"""Build manifest -> in-toto Statement with the SLSA Provenance v1 predicate.

``escrow export --slsa INDEX`` uses :func:`provenance_statement`.  The mapping
(the meaning of :data:`~escrow.documents.types.SLSA_BUILD_TYPE`, documented in
``docs/slsa.md``):

* ``subject`` — the manifest's subjects (the image, by image ID and any
  pushed manifest digest).
* ``buildDefinition.externalParameters`` — what the pipeline chose: ``kind``
  (``dockerfile`` for ``escrow build``, ``image`` for ``escrow capture``,
  ``command`` for ``escrow record``), ``project``, ``dockerfile`` (path),
  ``context`` (``sha256:`` tree digest), ``buildArgs`` and ``labels`` (name ->
  value; a secret stays a salted digest ``{"salt", "sha256"}``), ``target``,
  ``platform``, ``tags``, and for ``escrow record`` the ``command`` (its argv,
  from ``predicate.command.argv``, secrets already redacted) and the ``cwd`` it
  ran in.
* ``buildDefinition.internalParameters`` — what escrow and the engine fixed:
  the phoenix flags, the Docker engine, the CI facts, the escrow build ID.
* ``buildDefinition.resolvedDependencies`` — every base image (digest = the
  registry manifest digest when known, else the image ID; both in
  annotations), the build context (tree digest), the Dockerfile, and the
  source revision (``git+URL`` with ``gitCommit``).
* ``runDetails.builder`` — ``id`` = :data:`SLSA_BUILDER_PREFIX` + the escrow
  builder id; ``version`` = escrow and Docker engine versions.
* ``runDetails.metadata`` — ``invocationId`` = escrow build ID, start/finish.
* ``runDetails.byproducts`` — each layer (diff ID), each step log (digest of
  the stored log), the log of an ``escrow record`` command, and the signed
  ledger envelope the export was made from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from escrow.documents.types import (
    BUILD_MANIFEST,
    SLSA_BUILD_TYPE,
    SLSA_BUILDER_PREFIX,
    SLSA_PROVENANCE,
    STATEMENT_TYPE,
)
from escrow.errors import InputError

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
LOG_MEDIA_TYPE = "text/plain; charset=utf-8"
ENVELOPE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


def _hex(digest: Any) -> str | None:
    """Bare lowercase hex of a ``sha256:…`` or bare digest; ``None`` if it is not one."""
    if not isinstance(digest, str):
        return None
    h = digest.split("@")[-1].removeprefix("sha256:").lower()
    return h if len(h) == 64 and all(c in "0123456789abcdef" for c in h) else None


def _drop_empty(d: dict[str, Any]) -> dict[str, Any]:
    """SLSA: unset, null and empty are equivalent — leave them out."""
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


def _git_uri(remote: str) -> str | None:
    """``git+`` URI of a git remote (scp-like ``user@host:path`` becomes ``git+ssh://``)."""
    r = remote.strip()
    if not r:
        return None
    if "://" in r:
        scheme, rest = r.split("://", 1)
        return f"git+{scheme.lower()}://{rest}" if not scheme.startswith("git+") else r
    if ":" in r and "@" in r.split(":", 1)[0]:
        host, path = r.split(":", 1)
        return f"git+ssh://{host}/{path.lstrip('/')}"
    return None


def _build_args(args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in args or []:
        if not isinstance(a, Mapping) or "name" not in a:
            continue
        if a.get("secret"):
            out[str(a["name"])] = _drop_empty({"salt": a.get("salt"), "sha256": a.get("sha256")})
        else:
            out[str(a["name"])] = "" if a.get("value") is None else str(a["value"])
    return out


def _docker_purl(reference: str, manifest_digest: str | None) -> str | None:
    """``pkg:docker/NAME@sha256%3A…[?repository_url=HOST]`` for a pinned registry image."""
    if not reference or manifest_digest is None:
        return None
    repo = reference.split("@")[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: len(repo) - len(last)] + last.split(":")[0]
    parts = repo.split("/")
    host = None
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        host, repo = parts[0], "/".join(parts[1:])
    purl = f"pkg:docker/{quote(repo.lower(), safe='/')}@sha256%3A{manifest_digest}"
    return f"{purl}?repository_url={quote(host.lower(), safe='')}" if host else purl


def _base_images(bases: Any) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    for b in bases or []:
        if not isinstance(b, Mapping):
            continue
        ref = str(b.get("reference") or "")
        image_id, repo_digest = b.get("imageId"), b.get("repoDigest")
        digest = _hex(repo_digest) or _hex(image_id)
        if digest is None:  # FROM scratch, or an earlier stage: nothing was fetched
            continue
        dep: dict[str, Any] = {
            "name": ref or f"stage-{b.get('stage')}",
            "digest": {"sha256": digest},
            "annotations": _drop_empty(
                {
                    "kind": "copy-from-image" if b.get("line") is not None else "base-image",
                    "stage": b.get("stage"),
                    "line": b.get("line"),
                    "stageName": b.get("stageName"),
                    "imageId": image_id,
                    "repoDigest": repo_digest,
                    "digestOf": "registry manifest" if _hex(repo_digest) else "image config",
                }
            ),
        }
        purl = _docker_purl(ref, _hex(repo_digest))
        if purl:
            dep["uri"] = purl
        deps.append(dep)
    return deps


def _context_and_source(inputs: Mapping[str, Any]) -> list[dict[str, Any]]:
    deps: list[dict[str, Any]] = []
    context = inputs.get("context") or {}
    tree = _hex(context.get("treeDigest"))
    if tree:
        deps.append(
            {
                "name": "context",
                "digest": {"sha256": tree},
                "annotations": _drop_empty(
                    {
                        "kind": "build-context",
                        "digestOf": "escrow context tree: sorted (path, mode, size, sha256)",
                        "archiveSha256": context.get("archiveDigest"),
                        "fileCount": context.get("fileCount"),
                        "totalSize": context.get("totalSize"),
                    }
                ),
            }
        )
    recipe = inputs.get("recipe") or {}
    if _hex(recipe.get("sha256")):
        deps.append(
            {
                "name": str(recipe.get("path") or "Dockerfile"),
                "digest": {"sha256": _hex(recipe.get("sha256"))},
                "annotations": {"kind": "recipe"},
            }
        )
    source = inputs.get("source") or {}
    commit = source.get("commit")
    if isinstance(commit, str) and commit:
        dep: dict[str, Any] = {
            "name": "source",
            "digest": {"gitCommit": commit.lower()},
            "annotations": _drop_empty(
                {"kind": "source", "branch": source.get("branch"), "dirty": source.get("dirty")}
            ),
        }
        uri = _git_uri(str(source.get("remote") or ""))
        if uri:
            dep["uri"] = f"{uri}@{commit.lower()}"
        deps.append(dep)
    return deps


def _byproduct(name: str, sha256: str, media_type: str, **annotations: Any) -> dict[str, Any]:
    """A ``runDetails.byproducts`` item; unset annotations are left out."""
    return {
        "name": name,
        "digest": {"sha256": sha256},
        "mediaType": media_type,
        "annotations": _drop_empty(annotations),
    }


def _byproducts(predicate: Mapping[str, Any], envelope: bytes | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for layer in predicate.get("layers") or []:
        digest = _hex(layer.get("diffId"))
        if digest is not None:
            out.append(
                _byproduct(
                    f"layer-{layer.get('index')}",
                    digest,
                    LAYER_MEDIA_TYPE,
                    kind="layer",
                    diffId=layer.get("diffId"),
                    size=layer.get("size"),
                    createdBy=layer.get("createdBy"),
                )
            )
    for step in predicate.get("steps") or []:
        log = step.get("log") or {}
        digest = _hex(log.get("sha256"))
        if digest is not None:
            out.append(
                _byproduct(
                    f"step-{step.get('index')}.log",
                    digest,
                    LOG_MEDIA_TYPE,
                    kind="log",
                    instruction=step.get("instruction"),
                    exitCode=step.get("exitCode"),
                    size=log.get("size"),
                )
            )
    command = predicate.get("command") or {}
    command_log = command.get("log") or {}
    digest = _hex(command_log.get("sha256"))
    if digest is not None:
        out.append(
            _byproduct(
                "command.log",
                digest,
                LOG_MEDIA_TYPE,
                kind="log",
                exitCode=command.get("exitCode"),
                size=command_log.get("size"),
            )
        )
    if envelope is not None:
        out.append(
            _byproduct(
                "escrow-build-manifest.dsse.json",
                hashlib.sha256(envelope).hexdigest(),
                ENVELOPE_MEDIA_TYPE,
                kind="signed-build-manifest",
            )
        )
    return out


def provenance_statement(
    manifest: Mapping[str, Any],
    *,
    envelope: bytes | None = None,
    ledger: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The SLSA Provenance v1 Statement of a (validated) build manifest.

    ``envelope`` is the stored DSSE envelope the manifest came from (listed as a
    byproduct); ``ledger`` (e.g. ``{"ledgerIndex": 3, "leafHash": "…", "origin": "…"}``)
    is added to that byproduct's annotations.
    """
    if manifest.get("predicateType") != BUILD_MANIFEST:
        raise InputError(
            f"SLSA provenance is made from build manifests, not {manifest.get('predicateType')!r}."
        )
    p: Mapping[str, Any] = manifest["predicate"]
    build: Mapping[str, Any] = p.get("build") or {}
    if build.get("status") != "succeeded":
        raise InputError(
            f"Build {build.get('id')} {build.get('status') or 'did not succeed'}; "
            "SLSA provenance describes the artifacts of a succeeded build.",
        )
    inputs: Mapping[str, Any] = p.get("inputs") or {}
    builder: Mapping[str, Any] = p.get("builder") or {}
    engine: Mapping[str, Any] = builder.get("engine") or {}
    recipe: Mapping[str, Any] = inputs.get("recipe") or {}
    context: Mapping[str, Any] = inputs.get("context") or {}
    image: Mapping[str, Any] = p.get("image") or {}
    # ``escrow record`` keeps the command beside ``inputs``, at ``predicate.command``.
    command: Mapping[str, Any] = p.get("command") or {}

    external = _drop_empty(
        {
            "kind": build.get("kind"),
            "project": build.get("project"),
            "dockerfile": recipe.get("path"),
            "context": f"sha256:{_hex(context.get('treeDigest'))}"
            if _hex(context.get("treeDigest"))
            else None,
            "buildArgs": _build_args(inputs.get("buildArgs")),
            "labels": _build_args(inputs.get("labels")),
            "target": inputs.get("target"),
            "platform": inputs.get("platform"),
            "command": list(command.get("argv") or []),
            "cwd": command.get("cwd"),
            "tags": list(image.get("tags") or []),
        }
    )
    internal = _drop_empty(
        {
            "buildId": build.get("id"),
            "phoenix": build.get("phoenix"),
            "engine": dict(engine) or None,
            "ci": builder.get("ci"),
        }
    )
    version = _drop_empty(
        {
            "escrow": builder.get("escrowVersion"),
            "docker": engine.get("version"),
            "dockerApi": engine.get("apiVersion"),
        }
    )
    byproducts = _byproducts(p, envelope)
    if ledger and envelope is not None:
        byproducts[-1]["annotations"].update(_drop_empty(dict(ledger)))
    builder_id = str(builder.get("id") or "unknown")
    predicate: dict[str, Any] = {
        "buildDefinition": _drop_empty(
            {
                "buildType": SLSA_BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": _base_images(
                    [*(inputs.get("baseImages") or []), *(inputs.get("copyFromImages") or [])]
                )
                + _context_and_source(inputs),
            }
        ),
        "runDetails": _drop_empty(
            {
                "builder": _drop_empty(
                    {"id": SLSA_BUILDER_PREFIX + quote(builder_id, safe=""), "version": version}
                ),
                "metadata": _drop_empty(
                    {
                        "invocationId": build.get("id"),
                        "startedOn": build.get("startedOn"),
                        "finishedOn": build.get("finishedOn"),
                    }
                ),
                "byproducts": byproducts,
            }
        ),
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [dict(s) for s in manifest.get("subject") or []],
        "predicateType": SLSA_PROVENANCE,
        "predicate": predicate,
    }
