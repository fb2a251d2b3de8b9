"""The ledger's own work for one results file, alone: no gpg, no CSV, no rules.

    .venv/bin/python benchmarks/ledger_floor.py [--rows 1000000] [--cases 200000]
                                                 [--database-url URL]

A results file reads the agency's live case ids once (its ownership index, which then
tells each chunk's foreign ids), asks the ledger, chunk by chunk, what each (case, day)
of its CALL and SMS rows counted in committed files, adds what its earlier chunks
counted (held in memory: ``file_counts.FileCounts``) and keeps the chunk's counts there;
the file's commit adds them to the agency's. This script does exactly those calls — the
flow's statements, with the JSON arrays (and the chunks' Arrow arrays) built beforehand
and not timed — for the rows ``throughput.py`` sends (``synth.results`` about the cases
of one agency of five), and prints one JSON line: the seconds of each kind of call,
summed (``foreign_s``: reading the index and asking it; ``stage_s``: keeping the
counts), and the total. ``throughput.py
--floor`` runs the same measurement beside the results flow's baseline
(``ledger_floor_s``). It is the part of the results flow that no change to the flow's
Python can remove while every row's attempt count is checked against, and kept in, the
ledger.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from gateway import synth
from gateway.ledger import BatchRow, FileStatus, Ledger, ReceiptRow
from gateway.validation import ownership
from gateway.validation.chunks import ROWS_PER_CHUNK
from gateway.validation.file_counts import FileCounts
from gateway.validation.results import ATTEMPT_ACTIONS

AGENCY = "AG001"


def _claim(ledger: Ledger, sha: str, kind: str) -> int:
    return ledger.claim_file(sha256=sha, kind=kind, zone="z", name=f"{kind}.csv.pgp", size=1,
                             owner="bench").file_id


def _receipt(file_id: int, sha: str) -> ReceiptRow:
    return ReceiptRow(file_id=file_id, file_sha256=sha, input_zone="z", input_name="x",
                      zone="z", staged="s", status="accepted")


def assign(ledger: Ledger, ids: list[str]) -> None:
    """The agency's cases, committed as one batch by the batch flow's own calls."""
    sha = "b" * 64
    file_id = _claim(ledger, sha, "case_file")
    for start in range(0, len(ids), 50_000):
        ledger.stage_cases(file_id, json.dumps([[c, i + 2, AGENCY] for i, c in
                                                enumerate(ids[start:start + 50_000], start)]),
                           {AGENCY: "K1"})
    ledger.commit_batch(file_id=file_id, deliveries=[], status=FileStatus.ACCEPTED, signer="F" * 40,
                        batch=BatchRow(batch_id="B1", file_id=file_id, status="accepted",
                                       records=len(ids), accepted=len(ids), rejected=0),
                        receipt=_receipt(file_id, sha))


@dataclass
class Chunk:
    """What a chunk asks: its distinct ids (for the ownership index), its CALL/SMS (case,
    day) keys as a JSON array (for the ledger) and as arrays with the chunk's count of each
    (for the counts held in memory)."""

    ids: pa.Array
    keys: str
    case: pa.Array
    day: pa.Array
    count: pa.Array


def chunk_calls(rows: list[dict[str, str]]) -> Chunk:
    counts = collections.Counter((r["case_id"], r["action_at"][:10]) for r in rows
                                 if r["action_code"] in ATTEMPT_ACTIONS)
    keys = list(counts)
    return Chunk(pa.array(sorted({r["case_id"] for r in rows}), pa.string()),
                 json.dumps([list(k) for k in keys]), pa.array([c for c, _ in keys], pa.string()),
                 pa.array([d for _, d in keys], pa.string()),
                 pa.array([counts[k] for k in keys], pa.int64()))


def measure(url: str, ids: list[str], rows: int) -> dict[str, float]:
    """The seconds of each kind of ledger call for *rows* result rows about *ids* (the
    agency's cases, committed first as one batch) on the ledger at *url*."""
    ledger = Ledger(url)
    try:
        assign(ledger, ids)
        results = synth.results(ids, rows)
        arrays = []
        while chunk := [r for _, r in zip(range(ROWS_PER_CHUNK), results, strict=False)]:
            arrays.append(chunk_calls(chunk))
        sha = "r" * 64
        file_id = _claim(ledger, sha, "results")
        spent = dict.fromkeys(("foreign_s", "counts_s", "stage_s", "commit_s"), 0.0)
        t = time.perf_counter()
        ledger.finished_purges(AGENCY)
        index = ownership.load(ledger.live_case_pages(AGENCY, ownership.PAGE))
        assert index is not None
        spent["foreign_s"] += time.perf_counter() - t
        held = FileCounts()
        for chunk in arrays:
            t = time.perf_counter()
            assert not index.foreign(chunk.ids)
            spent["foreign_s"] += time.perf_counter() - t
            t = time.perf_counter()
            ledger.attempt_counts(AGENCY, file_id, chunk.keys, staged=False)
            held.counted(chunk.case, chunk.day)
            spent["counts_s"] += time.perf_counter() - t
            t = time.perf_counter()
            held.add(chunk.case, chunk.day, chunk.count)
            spent["stage_s"] += time.perf_counter() - t
        t = time.perf_counter()
        ledger.commit_results(file_id=file_id, agency_code=AGENCY, delivery=None,
                              receipt=_receipt(file_id, sha), status=FileStatus.ACCEPTED,
                              attempts=held.rows(), records=rows, accepted=rows, rejected=0)
        spent["commit_s"] = time.perf_counter() - t
    finally:
        ledger.close()
    return {**{k: round(v, 2) for k, v in spent.items()}, "total_s": round(sum(spent.values()), 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cases", type=int, default=200_000, help="the agency's cases")
    ap.add_argument("--database-url", help="default: SQLite in a temporary directory")
    args = ap.parse_args()
    ids = [f"C{dt.date.today():%Y%m}{i:07d}" for i in range(args.cases)]
    with tempfile.TemporaryDirectory() as tmp:
        spent = measure(args.database_url or f"sqlite:///{Path(tmp) / 'gateway.db'}", ids,
                        args.rows)
    print(json.dumps({"rows": args.rows, "cases": args.cases, **spent}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
