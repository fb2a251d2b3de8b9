"""Masking rules as pure functions; masked output never contains the masked digits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway import masking as m
from gateway.masking import RolePolicy, Rule
from tests.unit.test_fields import card_numbers, resident_ids


@given(resident_ids())
def test_resident_id_mask_hides_the_birth_date(rid):
    out = m.mask("id_number", rid)
    assert out == rid[:6] + "********" + rid[-4:]
    assert rid[6:14] not in out


@given(card_numbers())
def test_card_mask_shows_first6_last4_only(card):
    out = m.mask("account_number", card)
    assert out[:6] == card[:6] and out[-4:] == card[-4:]
    assert set(out[6:-4]) <= {"*"} and len(out) == len(card)


@given(st.from_regex(r"\A1[3-9]\d{9}\Z"))
def test_mobile_mask(p):
    out = m.mask("mobile", p)
    assert out == p[:3] + "****" + p[-4:]
    assert p[3:7] not in out[3:7]


@given(st.text(min_size=1, max_size=30))
def test_last4_never_shows_more_than_four(v):
    out = m.last4(v)
    assert out.startswith("****") and len(out) <= 8
    assert out[4:] == (v[-4:] if len(v) > 4 else "")


@given(st.text(min_size=1, max_size=10, alphabet="张王李赵欧阳娜"))
def test_name_mask_keeps_first_character(name):
    out = m.mask("customer_name", name)
    assert out[0] == name[0] if len(name) > 1 else out == "*"
    assert set(out[1:]) <= {"*"}


@given(st.text(min_size=1, max_size=60))
def test_region_is_a_prefix_plus_stars(addr):
    out = m.region(addr)
    assert out.endswith("****")
    kept = out[:-4]
    assert addr.startswith(kept)
    assert not any(ch.isdigit() for ch in kept)  # house numbers never survive


def test_region_examples():
    assert m.region("北京市朝阳区建国路88号") == "北京市朝阳区****"
    assert m.region("广东省深圳市南山区科技园路1号") == "广东省深圳市南山区****"
    assert m.region("12 Baker Street") == "****"


def test_token_is_keyed():
    a, b = b"k" * 32, b"j" * 32
    assert m.token(a, "张三") == m.token(a, "张三")
    assert m.token(a, "张三") != m.token(b, "张三")
    assert len(m.token(a, "张三")) == 16


def test_role_policy_drops_unlisted_fields():
    policy = RolePolicy("r", {"case_id": Rule.FULL, "mobile": Rule.MASK, "employer": Rule.DROP})
    cols = policy.columns({"mobile", "case_id", "employer", "customer_name"})
    assert cols == ["case_id", "mobile"]
    assert policy.row(cols, {"case_id": "C1", "mobile": "13812345678"}, None) == ["C1", "138****5678"]


def test_other_id_types_show_last4():
    assert m.mask("id_number", "E12345678", id_type="passport") == "****5678"


def test_employer_and_empty_values():
    assert m.mask("employer", "华信科技有限公司") == "华信****"
    assert m.apply(Rule.MASK, "mobile", "") == ""
