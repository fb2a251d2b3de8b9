"""Masking rules by role (docs/formats.md §3) over whole columns: the fast twin of :mod:`masking`.

Every function here gives, value for value, what its per-row reference in
:mod:`masking` gives; the differential property tests hold them equal. Strings
are sliced by code point (Arrow's ``utf8_slice_codeunits`` counts characters,
as Python does), so ``欧阳娜娜`` masks to ``欧***`` here too.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gateway import masking
from gateway.masking import Rule
from gateway.validation import chunks, csvio
from gateway.validation.chunks import string_bytes
from gateway.validation.schema import CASE_FIELDS, Kind

_STAR = "*"


def _cat(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _stars(counts: pa.Array) -> pa.Array:
    return pc.binary_repeat(_STAR, pc.max_element_wise(counts, 0))


def _head(col: pa.Array, n: int) -> pa.Array:
    return pc.utf8_slice_codeunits(col, 0, n)


def _tail4(col: pa.Array) -> pa.Array:
    return pc.utf8_slice_codeunits(col, -4)


def mask_name(col: pa.Array) -> pa.Array:
    length = pc.utf8_length(col)
    return pc.if_else(pc.greater(length, 1), _cat(_head(col, 1), _stars(pc.subtract(length, 1))), "*")


def last4(col: pa.Array) -> pa.Array:
    return pc.if_else(pc.greater(pc.utf8_length(col), 4), _cat("****", _tail4(col)), "****")


def mask_middle(col: pa.Array) -> pa.Array:
    """First 6 and last 4 kept (resident IDs, account numbers); short values: last 4."""
    length = pc.utf8_length(col)
    return pc.if_else(pc.greater(length, 10),
                      _cat(_head(col, 6), _stars(pc.subtract(length, 10)), _tail4(col)), last4(col))


def mask_phone(col: pa.Array) -> pa.Array:
    length = pc.utf8_length(col)
    plus86 = pc.and_(pc.starts_with(col, "+86"), pc.equal(length, 14))
    plus = pc.and_(pc.invert(plus86), pc.starts_with(col, "+"))
    prefix = pc.if_else(plus86, "+86", pc.if_else(plus, "+", ""))
    rest = pc.if_else(plus86, pc.utf8_slice_codeunits(col, 3),
                      pc.if_else(plus, pc.utf8_slice_codeunits(col, 1), col))
    n = pc.utf8_length(rest)
    keep = pc.if_else(pc.greater_equal(n, 11), 3, pc.max_element_wise(pc.subtract(n, 8), 0))
    head = pc.if_else(pc.equal(keep, 3), _head(rest, 3),
                      pc.if_else(pc.equal(keep, 2), _head(rest, 2),
                                 pc.if_else(pc.equal(keep, 1), _head(rest, 1), "")))
    return _cat(prefix, head, _stars(pc.subtract(pc.subtract(n, keep), 4)), _tail4(rest))


def region(col: pa.Array) -> pa.Array:
    parts = pc.extract_regex(col, masking._REGION.pattern)
    prov, city, dist = (pc.fill_null(pc.struct_field(parts, k), "") for k in ("prov", "city", "dist"))
    kept = pc.or_(pc.greater(pc.binary_length(prov), 0), pc.greater(pc.binary_length(city), 0))
    return pc.if_else(kept, _cat(prov, city, dist, "****"), "****")


def mask_employer(col: pa.Array) -> pa.Array:
    return _cat(_head(col, 2), "****")


def hmac_pads(secret: bytes) -> tuple[bytes, bytes]:
    """HMAC-SHA256's inner and outer key blocks (RFC 2104): what each value's two hashes
    start from, so a column pays the key's setup once, not once per value."""
    key = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


