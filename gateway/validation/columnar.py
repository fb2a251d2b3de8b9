"""The case rules of docs/formats.md §2 over a chunk of columns: the fast twin of :mod:`cases`.

Each rule is an Arrow/NumPy expression over a whole column that says *this row
is valid*. The proof obligation is one-sided and the differential property tests
hold it: a row the columnar rules pass is a row the per-row reference
(:class:`cases.CaseValidator`) accepts, with the same normalised values. A row
they do not pass goes to the reference, which states its errors — so receipts
keep the reference's codes, fields and messages word for word — or accepts it
after all (a value with spaces around it, a digit outside ASCII: the strict
expressions leave such rare rows to the readable rules).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gateway.config import Config
from gateway.validation import fields as f
from gateway.validation.cases import CaseValidator, HeaderMap, RowError
from gateway.validation.chunks import Chunk, rows_with, string_bytes
from gateway.validation.schema import CASE_FIELDS, Kind

# str.strip() removes what str.isspace() calls space; a valid row has none at either end.
PY_WHITESPACE = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004"
                 "\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def _re2_class(chars: str) -> str:
    """A Python character-class body (literal characters and ranges) in RE2's escapes."""
    out = []
    for i, c in enumerate(chars):
        is_range = c == "-" and 0 < i < len(chars) - 1
        out.append("-" if is_range else f"\\x{{{ord(c):x}}}")
    return "".join(out)


_CONTROL = _re2_class(f._CONTROL_RE.pattern[1:-1])
_SPACE = _re2_class(PY_WHITESPACE)
# A text value: no control or invisible character anywhere, no space at either end.
_TEXT = f"^[^{_CONTROL}{_SPACE}](?:[^{_CONTROL}]*[^{_CONTROL}{_SPACE}])?$"
_RULES = {
    "case_id": r"^[A-Za-z0-9._-]{1,64}$",
    "resident_id": r"^[1-9][0-9]{16}[0-9Xx]$",
    "other_id": r"^[A-Z0-9]{5,32}$",
    "account": r"^[0-9]{12,19}$",
    "phone": r"^(?:\+86)?1[3-9][0-9]{9}$|^\+[0-9]{8,15}$",
    "amount": r"^[0-9]{1,15}(?:\.[0-9]{1,2})?$",
    "date": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
    "overdue_days": r"^0*[1-9][0-9]{0,3}$",
}
_TEXT_LIMITS = {Kind.NAME: 64, Kind.ADDRESS: 200, Kind.EMPLOYER: 200, Kind.TEXT: 64}
_RID_WEIGHTS = np.array((7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2), dtype=np.int64)
_RID_CHECK = np.frombuffer(b"10X98765432", dtype=np.uint8)
_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


# --- column helpers ------------------------------------------------------------------

