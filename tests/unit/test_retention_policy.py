"""Retention policy against a table of golden cases; no deadline ever beyond end + 30 days."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.retention.policy import State, decide

D = dt.date

GOLDEN = [
    # label, end, terminated_on, purge_after_days, today, purged_on
    #   -> state, effective_end, deadline, days_left, late
    ("running", D(2026, 12, 31), None, 30, D(2026, 6, 1), None,
     State.ACTIVE, D(2026, 12, 31), D(2027, 1, 30), 243, False),
    ("ends today: still active", D(2026, 11, 22), None, 30, D(2026, 11, 22), None,
     State.ACTIVE, D(2026, 11, 22), D(2026, 12, 22), 30, False),
    ("ended yesterday", D(2026, 11, 21), None, 30, D(2026, 11, 22), None,
     State.ENDED, D(2026, 11, 21), D(2026, 12, 21), 29, False),
    ("early termination wins over end", D(2026, 12, 31), D(2026, 11, 30), 30, D(2026, 12, 5), None,
     State.ENDED, D(2026, 11, 30), D(2026, 12, 30), 25, False),
    ("deadline day: purge due, not late", D(2026, 11, 30), None, 30, D(2026, 12, 30), None,
     State.PURGE_DUE, D(2026, 11, 30), D(2026, 12, 30), 0, False),
    ("end on a leap day", D(2028, 2, 29), None, 30, D(2028, 3, 1), None,
     State.ENDED, D(2028, 2, 29), D(2028, 3, 30), 29, False),
    ("leap day, 1 day", D(2028, 2, 29), None, 1, D(2028, 3, 1), None,
     State.PURGE_DUE, D(2028, 2, 29), D(2028, 3, 1), 0, False),
    ("purge_after_days = 0: the day after the end", D(2026, 11, 21), None, 0, D(2026, 11, 22), None,
     State.PURGE_DUE, D(2026, 11, 21), D(2026, 11, 22), 0, False),
    ("purge_after_days = 0 on the last day: active", D(2026, 11, 22), None, 0, D(2026, 11, 22), None,
     State.ACTIVE, D(2026, 11, 22), D(2026, 11, 23), 1, False),
    ("deadline passed while the gateway was down", D(2026, 9, 30), None, 30, D(2026, 11, 22), None,
     State.PURGE_DUE, D(2026, 9, 30), D(2026, 10, 30), -23, True),
    ("purged in time", D(2026, 9, 30), None, 30, D(2026, 11, 22), D(2026, 10, 29),
     State.PURGED, D(2026, 9, 30), D(2026, 10, 30), -23, False),
    ("purged late", D(2026, 9, 30), None, 30, D(2026, 11, 22), D(2026, 11, 2),
     State.PURGED, D(2026, 9, 30), D(2026, 10, 30), -23, True),
    ("across a year end", D(2026, 12, 20), None, 15, D(2027, 1, 4), None,
     State.PURGE_DUE, D(2026, 12, 20), D(2027, 1, 4), 0, False),
]


@pytest.mark.parametrize("case", GOLDEN, ids=[c[0] for c in GOLDEN])
def test_golden(case):
    _, end, term, days, today, purged, state, eff, deadline, left, late = case
    d = decide(contract_id="K", agency="A", end=end, terminated_on=term, purge_after_days=days,
               today=today, purged_on=purged)
    assert (d.state, d.effective_end, d.deadline, d.days_left, d.late) == (state, eff, deadline, left, late)
    assert d.reason


@given(end=st.dates(min_value=D(2000, 1, 1), max_value=D(2090, 1, 1)),
       early=st.integers(0, 400), days=st.integers(0, 30), offset=st.integers(-500, 500))
def test_deadline_never_beyond_30_days(end, early, days, offset):
    term = end - dt.timedelta(days=early) if early else None
    d = decide(contract_id="K", agency="A", end=end, terminated_on=term, purge_after_days=days,
               today=end + dt.timedelta(days=offset))
    assert d.effective_end < d.deadline <= d.effective_end + dt.timedelta(days=30)
    assert (d.state is State.ACTIVE) == (end + dt.timedelta(days=offset) <= d.effective_end)


def test_more_than_30_days_is_refused():
    with pytest.raises(ValueError):
        decide(contract_id="K", agency="A", end=D(2026, 1, 1), terminated_on=None,
               purge_after_days=31, today=D(2026, 1, 1))