TOKEN_BYTES = 8  # a token is the first 8 bytes of the HMAC, as 16 hex digits
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def token_digests(secret: bytes, offsets: np.ndarray, data: bytes) -> bytes:
    """The first :data:`TOKEN_BYTES` of HMAC-SHA256 of each value ``data[offsets[i]:
    offsets[i+1]]``, end to end. From the key's inner and outer hash states, copied per
    value: the same digest as ``hmac``, in half the time (``hmac.digest`` sets the key up
    again for every value). The values are cut from the column's bytes as they are, not
    made into ``str`` and encoded again."""
    ipad, opad = hmac_pads(secret)
    inner, outer = hashlib.sha256(ipad), hashlib.sha256(opad)
    copy_inner, copy_outer = inner.copy, outer.copy
    out: list[bytes] = []
    add = out.append
    bounds = offsets.tolist()
    for start, end in itertools.pairwise(bounds):
        h = copy_inner()
        h.update(data[start:end])
        o = copy_outer()
        o.update(h.digest())
        add(o.digest()[:TOKEN_BYTES])
    return b"".join(out)


def hex_tokens(digests: bytes | bytearray | memoryview, n: int) -> pa.Array:
    """*n* truncated digests (:func:`token_digests`) as a column of 16 lowercase hex
    digits each, built in NumPy: no Python string per value."""
    raw = np.frombuffer(digests, dtype=np.uint8, count=n * TOKEN_BYTES).reshape(n, TOKEN_BYTES)
    hexed = np.empty((n, 2 * TOKEN_BYTES), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 15]
    offsets = np.arange(0, 2 * TOKEN_BYTES * n + 1, 2 * TOKEN_BYTES, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(hexed))


def token_input(col: pa.Array) -> tuple[np.ndarray, bytes]:
    """A string column's value boundaries (from 0) and its bytes: what the token rule
    hashes, with no Python object per value."""
    offsets, data = string_bytes(col)
    first, last = int(offsets[0]), int(offsets[-1])
    return offsets - first, data[first:last].tobytes()


def token(secret: bytes, col: pa.Array) -> pa.Array:
    """:func:`masking.token` over a column (null-free, as every column here is)."""
    offsets, data = token_input(col)
    return hex_tokens(token_digests(secret, offsets, data), len(col))


def mask(field: str, col: pa.Array, resident: pa.Array | None) -> pa.Array:
    """The standard display mask of *field*'s kind; *resident*: rows whose id_type is a
    resident ID (only an ID number's mask depends on it)."""
    kind = CASE_FIELDS[field].kind
    if kind is Kind.NAME:
        return mask_name(col)
    if kind is Kind.ID_NUMBER:
        return pc.if_else(resident, mask_middle(col), last4(col))
    if kind is Kind.ACCOUNT:
        return mask_middle(col)
    if kind is Kind.PHONE:
        return mask_phone(col)
    if kind is Kind.ADDRESS:
        return region(col)
    if kind is Kind.EMPLOYER:
        return mask_employer(col)
    raise ValueError(f"{field} has no standard mask")  # config validation prevents this


def apply(rule: Rule, field: str, col: pa.Array, *, resident: pa.Array | None,
          secret: bytes | None = None) -> pa.Array:
    """*rule* over a column; an empty value stays empty, as in :func:`masking.apply`. The
    empty values are found in the offsets (NumPy), and only a column that has some pays
    the Arrow calls that put them back."""
    if rule is Rule.FULL or len(col) == 0:
        return col
    offsets, _ = string_bytes(col)
    empty = offsets[1:] == offsets[:-1]
    if rule is Rule.MASK:
        out = mask(field, col, resident)
    elif rule is Rule.LAST4:
        out = last4(col)
    elif rule is Rule.REGION:
        out = region(col)
    elif rule is Rule.TOKEN:
        if secret is None:
            raise ValueError("token needs the contract's secret")
        if not empty.any():
            return token(secret, col)
        filled = pa.array(~empty)
        return pc.replace_with_mask(col, filled, token(secret, pc.filter(col, filled)))
    else:
        raise ValueError(f"rule {rule.value} keeps no column")
    return pc.if_else(pa.array(empty), col, out) if empty.any() else out


