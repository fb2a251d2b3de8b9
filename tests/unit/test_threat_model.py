"""docs/threat-model.md names a test for every mechanism: each must exist, so the page
cannot promise a proof the suite does not run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "threat-model.md"
# [test_file::test_name](../tests/…/test_file.py)
_PROOF = re.compile(r"\[(test_[a-z0-9_]+)::(test_[a-z0-9_]+)\]\(\.\./(tests/[^)]+\.py)\)")


def proofs() -> list[tuple[str, str, str]]:
    return _PROOF.findall(PAGE.read_text())


def test_the_page_names_its_proofs():
    assert len(proofs()) >= 40
    # every link into tests/ is a proof in the form above (none slips past the check)
    links = re.findall(r"\]\(\.\./tests/[^)]+\)", PAGE.read_text())
    assert len(links) == len(proofs())


@pytest.mark.parametrize(("module", "name", "path"), proofs(), ids=lambda v: str(v))
def test_every_named_test_exists(module, name, path):
    file = ROOT / path
    assert file.name == f"{module}.py", (module, path)
    assert file.exists(), path
    assert re.search(rf"^def {name}\(", file.read_text(), re.M), f"{path} has no {name}"


def test_every_table_row_names_a_proof():
    """A mechanism without a test is a promise: every row of a threats table has one."""
    section = PAGE.read_text().split("## Threats, mechanisms and their tests", 1)[1]
    section = section.split("## What is out of scope", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and not r.startswith("| threat")]
    assert rows
    for row in rows:
        assert _PROOF.search(row), row
