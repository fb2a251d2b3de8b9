"""Time as the gateway writes it: UTC, ISO 8601 with ``Z``, in every receipt, manifest,
certificate and report; a time read back without its zone (SQLite keeps none) is UTC."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """The one "now" (aware, UTC): what a Context's clock is unless a test or demo moves it."""
    return dt.datetime.now(dt.UTC)


def iso(ts: dt.datetime) -> str:
    """UTC, ISO 8601, with Z — the one timestamp format in receipts, manifests, certificates."""
    return aware(ts).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def aware(ts: dt.datetime) -> dt.datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)


def previous_month(day: dt.date) -> str:
    """The month (``YYYY-MM``) before the one *day* falls in."""
    first = day.replace(day=1) - dt.timedelta(days=1)
    return f"{first.year:04d}-{first.month:02d}"


def month_bounds(month: str, tz: dt.tzinfo) -> tuple[dt.datetime, dt.datetime]:
    """The first instant of *month* (``YYYY-MM``) and of the next, in the gateway's zone."""
    year, mon = (int(x) for x in month.split("-"))
    start = dt.datetime(year, mon, 1, tzinfo=tz)
    end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=tz)
    return start, end


def month_of(ts: dt.datetime, tz: dt.tzinfo) -> str:
    """``YYYY-MM`` of the calendar month *ts* falls in, in the gateway's zone."""
    local = ts.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"