def resident_rows(table: pa.Table) -> pa.Array:
    """Rows whose ID number is a resident ID: id_type empty, ``resident_id`` or absent."""
    if "id_type" not in table.column_names:
        return pa.array([True] * table.num_rows)
    return pc.is_in(table.column("id_type").combine_chunks(), pa.array(["", "resident_id"]))


_FORMULA = np.zeros(256, dtype=bool)
_FORMULA[[ord(c) for c in csvio.FORMULA_TRIGGERS]] = True  # all ASCII: a first byte decides


def _formulas(col: pa.Array) -> np.ndarray:
    offsets, data = string_bytes(col)
    starts = offsets[:-1]
    return (offsets[1:] > starts) & _FORMULA[data[np.minimum(starts, len(data) - 1)]]


def neutralise(col: pa.Array) -> pa.Array:
    """:func:`csvio.neutralise` over a column: a leading ``'`` before a formula trigger."""
    hits = _formulas(col)
    return pc.if_else(pa.array(hits), _cat("'", col), col) if hits.any() else col


def needs_neutralising(col: pa.Array) -> int:
    return int(_formulas(col).sum())


TokenJobs = list[tuple[bytes, pa.Array]]
"""Token columns to compute: (contract key, values), none of them empty."""
Tokenizer = Callable[[TokenJobs], Callable[[], list[pa.Array]]]
"""Takes token jobs now and returns what gives their columns later, in order: the time
between is when a worker process (:mod:`gateway.token_worker`) hashes them."""


def tokens_here(jobs: TokenJobs) -> Callable[[], list[pa.Array]]:
    """The :data:`Tokenizer` without a worker: this thread computes them, at once."""
    done = [token(key, col) for key, col in jobs]
    return lambda: done


class _Request:
    """Token jobs handed over together; their columns, fetched once when first asked."""

    def __init__(self, fetch: Callable[[], list[pa.Array]]) -> None:
        self._fetch: Callable[[], list[pa.Array]] | None = fetch
        self._done: list[pa.Array] = []

    def column(self, i: int) -> pa.Array:
        if self._fetch is not None:
            self._done, self._fetch = self._fetch(), None
        return self._done[i]


TokenSpan = tuple[str, int, int, bytes]
"""(field, start, length, contract key): one agency's token column of a chunk."""


