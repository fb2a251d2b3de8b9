"""Field rules of docs/formats.md §2 as pure functions.

Each checker returns ``None`` when the value is valid, or ``(code, message)``.
Messages describe the rule, never the value: they end up in receipts, and a
receipt must not leak what it rejects.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

Problem = tuple[str, str] | None

_RID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RID_CHECK = "10X98765432"
_RID_RE = re.compile(r"^[1-9]\d{16}[\dX]$")
_OTHER_ID_RE = re.compile(r"^[A-Z0-9]{5,32}$")
_CASE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_MAINLAND_RE = re.compile(r"^(\+86)?1[3-9]\d{9}$")
_E164_RE = re.compile(r"^\+\d{8,15}$")
_MONEY_RE = re.compile(r"^\d{1,15}(\.\d{1,2})?$")
_DIGITS_RE = re.compile(r"^\d+$")
# Control characters, line/paragraph separators, and invisible formatting characters
# (Unicode category Cf: U+202E right-to-left override, U+200B zero-width space, ...), which
# make a name display as something other than what it is.
_CONTROL_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]")

PRODUCTS = frozenset({"credit_card", "personal_loan", "mortgage", "auto_loan", "other"})
ID_TYPES = frozenset({"resident_id", "passport", "other"})
# ISO 4217 active codes (2024 list).
CURRENCIES = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN
BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD
NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD UYU UZS VED
VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())


def gb11643_check_char(first17: str) -> str:
    """The check character of a resident ID number (GB 11643-1999, ISO 7064 MOD 11-2)."""
    total = sum(int(d) * w for d, w in zip(first17, _RID_WEIGHTS, strict=True))
    return _RID_CHECK[total % 11]


def resident_id(value: str, today: dt.date) -> Problem:
    v = value.upper()
    if not _RID_RE.match(v):
        return "E_ID_NUMBER", "resident ID must be 17 digits and a check character (0-9 or X)"
    try:
        born = dt.date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return "E_BIRTH_DATE", "resident ID holds no valid birth date"
    if born > today or born.year < 1900:
        return "E_BIRTH_DATE", "resident ID birth date is in the future or before 1900"
    if gb11643_check_char(v[:17]) != v[17]:
        return "E_ID_CHECKSUM", "resident ID check character does not match (GB 11643-1999)"
    return None


def other_id(value: str) -> Problem:
    if not _OTHER_ID_RE.match(value):
        return "E_ID_NUMBER", "ID number must be 5-32 characters of A-Z and 0-9"
    return None


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def account_number(value: str, product: str | None) -> Problem:
    if not (_DIGITS_RE.match(value) and 12 <= len(value) <= 19):
        return "E_ACCOUNT", "account number must be 12-19 digits"
    if product == "credit_card" and not luhn_ok(value):
        return "E_LUHN", "card number fails the Luhn check"
    return None


def phone(value: str) -> Problem:
    if _MAINLAND_RE.match(value) or _E164_RE.match(value):
        return None
    return "E_PHONE", "phone must be a mainland mobile (1[3-9] and 9 digits, +86 optional) or E.164"


def text(value: str, max_len: int, min_len: int = 1) -> Problem:
    if not min_len <= len(value) <= max_len:
        return "E_TEXT", f"must be {min_len}-{max_len} characters"
    if _CONTROL_RE.search(value):
        return "E_TEXT", "must not contain control or invisible formatting characters"
    return None


def case_id(value: str) -> Problem:
    if not _CASE_ID_RE.match(value):
        return "E_CASE_ID", "case_id must be 1-64 characters of A-Z a-z 0-9 . _ -"
    return None


def money(value: str) -> tuple[Decimal | None, Problem]:
    if not _MONEY_RE.match(value):
        return None, ("E_AMOUNT", "amount must be a decimal >= 0 with at most 2 decimal places")
    try:
        return Decimal(value), None
    except InvalidOperation:  # pragma: no cover - the pattern already rules this out
        return None, ("E_AMOUNT", "amount is not a number")


def iso_date(value: str) -> tuple[dt.date | None, Problem]:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        return None, ("E_DATE", "date must be YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value), None
    except ValueError:
        return None, ("E_DATE", "date does not exist")


def overdue_days(value: str) -> Problem:
    # int() refuses more than 4,300 digits (ValueError), and a hostile line holds a million:
    # only the last four digits are read as a number, any before them must be zeros (of
    # whichever script: int() reads every Unicode decimal digit, and so did this rule).
    if not (_DIGITS_RE.fullmatch(value) and not any(map(int, value[:-4]))
            and 1 <= int(value[-4:]) <= 9999):
        return "E_OVERDUE_DAYS", "overdue_days must be an integer 1-9999"
    return None


def currency(value: str) -> Problem:
    if value not in CURRENCIES:
        return "E_CURRENCY", "currency must be an ISO 4217 code such as CNY"
    return None
