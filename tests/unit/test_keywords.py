"""Typed keyword options (``**options: Unpack[SomeTypedDict]``) refuse a misspelled or
missing keyword at run time, as a plain parameter list did: the type checker does not see
every caller."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import keywords
from gateway.ledger import (
    AccountChange,
    AccountRow,
    FileEnd,
    FileRow,
    FileSeen,
    ReceiptProgress,
    ReceiptRow,
    ResultsEnd,
)
from gateway.retention.policy import decide


@pytest.mark.parametrize(("typed", "row"), [(FileSeen, FileRow), (FileEnd, FileRow),
                                            (ReceiptProgress, ReceiptRow),
                                            (AccountChange, AccountRow)])
def test_the_ledgers_keywords_name_columns_of_their_row(typed, row):
    assert set(typed.__annotations__) <= set(row.__table__.columns.keys())


def test_results_end_is_the_files_end_and_its_flags():
    assert set(ResultsEnd.__annotations__) - set(FileEnd.__annotations__) == {"flags"}


def test_optional_keys_are_optional_and_the_rest_required():
    keywords.check({"sha256": "a", "kind": "k", "zone": "z", "name": "n", "size": 1}, FileSeen)
    keywords.check({}, FileEnd)
    with pytest.raises(TypeError, match=r"missing keyword argument.* size"):
        keywords.check({"sha256": "a", "kind": "k", "zone": "z", "name": "n"}, FileSeen)


def test_a_misspelled_keyword_is_refused():
    with pytest.raises(TypeError, match=r"unexpected keyword argument.* recods"):
        keywords.check({"recods": 3}, FileEnd)
    with pytest.raises(TypeError, match=r"unexpected keyword argument.* agnecy"):
        decide(contract_id="K", agnecy="A", end=dt.date(2026, 1, 1),  # type: ignore[call-arg]
               terminated_on=None, purge_after_days=1, today=dt.date(2026, 1, 1))
