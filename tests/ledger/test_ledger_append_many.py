"""``Ledger.append_many``: one transaction per envelope, in order, with the next envelopes
checked (and their checkpoints made) ahead on a second thread.  Whatever the thread
ahead guessed, the log must come out exactly as appending one at a time makes it."""

from __future__ import annotations

import threading

from ledger_helpers import LedgerEnv, manifest, raw_sign
from test_independent_reference import leaf_hash as ref_leaf_hash
from test_independent_reference import mth as ref_mth

from escrow.errors import EscrowError, InputError, SignatureError
from escrow.ledger.checkpoint import verify_checkpoint
from escrow.signing.keys import SigningKey


def leaves_of(lg: object) -> list[bytes]:
    """The log's leaf hashes, recomputed from its entries' bytes (RFC 9162 reference code,
    no escrow code); the stored leaf hashes must agree with them."""
    size = lg.size()  # type: ignore[attr-defined]
    entries = [lg.get(i) for i in range(size)]  # type: ignore[attr-defined]
    leaves = [ref_leaf_hash(e.envelope) for e in entries]
    assert [e.leaf_hash for e in entries] == [h.hex() for h in leaves]
    return leaves


def root_of(leaves: list[bytes]) -> bytes:
    """MTH over ``leaves`` by the independent reference code."""
    return ref_mth(leaves)


def test_results_in_order_with_refusals_and_repeats(env: LedgerEnv) -> None:
    """Refused envelopes (bad JSON, unknown key) and repeats, among good ones: each gets
    its own result in order, and every checkpoint is right although the thread ahead
    guessed wrong after each refusal or repeat."""
    stranger = SigningKey.generate()
    first = env.envelope(1).to_bytes()
    items: list[bytes] = [
        first,
        env.envelope(2).to_bytes(),
        b"{not json",
        env.envelope(3).to_bytes(),
        first,  # already there
        raw_sign(manifest(4), stranger).to_bytes(),
        env.envelope(5).to_bytes(),
        env.envelope(6).to_bytes(),
        env.envelope(2).to_bytes(),  # already there
        env.envelope(7).to_bytes(),
    ]
    with env.open() as lg:
        lg.index_every = 3
        out = list(lg.append_many(items, lookahead=3))
        assert len(out) == len(items)
        assert isinstance(out[2], InputError)
        assert isinstance(out[5], SignatureError)
        good = [o for o in out if not isinstance(o, EscrowError)]
        assert [(e.index, created) for e, created in good] == [
            (1, True),
            (2, True),
            (3, True),
            (1, False),
            (4, True),
            (5, True),
            (2, False),
            (6, True),
        ]
        leaves = leaves_of(lg)
        cp = lg.checkpoint()
        assert cp.size == 7 and cp.root == root_of(leaves) == lg.root()
        report = lg.verify()
        assert report.ok, report.problems


def test_each_stored_checkpoint_matches_its_tree(env: LedgerEnv) -> None:
    """The checkpoint made ahead for each entry is the one of the tree it completes."""
    from sqlalchemy import create_engine, text

    with env.open() as lg:
        list(lg.append_many([env.envelope(n) for n in range(1, 12)], lookahead=4))
        leaves = leaves_of(lg)
        engine = create_engine(lg.url)
        try:
            with engine.connect() as conn:
                notes = conn.execute(text("SELECT idx, note FROM ledger_entry ORDER BY idx")).all()
        finally:
            engine.dispose()
        assert [idx for idx, _ in notes] == list(range(12))  # one stored note per entry
        for idx, note in notes:
            cp = verify_checkpoint(note, lg.verifier_key())
            assert (cp.size, cp.root) == (idx + 1, root_of(leaves[: idx + 1]))


def test_another_writer_in_between(env: LedgerEnv) -> None:
    """Another writer appends while a stream is being appended: the guesses made ahead
    no longer fit the log, and each transaction makes its own checkpoint instead."""
    other = env.open()
    try:

        def stream() -> object:
            for n in range(1, 9):
                if n == 4:  # the consumer is between two commits: another writer comes in
                    done = threading.Event()

                    def write() -> None:
                        other.append(env.envelope(100))
                        done.set()

                    threading.Thread(target=write).start()
                    done.wait()
                yield env.envelope(n)

        with env.open() as lg:
            out = list(lg.append_many(stream(), lookahead=2))
            assert all(not isinstance(o, EscrowError) for o in out)
            assert lg.size() == 10
            leaves = leaves_of(lg)
            assert lg.checkpoint().root == root_of(leaves)
            assert lg.verify().ok
    finally:
        other.close()


def test_stopping_early_leaves_nothing_waiting(env: LedgerEnv) -> None:
    with env.open() as lg:
        outcomes = lg.append_many([env.envelope(n) for n in range(1, 20)], lookahead=4)
        first = next(outcomes)
        assert not isinstance(first, EscrowError) and first[0].index == 1
        outcomes.close()  # returns: no check is left waiting for its turn or a commit
        assert lg.size() == 2
        assert lg.verify().ok
        entry, created = lg.append(env.envelope(50))
        assert created and entry.index == 2


def test_a_key_revoked_between_check_and_commit(env: LedgerEnv) -> None:
    """An envelope checked ahead against a key that is revoked before its turn comes is
    refused in its transaction.  (The stream is read one envelope ahead of the commits:
    the revocation runs while envelope 2 waits for its turn.)"""
    with env.open() as lg:

        def stream() -> object:
            yield env.envelope(1)
            yield env.envelope(2)
            lg2 = env.open()
            try:
                lg2.revoke_key(env.build_key.keyid, "compromised")
            finally:
                lg2.close()
            yield env.envelope(3)

        out = list(lg.append_many(stream(), lookahead=1))
        assert not isinstance(out[0], EscrowError)
        assert isinstance(out[1], SignatureError) and "revoked" in out[1].message
        assert isinstance(out[2], SignatureError)
        assert lg.size() == 3  # the key event, envelope 1 and the revocation
        assert lg.verify().ok


def test_a_guess_from_a_stale_tree_that_reaches_the_same_size_and_leaf(env: LedgerEnv) -> None:
    """Found by the model test: this writer's last tree is stale (another writer appended
    since), and the stream repeats an envelope.  The thread ahead guesses from the stale
    tree; with the repeat counted as appended, its guess for the last envelope extends a
    tree of the log's very size and last leaf, but not the log's tree.  The checkpoint
    made ahead must not be used then (it was, when guesses were matched by size and last
    leaf only): every stored checkpoint is the root of its own tree."""
    first, second = env.open(), env.open()
    try:
        for lg in (first, second):
            lg.index_every = 1
        first.append(env.envelope(2))
        second.append(env.envelope(3))  # first's last tree is now stale
        out = list(first.append_many([env.envelope(1), env.envelope(1), env.envelope(0)]))
        assert [(e.index, created) for e, created in out] == [(3, True), (3, False), (4, True)]
        report = first.verify()
        assert report.ok, report.problems
        leaves = leaves_of(first)
        for k in range(1, first.size() + 1):
            assert first.checkpoint(k).root == root_of(leaves[:k])
    finally:
        first.close()
        second.close()
