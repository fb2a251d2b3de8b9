"""Sample files for partners (``gateway sample``): a case file and a results file to test with.

A bank's export team or an agency's developers need a file the gateway accepts before they
have real data to send — and must not be tempted to test with real data. These samples are
synthetic through and through: the people are made up from common name and address parts
(:mod:`gateway.synth`), yet every value passes the gateway's own rules (GB 11643 check
characters, Luhn card numbers, amounts that add up, dates in order), so a sample that is
refused points at the partner's sealing or upload, never at the data.

Neither format has a comment line (a first line that is not the header is ``E_NO_HEADER``,
a later one a malformed row), so a sample cannot say in itself that it is synthetic. What
marks it instead is every case id: they begin with ``SAMPLE-``. The help text and the
partner guides say the rest.

The same code writes the header-only templates in ``docs/partners/templates`` (no rows),
so the templates are the column definitions the validators use, not a copy of them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import random
import tempfile
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway import synth
from gateway.config import Config
from gateway.errors import UsageError
from gateway.validation.results import RESULT_FIELDS
from gateway.validation.schema import CASE_FIELDS

CASE_ID_PREFIX = "SAMPLE-"
DEFAULT_TIMEZONE = "Asia/Shanghai"  # the gateway's default; results' times are local there
# Every column of each format, in the order formats.md lists them: the templates' headers.
CASE_COLUMNS: tuple[str, ...] = tuple(CASE_FIELDS)
RESULT_COLUMNS: tuple[str, ...] = tuple(RESULT_FIELDS)

_CARD_PREFIXES = ("622202", "622848", "621700", "625800", "622588", "436742")
_MORE_EMPLOYERS = ("远航物流有限公司", "金桥置业集团", "瑞丰食品有限公司", "新城实验小学", "市第一人民医院",
                   "达安电子科技有限公司", "鸿运出租汽车公司", "绿源农业合作社")
# Principal in fen (CNY cents) by product: a card debt is small, a mortgage large.
_PRINCIPAL = {"credit_card": (2_000_00, 80_000_00), "personal_loan": (10_000_00, 300_000_00),
              "auto_loan": (30_000_00, 250_000_00), "mortgage": (200_000_00, 2_000_000_00),
              "other": (1_000_00, 50_000_00)}
_PRODUCT_WEIGHTS = {"credit_card": 50, "personal_loan": 20, "auto_loan": 12, "mortgage": 10,
                    "other": 8}


@dataclass(frozen=True)
class Layout:
    """How a case file is written: the bank's encoding, delimiter and headers."""

    encoding: str = "utf-8"
    delimiter: str = ","
    headers: tuple[tuple[str, str], ...] = ()  # (canonical field, the bank's header)

    @classmethod
    def of(cls, cfg: Config | None) -> Layout:
        if cfg is None:
            return cls()
        schema = cfg.schema_
        return cls(schema.encoding, schema.delimiter, tuple(sorted(schema.columns.items())))

    def header(self, field: str) -> str:
        return dict(self.headers).get(field, field)


# --- cases ---------------------------------------------------------------------------------

