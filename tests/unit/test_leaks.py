"""The leak scanner the plaintext checks rely on finds what is planted, and nothing in ciphertext."""

from __future__ import annotations

import os

from gateway import synth
from tests.leaks import LeakScanner

RECORDS = list(synth.cases(2000, ["AG001"], seed=90))


def test_finds_rows_of_csv_and_single_values():
    s = LeakScanner(RECORDS)
    assert s.scan(synth.to_csv(RECORDS[500:502])) >= {"customer_name", "id_number", "mobile",
                                                      "account_number", "home_address"}
    r = RECORDS[1234]
    for field in ("customer_name", "mobile", "id_number", "account_number", "home_address",
                  "contact1_phone"):
        planted = b"log line: value=" + r[field].encode() + b" end"
        assert s.scan(planted), field  # found (names and streets are shared, so by some field)


def test_ciphertext_and_identifiers_are_clean():
    s = LeakScanner(RECORDS)
    assert s.scan(os.urandom(2_000_000)) == set()
    ids = ",".join(r["case_id"] for r in RECORDS).encode()
    assert s.scan(ids) == set()
