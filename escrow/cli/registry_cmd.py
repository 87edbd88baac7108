"""``escrow attach``: the signed envelope of a build, beside its image in the registry."""

from __future__ import annotations

import click

from escrow.cli.app import App, Integer, json_option, pass_app
from escrow.errors import InputError


@click.command()
@click.argument("index", type=Integer(min=0))
@click.option(
    "--to",
    "targets",
    multiple=True,
    metavar="HOST/REPO[:TAG|@sha256:…]",
    help="The image in the registry [default: where `escrow build --push` pushed it]; "
    "repeatable. It must be the image the entry records.",
)
@json_option
@pass_app
def attach(app: App, index: int, targets: tuple[str, ...], as_json: bool) -> None:
    """Push the signed envelope of ledger entry INDEX into the registry, next to the
    image it describes.

    Stored the way cosign stores attestations (tag sha256-<digest>.att, DSSE
    envelope layers) and naming the image as its OCI subject: listed by the
    registry's referrers API, or on registries without it in the referrers tag
    schema (an image index tagged sha256-<digest>). Credentials come from
    `docker login` (DOCKER_CONFIG honoured). `escrow verify
    HOST/REPO@sha256:…` then finds and checks it.
    """
    from escrow.documents.types import BUILD_MANIFEST, REBUILD_VERIFICATION, SCHEMA_NAMES
    from escrow.registry.attest import attach as attach_entry
    from escrow.registry.attest import targets_of
    from escrow.registry.reference import Reference

    for t in targets:  # every --to checked (credentials refused unprinted) before any work
        Reference.parse(t)
    ledger = app.ledger()
    entry = ledger.get(index)
    if entry.predicate_type not in (BUILD_MANIFEST, REBUILD_VERIFICATION):
        raise InputError(
            f"Entry {index} ({SCHEMA_NAMES.get(entry.predicate_type, entry.predicate_type)}) "
            "is not a statement about an image.",
            hint="Attach a build manifest or a rebuild verdict (`escrow log --kind …` lists them).",
        )
    if not entry.image_id:  # `escrow record`, a failed build: before asking for a --to
        raise InputError(
            f"Entry {index} records no image (a command, or a build that failed), so there "
            "is nothing to attach its envelope to.",
            hint="Attach the entry of a successful `escrow build` or `escrow capture`.",
        )
    where = list(targets) or targets_of(entry)
    if not where:
        raise InputError(
            f"Entry {index} was not pushed by escrow, so where its image lives is unknown.",
            hint="Name the image with --to HOST/REPO:TAG.",
        )
    origin = ledger.checkpoint().origin
    results = [attach_entry(entry, t, origin=origin) for t in where]
    if as_json:
        app.emit_json({"index": index, "attached": [r.to_dict() for r in results]})
        return
    for r in results:
        verb = "attached" if r.created else "already attached"
        app.out(f"{verb}: entry {index} -> {r.reference.split('@')[0]}:{r.tag}")
        app.out(f"  image manifest {r.manifest_digest}")
        app.out(f"  attestation    {r.attestation_digest}")
