"""``Ledger.verify``: re-derive everything from the stored bytes and name the first problem.

The log is checked in chunks of ``2**k`` entries, in parallel worker processes
for large logs (each worker reads its own rows; Ed25519 verification is the
bulk of the work).  Per chunk: every leaf hash is recomputed from the stored
envelope bytes and compared with the recorded leaf hash and, for the entries the
batches cover, with the stored tree; every stored complete-subtree hash inside the
chunk is recomputed and compared; each entry's query fields are compared with its
envelope and its rows in the query index; every envelope signature is checked
against the keys the ledger knows.

Then, in order over the whole log: key events (which must be signed by the
log key) are replayed, so each entry is checked against the keys that were
valid at its position; integration times must never decrease; the root is
recomputed and compared with the latest signed checkpoint (the note of the last
entry that has one, its signature checked against the log key), and every
retained checkpoint is checked the same way, which proves it consistent with
the latest.
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from escrow.documents.types import KEY_EVENT
from escrow.errors import EscrowError, InputError, SignatureError
from escrow.ledger import merkle
from escrow.ledger.checkpoint import verify_checkpoint
from escrow.ledger.models import Problem, VerifyReport, stored_bytes
from escrow.signing.dsse import Envelope, pae
from escrow.signing.keys import PublicKey

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from escrow.ledger.store import Ledger

CHUNK_LEVEL = 12  # chunks of 4096 entries
PARALLEL_MIN = 2 << CHUNK_LEVEL  # below this many entries, verify in this process
ZERO = bytes(32)

#: The stored envelopes are canonical UTF-8 JSON: decoded as text by one decoder, which
#: spares ``json.loads`` its encoding detection on bytes (anything else falls back to
#: :meth:`Envelope.from_bytes`, which says exactly what is wrong).
_decode_json = json.JSONDecoder().decode


def _b64(text: str) -> bytes:
    """Strict base64 (the alphabet, padding only at the end), as ``b64decode(validate=True)``."""
    return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)


@dataclass
class ChunkResult:
    start: int
    end: int
    leaves: bytes  # recomputed leaf hashes, 32 bytes each (zeros for missing rows)
    levels: list[bytes]  # levels[l - 1]: recomputed complete subtrees of level l in the chunk
    outer: list[tuple[int, int, bytes]]  # stored (level, index, hash) reaching past the chunk
    signers: list[tuple[int, ...]]  # per entry: candidate keys whose signature verifies
    times: list[int]  # per entry: integrated_us
    key_events: dict[int, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    moved: list[tuple[int, bytes]] = field(default_factory=list)  # consistent row, wrong place
    origins: dict[str, int] = field(default_factory=dict)  # checkpoints' origin -> first entry
    signatures: int = 0


Verifier = Callable[[bytes, bytes], None]  # (signature, data); raises InvalidSignature


def _verifier(public: PublicKey) -> Verifier:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    key = public.key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.verify
    ecdsa = ec.ECDSA(hashes.SHA256())
    return lambda sig, data: key.verify(sig, data, ecdsa)


def _pubs(candidates: Sequence[tuple[str, str]]) -> tuple[list[Verifier], dict[str, int]]:
    pubs = [_verifier(PublicKey.from_pem(pem)) for _, pem in candidates]
    return pubs, {keyid: i for i, (keyid, _) in enumerate(candidates)}


def _parse(data: bytes) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """``(payloadType, payload, [(keyid, sig)])`` of stored (canonical) envelope bytes."""
    try:
        obj = _decode_json(data.decode("utf-8"))
        sigs = [(str(s.get("keyid", "")), _b64(s["sig"])) for s in obj["signatures"]]
        ptype = obj["payloadType"]
        if isinstance(ptype, str) and sigs:
            return ptype, _b64(obj["payload"]), sigs
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        pass
    env = Envelope.from_bytes(data)  # the exact reason, as an InputError
    return env.payload_type, env.payload, [(s.keyid, s.sig) for s in env.signatures]


def _index_disagreement(
    payload_bytes: bytes,
    predicate_type: str,
    project: str | None,
    image_id: str | None,
    diff_ids: frozenset[str],
) -> str | None:
    """Which indexed column, if any, disagrees with what the envelope's statement says."""
    from escrow.ledger.store import index_fields

    try:
        payload = _decode_json(payload_bytes.decode("utf-8"))
        ptype = payload["predicateType"]
    except (ValueError, KeyError, TypeError):
        return None  # an unreadable statement is reported by the signature check
    if ptype != predicate_type:
        return "predicate type"
    want_project, want_image, want_diffs = index_fields(ptype, payload)
    if want_project != project:
        return "project"
    if want_image != image_id:
        return "image ID"
    if frozenset(want_diffs) != diff_ids:
        return "layer diff IDs"
    return None


