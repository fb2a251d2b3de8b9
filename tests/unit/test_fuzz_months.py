"""Fuzzing report months (issue 22): `gateway report --month` and the console's report
links take a month from a person or a URL. Any text is either a month whose bounds every
later step can compute (in any of the gateway's time zones, converted to UTC), or a
ValueError that the CLI turns into one line — never an internal error."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import zoneinfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.reports.figures import check_month, month_bounds, previous_month, recent_months

EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "300"))
ZONES = [zoneinfo.ZoneInfo(z) for z in ("Asia/Shanghai", "Pacific/Kiritimati", "Etc/GMT+12", "UTC")]
months = st.one_of(st.text(max_size=12),
                   st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(0, 9999), st.integers(0, 13)))


@settings(max_examples=EXAMPLES, deadline=None)
@given(months, st.sampled_from(ZONES))
@example("9999-12", ZONES[0])
@example("0001-01", ZONES[1])
@example("1970-01", ZONES[1])
@example("9998-12", ZONES[2])
@example("２０２６-01", ZONES[0])
def test_a_month_is_checked_or_refused_and_never_breaks_later(month, tz):
    try:
        check_month(month)
    except ValueError as exc:
        assert "YYYY-MM" in str(exc)
        return
    start, end = month_bounds(month, tz)
    assert start.astimezone(dt.UTC) < end.astimezone(dt.UTC)
    assert previous_month(end.date()) == month


@pytest.mark.parametrize("month", ["9999-12", "0001-01", "1969-12", "2026-00", "2026-13", "26-01"])
def test_months_the_probes_tried_are_refused(month):
    with pytest.raises(ValueError, match="is not a month from 1970-01 to 9998-12"):
        check_month(month)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.dates(min_value=dt.date(1971, 1, 1), max_value=dt.date(9998, 12, 31)))
@example(dt.date(2026, 12, 7))  # listed 2026-12, 2026-11, 2026-09
@example(dt.date(2027, 3, 1))  # listed 2027-03, 2027-02, 2026-12
def test_recent_months_are_consecutive_calendar_months(day):
    got = recent_months(day, 13)
    assert got[0] == day.strftime("%Y-%m")
    for newer, older in itertools.pairwise(got):
        start, _ = month_bounds(newer, dt.UTC)
        assert previous_month(start.date()) == older