def case_records(n: int, agencies: Sequence[str], *, seed: int,
                 today: dt.date) -> Iterator[dict[str, str]]:
    """*n* synthetic cases shared round-robin among *agencies*, assigned on *today*."""
    if not agencies:
        raise ValueError("case_records() needs at least one agency")
    rnd = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    products = list(_PRODUCT_WEIGHTS)
    weights = list(_PRODUCT_WEIGHTS.values())
    for i in range(n):
        region, district, streets = rnd.choice(synth.PLACES)
        product = rnd.choices(products, weights)[0]
        low, high = _PRINCIPAL[product]
        principal = rnd.randrange(low, high)
        interest = rnd.randrange(0, principal // 6)
        fees = rnd.choice((0, 0, rnd.randrange(0, 800_00)))
        rec = {
            "case_id": f"{CASE_ID_PREFIX}{seed}-{i + 1:07d}",
            "agency_code": agencies[i % len(agencies)],
            "product": product,
            "account_number": synth.card_number(rnd, rnd.choice(_CARD_PREFIXES))
            if product == "credit_card" else str(rnd.randrange(10**(k := rnd.choice((15, 16, 18))),
                                                               10**(k + 1))),
            "customer_name": synth.name(rnd),
            "mobile": _phone(rnd),
            "home_address": f"{district}{rnd.choice(streets)}{rnd.randrange(1, 999)}号"
                            f"{rnd.randrange(1, 30)}栋{rnd.randrange(1, 30)}{rnd.randrange(1, 5):02d}室",
            "currency": "USD" if product == "credit_card" and rnd.random() < 0.03 else "CNY",
            "principal": _yuan(principal),
            "interest": _yuan(interest),
            "fees": _yuan(fees),
            "total_due": _yuan(principal + interest + fees),
            "overdue_days": str(rnd.randrange(31, 720)),
            "assigned_on": today.isoformat(),
            "due_back_on": (today + dt.timedelta(days=rnd.choice((60, 90, 90, 180)))).isoformat(),
        }
        kind = rnd.random()
        if kind < 0.94:
            rec["id_type"], rec["id_number"] = "resident_id", synth.resident_id(rnd, region, today)
        elif kind < 0.99:
            rec["id_type"], rec["id_number"] = "passport", f"E{rnd.randrange(10**8):08d}"
        else:
            rec["id_type"], rec["id_number"] = "other", f"H{rnd.randrange(10**8):08d}"
        if rnd.random() < 0.8:
            rec["employer"] = rnd.choice((*synth.EMPLOYERS, *_MORE_EMPLOYERS))
            rec["work_address"] = f"{district}{rnd.choice(streets)}{rnd.randrange(1, 999)}号"
        for k in range(1, rnd.choice((1, 1, 2, 2, 3)) + 1):
            rec[f"contact{k}_name"] = synth.name(rnd)
            rec[f"contact{k}_relation"] = rnd.choice(synth.RELATIONS)
            rec[f"contact{k}_phone"] = _phone(rnd)
        yield rec


def _phone(rnd: random.Random) -> str:
    number = synth.mobile(rnd)
    return f"+86{number}" if rnd.random() < 0.1 else number


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def cases_csv(records: Sequence[dict[str, str]] | Iterator[dict[str, str]],
              layout: Layout = Layout()) -> bytes:
    """A case file as the bank's export would write it: every column, the bank's headers."""
    return _csv(records, CASE_COLUMNS, [layout.header(c) for c in CASE_COLUMNS],
                layout.delimiter).encode(layout.encoding)


# --- results -------------------------------------------------------------------------------

# (action, weight, contact targets it is made with)
_ACTIONS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("CALL", 40, ("debtor", "debtor", "debtor", "contact")),
    ("SMS", 15, ("debtor", "debtor", "contact")),
    ("PROMISE_TO_PAY", 10, ("debtor",)),
    ("PAYMENT_REPORTED", 6, ("debtor",)),
    ("LETTER", 5, ("debtor",)),
    ("VISIT", 4, ("debtor",)),
    ("EMAIL", 3, ("debtor",)),
    ("CONTACT_UPDATE", 5, ("debtor", "contact", "third_party")),
    ("UNREACHABLE", 5, ("none",)),
    ("HARDSHIP", 2, ("debtor",)),
    ("DISPUTE", 1, ("debtor",)),
    ("LEGAL", 1, ("none",)),
    ("RETURN_CASE", 1, ("none",)),
    ("FRAUD_SUSPECTED", 1, ("none",)),
    ("DECEASED", 1, ("contact",)),
)
_OUTCOMES = {
    "CALL": ("已接通", "无人接听", "承诺还款", "客户拒绝", "关机", "号码空号", "稍后回电"),
    "SMS": ("已发送", "已送达"),
    "PROMISE_TO_PAY": ("承诺还款",),
    "PAYMENT_REPORTED": ("已还部分款项", "已结清"),
    "LETTER": ("已寄出催收函",),
    "VISIT": ("本人在家", "无人在家", "地址已搬迁"),
    "EMAIL": ("已发送",),
    "CONTACT_UPDATE": ("获得新号码", "获得新地址"),
    "UNREACHABLE": ("多次联系未果",),
    "HARDSHIP": ("客户失业", "客户重病住院"),
    "DISPUTE": ("客户对欠款金额有异议",),
    "LEGAL": ("已移交律师函",),
    "RETURN_CASE": ("退案",),
    "FRAUD_SUSPECTED": ("疑似冒名办卡",),
    "DECEASED": ("家属告知本人已故",),
}
_NOTES = ("客户称月底还款", "需再次跟进", "客户要求书面材料", "家属代为转告", "已告知还款渠道")


def result_records(case_ids: Sequence[str], n: int, *, seed: int,
                   today: dt.date) -> Iterator[dict[str, str]]:
    """*n* result rows about *case_ids* (cycled), on the fortnight before *today*.

    Times are local (no offset) in contact hours, except for about one row in twenty; a
    row outside them is accepted and flagged ``HOURS``, as a real agency's would be."""
    if not case_ids:
        raise ValueError("result_records() needs at least one case id")
    rnd = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    actions = [a for a, _, _ in _ACTIONS]
    weights = [w for _, w, _ in _ACTIONS]
    targets = {a: t for a, _, t in _ACTIONS}
    collectors = [f"col-{rnd.randrange(1, 400):03d}" for _ in range(5)]
    for i in range(n):
        day = today - dt.timedelta(days=rnd.randrange(1, 15))
        hour = rnd.randrange(8, 21) if rnd.random() < 0.95 else rnd.choice((7, 21, 22))
        at = dt.datetime.combine(day, dt.time(hour, rnd.randrange(60), rnd.randrange(60)))
        action = rnd.choices(actions, weights)[0]
        row = {"case_id": case_ids[i % len(case_ids)], "action_at": at.isoformat(),
               "action_code": action, "contact_target": rnd.choice(targets[action]),
               "outcome": rnd.choice(_OUTCOMES[action]), "collector_id": rnd.choice(collectors)}
        if action in ("PROMISE_TO_PAY", "PAYMENT_REPORTED"):
            row["amount"] = f"{rnd.randrange(200, 20000)}.{rnd.choice((0, 0, 50, rnd.randrange(100))):02d}"
        if action == "PROMISE_TO_PAY":
            row["promise_date"] = (day + dt.timedelta(days=rnd.randrange(3, 30))).isoformat()
        if action == "CONTACT_UPDATE":
            if rnd.random() < 0.7:
                row["new_mobile"] = _phone(rnd)
            else:
                _, district, streets = rnd.choice(synth.PLACES)
                row["new_address"] = f"{district}{rnd.choice(streets)}{rnd.randrange(1, 999)}号"
        if rnd.random() < 0.2:
            row["note"] = rnd.choice(_NOTES)
        yield row


