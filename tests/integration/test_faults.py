"""The fault-injection harness, reduced: ≥ 10 seeded SIGKILLs from outside over a 20,000-case
batch, a results file and a purge (`make faults` runs ≥ 50)."""

from __future__ import annotations

import pytest

from tests import faults

pytestmark = pytest.mark.integration


def test_ten_seeded_kills_lose_nothing(tmp_path):
    s = faults.run(10, seed=7, cases=20000, workdir=tmp_path, log=lambda _m: None)
    assert s.kills >= 10 and s.rounds >= 1
    assert s.problems == [], s.problems
    assert (s.lost, s.duplicated, s.plaintext_files, s.audit_breaks, s.partial_files) == \
        (0, 0, 0, 0, 0), s.line()
    assert sum(s.phases.values()) == s.kills
