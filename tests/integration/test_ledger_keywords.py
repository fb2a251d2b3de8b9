"""A misspelled column given to the ledger fails, and nothing of its transaction is kept:
it used to become an attribute of the row that the database never saw."""

from __future__ import annotations

import pytest

from gateway.ledger import FileStatus

pytestmark = pytest.mark.integration


def test_finishing_a_file_with_a_misspelled_column_keeps_it_claimed(ledger):
    claim = ledger.claim_file(sha256="a" * 64, kind="case_file", zone="bank.outgoing",
                              name="b1.csv.pgp", size=10, owner="w1")
    with pytest.raises(TypeError, match="recods"):
        ledger.finish_file(claim.file_id, FileStatus.ACCEPTED, recods=3)
    assert ledger.file(claim.file_id).status == FileStatus.CLAIMED.value
    ledger.finish_file(claim.file_id, FileStatus.ACCEPTED, records=3)
    assert (ledger.file(claim.file_id).status, ledger.file(claim.file_id).records) == ("accepted", 3)


def test_a_claim_with_a_misspelled_column_is_refused(ledger):
    with pytest.raises(TypeError, match="zoen"):
        ledger.claim_file(sha256="a" * 64, kind="case_file", zoen="bank.outgoing",
                          name="b1.csv.pgp", size=10, owner="w1")
    assert ledger.files() == []


def test_changing_a_misspelled_account_column_is_refused(ledger):
    with pytest.raises(TypeError, match="disable"):
        ledger.change_account("nobody", disable=True)
