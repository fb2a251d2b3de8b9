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