def _bool(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean column as NumPy, null counted as false. The columns here hold no
    null (Arrow's parser makes none), so as a rule there is nothing to fill: one Arrow
    call fewer per rule, each of which takes and gives back the interpreter lock."""
    if values.null_count:
        values = pc.fill_null(values, False)
    return values.to_numpy(zero_copy_only=False)


def _empty(col: pa.Array) -> np.ndarray:
    """Rows whose value is empty, from the column's offsets (no Arrow call)."""
    offsets, _ = string_bytes(col)
    return offsets[1:] == offsets[:-1]


def _matches(col: pa.Array, pattern: str) -> np.ndarray:
    return _bool(pc.match_substring_regex(col, pattern))


def _digits(col: pa.Array, rows: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bytes *start*..*start+width* of the given rows (all known to be that long), as
    numbers where they are ASCII digits."""
    offsets, data = string_bytes(col)
    return data[offsets[rows][:, None] + np.arange(start, start + width)].astype(np.int64) - 48


def _real_dates(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether (year, month, day) exists in the proleptic Gregorian calendar, as
    ``datetime.date`` judges it (years 1-9999)."""
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    month_ok = (m >= 1) & (m <= 12)
    days = _DAYS[np.where(month_ok, m, 0)] + ((m == 2) & leap)
    return (y >= 1) & month_ok & (d >= 1) & (d <= days)


def _on(candidates: np.ndarray, judge: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """*judge* (row indices -> verdicts) over the candidate rows only; false elsewhere."""
    out = np.zeros(len(candidates), dtype=bool)
    rows = np.flatnonzero(candidates)
    if len(rows):
        out[rows] = judge(rows)
    return out


def luhn_ok(col: pa.Array, candidates: np.ndarray) -> np.ndarray:
    """Luhn over the candidate rows (12-19 ASCII digits); false elsewhere."""
    offsets, data = string_bytes(col)

    def judge(rows: np.ndarray) -> np.ndarray:
        ends, lengths = offsets[rows + 1], offsets[rows + 1] - offsets[rows]
        back = np.arange(19)  # position from the right
        inside = back[None, :] < lengths[:, None]
        digits = np.where(inside, data[np.where(inside, ends[:, None] - 1 - back, 0)].astype(np.int64)
                          - 48, 0)
        doubled = digits[:, 1::2] * 2
        digits[:, 1::2] = np.where(doubled > 9, doubled - 9, doubled)
        return digits.sum(axis=1) % 10 == 0

    return _on(candidates, judge)


def resident_id_ok(col: pa.Array, candidates: np.ndarray, today: dt.date) -> np.ndarray:
    """Birth date real, not in the future, not before 1900, and the GB 11643 check
    character right — over candidate rows (18 ASCII characters of the right shape)."""
    limit = today.year * 10000 + today.month * 100 + today.day

    def judge(rows: np.ndarray) -> np.ndarray:
        d = _digits(col, rows, 0, 18)
        year = d[:, 6] * 1000 + d[:, 7] * 100 + d[:, 8] * 10 + d[:, 9]
        month, day = d[:, 10] * 10 + d[:, 11], d[:, 12] * 10 + d[:, 13]
        born = year * 10000 + month * 100 + day
        dated = _real_dates(year, month, day) & (born <= limit) & (year >= 1900)
        check = _RID_CHECK[(d[:, :17] @ _RID_WEIGHTS) % 11]
        last = d[:, 17] + 48
        return dated & (check == np.where(last == ord("x"), ord("X"), last))

    return _on(candidates, judge)


def iso_dates_ok(col: pa.Array, candidates: np.ndarray) -> np.ndarray:
    """Real calendar dates, over candidate rows (``YYYY-MM-DD`` in ASCII digits)."""
    def judge(rows: np.ndarray) -> np.ndarray:
        d = _digits(col, rows, 0, 10)
        year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
        return _real_dates(year, d[:, 5] * 10 + d[:, 6], d[:, 8] * 10 + d[:, 9])

    return _on(candidates, judge)


def _lead_bytes() -> np.ndarray:
    """Bytes that start (or are) a control, invisible or space character in UTF-8 — and,
    conservatively, much else: ASCII controls, C2 (U+0080-00BF), D8-DC (Arabic and Syriac
    marks), E0-E3 (U+0800-U+3FFF: Mongolian vowel separator, U+2000-206F, U+3000),
    EF (U+F000-FFFF: BOM, specials), F0-F4 (every plane beyond the first). Chinese text
    (E4-E9) holds none of them, so a name or address without these bytes needs no regex."""
    lut = np.zeros(256, dtype=bool)
    lut[:0x20] = lut[0x7F] = True
    for lead in (0xC2, 0xD8, 0xD9, 0xDA, 0xDB, 0xDC, 0xE0, 0xE1, 0xE2, 0xE3, 0xEF):
        lut[lead] = True
    lut[0xF0:0xF5] = True
    assert all(lut[c.encode()[0]] for c in PY_WHITESPACE if c != " ")  # noqa: S101 — invariant
    return lut


_SUSPECT = _lead_bytes()


def text_ok(col: pa.Array, limit: int) -> np.ndarray:
    """:func:`fields.text` plus "nothing to strip" over a column. Values whose bytes are
    all unremarkable are judged by length and their edge bytes alone; the rest by the
    exact regex."""
    offsets, data = string_bytes(col)
    starts, ends = offsets[:-1], offsets[1:]
    suspect = rows_with(col, _SUSPECT)
    nonempty = ends > starts
    last = len(data) - 1
    edge = (data[np.minimum(starts, last)] == 0x20) | (data[np.maximum(ends - 1, 0)] == 0x20)
    plain = nonempty & ~edge if suspect is None else nonempty & ~edge & ~suspect
    ok = plain & _bool(pc.less_equal(pc.utf8_length(col), limit))
    doubt = np.flatnonzero(nonempty & ~plain)
    if len(doubt):
        some = col.take(pa.array(doubt))
        ok[doubt] = _matches(some, _TEXT) & _bool(pc.less_equal(pc.utf8_length(some), limit))
    return ok


def _cents(col: pa.Array, valid: np.ndarray) -> pa.Array:
    return pc.cast(pc.if_else(pa.array(valid), col, "0"), pa.decimal128(18, 2))


# --- the engine ----------------------------------------------------------------------


@dataclass
class Checked:
    """A chunk after the rules: the accepted rows (canonical field names, values as the
    reference normalises them), their row numbers, and every error in row order."""

    table: pa.Table
    rows: np.ndarray
    errors: list[RowError]


class ColumnarCases:
    """:class:`cases.CaseValidator`'s rules over chunks; the reference explains failures."""

    def __init__(self, cfg: Config, header: HeaderMap, today: dt.date) -> None:
        self.reference = CaseValidator(cfg, header, today)
        self.fields = header.fields
        self.today = today
        self.active = pa.array(sorted(
            a.code for a in cfg.agencies if a.contract.start <= today <= a.contract.effective_end),
            pa.string())

    def check(self, chunk: Chunk) -> Checked:
        table = chunk.table.rename_columns(list(self.fields))
        cols = {name: table.column(name).combine_chunks() for name in self.fields}
        resident = self._resident(cols)  # the ID number's rule and its normal form both ask
        ok = self._valid(cols, table.num_rows, resident)
        doubtful = np.flatnonzero(~ok)
        errors: list[tuple[int, list[RowError]]] = []
        rescued: dict[int, dict[str, str]] = {}  # index -> the reference's record
        if len(doubtful):
            values = [cols[name].take(pa.array(doubtful)).to_pylist() for name in self.fields]
            for i, row_values in zip(doubtful, zip(*values, strict=True), strict=True):
                row = int(chunk.rows[i])
                rec, problems = self.reference.validate(row, list(row_values))
                if problems:
                    errors.append((row, problems))
                else:
                    assert rec is not None  # noqa: S101 — no problem: the reference made the record
                    rescued[int(i)] = rec
        for row, values in chunk.odd:
            errors.append((row, self.reference.validate(row, values)[1]))
        errors.sort(key=lambda e: e[0])
        keep = ok.copy()
        out = self._normalised(cols, resident)
        if rescued:
            index = np.fromiter(rescued, dtype=np.int64, count=len(rescued))
            keep[index] = True
            mask = np.zeros(len(ok), dtype=bool)
            mask[index] = True
            order = np.argsort(index)  # replace_with_mask takes replacements in row order
            recs = [rescued[int(j)] for j in index[order]]
            for name in self.fields:
                out[name] = pc.replace_with_mask(out[name], pa.array(mask),
                                                 pa.array([r[name] for r in recs], pa.string()))
        accepted = pa.table(out).filter(pa.array(keep))
        return Checked(accepted, chunk.rows[keep], [e for _, es in errors for e in es])

    def _normalised(self, cols: dict[str, pa.Array], resident: np.ndarray) -> dict[str, pa.Array]:
        """A resident ID's check character in upper case, as the reference writes it."""
        out = dict(cols)
        if "id_number" in cols:
            out["id_number"] = pc.if_else(pa.array(resident),
                                          pc.replace_substring(cols["id_number"], "x", "X"),
                                          cols["id_number"])
        return out

    def _resident(self, cols: dict[str, pa.Array]) -> np.ndarray:
        """Rows whose ID number is a resident ID: id_type empty, ``resident_id`` or absent."""
        if "id_type" not in cols:
            return np.ones(len(cols["case_id"]), dtype=bool)
        return _bool(pc.is_in(cols["id_type"], pa.array(["", "resident_id"])))

    def _valid(self, cols: dict[str, pa.Array], n: int, resident: np.ndarray) -> np.ndarray:
        ok = np.ones(n, dtype=bool)
        for name, col in cols.items():
            empty = _empty(col)
            rule = self._rule(name, col, cols, resident) | empty
            ok &= rule & ~empty if CASE_FIELDS[name].required else rule
        money = ("principal", "interest", "fees", "total_due")
        if ok.any():  # the sum over rows whose four amounts are valid (all four are required)
            parts = [_cents(cols[k], ok) for k in money]
            ok &= _bool(pc.equal(pc.add(pc.add(parts[0], parts[1]), parts[2]), parts[3]))
            ok &= _bool(pc.less_equal(cols["assigned_on"], cols["due_back_on"]))
        return ok

    def _rule(self, name: str, col: pa.Array, cols: dict[str, pa.Array],
              resident: np.ndarray) -> np.ndarray:
        """Rows whose non-empty value passes *name*'s rule (mirrors ``CaseValidator._field``)."""
        kind = CASE_FIELDS[name].kind
        if name == "case_id":
            return _matches(col, _RULES["case_id"])
        if name == "agency_code":
            return _bool(pc.is_in(col, self.active))
        if name in ("product", "id_type", "currency"):
            allowed = {"product": f.PRODUCTS, "id_type": f.ID_TYPES, "currency": f.CURRENCIES}[name]
            return _bool(pc.is_in(col, pa.array(sorted(allowed))))
        if name == "id_number":
            shaped = resident & _matches(col, _RULES["resident_id"])
            other = ~resident & _matches(col, _RULES["other_id"])
            return resident_id_ok(col, shaped, self.today) | other
        if name == "overdue_days":
            return _matches(col, _RULES["overdue_days"])
        if kind is Kind.ACCOUNT:
            shaped = _matches(col, _RULES["account"])
            card = _bool(pc.equal(cols["product"], "credit_card")) if "product" in cols else \
                np.zeros(len(col), dtype=bool)
            return shaped & (~card | luhn_ok(col, shaped & card))
        if kind is Kind.PHONE:
            return _matches(col, _RULES["phone"])
        if kind is Kind.AMOUNT:
            return _matches(col, _RULES["amount"])
        if kind is Kind.DATE:
            return iso_dates_ok(col, _matches(col, _RULES["date"]))
        if kind in _TEXT_LIMITS:
            return text_ok(col, _TEXT_LIMITS[kind])
        return np.zeros(len(col), dtype=bool)  # no fast rule: the reference decides