_CHUNK_SQL = (
    "SELECT idx, envelope, leaf_hash, integrated_us, predicate_type, project, image_id, "
    "signer, diff_ids, note FROM ledger_entry WHERE idx >= ? AND idx < ? ORDER BY idx"
)


def check_chunk(
    conn: Connection,
    start: int,
    end: int,
    candidates: Sequence[tuple[str, str]],
    indexed: int = 0,
) -> ChunkResult:
    """Check entries ``[start, end)``; candidate 0 is the log key.  Entries below
    ``indexed`` (the batches written) must have their subtree hashes in ``ledger_node``
    and exactly their query fields in ``ledger_term``; the others no query rows."""
    from escrow.ledger.store import entry_terms, sql_tuples

    pubs, by_id = _pubs(candidates)
    n = end - start
    pg = conn.dialect.name == "postgresql"
    # plain driver rows: a SQLAlchemy row each would cost this loop a few per cent
    rows = sql_tuples(conn, _CHUNK_SQL, (start, end), pg=pg)
    # the query index's rows of the chunk, compared as one set with what the entries
    # say (entries whose own fields disagree are reported, and left out, on their own)
    listed = set(
        sql_tuples(
            conn,
            "SELECT idx, kind, value FROM ledger_term WHERE idx >= ? AND idx < ?",
            (start, end),
            pg=pg,
        )
    )
    expected: set[tuple[int, str, str]] = set()
    unchecked: set[int] = set()
    lo, hi = merkle.stored_count(start), merkle.stored_count(end)
    stored = {
        node: bytes(h)
        for node, h in sql_tuples(
            conn, "SELECT id, hash FROM ledger_node WHERE id >= ? AND id < ?", (lo, hi), pg=pg
        )
    }
    res = ChunkResult(start, end, b"", [], [], [()] * n, [0] * n)
    leaves = [ZERO] * n
    present = [False] * n
    for (
        i,
        envelope,
        leaf_hash,
        integrated_us,
        ptype,
        project,
        image_id,
        signer,
        diffs,
        note,
    ) in rows:
        k = i - start
        present[k] = True
        data = stored_bytes(envelope)
        try:  # parsed once, for the signature check and the query fields
            parsed: tuple[str, bytes, list[tuple[str, bytes]]] | None = _parse(data)
        except InputError:
            parsed = None
        h = merkle.leaf_hash(data)
        leaves[k] = h
        res.times[k] = integrated_us
        node0 = stored.get(merkle.stored_index(0, i))
        recorded = bytes(leaf_hash)
        if h != recorded:
            # the tree's own leaf hash (once stored) tells which of the two was changed
            if node0 is not None and bytes(node0) == h:
                what = "its leaf_hash column was changed; the envelope bytes are the tree's"
            elif node0 is not None and bytes(node0) == recorded:
                what = "the stored envelope bytes were changed"
            else:
                what = "the stored envelope bytes or its leaf_hash column were changed"
            res.problems.append(Problem(i, "edited", f"Entry {i}: {what}."))
        elif i >= indexed:
            pass  # after the last batch: its subtree hashes are not stored yet
        elif node0 is None:
            res.problems.append(
                Problem(i, "subtree-hash", f"Entry {i}: its stored leaf hash is missing.")
            )
        elif h != node0:
            res.moved.append((i, h))
        if h != recorded:
            unchecked.add(i)  # reported as edited
        else:
            bad = _index_disagreement(
                parsed[1] if parsed is not None else b"",
                ptype,
                project,
                image_id,
                frozenset((diffs or "").split()),
            )
            if bad is None:
                if i < indexed:
                    expected.update(entry_terms(i, ptype, project, image_id, signer, diffs))
            else:
                unchecked.add(i)
                res.problems.append(
                    Problem(
                        i,
                        "index",
                        f"Entry {i}: its indexed {bad} disagrees with its envelope "
                        "(queries would not find it as recorded).",
                    )
                )
        _check_signature(res, i, k, parsed, pubs, by_id)
        if res.signers[k] and by_id.get(signer) not in res.signers[k] and i not in unchecked:
            res.problems.append(
                Problem(
                    i,
                    "index",
                    f"Entry {i}: its indexed signer is not a key whose signature on it verifies "
                    "(queries would not find it as recorded).",
                )
            )
        if note is not None:
            # the checkpoint kept with the entry is the one of the tree it completed: its
            # size line is i + 1 (its signature and root are checked for the latest one)
            lines = str(note).split("\n", 2)
            res.origins.setdefault(lines[0], i)
            size = lines[1:2]
            if size != [str(i + 1)]:
                shown = size[0][:20] if size else "none"
                res.problems.append(
                    Problem(
                        i,
                        "reordered",
                        f"Entry {i} holds the checkpoint of size {shown}, not {i + 1}: the row, "
                        "or its checkpoint, was moved.",
                    )
                )
    for k in range(n):
        if not present[k]:
            res.problems.append(Problem(start + k, "deleted", f"Entry {start + k} is missing."))
    if listed != expected:
        for i in sorted({t[0] for t in listed ^ expected}):
            if present[i - start] and i not in unchecked:
                res.problems.append(
                    Problem(
                        i,
                        "index",
                        f"Entry {i}: its rows in the query index disagree with its entry "
                        "(queries would not find it as recorded).",
                    )
                )
    res.leaves = b"".join(leaves)
    # every complete subtree inside the chunk
    level_hashes = [leaves]
    while len(level_hashes[-1]) > 1:
        below = level_hashes[-1]
        level_hashes.append(
            [merkle.node_hash(below[j], below[j + 1]) for j in range(0, len(below) - 1, 2)]
        )
    res.levels = [b"".join(hs) for hs in level_hashes[1:]]
    seen_bad: set[tuple[int, int]] = set()
    for m in range(start, end):
        if not present[m - start]:
            continue
        for level, idx in merkle.new_nodes(m)[1:]:
            if m >= indexed:
                break  # not stored until its batch is written
            sid = merkle.stored_index(level, idx)
            got = stored.get(sid)
            first = idx << level
            if first < start:
                if got is not None:
                    res.outer.append((level, idx, got))
                continue
            want = level_hashes[level][(first - start) >> level]
            if got == want:
                continue
            # only report a node whose children are stored as recomputed
            children_ok = all(
                stored.get(merkle.stored_index(level - 1, c))
                == level_hashes[level - 1][((c << (level - 1)) - start) >> (level - 1)]
                for c in (2 * idx, 2 * idx + 1)
            )
            if children_ok and (level - 1, 2 * idx) not in seen_bad:
                seen_bad.add((level, idx))
                res.problems.append(
                    Problem(
                        first,
                        "subtree-hash",
                        f"The stored hash of entries {first}..{first + (1 << level) - 1} "
                        "does not match the entries.",
                    )
                )
    return res