class ChunkMasks:
    """The masked columns of one chunk of accepted rows, each computed once however many
    agencies and roles share it. The chunk is sorted by agency, so an agency's rows are
    one zero-copy slice of every masked column; only ``token`` is computed per agency
    (each contract has its own key) — once per (field, agency) however many of the
    agency's roles tokenise the field, and by *tokens* (a worker process, if the caller
    has one; :meth:`prefetch` hands it every span the chunk needs at once)."""

    def __init__(self, table: pa.Table, free_text: frozenset[str],
                 tokens: Tokenizer = tokens_here) -> None:
        self.table, self.free_text = table, free_text
        self._resident: pa.Array | None = None
        self._done: dict[tuple[str, Rule], tuple[pa.Array, bool]] = {}
        self._tokens = tokens
        self._token_done: dict[TokenSpan, pa.Array] = {}
        self._token_waiting: dict[TokenSpan, tuple[_Request, int, pa.Array, pa.Array | None]] = {}

    def prefetch(self, spans: Iterable[TokenSpan]) -> None:
        """Start the token columns of these spans, all in one request (a worker hashes
        them while the caller masks the other columns)."""
        jobs: TokenJobs = []
        wanted: list[tuple[TokenSpan, pa.Array, pa.Array | None]] = []
        for span in dict.fromkeys(spans):
            if span in self._token_done or span in self._token_waiting:
                continue
            name, start, length, key = span
            col = self._plain_column(name).slice(start, length)
            offsets, _ = string_bytes(col)
            empty = offsets[1:] == offsets[:-1]
            if not empty.any():
                jobs.append((key, col))
                wanted.append((span, col, None))
            else:  # an empty value stays empty, as in masking.apply
                filled = pa.array(~empty)
                jobs.append((key, pc.filter(col, filled)))
                wanted.append((span, col, filled))
        if jobs:
            request = _Request(self._tokens(jobs))
            for i, (span, col, filled) in enumerate(wanted):
                self._token_waiting[span] = (request, i, col, filled)

    @staticmethod
    def token_spans(policy: masking.RolePolicy, columns: list[str],
                    spans: list[tuple[int, int, bytes | None]]) -> list[TokenSpan]:
        """The token columns :meth:`spans` will ask for: what to :meth:`prefetch`."""
        return [(name, s, n, k) for name in columns if policy.rules[name] is Rule.TOKEN
                for s, n, k in spans if k is not None and n]

    def _token(self, span: TokenSpan) -> pa.Array:
        if span not in self._token_done:
            if span not in self._token_waiting:
                self.prefetch([span])
            request, i, col, filled = self._token_waiting.pop(span)
            out = request.column(i)
            self._token_done[span] = out if filled is None else pc.replace_with_mask(col, filled, out)
        return self._token_done[span]

    def _plain_column(self, name: str) -> pa.Array:
        col = self.table.column(name)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

    def column(self, name: str, rule: Rule) -> tuple[pa.Array, bool]:
        """(the whole chunk's column under *rule*, whether no value of it needs CSV quotes)."""
        key = (name, rule)
        if key not in self._done:
            col = self.table.column(name).combine_chunks()
            if rule is Rule.MASK and self._resident is None and CASE_FIELDS[name].kind is Kind.ID_NUMBER:
                self._resident = resident_rows(self.table)
            col = apply(rule, name, col, resident=self._resident)
            col = neutralise(col) if name in self.free_text else col
            self._done[key] = (col, chunks.rows_with(col, chunks.QUOTE_BYTES) is None)
        return self._done[key]

    def role(self, policy: masking.RolePolicy, columns: list[str], start: int, length: int,
             secret: bytes | None) -> tuple[list[pa.Array], list[bool]]:
        """One role's view of rows *start*..*start+length* (one agency's): what
        :meth:`masking.RolePolicy.row` gives for each row, free text neutralised (after
        masking: a masked ``=x`` is ``=*``, still a formula); and which columns need no
        CSV quoting."""
        return self.spans(policy, columns, [(start, length, secret)])

    def spans(self, policy: masking.RolePolicy, columns: list[str],
              spans: list[tuple[int, int, bytes | None]]) -> tuple[list[pa.Array], list[bool]]:
        """:meth:`role` for several agencies at once: their spans (start, length, token
        key) of the sorted chunk, in order, end to end in each column. The agencies that
        share a role share one CSV build, cut into their slices afterwards: at a few
        thousand rows each Arrow call's fixed cost counts, so one build over the chunk
        costs less than one per agency over its part."""
        first, total = spans[0][0], sum(n for _, n, _ in spans)
        contiguous = all(spans[i][0] == spans[i - 1][0] + spans[i - 1][1]
                         for i in range(1, len(spans)))

        def cut(col: pa.Array) -> pa.Array:
            if contiguous:
                return col if first == 0 and total == len(col) else col.slice(first, total)
            return pa.concat_arrays([col.slice(s, n) for s, n, _ in spans])

        out, plain = [], []
        for name in columns:
            rule = policy.rules[name]
            if rule is Rule.TOKEN:  # hex digits: neither a formula nor anything to quote
                if any(k is None and n for _, n, k in spans):
                    raise ValueError("token needs the contract's secret")
                parts = [self._token((name, s, n, cast(bytes, k))) if n
                         else self._plain_column(name).slice(s, 0) for s, n, k in spans]
                out.append(parts[0] if len(parts) == 1 else pa.concat_arrays(parts))
                plain.append(True)
            else:
                col, clean = self.column(name, rule)
                out.append(cut(col))
                plain.append(clean)
        return out, plain
