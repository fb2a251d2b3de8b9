"""Building a report and delivering last month's to the bank, once (docs/security-team.md).

:func:`build` is what `gateway report` writes: the HTML page and the JSON clear-signed
by the gateway. :func:`monthly` runs every pass of the daemon: from the 1st of a month,
each agency's report on the month before — both files, each sealed to the bank, for an
agency the gateway exchanged anything with that month — is
staged and committed as a pending delivery under a name that can be committed only
once (``report.<agency>.<YYYY-MM>.json.pgp`` / ``.html.pgp``), then moved into the
bank's incoming zone by the same two-phase path as every delivery: a crash at any
point delivers it later, never twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import IntegrityError

from gateway import faults
from gateway.clock import month_bounds, previous_month
from gateway.crypto.service import Crypto
from gateway.ledger import DeliveryRow
from gateway.state import write_private

if TYPE_CHECKING:
    from gateway.audit import AuditLog
    from gateway.config import Config
    from gateway.flows import Context
    from gateway.ledger import Ledger

log = structlog.get_logger("gateway.reports")
BANK_IN = "bank.incoming"


@dataclass(frozen=True)
class Sources:
    """What a report is made from, and who signs it: the daemon's own (its pass's
    context), or those `gateway report` opens for the one report it writes."""

    cfg: Config
    ledger: Ledger
    audit: AuditLog
    crypto: Crypto


def build(src: Sources, agency: str, month: str, now: dt.datetime) -> tuple[bytes, bytes]:
    """(HTML page, clear-signed JSON) of *agency*'s report on *month*."""
    # Here, not at the top: the daemon asks monthly() every pass, and the figures (the
    # console's read model, ~20 ms to import) and Jinja (~2 MB, 70 ms) are needed once a month.
    from gateway.reports.figures import figures
    from gateway.reports.render import as_html, as_json

    body = figures(src.cfg, src.ledger, src.audit.entries(), agency, month, now=now)
    body["gateway_key"] = src.crypto.fingerprint
    return as_html(body).encode(), src.crypto.clearsign(as_json(body))


def names(agency: str, month: str) -> tuple[str, str]:
    return f"report.{agency}.{month}.json.pgp", f"report.{agency}.{month}.html.pgp"


def monthly(ctx: Context) -> int:
    """Stage and deliver last month's reports not yet committed, each agency's under
    ``ctx.run.guard``; returns how many."""
    now = ctx.now()
    month = previous_month(ctx.today())
    start, end = month_bounds(month, ctx.cfg.gateway.tz)
    made = 0
    with ctx.run.guard("reports"):
        active = ctx.ledger.exchanged(start, end)  # an agency with none: nothing to report
        for agency in ctx.cfg.agencies:
            if agency.code in active:
                with ctx.run.guard(f"reports.{agency.code}"):
                    made += _stage(ctx, agency.code, month, now)
    if made:
        from gateway import outbox

        outbox.finish_pending(ctx, kinds={"report"})
        log.info("reports.delivered", month=month, files=made)
    return made


def _stage(ctx: Context, agency: str, month: str, now: dt.datetime) -> int:
    """Build and commit the agency's report files for *month* not yet committed."""
    wanted = [n for n in names(agency, month) if not ctx.ledger.delivery_name_taken(n)]
    if not wanted:
        return 0
    page, signed = build(Sources(ctx.cfg, ctx.ledger, ctx.audit, ctx.crypto), agency, month, now)
    made = 0
    for name in wanted:
        data = _sealed(ctx.crypto, signed if ".json." in name else page)
        staged = ctx.state.staging_root / "reports" / name
        staged.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(staged, data)
        faults.point("after_report_staged")
        try:
            ctx.ledger.add_delivery(DeliveryRow(
                kind="report", agency_code=agency, zone=BANK_IN, name=name,
                sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
        except IntegrityError:  # another node committed it first: theirs is delivered
            with contextlib.suppress(OSError):
                staged.unlink()
            continue
        made += 1
    return made


def _sealed(crypto: Crypto, data: bytes) -> bytes:
    out = io.BytesIO()
    with crypto.seal_for_bank(out) as w:
        w.write(data)
    return out.getvalue()
