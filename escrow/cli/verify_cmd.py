"""``escrow verify``: check a recorded build, or a DSSE envelope offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from escrow.cli.app import App, Integer, complete_paths, json_option, pass_app
from escrow.errors import (
    CheckFailed,
    EngineUnavailable,
    EscrowError,
    InputError,
    SignatureError,
    UsageError,
)

if TYPE_CHECKING:
    from datetime import datetime

    from escrow.documents.types import KeyID


class DockerFacts:
    """Image facts from the real engine (``client``: a ``docker.APIClient``), or ``None``
    for images it does not have."""

    def __init__(self, client: Any) -> None:
        self.client = client

    @classmethod
    def connect(cls) -> DockerFacts | None:
        """The engine, or ``None`` when it cannot be reached (see :meth:`probe`)."""
        found = cls.probe()
        return found if isinstance(found, DockerFacts) else None

    @classmethod
    def probe(cls) -> DockerFacts | EngineUnavailable:
        """The engine, or why it cannot be used: the error ``escrow build`` gives.  The
        engine is the one ``escrow build`` uses (the docker CLI's: ``DOCKER_HOST``, else
        the Docker context)."""
        from escrow.capture.engine import _unavailable, engine_endpoint, sdk_client

        endpoint = None
        try:
            endpoint = engine_endpoint()
            # a missing or forbidden socket is reported before the SDK half-opens one
            client = sdk_client(endpoint)
        except EngineUnavailable as e:
            return e
        except Exception as e:  # noqa: BLE001 - any failure here means no usable engine
            return _unavailable(e, endpoint)
        try:
            client.ping()
        except Exception as e:  # noqa: BLE001 - as above
            client.close()
            return _unavailable(e, endpoint)
        return cls(client)

    def image_facts(self, ref: str) -> dict[str, Any] | None:
        import docker.errors

        from escrow.capture.capture import check_image_ref

        check_image_ref(ref)  # `..` and the like would reach another endpoint of the engine
        try:
            attrs = self.client.inspect_image(ref)
        except (docker.errors.ImageNotFound, docker.errors.NullResource):
            return None
        except docker.errors.APIError:
            return None
        return {"id": attrs["Id"], "diff_ids": list(attrs.get("RootFS", {}).get("Layers", []))}

    def image_ids_starting(self, digits: str) -> list[str]:
        """The IDs of the engine's images (intermediate ones too, as the engine's own
        short-ID lookup sees them) that begin with the hex ``digits``."""
        try:
            ids = self.client.images(all=True, quiet=True)
        except Exception:  # noqa: BLE001 - the engine went away: nothing known
            return []
        return sorted({str(i) for i in ids if str(i).removeprefix("sha256:").startswith(digits)})


class _Printed(CheckFailed):
    """A failure whose ``--json`` document has been printed already."""


def _verify_envelope(
    app: App, path: str, key_files: tuple[str, ...], threshold: int, as_json: bool
) -> None:
    """Check the envelope at ``path``, or each of the envelopes it holds as JSON Lines
    (what `escrow sign` writes); with ``--json`` every failure is still one document on
    stdout."""
    from escrow.signing.dsse import Envelope

    try:
        data = _read_envelopes(path)
        lines = _envelope_lines(data)
        if lines is None:
            env = Envelope.from_bytes(data)
            good = _check_signed(env, *_trusted_keys(app, key_files), key_files, threshold)
        else:
            keys, records = _trusted_keys(app, key_files)
            # a threshold the keys can never meet is the command's usage error (exit 2,
            # said once), as for a single envelope, not a failure of every line (exit 1)
            from escrow.signing.dsse import usable_keys

            usable_keys(keys, threshold)
    except EscrowError as e:
        if as_json:
            app.emit_json({"ok": False, "error": e.diagnostics(), "threshold": threshold})
        raise
    if lines is not None:
        _verify_each(lines, keys, records, key_files, threshold, app, as_json)
        return
    if as_json:
        app.emit_json({"ok": True, "verified_keyids": good, "threshold": threshold})
    else:
        app.out(f"OK: envelope verified by {len(good)} trusted key(s): {', '.join(good)}")


def _verify_each(
    lines: list[tuple[int, str]],
    keys: list[Any],
    records: list[Any],
    key_files: tuple[str, ...],
    threshold: int,
    app: App,
    as_json: bool,
) -> None:
    """One result per envelope line; :class:`CheckFailed` (exit 1) when any fails."""
    from escrow.signing.dsse import Envelope

    results: list[dict[str, Any]] = []
    for n, line in lines:
        try:
            good = _check_signed(Envelope.from_bytes(line), keys, records, key_files, threshold)
        except EscrowError as e:
            results.append({"line": n, "ok": False, "error": e.diagnostics()})
        else:
            results.append({"line": n, "ok": True, "verified_keyids": good})
    failed = [r for r in results if not r["ok"]]
    if as_json:
        app.emit_json(
            {"ok": not failed, "count": len(results), "envelopes": results, "threshold": threshold}
        )
    else:
        for r in results:
            if r["ok"]:
                ids = r["verified_keyids"]
                app.out(
                    f"line {r['line']}: OK: envelope verified by {len(ids)} trusted key(s): "
                    f"{', '.join(ids)}"
                )
            else:
                app.out(f"line {r['line']}: FAIL: {r['error']}")
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(results)} envelopes failed verification.")
    if not as_json:
        app.say(f"All {len(results)} envelopes verified.")


def _when(moment: datetime | None) -> str:
    from escrow.times import to_the_second

    return "?" if moment is None else to_the_second(moment)


def _read_envelopes(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"Cannot read the envelope {path}: {e.strerror}.") from e


def _envelope_lines(data: bytes) -> list[tuple[int, str]] | None:
    """``(line number, text)`` of each non-blank line when ``data`` is JSON Lines of
    several documents (`escrow sign` output), else ``None``: one document (indented or
    not), or text for :meth:`Envelope.from_bytes` to say what is wrong with."""
    import json

    try:
        text = data.decode("utf-8-sig")
        json.loads(text)
    except UnicodeDecodeError:
        return None
    except ValueError:
        lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
        if len(lines) < 2:
            return None
        try:
            json.loads(lines[0][1])
        except ValueError:
            return None  # not JSON Lines: the whole text's error says more
        return lines
    return None


def _trusted_keys(app: App, key_files: tuple[str, ...]) -> tuple[list[Any], list[Any]]:
    """The trusted public keys (the --key files, else the ledger's active keys), and the
    ledger's key records (empty with --key)."""
    from escrow.signing.keys import PublicKey

    records: list[Any] = []
    if key_files:
        keys = []
        for k in key_files:
            try:
                pem = Path(k).read_bytes()
            except OSError as e:
                raise InputError(f"Cannot read the key file {k}: {e.strerror}.") from e
            try:
                keys.append(PublicKey.from_pem(pem))
            except InputError as e:
                raise InputError(f"Key file {k}: {e.message}", hint=e.hint) from e
    else:
        records = app.ledger(readonly=True).keys()
        keys = [PublicKey.from_pem(k.public_pem) for k in records if k.status == "active"]
    if not keys:
        raise UsageError("There is no trusted key to verify with.", hint="Pass --key PUBLIC.pem.")
    return keys, records


def _check_signed(
    env: Any, keys: list[Any], records: list[Any], key_files: tuple[str, ...], threshold: int
) -> list[KeyID]:
    """The key IDs of the trusted ``keys`` that signed ``env``."""
    from escrow.signing.keys import PublicKey

    try:
        good: list[KeyID] = env.verify(keys, threshold=threshold)
    except SignatureError as e:
        if key_files:
            raise
        # a signature by a registered key no longer active is named, never "does not verify"
        ended = {k.keyid: k for k in records if k.status != "active"}
        try:
            signed = env.verify([PublicKey.from_pem(k.public_pem) for k in ended.values()])
        except EscrowError:
            raise e from None
        named = ", ".join(
            f"key {k[:16]}… ({ended[k].name}), {ended[k].status} "
            f"{'on' if ended[k].status == 'revoked' else 'from'} "
            f"{_when(ended[k].revoked_at or ended[k].retired_at)}"
            f"{f' ({ended[k].told_reason})' if ended[k].told_reason else ''}"
            for k in signed
        )
        what = (
            "No key active now signed the envelope"
            if e.message.startswith("No signature")
            else e.message.rstrip(".")
        )
        raise SignatureError(
            f"{what}: it is signed by {named}.",
            hint="Without --key only the keys active now are trusted; `escrow keys list` "
            "shows each key's history.",
        ) from e
    env.read_statement()  # a signed payload must also be a valid escrow Statement
    return good


@click.command()
@click.argument("target", required=False)
@click.option(
    "--envelope",
    "envelope_path",
    metavar="FILE",
    shell_complete=complete_paths,
    help="Verify this DSSE envelope file ('-' = stdin) instead of a TARGET; offline with --key.",
)
@click.option(
    "--key",
    "key_files",
    multiple=True,
    metavar="PUB.pem",
    type=click.Path(dir_okay=False),
    help="Trusted public key (PEM) for --envelope; repeatable. Without --key, the keys "
    "registered in the ledger and active now are used, so the check needs the ledger "
    "(or the server) and is not offline.",
)
@click.option(
    "--threshold",
    type=Integer(min=1),
    metavar="N",
    default=1,
    show_default=True,
    help="Distinct trusted keys that must have signed.",
)
@json_option
@pass_app
def verify(
    app: App,
    target: str | None,
    envelope_path: str | None,
    key_files: tuple[str, ...],
    threshold: int,
    as_json: bool,
) -> None:
    """Verify the build TARGET (a ledger index, an image ID, an image in the engine,
    or HOST[:PORT]/REPO@sha256:… in a registry).

    Checks the entry's signature against the key valid when it was appended, its
    inclusion in the ledger under the latest signed checkpoint, and — when the
    image is in the engine — that its image ID and diff IDs are the recorded ones.
    For an image in a registry, the attestation `escrow attach` put beside it is
    read from the registry (every digest checked) and the entry it names is
    checked the same way. Exit 1 when any check fails.

    With --envelope FILE, check one DSSE envelope instead: its signatures against
    the --key files (offline) or, without --key, the keys registered in the
    ledger, and that its payload is an escrow Statement. With --json, a failure
    still prints one document, with "ok": false and the "error". A FILE of several
    envelopes, one per line (as `escrow sign` writes them), gets one result per
    envelope (with --json, one document listing them) and exit 1 when any fails.
    """
    if envelope_path:
        if target:
            raise UsageError("Give either TARGET or --envelope, not both.")
        _verify_envelope(app, envelope_path, key_files, threshold, as_json)
        return
    if not target:
        raise UsageError(
            "Nothing to verify.", hint="Give a ledger index, an image, or --envelope FILE."
        )
    unused = [o for o, given in (("--key", key_files), ("--threshold", threshold != 1)) if given]
    if unused:  # a build is checked against the ledger's key history, never given keys
        raise UsageError(
            f"{' and '.join(unused)} {'apply' if len(unused) > 1 else 'applies'} only with "
            "--envelope, not to a TARGET.",
            hint="A TARGET's signature is checked against the key the ledger held valid "
            "when the entry was appended.",
        )
    from escrow.registry.attest import is_registry_reference
    from escrow.registry.reference import refuse_credentials

    try:
        refuse_credentials(target)  # every later message would name the target as given
        if is_registry_reference(target):
            _verify_in_registry(app, target, as_json)
            return
        from escrow.blobs import digest_prefix
        from escrow.verification import resolve_targets, verify_entry

        ledger = app.ledger(readonly=True)
        probed = DockerFacts.probe()
        engine = probed if isinstance(probed, DockerFacts) else None
        if (
            isinstance(probed, EngineUnavailable)
            and not target.isdigit()
            and not digest_prefix(target)
        ):
            raise probed  # only the engine can tell which image a name is (an ID: the ledger too)
        found = resolve_targets(ledger, target, engine)
        entry, others = found[-1], [e.index for e in found[:-1]]
        if others and not as_json:  # an image captured twice, or rebuilt to the same ID
            app.say(
                f"escrow: {target} is recorded by entry {entry.index}, which is verified, and "
                f"before it by {_entries_named(others)} (verify one of those by its index)."
            )
        unavailable = probed.message if isinstance(probed, EngineUnavailable) else None
        result = verify_entry(ledger, entry, engine=engine, engine_unavailable=unavailable)
    except _Printed:
        raise
    except EscrowError as e:
        if as_json:  # a target that cannot be checked is still one document on stdout
            app.emit_json({"ok": False, "target": target, "error": e.diagnostics()})
        raise
    status, failure = _build_outcome(entry)
    if as_json:
        doc = result.to_dict()
        doc["other_entries"] = others  # older builds recorded of the same image
        doc["status"] = status
        if failure is not None:
            doc["failure"] = failure
        app.emit_json(doc)
    else:
        for c in result.checks:
            mark = "skip" if c.skipped else "ok  " if c.ok else "FAIL"
            app.out(f"{mark} {c.name:<10} {c.detail}")
        if result.rebuild_verdict:
            app.out(f"     rebuild    verdict: {result.rebuild_verdict}")
    if not result.ok:
        names = ", ".join(c.name for c in result.failed())
        raise CheckFailed(f"Entry {entry.index} failed verification ({names}).")
    if as_json:
        return
    if status == "failed":
        app.say(
            f"Entry {entry.index} verified: the record is intact; "
            f"the recorded build failed{_where(failure)}."
        )
    else:
        app.say(f"Entry {entry.index} verified.")


def _build_outcome(entry: Any) -> tuple[str | None, dict[str, Any] | None]:
    """A build manifest's recorded ``status``, and its ``failure`` when it failed."""
    from escrow.documents.types import BUILD_MANIFEST

    if entry.predicate_type != BUILD_MANIFEST:
        return None, None
    try:
        build = entry.statement()["predicate"]["build"]
    except (EscrowError, KeyError, TypeError):  # a damaged entry: its checks say so
        return None, None
    if not isinstance(build, dict) or not isinstance(build.get("status"), str):
        return None, None
    failure = build.get("failure")
    failed = build["status"] == "failed" and isinstance(failure, dict)
    return str(build["status"]), failure if failed else None


def _where(failure: dict[str, Any] | None) -> str:
    """`` (step S, exit code C)`` from a recorded failure, as far as it says."""
    if failure is None:
        return ""
    parts = []
    if failure.get("step") is not None:
        parts.append(f"step {failure['step']}")
    if failure.get("exitCode") is not None:
        parts.append(f"exit code {failure['exitCode']}")
    return f" ({', '.join(parts)})" if parts else ""


def _verify_in_registry(app: App, target: str, as_json: bool) -> None:
    from escrow.registry.attest import verify_reference

    result = verify_reference(app.ledger(readonly=True), target)
    if as_json:
        app.emit_json(result.to_dict())
        if not result.ok:  # the document is out: the failure must not print a second one
            raise _Printed(f"The attestations of {target} failed verification.")
    else:
        app.out(f"image {result.reference}")
        app.out(f"  manifest {result.manifest_digest}, image ID {result.image_id}")
        for a in result.attestations:
            app.out(f"  entry {a.index} ({a.project})")
            for c in a.checks:
                app.out(f"  {'ok  ' if c.ok else 'FAIL'} {c.name:<10} {c.detail}")
        for p in result.problems:
            app.out(f"  FAIL {p}")
        for i in result.ignored:
            app.out(
                f"  skip another tool's envelope {str(i['envelope'])[:19]}… ({i['predicateType']})"
            )
    if not result.ok:
        raise CheckFailed(f"The attestations of {target} failed verification.")
    if not as_json:
        app.say(f"{target} verified through the registry and the ledger.")


__all__ = ["verify", "EscrowError"]


def _entries_named(indexes: list[int]) -> str:
    """``entry 3`` / ``entries 3 and 5`` / ``entries 1, 3 and 5``."""
    if len(indexes) == 1:
        return f"entry {indexes[0]}"
    return "entries " + ", ".join(map(str, indexes[:-1])) + f" and {indexes[-1]}"