def _check_signature(
    res: ChunkResult,
    i: int,
    k: int,
    parsed: tuple[str, bytes, list[tuple[str, bytes]]] | None,
    pubs: list[Verifier],
    by_id: dict[str, int],
) -> None:
    from cryptography.exceptions import InvalidSignature

    if parsed is None:
        res.problems.append(Problem(i, "edited", f"Entry {i} is not a readable DSSE envelope."))
        return
    ptype, payload, sigs = parsed
    signed = pae(ptype, payload)
    verified: list[int] = []
    known = False
    for keyid, sig in sigs:
        c = by_id.get(keyid)
        if c is not None:
            tried: Sequence[int] = (c,)
        elif not keyid:  # no key ID (DSSE makes it optional): appends try every key too
            tried = range(len(pubs))
        else:
            continue
        known = True
        res.signatures += 1
        for c in tried:
            try:
                pubs[c](sig, signed)
            except InvalidSignature:
                continue
            if c not in verified:
                verified.append(c)
            break
    res.signers[k] = tuple(verified)
    if not verified:
        if known:
            res.problems.append(
                Problem(i, "bad-signature", f"Entry {i}: its signature does not verify.")
            )
        else:
            ids = ", ".join(keyid[:16] or "(none)" for keyid, _ in sigs)
            res.problems.append(
                Problem(
                    i, "forged", f"Entry {i} is signed by a key the log never registered ({ids})."
                )
            )
        return
    if 0 in verified:  # signed by the log key: a key event
        try:
            st = json.loads(payload)
        except ValueError:
            return
        if isinstance(st, dict) and st.get("predicateType") == KEY_EVENT:
            pred = st.get("predicate")
            if isinstance(pred, dict):
                res.key_events[i] = pred


