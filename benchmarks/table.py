"""The performance tables of README.md and docs/engineering/performance.md, rewritten from
the JSON lines of ``throughput.py`` (what ``make bench`` keeps in benchmarks/last-run.jsonl).

    .venv/bin/python benchmarks/table.py benchmarks/last-run.jsonl [--readme README.md]
                                         [--page docs/engineering/performance.md] [--check]

Each page holds its table between ``<!-- perf-table:start -->`` and
``<!-- perf-table:end -->``; only that block is rewritten, so the prose around it stays
as written. The README gets the short table (time, rate, memory, fixed costs), the page
the full one and where each file's reading spent its time, thread by thread. Copied by
hand, the figures drifted from the runs they came from; generated, a table is one run's.
The same lines give the same pages (rewriting twice changes nothing). ``--check``
rewrites nothing and fails if a page differs from what these lines make of it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGE = ROOT / "docs" / "engineering" / "performance.md"
FLOWS = {"batch": ("cases", "cases_per_s", "cases"), "results": ("rows", "rows_per_s", "rows")}
DASH = "—"


@dataclass
class Row:
    """One flow of one run, with the fixed costs measured in the same run (if any)."""

    line: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def flow(self) -> str:
        return str(self.line["flow"])

    @property
    def unit(self) -> str:
        return FLOWS[self.flow][2]

    @property
    def size(self) -> int:
        return int(self.line[FLOWS[self.flow][0]])


def read_rows(lines: list[str]) -> list[Row]:
    """The flows' lines in the order they ran. A ``fixed`` line belongs to the flows of its
    run: those since the previous ``fixed`` line (throughput.py prints it last)."""
    rows: list[Row] = []
    pending: list[Row] = []
    for text in lines:
        text = text.strip()
        if not text.startswith("{"):
            continue
        entry = json.loads(text)
        flow = entry.get("flow")
        if flow in FLOWS:
            row = Row(entry)
            rows.append(row)
            pending.append(row)
        elif flow == "fixed":
            for row in pending:
                row.fixed = entry
            pending = []
    return rows


def _num(value: Any, digits: int = 2) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _ratio(value: Any) -> str:
    return DASH if value is None else f"{value:.2f}×"


def _memory(row: Row) -> str:
    return f"{_num(row.line.get('peak_pss_mb'), 1)} ({_num(row.line.get('peak_rss_mb'), 1)})"


def _fixed(row: Row) -> tuple[str, str]:
    f = row.fixed
    idle = f"{f['idle_s']:.2f} (best {f['idle_best_s']:.2f})" if "idle_s" in f else DASH
    batch = (f"{f['batch100_s']:.2f} (gpg {f['batch100_baseline_s']:.2f})"
             if "batch100_s" in f else DASH)
    return idle, batch


def _floor(row: Row) -> str:
    line = row.line
    if "floor_s" in line:
        return f"{line['floor_s']:.2f} ({_ratio(line.get('floor_ratio'))})"
    if "ledger_floor_s" in line:
        return f"ledger {line['ledger_floor_s']:.2f} ({_ratio(line.get('ledger_floor_ratio'))})"
    return DASH


def short_table(rows: list[Row]) -> str:
    """README's: what a reader compares first."""
    return _table(rows, full=False)


def full_table(rows: list[Row]) -> str:
    """The page's: the short table's columns with the CSV's size, the floor and the CPU."""
    return _table(rows, full=True)


def _table(rows: list[Row], *, full: bool) -> str:
    heads = ["flow", "size", *(["CSV MB"] if full else []), "baseline s",
             *(["floor s"] if full else []), "gateway s", "ratio", "per s",
             *(["CPU s"] if full else []), "peak PSS MB (RSS sum)", "idle run s",
             "100-case batch s"]
    out = ["| " + " | ".join(heads) + " |", "|---" + "|---:" * (len(heads) - 1) + "|"]
    for row in rows:
        line = row.line
        idle, batch = _fixed(row)
        cells = [row.flow, f"{row.size:,} {row.unit}",
                 *([_num(line.get("mb"), 1)] if full else []), _num(line["baseline_s"]),
                 *([_floor(row)] if full else []), _num(line["gateway_s"]),
                 _ratio(line["ratio"]), f"{_num(line[FLOWS[row.flow][1]], 0)} {row.unit}",
                 *([_num(line.get("cpu_s"), 1)] if full else []), _memory(row), idle, batch]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


STAGE_COLUMNS = ("busy_s", "idle_s", "gpg_s", "blocked_s", "drain_s", "cpu_s")


def stages_table(rows: list[Row]) -> str:
    """Where each file's reading spent its time, one row per thread (``file.stages``)."""
    out = ["| flow | size | reading s | thread | busy s | idle s | gpg s | blocked s | drain s "
           "| CPU s | items |",
           "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        stages: dict[str, dict[str, Any]] = row.line.get("stages") or {}
        for name, times in stages.items():
            cells = " | ".join(_num(times.get(k)) for k in STAGE_COLUMNS)
            items = times.get("items")
            out.append(f"| {row.flow} | {row.size:,} {row.unit} "
                       f"| {_num(row.line.get('reading_s'))} | {name} | {cells} "
                       f"| {DASH if items is None else items} |")
    return "\n".join(out) if len(out) > 2 else ""


NOTE = "<!-- generated by benchmarks/table.py from `make bench`'s JSON lines: edit that, not this -->"


def readme_block(rows: list[Row]) -> str:
    return f"{NOTE}\n{short_table(rows)}"


def page_block(rows: list[Row]) -> str:
    stages = stages_table(rows)
    parts = [NOTE, full_table(rows)]
    if stages:
        parts += ["", "Where each file's reading spent its time, thread by thread (the "
                  "`file.stages` log line; seconds):", "", stages]
    return "\n".join(parts)


def rewrite(text: str, block: str, *, where: str = "the page") -> str:
    """*text* with what lies between the markers replaced by *block* (markers kept)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{where} has no {START} ... {END} block")
    return f"{text[:start + len(START)]}\n{block}\n{text[end:]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jsonl", type=Path, help="throughput.py's JSON lines")
    ap.add_argument("--readme", type=Path, default=README)
    ap.add_argument("--page", type=Path, default=PAGE)
    ap.add_argument("--check", action="store_true",
                    help="rewrite nothing; exit 1 if a page differs from what the lines make")
    args = ap.parse_args(argv)
    rows = read_rows(args.jsonl.read_text().splitlines())
    if not rows:
        raise SystemExit(f"{args.jsonl}: no batch or results line")
    stale = []
    for path, block in ((args.readme, readme_block(rows)), (args.page, page_block(rows))):
        text = path.read_text()
        new = rewrite(text, block, where=str(path))
        if new == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(new)
            print(f"rewrote the table in {path}")
    if stale:
        print(f"not from {args.jsonl}: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
