"""A report as people read it and as machines check it: a self-contained HTML page (its
style inline, charts as inline SVG, nothing fetched — it opens offline and prints) and
the JSON the gateway clear-signs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import jinja2

from gateway.console.charts import stacked_bars

FLAGS = ("HOURS", "ATTEMPTS", "THIRD_PARTY", "DISPUTE", "FRAUD", "LATE")


def as_json(figures: dict[str, Any]) -> bytes:
    return json.dumps(figures, ensure_ascii=False, indent=2, sort_keys=True).encode() + b"\n"


def as_html(figures: dict[str, Any]) -> str:
    start = dt.datetime.fromisoformat(figures["period"]["from"]).date()
    end = dt.datetime.fromisoformat(figures["period"]["to"]).date()
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days)]
    by_day = figures["flags_by_day"]
    chart = stacked_bars(days, {f: [by_day.get(d, {}).get(f, 0) for d in days] for f in FLAGS},
                         title=f"Flags per day, {figures['month']}", width=760, height=220)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("report.html").render(f=figures, chart=chart, flags=FLAGS)