# -- worker processes ---------------------------------------------------------------


def _check_chunks(
    conn: Connection,
    spans: Sequence[tuple[int, int]],
    candidates: Sequence[tuple[str, str]],
    indexed: int,
) -> list[ChunkResult]:
    """Check ``spans`` on ``conn`` (a fresh connection), in one read snapshot that also
    gives how far the batches reach: an append that completed a batch since the extent
    ``indexed`` was read wrote that batch's query rows and subtree hashes, which are
    then checked as written, not reported as rows no batch made.  ``indexed`` stands
    when the snapshot has no such row (``verify_ledger`` reports it missing)."""
    from sqlalchemy import select

    from escrow.ledger.tables import META

    with conn.begin():
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        now = conn.execute(select(META.c.value).where(META.c.name == "indexed")).scalar()
        if now is not None and str(now).isdigit():
            indexed = max(indexed, int(now))
        return [check_chunk(conn, a, b, candidates, indexed) for a, b in spans]


def _run_chunks(
    ledger: Ledger,
    spans: list[tuple[int, int]],
    candidates: list[tuple[str, str]],
    indexed: int,
    workers: int,
) -> list[ChunkResult]:
    from escrow.ledger.store import db_errors

    if workers <= 1 or len(spans) <= 1:
        with db_errors(ledger.url), ledger._engine.connect() as conn:  # noqa: SLF001
            return _check_chunks(conn, spans, candidates, indexed)
    return _run_in_subprocesses(ledger.url, spans, candidates, indexed, min(workers, len(spans)))