def results_csv(records: Sequence[dict[str, str]] | Iterator[dict[str, str]]) -> bytes:
    """A results file: UTF-8, comma, canonical headers — the only form the gateway reads."""
    return _csv(records, RESULT_COLUMNS, list(RESULT_COLUMNS), ",").encode("utf-8")


def case_ids_from(path: Path, layout: Layout, agencies: Sequence[str]) -> list[str]:
    """The case ids of *agencies* in a case file *path*: a sample, the bank's plaintext, or
    a slice an agency decrypted (canonical headers; a role may not see ``agency_code``,
    and then every row is the agency's own).

    With no *agencies*, the file must hold a single agency's cases: a results file speaks
    for one agency, and rows about another's cases are refused (``E_NOT_ASSIGNED``)."""
    raw = path.read_bytes()
    encoding = "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else layout.encoding
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise UsageError(f"--cases {path}: not {layout.encoding} text (give -c CONFIG for the "
                         "bank's encoding)") from None
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter))
    if not rows:
        raise UsageError(f"--cases {path}: the file is empty")
    header = [h.strip() for h in rows[0]]
    id_header, agency_header = layout.header("case_id"), layout.header("agency_code")
    if id_header not in header:
        raise UsageError(f"--cases {path}: no {id_header!r} column in the first row (give -c "
                         "CONFIG for the bank's headers and delimiter)")
    at_id = header.index(id_header)
    if agency_header in header:
        at_agency = header.index(agency_header)
        pairs = [(r[at_id].strip(), r[at_agency].strip()) for r in rows[1:]
                 if len(r) > max(at_id, at_agency)]
    else:  # a slice without agency_code: one agency's rows, whichever it is
        pairs = [(r[at_id].strip(), agencies[0] if agencies else "") for r in rows[1:]
                 if len(r) > at_id]
    found = sorted({a for _, a in pairs})
    if not agencies:
        if len(found) > 1:
            raise UsageError(f"--cases {path}: cases of {len(found)} agencies ({', '.join(found)}); "
                             "a results file is one agency's: name it with --agencies")
        agencies = found
    ids = [cid for cid, a in pairs if a in agencies and cid]
    if not ids:
        raise UsageError(f"--cases {path}: no cases of {', '.join(agencies) or 'any agency'}")
    return ids


def synthetic_case_ids(n: int, seed: int) -> list[str]:
    """Case ids in the form of a cases sample's, for a results file made without one."""
    return [f"{CASE_ID_PREFIX}{seed}-{i + 1:07d}" for i in range(max(n, 1))]


# --- shared --------------------------------------------------------------------------------

def _csv(records: Sequence[dict[str, str]] | Iterator[dict[str, str]], columns: Sequence[str],
         header: Sequence[str], delimiter: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(header)
    for r in records:
        w.writerow([r.get(c, "") for c in columns])
    return buf.getvalue()


def local_today(cfg: Config | None) -> dt.date:
    """Today where the gateway counts days: sample dates must not lie ahead of its clock."""
    tz = cfg.gateway.tz if cfg is not None else zoneinfo.ZoneInfo(DEFAULT_TIMEZONE)
    return dt.datetime.now(tz).date()


def active_agencies(cfg: Config, day: dt.date) -> list[str]:
    """The configured agencies whose contract lets them receive cases on *day*."""
    return [a.code for a in cfg.agencies
            if a.contract.start <= day <= a.contract.effective_end]


def write_new(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write *path* whole (private temp file, then a rename), mode 0600: a sample looks like
    personal data, and a reader must not find half a file. Without *force* an existing file
    is never replaced — not even one that appears while this writes."""
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; not overwriting it (use --force)")
    if path.is_dir():
        raise UsageError(f"{path} is a directory")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            tmp_path.replace(path)
        else:
            try:
                os.link(tmp_path, path)
            except FileExistsError:
                raise UsageError(f"{path} already exists; not overwriting it (use --force)") from None
    finally:
        tmp_path.unlink(missing_ok=True)
