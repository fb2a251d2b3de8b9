"""benchmarks/table.py: `make bench`'s JSON lines become the tables of README.md and
docs/engineering/performance.md — only between the markers, the same lines the same pages."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bench_table", ROOT / "benchmarks" / "table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_table"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


table = _load()

STAGES = {"read": {"busy_s": 1.2, "idle_s": 0.0, "gpg_s": 0.06, "blocked_s": 0.0,
                   "drain_s": 0.46, "cpu_s": 0.21},
          "stage": {"busy_s": 0.8, "idle_s": 0.55, "gpg_s": 0.0, "blocked_s": 0.03,
                    "drain_s": 0.0, "cpu_s": 0.1, "full_s": 0.0, "items": 7}}
LINES = [
    {"flow": "batch", "cases": 100000, "mb": 31.1, "baseline_s": 0.96, "gateway_s": 4.21,
     "ratio": 4.39, "cases_per_s": 23751, "start_s": 1.44, "cpu_s": 5.0, "peak_rss_mb": 250.6,
     "peak_pss_mb": 169.4, "floor_s": 0.57, "floor_ratio": 0.6, "status": "accepted",
     "reading_s": 2.5, "stages": STAGES},
    {"flow": "results", "rows": 100000, "mb": 7.9, "baseline_s": 0.18, "gateway_s": 2.36,
     "ratio": 13.28, "rows_per_s": 42405, "cpu_s": 2.7, "peak_rss_mb": 150.9,
     "peak_pss_mb": 132.3, "ledger_floor_s": 3.88, "ledger_floor_ratio": 2.32},
    {"flow": "fixed", "cases": 100000, "idle_s": 1.52, "idle_best_s": 1.44,
     "batch100_s": 2.31, "batch100_best_s": 2.2, "batch100_baseline_s": 0.03},
    {"flow": "batch", "cases": 1000000, "mb": 311.2, "baseline_s": 8.95, "gateway_s": 23.04,
     "ratio": 2.58, "cases_per_s": 43396, "cpu_s": 32.4, "peak_rss_mb": 254.0,
     "peak_pss_mb": 156.4},
]
PAGE = """# Performance

Prose before.

<!-- perf-table:start -->
| an | old | table |
<!-- perf-table:end -->

Prose after, kept.
"""


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    jsonl = tmp_path / "run.jsonl"
    jsonl.write_text("not json: a stray line\n" + "\n".join(json.dumps(x) for x in LINES) + "\n")
    readme, page = tmp_path / "README.md", tmp_path / "performance.md"
    readme.write_text(PAGE.replace("# Performance", "# gateway"))
    page.write_text(PAGE)
    return jsonl, readme, page


def test_the_blocks_are_rewritten_and_the_prose_kept(tmp_path):
    jsonl, readme, page = _files(tmp_path)
    assert table.main([str(jsonl), "--readme", str(readme), "--page", str(page)]) == 0
    for path in (readme, page):
        text = path.read_text()
        assert "| an | old | table |" not in text
        assert text.startswith(("# gateway\n\nProse before.\n\n<!-- perf-table:start -->\n",
                                "# Performance\n\nProse before.\n\n<!-- perf-table:start -->\n"))
        assert text.endswith("<!-- perf-table:end -->\n\nProse after, kept.\n")
        assert text.count(table.START) == text.count(table.END) == 1
    short = readme.read_text()
    assert ("| batch | 100,000 cases | 0.96 | 4.21 | 4.39× | 23,751 cases | 169.4 (250.6) "
            "| 1.52 (best 1.44) | 2.31 (gpg 0.03) |") in short
    assert ("| results | 100,000 rows | 0.18 | 2.36 | 13.28× | 42,405 rows | 132.3 (150.9) "
            "| 1.52 (best 1.44) | 2.31 (gpg 0.03) |") in short  # its run's fixed costs
    assert "| batch | 1,000,000 cases | 8.95 | 23.04 | 2.58× | 43,396 cases | 156.4 (254.0) | — | — |" \
        in short  # a run without --fixed: no fixed costs
    assert "thread" not in short  # the stages are the page's
    full = page.read_text()
    assert "| 0.57 (0.60×) |" in full and "| ledger 3.88 (2.32×) |" in full
    assert "| batch | 100,000 cases | 2.50 | read | 1.20 | 0.00 | 0.06 | 0.00 | 0.46 | 0.21 | — |" \
        in full
    assert "| batch | 100,000 cases | 2.50 | stage | 0.80 | 0.55 | 0.00 | 0.03 | 0.00 | 0.10 | 7 |" \
        in full


def test_rewriting_twice_changes_nothing_and_check_tells_a_stale_page(tmp_path):
    jsonl, readme, page = _files(tmp_path)
    args = [str(jsonl), "--readme", str(readme), "--page", str(page)]
    assert table.main([*args, "--check"]) == 1  # the old table is not from these lines
    assert "| an | old | table |" in page.read_text()  # --check rewrites nothing
    table.main(args)
    first = readme.read_text(), page.read_text()
    assert table.main(args) == 0
    assert (readme.read_text(), page.read_text()) == first
    assert table.main([*args, "--check"]) == 0


def test_a_page_without_the_markers_is_refused(tmp_path):
    jsonl, readme, page = _files(tmp_path)
    page.write_text("# Performance\n\nno block here\n")
    with pytest.raises(SystemExit, match="no <!-- perf-table:start -->"):
        table.main([str(jsonl), "--readme", str(readme), "--page", str(page)])


def test_the_real_pages_have_one_block_each():
    """What `make bench` rewrites is there to be rewritten."""
    for path in (table.README, table.PAGE):
        text = path.read_text()
        assert text.count(table.START) == 1 and text.count(table.END) == 1, path
        assert text.index(table.START) < text.index(table.END)
