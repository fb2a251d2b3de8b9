"""The results flow's in-memory ownership index against a plain set of ids: exact for
ids of any length and alphabet, read in pages of any size, in any order."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from gateway.validation import ownership


def pages(ids: list[str], size: int) -> list[tuple[int, str]]:
    return [(len(ids[i:i + size]), "\n".join(ids[i:i + size])) for i in range(0, len(ids), size)]


def index_of(ids: list[str], size: int = 3) -> ownership.OwnerIndex:
    index = ownership.load(pages(ids, size))
    assert index is not None
    return index


IDS = st.text(st.characters(exclude_characters="\n", exclude_categories=("Cs",)),
              min_size=1, max_size=70)


@given(st.lists(IDS, unique=True, max_size=40), st.lists(IDS, max_size=40),
       st.integers(1, 8))
def test_foreign_ids_are_exactly_those_not_held(held, asked, size):
    index = index_of(held, size)
    wanted = sorted(set(asked))
    assert index.foreign(pa.array(wanted, pa.string())) == set(wanted) - set(held)
    assert index.count == len(held)


def test_ids_of_other_lengths_prefixes_and_unicode_are_not_confused():
    held = ["C202612000001", "C2026120000012", "案件-1", "A", "AB\x00", "é", "x\x00y"]
    index = index_of(held)
    asked = ["C202612000001", "C20261200000", "C2026120000013", "C2026120000012", "案件-1",
             "案件-2", "A", "AB", "AB\x00", "AB\x00\x00", "A\x00", "e", "é", "x", "x\x00y",
             "x\x00z", "C" * 64]
    assert index.foreign(pa.array(asked)) == set(asked) - set(held)
    assert index.nbytes == sum(len(i.encode()) for i in held)  # no padding, no pointers


def test_an_agency_with_no_cases_holds_nothing():
    index = ownership.load([])
    assert index is not None and index.count == 0
    assert index.foreign(pa.array(["C1", "C2"])) == {"C1", "C2"}
    assert index.foreign(pa.array([], pa.string())) == set()


def test_pages_out_of_order_are_sorted():
    index = index_of(["C9", "C1", "C5", "C3", "C7"], size=2)
    assert index.foreign(pa.array(["C1", "C2", "C3", "C9", "C0"])) == {"C2", "C0"}


def test_a_page_that_does_not_split_into_its_count_gives_no_index():
    """An id holding a newline (the case-id rule keeps them out of the ledger) would be
    read as two: the flow then asks the ledger per chunk instead."""
    assert ownership.load([(2, "C1\nC2\nC3")]) is None


def test_an_agency_too_large_for_memory_gives_no_index():
    ids = [f"C{i:06d}" for i in range(1000)]
    assert ownership.load(pages(ids, 100), max_bytes=5000) is None
    assert ownership.load(pages(ids, 100), max_bytes=7000) is not None
