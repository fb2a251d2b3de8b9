"""Field rules: property tests over generated valid values and their corruptions."""

from __future__ import annotations

import datetime as dt

from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.validation import fields as f

TODAY = dt.date(2026, 11, 22)

regions = st.sampled_from(["110105", "310115", "440305", "330106", "510107", "650102"])
births = st.dates(min_value=dt.date(1900, 1, 1), max_value=TODAY)
seqs = st.integers(0, 999)


@st.composite
def resident_ids(draw):
    body = f"{draw(regions)}{draw(births):%Y%m%d}{draw(seqs):03d}"
    return body + f.gb11643_check_char(body)


@st.composite
def card_numbers(draw):
    body = draw(st.text("0123456789", min_size=10, max_size=17))  # 12-19 digits in all
    body = draw(st.sampled_from("123456789")) + body
    for c in "0123456789":
        if f.luhn_ok(body + c):
            return body + c
    raise AssertionError


@given(resident_ids())
def test_every_valid_resident_id_is_accepted(rid):
    assert f.resident_id(rid, TODAY) is None


@given(resident_ids(), st.sampled_from("0123456789X"))
def test_every_wrong_check_character_is_rejected(rid, wrong):
    assume(wrong != rid[-1])
    assert f.resident_id(rid[:-1] + wrong, TODAY) == (
        "E_ID_CHECKSUM", "resident ID check character does not match (GB 11643-1999)")


@given(resident_ids(), st.integers(0, 16), st.integers(1, 9))
def test_a_changed_digit_is_caught(rid, pos, delta):
    digit = str((int(rid[pos]) + delta) % 10)
    changed = rid[:pos] + digit + rid[pos + 1:]
    assert f.resident_id(changed, TODAY) is not None  # checksum, or the date no longer exists


def test_lowercase_x_and_future_birth():
    body = "11010520200229123"
    rid = body + f.gb11643_check_char(body)
    assert f.resident_id(rid.lower(), TODAY) is None or rid[-1] != "X"
    future = "110105" + "20270101" + "123"
    assert f.resident_id(future + f.gb11643_check_char(future), TODAY)[0] == "E_BIRTH_DATE"
    bad_day = "110105" + "20230230" + "123"
    assert f.resident_id(bad_day + f.gb11643_check_char(bad_day), TODAY)[0] == "E_BIRTH_DATE"


@given(card_numbers())
def test_every_luhn_valid_card_is_accepted(card):
    assert f.account_number(card, "credit_card") is None


@given(card_numbers(), st.integers(1, 9))
def test_a_corrupted_check_digit_is_rejected(card, delta):
    wrong = card[:-1] + str((int(card[-1]) + delta) % 10)
    assert f.account_number(wrong, "credit_card") == ("E_LUHN", "card number fails the Luhn check")
    assert f.account_number(wrong, "personal_loan") is None  # Luhn only for cards


@given(st.from_regex(r"\A(\+86)?1[3-9]\d{9}\Z") | st.from_regex(r"\A\+\d{8,15}\Z"))
def test_valid_phones(p):
    assert f.phone(p) is None


@given(st.text(max_size=20))
def test_phone_rule_is_exactly_the_two_patterns(p):
    import re
    ok = bool(re.fullmatch(r"(\+86)?1[3-9]\d{9}|\+\d{8,15}", p, flags=re.ASCII))
    assert (f.phone(p) is None) == ok


@given(st.decimals(min_value=0, max_value=10**12, places=2, allow_nan=False))
def test_money_round_trips(d):
    value, problem = f.money(f"{d:.2f}")
    assert problem is None and value == d


def test_money_rejects():
    for bad in ("-1", "1.234", "1e5", "", "1,000.00", " 1"):
        assert f.money(bad)[1][0] == "E_AMOUNT"


def test_text_rules():
    assert f.text("张三", 64) is None
    assert f.text("", 64)[0] == "E_TEXT"
    assert f.text("a\u0007b", 64)[0] == "E_TEXT"
    assert f.text("x" * 65, 64)[0] == "E_TEXT"
