"""The CPU time of the results flow's Python stages, in one process, no gpg.

    .venv/bin/python benchmarks/result_stages.py [--rows 300000] [--cases 200000] [--repeat 3]
                                                 [--digest] [--rows-per-chunk N]

The rows ``throughput.py`` sends (``synth.results`` about one agency's cases of five),
read with ``ChunkReader`` from memory and put through what ``flows/result_rows.py``
does to each chunk, on one thread: ``read`` (the reader), ``check`` (the rules),
``owned`` (the ownership index, loaded once per repeat), ``judge`` (the committed
counts asked of a SQLite ledger holding the agency's cases, the file's counts in memory,
the flags and ranks), ``forward`` (free text neutralised, the CSV bytes),
``counts_json`` (the file's counts as the commit's JSON pages) and ``commit`` (those
added to ``attempts`` in ``commit_results``), in chunks of the flow's size
(``--rows-per-chunk`` to try another). The rows are generated once and kept in the
temporary directory (``result_stages.<rows>.<cases>.<date>.csv``: another file of that
name is read instead). Prints one JSON line
with the best CPU seconds (``time.process_time``) of each over the repeats; each repeat
adds its counts to the ledger, so later repeats find earlier ones' counts, as a second
file would. To compare two versions, run it alternately with ``PYTHONPATH=<a worktree
of the other>``. ``--digest`` also prints a SHA-256 of everything the flow would hand
on (forwarded CSV, errors, flags, counts), whatever the chunk size: two versions must
print the same.
"""
# ruff: noqa: E402  (heap.bound() must run before the imports that load Arrow and NumPy)

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import io
import json
import sys
import tempfile
import time
import zoneinfo
from pathlib import Path

from gateway import heap

# As the daemon does before Arrow and NumPy load: a fixed mmap threshold (128 KB; past it
# every allocation is a fresh mapping, faulted in page by page) and Arrow on the system
# allocator. Without it, large temporaries cost less here than in the daemon.
heap.bound()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ledger_floor  # the agency's cases, committed by the batch flow's calls

from gateway import synth
from gateway.ledger import FileStatus, Ledger, ReceiptRow
from gateway.masking_columns import needs_neutralising, neutralise
from gateway.validation import chunks, file_counts, ownership
from gateway.validation.cases import RowError
from gateway.validation.columnar_results import ColumnarResults
from gateway.validation.results import FREE_TEXT_RESULT_FIELDS, map_results_header

AGENCY = ledger_floor.AGENCY