def _run_in_subprocesses(
    url: str,
    spans: list[tuple[int, int]],
    candidates: list[tuple[str, str]],
    indexed: int,
    workers: int,
) -> list[ChunkResult]:
    """Check the chunks in this process and ``workers - 1`` fresh interpreters (``python -m
    escrow.ledger._verify_worker``), each reading its own rows from the database.

    Plain subprocesses rather than multiprocessing: nothing of the caller's
    ``__main__`` is re-imported and nothing is forked from a threaded server.
    """
    import pickle
    import subprocess
    import sys
    from pathlib import Path

    from escrow.ledger.store import db_errors, make_engine

    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    groups = [spans[w::workers] for w in range(workers)]
    procs = []
    for group in groups[1:]:  # this process takes groups[0] while the others start
        proc = subprocess.Popen(
            [sys.executable, "-m", "escrow.ledger._verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        pickle.dump((url, group, candidates, indexed), proc.stdin)
        proc.stdin.close()
        procs.append(proc)
    engine = make_engine(url, readonly=True)
    try:
        with db_errors(url), engine.connect() as conn:
            results = _check_chunks(conn, groups[0], candidates, indexed)
    finally:
        engine.dispose()
    failure = ""
    for proc in procs:
        assert proc.stdout is not None and proc.stderr is not None
        out = proc.stdout.read()
        err = proc.stderr.read()  # small: a traceback at most
        proc.stdout.close()
        proc.stderr.close()
        if proc.wait() != 0:
            failure = failure or err.decode("utf-8", "replace").strip().splitlines()[-1:][0]
            continue
        results.extend(pickle.loads(out))  # noqa: S301 - our own worker's output
    if failure:
        raise EscrowError(f"A verification worker failed: {failure}")
    return sorted(results, key=lambda r: r.start)


def worker_main() -> None:
    """Entry point of ``python -m escrow.ledger._verify_worker`` (pickles in and out)."""
    import pickle
    import sys

    from escrow.ledger.store import db_errors, make_engine

    url, spans, candidates, indexed = pickle.load(sys.stdin.buffer)  # noqa: S301 - from our parent
    engine = make_engine(url, readonly=True)
    try:
        with db_errors(url), engine.connect() as conn:
            out = _check_chunks(conn, spans, candidates, indexed)
    finally:
        engine.dispose()
    sys.stdout.buffer.write(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()


# -- the whole log ------------------------------------------------------------------


def verify_ledger(
    ledger: Ledger, *, workers: int | None = None, chunk_size: int | None = None
) -> VerifyReport:
    from sqlalchemy import func, select

    from escrow.ledger.tables import CHECKPOINT, ENTRY, KEY, META, TERM

    chunk = chunk_size or (1 << CHUNK_LEVEL)
    if chunk < 1 or chunk & (chunk - 1):
        raise InputError("The verification chunk size must be a power of two.")
    meta_problems: list[Problem] = []
    with ledger._read(snapshot=True) as conn:  # noqa: SLF001 - one snapshot of the log
        # the latest signed checkpoint: the note of the last entry that has one
        latest = conn.execute(
            select(ENTRY.c.idx, ENTRY.c.note)
            .where(ENTRY.c.note.is_not(None))
            .order_by(ENTRY.c.idx.desc())
            .limit(1)
        ).first()
        top = conn.execute(select(func.max(ENTRY.c.idx))).scalar()
        indexed_value = conn.execute(select(META.c.value).where(META.c.name == "indexed")).scalar()
        if indexed_value is None:
            # the batches' extent is lost: take it from the query index itself, so that
            # the one missing row is reported rather than every entry's index rows
            last_term = conn.execute(select(func.max(TERM.c.idx))).scalar()
            indexed_value = 0 if last_term is None else int(last_term) + 1
            meta_problems = [
                Problem(None, "index", "The ledger's row 'indexed' of ledger_meta is missing.")
            ]
        indexed = int(indexed_value or 0)
        if conn.execute(select(META.c.value).where(META.c.name == "key_version")).first() is None:
            # appends read it to tell whether the key table changed: they stop without it
            meta_problems.append(
                Problem(
                    None, "key-table", "The ledger's row 'key_version' of ledger_meta is missing."
                )
            )
        kept = conn.execute(select(CHECKPOINT).order_by(CHECKPOINT.c.size)).all()
        key_rows = conn.execute(select(KEY.c.keyid, KEY.c.public_pem)).all()
        key_table = conn.execute(
            select(KEY.c.keyid, KEY.c.name, KEY.c.status, KEY.c.added_index, KEY.c.ended_index)
        ).all()
    rows = 0 if top is None else int(top) + 1
    log_public = ledger.log_public
    verifier = ledger.verifier_key()
    candidates: list[tuple[str, str]] = [(log_public.keyid, log_public.pem())]
    for keyid, pem in key_rows:
        try:
            if PublicKey.from_pem(pem).keyid == keyid and keyid != log_public.keyid:
                candidates.append((keyid, pem))
        except EscrowError:
            continue  # a mangled key row: entries it signed are reported as forged
    problems: list[Problem] = meta_problems

    # 1. the latest checkpoint
    latest_size, latest_root = 0, merkle.EMPTY_ROOT
    latest_note = None if latest is None else str(latest.note)
    if latest_note is None:
        if rows:
            problems.append(
                Problem(None, "checkpoint-signature", "The log has entries but no checkpoint.")
            )
        else:
            problems.append(Problem(None, "empty", "The log is empty; there is nothing to verify."))
    else:
        try:
            ck = verify_checkpoint(latest_note, verifier)
            latest_size, latest_root = ck.size, ck.root
        except (SignatureError, InputError) as e:
            problems.append(
                Problem(None, "checkpoint-signature", f"The latest checkpoint: {e.message}")
            )
            assert latest is not None
            latest_size = int(latest.idx) + 1

    # 2. every entry, in chunks
    n_workers = workers if workers is not None else (os.cpu_count() or 1)
    if workers is None and rows < PARALLEL_MIN:
        n_workers = 1
    if chunk_size is None and n_workers > 1:
        # small enough chunks that dealing them round-robin balances the workers
        while chunk > 256 and rows < chunk * n_workers * 8:
            chunk //= 2
    spans = [(a, min(a + chunk, rows)) for a in range(0, rows, chunk)]
    results = _run_chunks(ledger, spans, candidates, indexed, n_workers)
    signatures = sum(r.signatures for r in results)
    for r in results:
        problems.extend(r.problems)
    # every kept checkpoint names the log's origin (only the latest one's signature is
    # checked: an origin changed in ledger_meta and appended under would pass otherwise)
    for origin in sorted({o for r in results for o in r.origins}):
        if origin != ledger.origin:
            first = min(r.origins[origin] for r in results if origin in r.origins)
            problems.append(
                Problem(
                    first,
                    "checkpoint-signature",
                    f"Entry {first} holds a checkpoint of the origin {origin[:80]!r}, not "
                    f"the ledger's {ledger.origin!r} (ledger_meta's origin, or the "
                    "checkpoint, was changed).",
                )
            )
    moved = [m for r in results for m in r.moved]
    if moved:
        problems.extend(_classify_moved(ledger, moved[:20]))

    # 3. keys valid at each position; integration times in order (time queries are
    # binary searches that rely on it)
    problems.extend(_replay_keys(results, candidates))
    problems.extend(_key_table_problems(results, key_table))
    problems.extend(_times_out_of_order(results))

    # 4. the tree: levels of recomputed hashes over [0, rows)
    levels = _levels(results, rows)
    leaf_problem = any(p.index is not None for p in problems)
    if not leaf_problem:
        for r in results:
            for level, idx, got in r.outer:
                want = _node(levels, level, idx)
                if want is not None and want != got:
                    first = idx << level
                    problems.append(
                        Problem(
                            first,
                            "subtree-hash",
                            f"The stored hash of entries {first}..{first + (1 << level) - 1} "
                            "does not match the entries.",
                        )
                    )

    def root_at(size: int) -> bytes:
        hs = [_node(levels, lv, i) for lv, i in merkle.range_nodes(0, size)]
        return merkle.hash_of_nodes([h or ZERO for h in hs])

    checked = 0
    for name, size, root, note in [
        *[(f"checkpoint at size {c.size}", c.size, bytes(c.root), c.note) for c in kept],
        ("latest checkpoint", latest_size, latest_root, None),
    ]:
        checked += 1
        if note is not None:
            try:
                ck = verify_checkpoint(note, verifier)
            except (SignatureError, InputError) as e:
                problems.append(Problem(None, "checkpoint-signature", f"The {name}: {e.message}"))
                continue
            if ck.size != size or ck.root != root:
                problems.append(
                    Problem(None, "checkpoint-signature", f"The {name} differs from its note.")
                )
                continue
        if size > rows:
            problems.append(
                Problem(
                    rows,
                    "truncated",
                    f"The log holds {rows} entries but the signed {name} covers {size}.",
                )
            )
            continue
        if root_at(size) != root:
            problems.append(
                Problem(
                    None,
                    "checkpoint-root",
                    f"The root of the first {size} entries does not match the {name}.",
                )
            )
    if latest_note is not None and rows > latest_size:
        problems.append(
            Problem(
                latest_size,
                "uncheckpointed",
                f"Entries {latest_size}..{rows - 1} are not covered by the latest signed "
                "checkpoint (appended outside escrow).",
            )
        )
    problems = _dedupe(problems)
    return VerifyReport(
        size=latest_size,
        root=latest_root,
        entries_checked=rows,
        signatures_checked=signatures,
        checkpoints_checked=checked if latest_note is not None else 0,
        problems=problems,
    )


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[int | None, str]] = set()
    out: list[Problem] = []
    order = {"deleted": 0, "reordered": 1, "edited": 2, "forged": 3, "bad-signature": 4}
    order["key-not-valid"] = 5  # before what the same row says beside the log ("index")
    for p in sorted(problems, key=lambda p: (p.index is None, p.index or 0, order.get(p.kind, 9))):
        if (p.index, p.kind) not in seen:
            seen.add((p.index, p.kind))
            out.append(p)
    return out


def _classify_moved(ledger: Ledger, moved: list[tuple[int, bytes]]) -> list[Problem]:
    """A row that hashes to its own recorded leaf hash but not the stored tree's:
    reordered when that hash sits elsewhere in the tree, edited otherwise."""
    from sqlalchemy import select

    from escrow.ledger.tables import NODE

    out: list[Problem] = []
    with ledger._read() as conn:  # noqa: SLF001
        for i, h in moved:
            ids = [r.id for r in conn.execute(select(NODE.c.id).where(NODE.c.hash == h))]
            if ids:
                out.append(Problem(i, "reordered", f"Entry {i} is not the entry appended at {i}."))
            else:
                out.append(
                    Problem(
                        i, "edited", f"Entry {i}: the stored envelope and leaf hash were changed."
                    )
                )
    return out


def _times_out_of_order(results: list[ChunkResult]) -> list[Problem]:
    """Entries whose integration time is before the one of the entry before them (the
    ledger never writes one: an append's time is at least its predecessor's)."""
    out: list[Problem] = []
    last = None
    for r in results:
        for k, us in enumerate(r.times):
            if not us and k < len(r.signers) and not r.signers[k]:
                continue  # a missing or unreadable entry, reported as such
            if last is not None and us < last:
                i = r.start + k
                out.append(
                    Problem(
                        i,
                        "index",
                        f"Entry {i}: its integration time is before entry {i - 1}'s "
                        "(time-range queries would not find it as recorded).",
                    )
                )
            last = us if last is None else max(last, us)
    return out


def _replay_keys(results: list[ChunkResult], candidates: list[tuple[str, str]]) -> list[Problem]:
    from escrow.ledger.store import parse_time, to_us

    ids = [k for k, _ in candidates]
    # keyid -> (added, ended, until, revoked)
    state: dict[str, tuple[int, int | None, int | None, bool]] = {}
    out: list[Problem] = []
    for r in results:
        for k, verified in enumerate(r.signers):
            i = r.start + k
            if not verified:
                continue  # reported by the chunk
            event = r.key_events.get(i)
            if event is not None:
                keyid = str(event.get("keyid", ""))
                kind = event.get("event")
                refused = _refused_key_event(state.get(keyid), kind)
                if refused is not None:  # the append never makes it: it changes nothing
                    out.append(
                        Problem(
                            i,
                            "forged",
                            f"Entry {i} is a key event the ledger refuses: {kind} key "
                            f"{keyid[:16]}…, {refused}.",
                        )
                    )
                elif kind == "added":
                    state[keyid] = (i, None, None, False)
                elif kind in ("revoked", "retired") and keyid in state:
                    until: int | None = None
                    if kind == "retired":
                        try:
                            until = max(to_us(parse_time(str(event.get("effectiveFrom")))), 0)
                        except EscrowError:
                            until = None
                    state[keyid] = (state[keyid][0], i, until, kind == "revoked")
                continue
            ok = False
            ever = False
            for c in verified:
                if c == 0:
                    continue
                st = state.get(ids[c])
                if st is None:
                    continue
                ever = True
                added, ended, until, _ = st
                if ended is None or (until is not None and r.times[k] < until):
                    ok = True
                    break
            if not ok:
                if ever:
                    out.append(
                        Problem(
                            i,
                            "key-not-valid",
                            f"Entry {i} is signed by a key that was revoked or retired before it.",
                        )
                    )
                else:
                    out.append(
                        Problem(
                            i,
                            "forged",
                            f"Entry {i} is signed by a key no key event of the log registered.",
                        )
                    )
    return out


def _refused_key_event(
    st: tuple[int, int | None, int | None, bool] | None, kind: Any
) -> str | None:
    """Why the append refuses a key event ``kind`` of a key in state ``st`` (as
    :func:`_replay_keys` keeps it; ``None`` when the key was never added), or ``None``."""
    if kind == "added":
        return None if st is None else f"which entry {st[0]} added already"
    if kind not in ("revoked", "retired"):
        return None
    if st is None:
        return "which no key event added before"
    if st[3]:
        return f"which entry {st[1]} revoked already"
    if kind == "retired" and st[1] is not None:
        return f"which entry {st[1]} retired already"
    return None


def _key_table_problems(results: list[ChunkResult], key_table: Sequence[Any]) -> list[Problem]:
    """The key table (which the append path trusts) against the log's own key events:
    each key's name, status and the entries that added and ended it."""
    want: dict[str, tuple[str, str, int, int | None]] = {}
    for r in results:
        for i, event in sorted(r.key_events.items()):
            keyid, kind = str(event.get("keyid", "")), event.get("event")
            if kind == "added" and keyid not in want:
                want[keyid] = (str(event.get("name", "")), "active", i, None)
            elif keyid in want and kind in ("revoked", "retired"):
                name, status, added, _ = want[keyid]
                if status != "revoked" and not (kind == "retired" and status == "retired"):
                    want[keyid] = (name, str(kind), added, i)
    out: list[Problem] = []
    seen: set[str] = set()
    for row in key_table:
        keyid = str(row.keyid)
        seen.add(keyid)
        got = (row.name, row.status, row.added_index, row.ended_index)
        expected = want.get(keyid)
        if expected == got:
            continue
        if expected is None:
            at = int(row.added_index) if row.added_index is not None else None
            what = "no key event of the log added it"
        else:
            at = expected[3] if expected[3] is not None else expected[2]
            names = ("name", "status", "adding entry", "ending entry")
            what = "its " + ", ".join(
                f"{n} is {g!r}, not {w!r}"
                for n, g, w in zip(names, got, expected, strict=True)
                if g != w
            )
        out.append(
            Problem(
                at,
                "key-table",
                f"The key table row of key {keyid[:16]}… disagrees with the log: {what} "
                "(appends trust the key table).",
            )
        )
    for keyid, (_, _, added, ended) in want.items():
        if keyid not in seen:
            at = ended if ended is not None else added
            out.append(
                Problem(
                    at,
                    "key-table",
                    f"The key {keyid[:16]}… the log registered at entry {added} is missing "
                    "from the key table.",
                )
            )
    return out


def _levels(results: list[ChunkResult], rows: int) -> list[bytes]:
    levels = [b"".join(r.leaves for r in results)]
    depth = 1
    while (rows >> depth) > 0:
        chunk_parts = [r.levels[depth - 1] if depth - 1 < len(r.levels) else None for r in results]
        if (
            results
            and all(
                p is not None and len(p) == 32 * ((r.end - r.start) >> depth)
                for p, r in zip(chunk_parts, results, strict=True)
            )
            and all((r.start >> depth) << depth == r.start for r in results)
        ):
            levels.append(b"".join(p for p in chunk_parts if p is not None))
        else:
            below = levels[-1]
            count = len(below) // 64
            levels.append(
                b"".join(
                    merkle.node_hash(below[64 * j : 64 * j + 32], below[64 * j + 32 : 64 * j + 64])
                    for j in range(count)
                )
            )
        depth += 1
    return levels


def _node(levels: list[bytes], level: int, idx: int) -> bytes | None:
    if level >= len(levels):
        return None
    h = levels[level][32 * idx : 32 * idx + 32]
    return h if len(h) == 32 else None
