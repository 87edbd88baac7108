"""RFC 9162 §2.1 Merkle tree hashing, proofs and proof verification (pure, no I/O).

* leaf hash ``SHA-256(0x00 || leaf)``, node hash ``SHA-256(0x01 || left || right)``,
  empty tree ``SHA-256("")``;
* inclusion proofs (§2.1.3) and consistency proofs (§2.1.4).

Every hash a proof or a root needs is the hash of a *complete* subtree: ``2**level``
leaves starting at ``index * 2**level``.  The ledger stores each complete subtree's
hash once, when its last leaf is appended, at position :func:`stored_index`
(the post-order numbering of Go's ``golang.org/x/mod/sumdb/tlog``), so a proof
is assembled from O(log n) stored hashes: :func:`inclusion_plan` and
:func:`consistency_plan` name the subtrees, :func:`assemble` combines them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

Node = tuple[int, int]
"""A complete subtree ``(level, index)``: leaves ``[index << level, (index + 1) << level)``."""

Range = tuple[int, int]
"""A run of leaves ``[start, end)`` whose Merkle tree hash (MTH) a proof holds."""

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


# -- where complete subtrees are stored ----------------------------------------


def stored_count(size: int) -> int:
    """How many complete-subtree hashes a tree of ``size`` leaves has: ``2n - popcount(n)``."""
    return 2 * size - size.bit_count()


def stored_index(level: int, index: int) -> int:
    """Storage position of complete subtree ``(level, index)``.

    Hashes are stored in the order they become known: appending leaf ``m`` stores
    ``(0, m)``, then every subtree that leaf completes, lowest first.
    """
    last = ((index + 1) << level) - 1  # the leaf that completes the subtree
    return stored_count(last) + level


def new_nodes(size: int) -> list[Node]:
    """The complete subtrees that appending leaf number ``size`` completes, lowest first."""
    out: list[Node] = []
    level, index = 0, size
    while True:
        out.append((level, index))
        if index & 1 == 0:
            return out
        level, index = level + 1, index >> 1


# -- plans: which complete subtrees a hash or a proof needs --------------------


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees whose hashes make up MTH(D[start:end]), left to right.

    ``[start, end)`` must be a range that arises in RFC 9162's recursion
    (``start`` a multiple of the largest power of two not above ``end - start``).
    """
    out: list[Node] = []
    while start < end:
        n = end - start
        level = n.bit_length() - 1 if n & (n - 1) == 0 else _split(n).bit_length() - 1
        # largest aligned power of two that fits
        while start & ((1 << level) - 1):
            level -= 1
        out.append((level, start >> level))
        start += 1 << level
    return out


def hash_of_nodes(hashes: Sequence[bytes]) -> bytes:
    """MTH of a range from its complete subtrees' hashes (left to right, decreasing size)."""
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def inclusion_plan(index: int, size: int) -> list[Range]:
    """The ranges whose MTHs form PATH(index, D[0:size]), in proof order (leaf upward)."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not below tree size {size}")
    out: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
    out.reverse()
    return out


def consistency_plan(old: int, new: int) -> list[Range]:
    """The ranges whose MTHs form PROOF(old, D[0:new]), in proof order."""
    if not 0 <= old <= new:
        raise ValueError(f"old size {old} is not between 0 and new size {new}")
    if old == 0 or old == new:
        return []
    out: list[Range] = []
    start, end, complete = 0, new, True
    while True:
        size, m = end - start, old - start
        if m == size:
            if not complete:
                out.append((start, end))
            break
        k = _split(size)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
            complete = False
    out.reverse()
    return out


def plan_nodes(ranges: Sequence[Range]) -> list[Node]:
    """Every complete subtree the ranges need (each once)."""
    seen: dict[Node, None] = {}
    for start, end in ranges:
        for node in range_nodes(start, end):
            seen[node] = None
    return list(seen)


def assemble(ranges: Sequence[Range], hashes: Mapping[Node, bytes]) -> list[bytes]:
    """The proof: MTH of each range, from the complete-subtree hashes of :func:`plan_nodes`."""
    return [hash_of_nodes([hashes[n] for n in range_nodes(s, e)]) for s, e in ranges]


def root_from(size: int, lookup: Callable[[list[Node]], Mapping[Node, bytes]]) -> bytes:
    """MTH(D[0:size]) from the stored hashes ``lookup`` returns."""
    nodes = range_nodes(0, size)
    found = lookup(nodes)
    return hash_of_nodes([found[n] for n in nodes])


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ------------------------------


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows the leaf hash ``leaf`` at ``index`` in the tree ``(size, root)``."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows tree ``(new_size, new_root)`` extends ``(old_size, old_root)``."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0


def build_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every complete subtree hash over ``leaves``: ``levels[l][i]`` is node ``(l, i)``."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels
