"""A results file's counts held in memory against a plain Counter: what each chunk finds
counted before, and what the commit is handed, for ids of any length and alphabet."""

from __future__ import annotations

import collections
import json

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from gateway.validation import file_counts
from gateway.validation.file_counts import FileCounts

CASES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=70)
DAYS = st.sampled_from(["2026-12-01", "2026-12-02", "2027-01-31"])
CHUNKS = st.lists(st.lists(st.tuples(st.tuples(CASES | st.sampled_from(["C1", "C12", "案件"]),
                                               DAYS), st.integers(1, 9)),
                           max_size=30, unique_by=lambda kv: kv[0]), max_size=25)


def arrays(keys: list[tuple[str, str]]) -> tuple[pa.Array, pa.Array]:
    return pa.array([c for c, _ in keys], pa.string()), pa.array([d for _, d in keys], pa.string())


@given(CHUNKS)
def test_counts_held_are_a_counter_of_the_chunks(chunks):
    held, expected = FileCounts(), collections.Counter()
    for chunk in chunks:
        keys = [k for k, _ in chunk]
        assert held.counted(*arrays(keys)) == {i: expected[k] for i, k in enumerate(keys)
                                               if expected[k]}
        held.add(*arrays(keys), pa.array([n for _, n in chunk], pa.int64()))
        expected.update(dict(chunk))
    given_rows = [tuple(r) for rows in held.rows() for r in json.loads(rows)]
    assert sorted(given_rows) == sorted((c, d, n) for (c, d), n in expected.items())


def test_many_chunks_are_merged_into_few_sorted_runs():
    held = FileCounts()
    for chunk in range(64):
        keys = [(f"C{chunk:03d}{i:04d}", "2026-12-01") for i in range(100)]
        held.add(*arrays(keys), pa.array([1] * 100, pa.int64()))
        held.add(*arrays(keys[:10]), pa.array([2] * 10, pa.int64()))
    (runs,) = held._runs.values()
    assert len(runs) <= 7 and sum(len(r) for r, _ in runs) == 6400
    assert held.nbytes == 6400 * (18 + 8)
    found = held.counted(*arrays([("C0000000", "2026-12-01"), ("C0000010", "2026-12-01"),
                                  ("C0000000", "2026-12-02")]))
    assert found == {0: 3, 1: 1}


def test_rows_come_in_pages():
    held = FileCounts()
    keys = [(f"C{i:06d}", "2026-12-01") for i in range(file_counts.PAGE + 5)]
    held.add(*arrays(keys), pa.array([1] * len(keys), pa.int64()))
    pages = [json.loads(rows) for rows in held.rows()]
    assert [len(p) for p in pages] == [file_counts.PAGE, 5]


def test_only_ten_character_days_fit_the_keys():
    assert file_counts.fits(pa.array(["2026-12-01"])) and file_counts.fits(pa.array([], pa.string()))
    assert not file_counts.fits(pa.array(["2026-12-01", "26-12-01"]))


def test_the_commit_is_handed_the_keys_in_order_in_one_run():
    """The commit's upsert walks ``attempts`` in the order it is given the keys: rows()
    merges the runs first, so each key length comes as one sorted sequence."""
    held = FileCounts()
    for chunk in range(40):
        keys = [(f"C{(i * 7919 + chunk) % 5000:05d}", "2026-12-01") for i in range(100)]
        keys = list(dict.fromkeys(keys))
        held.add(*arrays(keys), pa.array([1] * len(keys), pa.int64()))
    assert len(next(iter(held._runs.values()))) > 1
    given_rows = [tuple(r) for rows in held.rows() for r in json.loads(rows)]
    assert given_rows == sorted(given_rows)
    (runs,) = held._runs.values()
    assert len(runs) == 1
    found = held.counted(*arrays([("C00000", "2026-12-01"), ("C00001", "2026-12-01")]))
    assert found == {0: 1, 1: 1}
