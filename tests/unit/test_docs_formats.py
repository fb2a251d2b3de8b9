"""docs/formats.md, the external contract, against the code it describes.

The document is the product for senders and auditors; these tests keep it complete
(every error code, column, event, rule and flag the code knows is documented), keep
its examples true (check digits, the audit-chain example), and keep it standing on
its own (no references to material outside the repository).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from gateway import audit, masking
from gateway.validation import fields, results
from gateway.validation.schema import CASE_FIELDS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "formats.md"
SOURCE = ROOT / "gateway"

# A string literal that is exactly an error code, in single or double quotes.
CODE_LITERAL = re.compile(r"""["'](E_[A-Z0-9_]+)["']""")
# String literals of that shape that are not error codes. None today: the only other
# E_ strings in the source are regular expressions for codes (``r"E_[A-Z0-9_]{1,40}"``
# in audit.py), which the pattern above cannot match because of the bracket.
NOT_CODES: frozenset[str] = frozenset()


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def source_codes() -> set[str]:
    found: set[str] = set()
    for path in SOURCE.rglob("*"):
        if path.suffix in (".py", ".html") and path.is_file():
            found |= set(CODE_LITERAL.findall(path.read_text(encoding="utf-8")))
    return found - NOT_CODES


def test_source_has_codes():
    """The scan itself works: a few codes every version has are found."""
    assert {"E_NOT_ASSIGNED", "E_ID_CHECKSUM", "E_UNKNOWN_SIGNER", "E_NOT_ENCRYPTED"} <= source_codes()


@pytest.mark.parametrize("code", sorted(source_codes()))
def test_every_error_code_is_documented(doc, code):
    assert f"`{code}`" in doc, f"{code} is used in gateway/ but not documented in docs/formats.md"


def test_every_documented_code_exists(doc):
    """No code in the document that the gateway never produces (a renamed or removed one)."""
    documented = set(re.findall(r"`(E_[A-Z0-9_]+)`", doc))
    assert documented - source_codes() == set()


@pytest.mark.parametrize("column", list(CASE_FIELDS))
def test_every_case_column_is_documented(doc, column):
    assert f"`{column}`" in doc


@pytest.mark.parametrize("column", list(results.RESULT_FIELDS))
def test_every_results_column_is_documented(doc, column):
    assert f"`{column}`" in doc


@pytest.mark.parametrize("value", sorted(
    results.ACTION_CODES | results.CONTACT_TARGETS | fields.PRODUCTS | fields.ID_TYPES))
def test_every_enumerated_value_is_documented(doc, value):
    assert f"`{value}`" in doc


@pytest.mark.parametrize("event", sorted(audit.EVENTS))
def test_every_audit_event_is_documented(doc, event):
    assert f"`{event}`" in doc


@pytest.mark.parametrize("name", sorted(audit.FIELDS))
def test_every_audit_field_is_documented(doc, name):
    assert f"`{name}`" in doc


@pytest.mark.parametrize("rule", [r.value for r in masking.Rule])
def test_every_masking_rule_is_documented(doc, rule):
    assert f"`{rule}`" in doc


@pytest.mark.parametrize("role", sorted(masking.DEFAULT_ROLES))
def test_every_default_role_is_documented(doc, role):
    assert f"`{role}`" in doc


@pytest.mark.parametrize("flag", ["HOURS", "ATTEMPTS", "THIRD_PARTY", "DISPUTE", "FRAUD", "LATE"])
def test_every_flag_is_documented(doc, flag):
    assert f"`{flag}`" in doc


@pytest.mark.parametrize("needle", ["§", "../shared", "shared/"])
def test_stands_on_its_own(doc, needle):
    assert needle not in doc


def test_names_no_outside_specification(doc):
    """"SPEC" as a word (the action code FRAUD_SUSPECTED holds the letters, and must be
    documented), and no file name of the brief in any case."""
    assert not re.search(r"\bSPEC\b", doc)
    assert not re.search(r"(?i)spec\.md|design\.md", doc)


def test_no_issue_numbers(doc):
    text = re.sub(r"\]\(#[^)]*\)", "]", doc)  # the contents' links to its own sections
    assert not re.search(r"(?i)\bissues?\s*#?\d+|(?<![\w&])#\d+\b", text)


def test_resident_id_examples_are_valid(doc):
    """Every 18-character resident ID in the document carries a valid check character
    and birth date (masked ones hold '*' and do not match)."""
    ids = set(re.findall(r"(?<![0-9A-Za-z])[1-9][0-9]{16}[0-9X](?![0-9A-Za-z])", doc))
    assert "110105199003071239" in ids
    for rid in ids:
        assert fields.resident_id(rid, dt.date.today()) is None, rid


def test_card_examples_pass_luhn(doc):
    cards = set(re.findall(r"(?<![0-9])622202[0-9]{10}(?![0-9])", doc))
    assert cards
    for card in cards:
        assert fields.luhn_ok(card), card


def test_audit_example_verifies(doc, tmp_path):
    """The JSON Lines example is a real chain: the gateway's own verifier accepts it."""
    block = re.search(r"```jsonl\n(.*?)```", doc, re.S)
    assert block is not None
    log = tmp_path / "audit.jsonl"
    log.write_text(block.group(1), encoding="utf-8")
    result = audit.verify(log)
    assert result.ok and result.entries == 3, result.problem


def test_masking_examples_match_the_rules(doc):
    """The masks shown in the rules tables are what the masking functions give."""
    for value, shown in [("张三", "张*"), ("欧阳娜娜", "欧***")]:
        assert masking.mask_name(value) == shown and f"`{value}` → `{shown}`" in doc
    examples = [
        ("id_number", "110105199003071239", "110105********1239"),
        ("account_number", "6222021234567894", "622202******7894"),
        ("mobile", "13800000001", "138****0001"),
        ("mobile", "+8613800000001", "+86138****0001"),
        ("mobile", "+85291234567", "+852****4567"),
        ("employer", "华信科技有限公司", "华信****"),
    ]
    for field, value, shown in examples:
        assert masking.mask(field, value) == shown and f"`{value}` → `{shown}`" in doc
    assert masking.mask("id_number", "E12345678", "passport") == "****5678"
    assert masking.region("广东省深圳市南山区科技园路1号") == "广东省深圳市南山区****"
    assert masking.region("Room 5, 1 Main St") == "****"
