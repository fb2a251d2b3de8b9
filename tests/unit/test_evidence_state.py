"""The words for an agency's deletion attestation (gateway.queries.ATTESTATION_STATES),
on the days around its due date (the contract's effective end + 30 days, local dates)."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import queries

DUE = dt.date(2027, 1, 30)


@pytest.mark.parametrize(("expected", "attested", "today", "state"), [
    (True, False, dt.date(2026, 12, 1), "pending"),  # the contract still runs
    (True, False, DUE, "pending"),  # due today: not yet missing
    (True, False, DUE + dt.timedelta(days=1), "missing"),
    (True, True, DUE + dt.timedelta(days=400), "attested"),
    (False, False, DUE + dt.timedelta(days=400), "not_expected"),  # no kit: never missing
    (False, True, DUE, "attested"),  # one that arrives unasked is shown
])
def test_attestation_state(expected, attested, today, state):
    assert queries.attestation_state(expected=expected, attested=attested, due=DUE,
                                     today=today) == state
    assert state in queries.ATTESTATION_STATES


def evidence(**kw) -> queries.AgencyEvidence:
    base = dict(agency="AG001", contract_id="C1", expected=True, acknowledge_within_days=7,
                overdue=0, oldest_overdue=None, overdue_batches=[], acknowledged=5,
                effective_end=DUE - dt.timedelta(days=30), attestation_due=DUE, attestation=None,
                state="pending")
    return queries.AgencyEvidence(**{**base, **kw})


def test_the_lines_status_prints():
    assert evidence().acknowledgements_text == "none overdue (5 acknowledged)"
    late = evidence(overdue=2, oldest_overdue=dt.datetime(2026, 11, 2, 9, tzinfo=dt.UTC),
                    overdue_batches=["B1", "B2", "B3", "B4"])
    assert late.acknowledgements_text == (
        "2 files overdue (not acknowledged after 7 days; oldest delivered 2026-11-02, batch "
        "B1, B2, B3, …)")
    assert evidence().attestation_text == f"pending: due by {DUE}"
    assert evidence(state="missing").attestation_text == (
        "missing since 2027-01-31 (due by 2027-01-30)")
    done = queries.Attested("d" * 32, "end.attestation.json.pgp", "a" * 64,
                            dt.datetime(2027, 1, 4, tzinfo=dt.UTC),
                            dt.datetime(2027, 1, 5, tzinfo=dt.UTC), 3, 0)
    assert evidence(state="attested", attestation=done).attestation_text == (
        "attested 2027-01-05 (3 files, 0 not listed)")
    rows = queries.evidence_health([evidence(state="missing"), late,
                                    evidence(agency="AG002", expected=False, state="not_expected")])
    assert [(r.zone, r.state) for r in rows] == [("evidence.AG001", "failing"),
                                                 ("evidence.AG001", "warning")]
