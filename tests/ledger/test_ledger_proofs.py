"""Proofs for every index of trees of sizes 1..70, against an independent recomputation.

The reference below follows RFC 9162 §2.1 literally (recursive MTH, PATH and
PROOF over lists of leaves); it shares no code with ``escrow.ledger.merkle``.
"""

from __future__ import annotations

import hashlib

import pytest
from ledger_helpers import LedgerEnv

from escrow.errors import InputError
from escrow.ledger import merkle

MAX = 70


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def k_of(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: list[bytes]) -> bytes:
    """MTH over leaf HASHES (already hashed with 0x00)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = k_of(n)
    return ref_node(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [mth(leaves)]
    k = k_of(n)
    if m <= k:
        return [*subproof(m, leaves[:k], b), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


def proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return subproof(m, leaves, True)


LEAVES = [ref_leaf(f"leaf {i}".encode()) for i in range(MAX)]


# -- the pure module against the reference ----------------------------------------


def test_hashes_are_rfc9162() -> None:
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert merkle.node_hash(b"L", b"R") == hashlib.sha256(b"\x01LR").digest()
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def _stored(leaves: list[bytes]) -> dict[merkle.Node, bytes]:
    levels = merkle.build_levels(leaves)
    return {(lv, i): h for lv, hs in enumerate(levels) for i, h in enumerate(hs)}


@pytest.mark.parametrize("n", range(1, MAX + 1))
def test_pure_plans_match_reference(n: int) -> None:
    leaves = LEAVES[:n]
    stored = _stored(leaves)
    root = mth(leaves)
    assert merkle.hash_of_nodes([stored[x] for x in merkle.range_nodes(0, n)]) == root
    for m in range(n):
        plan = merkle.inclusion_plan(m, n)
        got = merkle.assemble(plan, stored)
        assert got == path(m, leaves), (m, n)
        assert merkle.verify_inclusion(leaves[m], m, n, got, root)
        assert not merkle.verify_inclusion(leaves[m], m, n, got, ref_leaf(b"other root"))
        if got:
            bad = [*got[:-1], ref_leaf(b"x")]
            assert not merkle.verify_inclusion(leaves[m], m, n, bad, root)
            assert not merkle.verify_inclusion(leaves[m], m, n, got[:-1], root)
        if n > 1:
            assert not merkle.verify_inclusion(leaves[m], (m + 1) % n, n, got, root)
    for m in range(1, n + 1):
        plan = merkle.consistency_plan(m, n)
        got = merkle.assemble(plan, stored)
        assert got == proof(m, leaves), (m, n)
        assert merkle.verify_consistency(m, n, mth(leaves[:m]), root, got)
        assert not merkle.verify_consistency(m, n, ref_leaf(b"x"), root, got)
        if got:
            assert not merkle.verify_consistency(m, n, mth(leaves[:m]), root, got[1:])
    assert merkle.verify_consistency(0, n, merkle.EMPTY_ROOT, root, [])


def test_stored_index_is_post_order() -> None:
    """Appending leaf m stores (0, m) then each subtree it completes, at consecutive ids."""
    seen: list[int] = []
    for m in range(300):
        for level, idx in merkle.new_nodes(m):
            seen.append(merkle.stored_index(level, idx))
        assert len(seen) == merkle.stored_count(m + 1)
    assert seen == list(range(len(seen)))


# -- the ledger (both databases) against the reference -------------------------------


@pytest.mark.parametrize("index_every", [1, 5, 64], ids=["every-entry", "by-5", "by-64"])
def test_ledger_proofs_every_index_sizes_1_to_70(env: LedgerEnv, index_every: int) -> None:
    """Stored subtree hashes (written in batches of ``index_every``), hashes computed from
    the entries after the last batch, and subtrees that span both, all give the RFC's
    proofs."""
    with env.open() as lg:
        lg.index_every = index_every
        for n in range(MAX - 1):  # the key event for the build key is entry 0
            lg.append(env.envelope(n))
        assert lg.size() == MAX
        leaves = []
        for i in range(MAX):
            e = lg.get(i)
            assert bytes.fromhex(e.leaf_hash) == ref_leaf(e.envelope)
            leaves.append(bytes.fromhex(e.leaf_hash))
        for n in range(1, MAX + 1):
            root = lg.root(n)
            assert root == mth(leaves[:n])
            for m in range(n):
                got = lg.inclusion_proof(m, n)
                assert got == path(m, leaves[:n]), (m, n)
                assert merkle.verify_inclusion(leaves[m], m, n, got, root)
            for m in range(0, n + 1):
                got = lg.consistency_proof(m, n)
                assert got == (proof(m, leaves[:n]) if m else []), (m, n)
        assert lg.root() == mth(leaves) == lg.checkpoint().root


def test_writers_taking_turns_extend_the_same_tree(env: LedgerEnv) -> None:
    """A writer whose last append is no longer the log's last reads the tree's right edge
    from the database (stored hashes and the entries after the last batch)."""
    leaves: list[bytes] = []
    first, second = env.open(), env.open()
    try:
        for lg in (first, second):
            lg.index_every = 4
        for n in range(23):
            lg = first if (n // 3) % 2 else second
            entry, _ = lg.append(env.envelope(n))
            assert entry.index == n + 1
        leaves.extend(bytes.fromhex(first.get(i).leaf_hash) for i in range(24))
        assert first.root() == second.root() == mth(leaves) == second.checkpoint().root
        assert first.verify().ok
    finally:
        first.close()
        second.close()


def test_proof_arguments_out_of_range(env: LedgerEnv) -> None:
    with env.open() as lg:
        lg.append(env.envelope(0))
        for call in (
            lambda: lg.inclusion_proof(2),
            lambda: lg.inclusion_proof(0, 3),
            lambda: lg.inclusion_proof(1, 1),
            lambda: lg.consistency_proof(3),
            lambda: lg.consistency_proof(2, 1),
            lambda: lg.root(5),
            lambda: lg.get(2),
        ):
            with pytest.raises(InputError):
                call()
