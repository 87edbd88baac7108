"""``escrow init``: create ESCROW_HOME, the ledger and the signing keys."""

from __future__ import annotations

import click

from escrow.cli.app import App, json_option, pass_app
from escrow.config import redact_url
from escrow.signing.keys import KeyType, SigningKey


@click.command()
@click.option(
    "--key-type",
    type=click.Choice([t.value for t in KeyType]),
    default=KeyType.ED25519.value,
    show_default=True,
    help="Algorithm of the build-signing key (the log key is always Ed25519).",
)
@json_option
@pass_app
def init(app: App, key_type: str, as_json: bool) -> None:
    """Create ESCROW_HOME, a SQLite ledger and the signing keys.

    Idempotent: an existing key is never overwritten, an existing ledger is kept.
    """
    s = app.settings
    s.home.mkdir(parents=True, exist_ok=True)
    created: list[str] = []
    if not s.log_key_path.exists():
        SigningKey.generate(KeyType.ED25519).save(s.log_key_path, s.passphrase)
        created.append(str(s.log_key_path))
    if not s.key_path.exists():
        SigningKey.generate(KeyType(key_type)).save(s.key_path, s.passphrase)
        created.append(str(s.key_path))
    build_key = SigningKey.load(s.key_path, s.passphrase)
    with app.local_ledger(create=True) as ledger:
        ledger.register_key(build_key.public, "build")
        verifier_key = ledger.verifier_key()
        size = ledger.size()
    result = {
        "home": str(s.home),
        "db_url": redact_url(s.db_url),
        "build_key": build_key.keyid,
        "log_verifier_key": verifier_key,
        "created": created,
        "size": size,
    }
    if as_json:
        app.emit_json(result)
        return
    app.out(f"escrow home: {s.home}")
    app.out(f"build key:   {build_key.keyid}")
    app.out(f"log key:     {result['log_verifier_key']}")
    if not created:
        app.say("Already initialised; nothing was overwritten.")
