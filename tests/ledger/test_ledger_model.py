"""The ledger against a plain model, over generated mixes of appends.

Single appends, streams through ``append_many``, repeats, refused envelopes and a
second writer, with query-index batches of various sizes: whatever the mix, the log
verifies, every root, kept checkpoint and query equals what the model computes from
the entries themselves.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import LedgerEnv, diff_ids, manifest, raw_sign
from pgkit import fresh_pg_database
from test_independent_reference import leaf_hash as ref_leaf_hash
from test_independent_reference import mth as ref_mth

from escrow.errors import EscrowError
from escrow.signing.keys import SigningKey

PROJECTS = ("alpha", "beta", "gamma")

operation = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 40)),
    st.tuples(st.just("many"), st.lists(st.integers(0, 40), min_size=1, max_size=6)),
    st.tuples(st.just("other"), st.integers(0, 40)),
    st.tuples(st.just("refused"), st.integers(0, 40)),
)


def mth(leaves: list[bytes]) -> bytes:
    """The model's root: RFC 9162 reference code, sharing nothing with escrow.ledger.merkle."""
    return ref_mth(leaves)


def _check(ops: list[Any], index_every: int, url_of: Callable[[str], Any]) -> None:
    """Run ``ops`` on a fresh ledger at ``url_of(tmp)`` (a context manager), then compare."""
    stranger = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp, url_of(tmp) as url:
        env = LedgerEnv.create(Path(tmp) / "home", url)
        first, second = env.open(), env.open()
        try:
            for lg in (first, second):
                lg.index_every = index_every

            def envelope(n: int) -> Any:
                return env.envelope(n, project=PROJECTS[n % 3], tag="model")

            for op in ops:
                kind, arg = op
                if kind == "append":
                    first.append(envelope(arg))
                elif kind == "other":
                    second.append(envelope(arg))
                elif kind == "refused":
                    bad = raw_sign(manifest(arg, tag="model"), stranger)
                    out = list(first.append_many([envelope(arg + 100), bad]))
                    assert isinstance(out[1], EscrowError)
                else:
                    for result in first.append_many([envelope(n) for n in arg]):
                        assert not isinstance(result, EscrowError), result

            size = first.size()
            entries = [first.get(i) for i in range(size)]
            leaves = [ref_leaf_hash(e.envelope) for e in entries]  # from the entries' bytes
            assert [e.leaf_hash for e in entries] == [h.hex() for h in leaves]
            assert len(set(leaves)) == size  # a repeat is never appended twice
            report = first.verify()
            assert report.ok, report.problems
            assert first.root() == second.root() == mth(leaves) == first.checkpoint().root
            for k in range(1, size + 1):
                cp = first.checkpoint(k)
                assert (cp.size, cp.root) == (k, mth(leaves[:k]))
            for project in PROJECTS:
                want = [e.index for e in entries if e.project == project]
                got, after = [], None
                while True:  # pages of 2 across the indexed entries and those after them
                    page = first.entries(project=project, after=after, limit=2)
                    got += [e.index for e in page]
                    if len(page) < 2:
                        break
                    after = page[-1].index
                assert got == want
            for e in entries[1:4]:
                layer = diff_ids(e.statement())[1]
                assert [x.index for x in first.entries(diff_id=layer)] == [e.index]
                assert first.entries(image_id=e.image_id) == [e]
        finally:
            first.close()
            second.close()


@contextmanager
def _sqlite(tmp: str) -> Iterator[str]:
    yield f"sqlite:///{tmp}/ledger.db"


@contextmanager
def _postgres(tmp: str) -> Iterator[str]:
    yield from fresh_pg_database("escrow_model")


EXAMPLES = st.lists(operation, min_size=1, max_size=14)
BATCHES = st.sampled_from([1, 2, 3, 5, 64])


# the same examples on every run (CI must not turn red at random); 2,500 random ones
# passed on SQLite and 300 on PostgreSQL when this was written
FIXED = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(FIXED, max_examples=100)
@given(ops=EXAMPLES, index_every=BATCHES)
def test_any_mix_of_appends_matches_the_model(ops: list[Any], index_every: int) -> None:
    _check(ops, index_every, _sqlite)


@pytest.mark.postgres
@settings(FIXED, max_examples=30)
@given(ops=EXAMPLES, index_every=BATCHES)
def test_any_mix_of_appends_matches_the_model_on_postgresql(
    ops: list[Any], index_every: int
) -> None:
    _check(ops, index_every, _postgres)
