"""Documents and signatures: what escrow adds on top of the raw primitives.

Run: .venv/bin/python bench/bench_documents.py [--seconds 1.0]

Each figure is printed beside a reference measured in the same run on the same
machine: schema validation against json.loads of the same bytes, RFC 8785
canonicalisation against json.dumps(sort_keys=True), sign_statement
(validate + canonicalise + sign) against the bare signature over the same PAE
bytes, Envelope.verify against the bare signature check.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from escrow.documents.canonical import canonical_bytes
from escrow.documents.schemas import validate_document
from escrow.signing.dsse import Envelope, pae, sign_statement
from escrow.signing.keys import KeyType, SigningKey

ROOT = Path(__file__).resolve().parent.parent


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    fn()  # warm caches (compiled validators, imports)
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def row(what: str, ours: float, reference_name: str, reference: float) -> None:
    print(
        f"{what:<44} {ours:>10,.0f}/s   {reference_name:<34} {reference:>10,.0f}/s"
        f"   ({ours / reference:.2f}x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.0)
    s = ap.parse_args().seconds
    text = (ROOT / "tests" / "assets" / "build-manifest.example.json").read_bytes()
    doc = json.loads(text)
    print(f"build manifest example: {len(text)} bytes, {len(canonical_bytes(doc))} canonical")
    row(
        "schema validation (statement + predicate)",
        rate(lambda: validate_document(doc), s),
        "json.loads of the same bytes",
        rate(lambda: json.loads(text), s),
    )
    row(
        "RFC 8785 canonical bytes (rfc8785)",
        rate(lambda: canonical_bytes(doc), s),
        "json.dumps(sort_keys=True)",
        rate(lambda: json.dumps(doc, sort_keys=True, separators=(",", ":")), s),
    )
    data = pae("application/vnd.in-toto+json", canonical_bytes(doc))
    for kt in (KeyType.ED25519, KeyType.ECDSA_P256):
        key = SigningKey.generate(kt)
        env = sign_statement(doc, key)
        sig = env.signatures[0].sig
        row(
            f"sign_statement, {kt.value}",
            rate(lambda key=key: sign_statement(doc, key), s),
            f"bare {kt.value} sign over PAE",
            rate(lambda key=key: key.sign(data), s),
        )
        row(
            f"Envelope.from_bytes + verify, {kt.value}",
            rate(
                lambda env=env, key=key: Envelope.from_bytes(env.to_bytes()).verify([key.public]), s
            ),
            f"bare {kt.value} verify over PAE",
            rate(lambda key=key, sig=sig: key.public.verify(sig, data), s),
        )


if __name__ == "__main__":
    main()