def once(ledger: Ledger, data: bytes, k: int, digest: hashlib._Hash | None,
         rows_per_chunk: int | None) -> dict[str, float]:
    spent = dict.fromkeys(("read", "check", "owned", "judge", "forward", "counts_json", "commit"),
                          0.0)
    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    now = dt.datetime.now(tz)
    sha = f"{k:064x}"
    file_id = ledger_floor._claim(ledger, sha, "results")
    reader = chunks.ChunkReader(io.BytesIO(data), encoding="utf-8", delimiter=",")
    columns, _ = map_results_header(reader.header() or [])
    assert columns is not None
    engine = ColumnarResults(columns, tz, now, agency=AGENCY,
                             window=(dt.time(8), dt.time(21)), contract_end=dt.date(2099, 1, 1),
                             max_attempts=3)
    free_text = frozenset(c for c in engine.present if c in FREE_TEXT_RESULT_FIELDS)
    t = time.process_time()
    index = ownership.load(ledger.live_case_pages(AGENCY, ownership.PAGE))
    assert index is not None
    spent["owned"] += time.process_time() - t
    held = file_counts.FileCounts()

    def counted(case, day):  # type: ignore[no-untyped-def]
        found = ledger.attempt_counts(AGENCY, file_id, chunks.json_rows(case, day), staged=False)
        for key, n in held.counted(case, day).items():
            found[key] = found.get(key, 0) + n
        return found

    errors: list[RowError] = []
    flagged: collections.Counter[str] = collections.Counter()
    unflagged = not_assigned = 0
    it = iter(reader.chunks(len(columns), rows_per_chunk=rows_per_chunk))
    while True:
        t = time.process_time()
        chunk = next(it, None)
        spent["read"] += time.process_time() - t
        if chunk is None:
            break
        t = time.process_time()
        checked = engine.check(chunk)
        t2 = time.process_time()
        checked = engine.owned(checked, foreign=index.foreign)
        t3 = time.process_time()
        judged = engine.judge(checked, counted=counted)
        case, day, count = (c.combine_chunks() for c in judged.attempts.columns)
        held.add(case, day, count)
        t4 = time.process_time()
        spent["check"] += t2 - t
        spent["owned"] += t3 - t2
        spent["judge"] += t4 - t3
        table = judged.forward
        written = []
        for name in table.column_names:
            col = table.column(name).combine_chunks()
            if name in free_text:
                needs_neutralising(col)
                col = neutralise(col)
            written.append(col)
        out = chunks.csv_bytes(written)
        spent["forward"] += time.process_time() - t4
        if digest is not None:  # what the file hands on, however it is cut into chunks
            digest.update(out)
            errors += judged.errors
            flagged.update(judged.flagged)
            unflagged += judged.unflagged
            not_assigned += judged.not_assigned
    t = time.process_time()
    rows = list(held.rows())
    spent["counts_json"] = time.process_time() - t
    t = time.process_time()
    ledger.commit_results(file_id=file_id, agency_code=AGENCY, delivery=None,
                          receipt=ReceiptRow(file_id=file_id, file_sha256=sha, input_zone="z",
                                             input_name="x", zone="z", staged="s",
                                             status="accepted"),
                          status=FileStatus.ACCEPTED, attempts=rows, records=0, accepted=0,
                          rejected=0)
    spent["commit"] += time.process_time() - t
    if digest is not None:
        digest.update(repr((errors, sorted(flagged.items()), unflagged, not_assigned)).encode())
        with ledger.session(write=False) as s:
            for r in s.connection().exec_driver_sql(
                    "SELECT case_id, day, count FROM attempts ORDER BY case_id, day"):
                digest.update(repr(tuple(r)).encode())
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--cases", type=int, default=200_000, help="the agency's cases")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--digest", action="store_true")
    ap.add_argument("--rows-per-chunk", type=int, default=None,
                    help="the reader's chunk size (default: the flow's, or the reader's)")
    args = ap.parse_args()
    today = dt.date.today()
    ids = [f"C{today:%Y%m}{i:07d}" for i in range(args.cases)]
    cache = Path(tempfile.gettempdir()) / f"result_stages.{args.rows}.{args.cases}.{today}.csv"
    if not cache.exists():
        parts = []
        for part in _csv(synth.results(ids, args.rows)):
            parts.append(part)
        cache.write_bytes(b"".join(parts))
    data = cache.read_bytes()
    best: dict[str, float] = {}
    digest = hashlib.sha256() if args.digest else None
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(f"sqlite:///{Path(tmp) / 'gateway.db'}")
        try:
            ledger_floor.assign(ledger, ids)
            for k in range(args.repeat):
                spent = once(ledger, data, k, digest, args.rows_per_chunk or _flows_chunk())
                for key, v in spent.items():
                    best[key] = min(best.get(key, v), v)
        finally:
            ledger.close()
    line = {"rows": args.rows, **{k: round(v, 3) for k, v in best.items()},
            "total": round(sum(best.values()), 3)}
    if digest is not None:
        line["digest"] = digest.hexdigest()[:16]
    print(json.dumps(line))
    return 0


def _flows_chunk() -> int | None:
    """The results flow's chunk size (a version before it had one: the reader's)."""
    try:
        from gateway.flows import result_rows
    except ImportError:
        return None
    return getattr(result_rows, "ROWS_PER_CHUNK", None)


def _csv(records):  # type: ignore[no-untyped-def]
    first = True
    while True:
        chunk = [r for _, r in zip(range(20000), records, strict=False)]
        if not chunk:
            return
        data = synth.to_csv(chunk, synth.RESULT_COLUMNS)
        yield data if first else data.split(b"\r\n", 1)[1]
        first = False


if __name__ == "__main__":
    sys.exit(main())
