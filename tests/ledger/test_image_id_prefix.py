"""Entries found by the short image ID `escrow log` shows, once the engine no longer holds
the image: the ledger expands a prefix of hex digits through its query index (and the
entries after its last batch), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from ledger_helpers import LedgerEnv, manifest

from tests.conftest import run_cli

#: more than one batch of the query index (64): both the indexed and the unindexed path
COUNT = 70


def _fill(env: LedgerEnv) -> list[tuple[int, str]]:
    """``COUNT`` build entries: ``(index, image ID)`` each."""
    out = []
    with env.open() as lg:
        for n in range(COUNT):
            entry, _ = lg.append(env.envelope(n))
            out.append((entry.index, manifest(n)["predicate"]["image"]["id"]))
        assert lg.size() > 64 + 1  # some entries after the last batch of the index
    return out


def _unique_prefix(ids: list[str], image_id: str) -> str:
    """The 12 digits `escrow log` shows; they are unique among ``ids``."""
    short = image_id.removeprefix("sha256:")[:12]
    assert sum(i.removeprefix("sha256:").startswith(short) for i in ids) == 1
    return short


def test_a_short_id_finds_its_image_indexed_or_not(env: LedgerEnv) -> None:
    built = _fill(env)
    ids = [i for _, i in built]
    with env.open() as lg:
        indexed_to = lg.index_every
        for _, image_id in (built[0], built[indexed_to - 2], built[-1]):  # batch, tail
            short = _unique_prefix(ids, image_id)
            assert lg.image_ids_starting(short) == [image_id]
            assert lg.image_ids_starting("sha256:" + short.upper()) == [image_id]
            assert lg.image_ids_starting(image_id) == [image_id]  # the whole ID


def test_a_prefix_of_several_gives_them_in_order_up_to_the_limit(env: LedgerEnv) -> None:
    ids = sorted({i for _, i in _fill(env)})
    digit = max("0123456789abcdef", key=lambda d: sum(i[7] == d for i in ids))
    starting = [i for i in ids if i[7] == digit]
    assert len(starting) >= 3
    with env.open() as lg:
        assert lg.image_ids_starting(digit, limit=2) == starting[:2]
        assert lg.image_ids_starting(digit, limit=100) == starting


def test_what_is_not_a_recorded_prefix_finds_nothing(env: LedgerEnv) -> None:
    ids = [i for _, i in _fill(env)]
    with env.open() as lg:
        for text in ("app:latest", "xyz", "", "sha256:", "f" * 65, "12 34"):
            assert lg.image_ids_starting(text) == [], text
        missing = next(
            p
            for p in ("0000000", "fffffff", "8888888", "1234567")
            if not any(i[7:].startswith(p) for i in ids)
        )
        assert lg.image_ids_starting(missing) == []


def test_log_and_verify_take_the_short_id_of_an_image_the_engine_lacks(
    cli_env: LedgerEnv,
) -> None:
    built = _fill(cli_env)
    ids = [i for _, i in built]
    index, image_id = built[-3]
    short = _unique_prefix(ids, image_id)

    r = run_cli(["log", "--image", short, "--json"])
    assert r.exit_code == 0, r.stderr
    assert [e["index"] for e in r.json()["entries"]] == [index]

    r = run_cli(["verify", short, "--json"])
    doc: dict[str, Any] = r.json()
    assert doc["index"] == index, r.stdout


def test_an_ambiguous_or_unknown_short_id_is_one_sentence(cli_env: LedgerEnv) -> None:
    ids = sorted({i for _, i in _fill(cli_env)})
    # a letter: a number is a ledger index
    digit = max("abcdef", key=lambda d: sum(i[7] == d for i in ids))
    assert sum(i[7] == digit for i in ids) >= 3

    for command in (["verify", digit], ["log", "--image", digit]):
        r = run_cli(command)
        assert r.exit_code == 2, r.stderr
        assert f"The short ID {digit} is the beginning of several recorded image IDs" in r.stderr
        assert "Give more of its digits" in r.stderr

    missing = next(
        p for p in ("aaaaaaa", "fffffff", "eeeeeee") if not any(i[7:].startswith(p) for i in ids)
    )
    r = run_cli(["verify", missing])
    assert r.exit_code == 2
    assert (
        f"No image in the Docker Engine has the short ID {missing}, and no image ID recorded "
        "in the ledger begins with it." in r.stderr
    )
