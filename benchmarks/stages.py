"""The CPU time of the batch flow's Python stages, in one process, no gpg, no ledger.

    .venv/bin/python benchmarks/stages.py [--cases 200000] [--repeat 3]

Reads N synthetic cases with ``ChunkReader``, checks each chunk with
``ColumnarCases``, and masks and builds the CSV of 5 agencies x 3 roles as the
flow does; prints one JSON line with the best CPU seconds (``time.process_time``)
of each stage over the repeats. CPU time, not wall time: on a noisy machine it is
the steadier figure. To compare two versions, run this file alternately with
``PYTHONPATH=<a worktree of the other version>``; a version without
``ChunkMasks.spans`` builds each agency's slice on its own, as it did then.
With ``--token-worker`` the token rule is computed by the flow's worker process
(``gateway.token_worker``), whose CPU seconds are reported apart (``worker_cpu_s``,
best of the repeats): not in the stages, since that work is off the interpreter's lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from gateway import config, scaffold, synth

try:  # where the batch flow keeps its chunk size (a version before it has none)
    from gateway.flows import batch_rows
except ImportError:
    batch_rows = None  # type: ignore[assignment]
from gateway.masking import RolePolicy
from gateway.masking_columns import ChunkMasks
from gateway.validation import chunks
from gateway.validation.cases import map_header
from gateway.validation.columnar import ColumnarCases
from gateway.validation.schema import FREE_TEXT_CASE_FIELDS

AGENCIES = [scaffold.AgencyTemplate(f"AG00{n}", f"Agency {n}", ("supervisor", "collector", "analyst"))
            for n in range(1, 6)]
ROLES = ("supervisor", "collector", "analyst")


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def once(cfg: config.Config, data: bytes, worker: bool = False,
         per_chunk: int | None = None) -> dict[str, float]:
    spent = dict.fromkeys(("read", "check", "mask_csv"), 0.0)
    tokens = None
    if worker:
        from gateway.token_worker import TokenWorker
        tokens, before = TokenWorker(), _children_cpu()
    reader = chunks.ChunkReader(io.BytesIO(data), encoding="utf-8", delimiter=",")
    header, _ = map_header(reader.header() or [], cfg)
    assert header is not None
    engine = ColumnarCases(cfg, header, dt.date.today())
    policies = [RolePolicy(r, cfg.roles[r]) for r in ROLES]
    cut = getattr(chunks, "lines_buffer", chunks.lines_bytes)  # a view, as the flow writes it
    t = time.process_time()
    size = {"rows_per_chunk": per_chunk} if per_chunk else {}
    for chunk in reader.chunks(len(header.fields), **size):
        spent["read"] += time.process_time() - t
        t = time.process_time()
        checked = engine.check(chunk)
        spent["check"] += time.process_time() - t
        t = time.process_time()
        masks = ChunkMasks(checked.table, FREE_TEXT_CASE_FIELDS, *([tokens] if tokens else []))
        n = checked.table.num_rows
        step = -(-n // len(AGENCIES))
        spans = [(a, min(step, n - a), bytes([65 + a // step]) * 32) for a in range(0, n, step)]
        if hasattr(masks, "prefetch"):  # every token column asked at once, as the flow does
            masks.prefetch(s for p in policies
                           for s in masks.token_spans(p, p.columns(header.present), spans))
        for policy in policies:
            columns = policy.columns(header.present)
            if hasattr(masks, "spans"):  # one build per role, cut per agency
                built, plain = masks.spans(policy, columns, spans)
                lines = chunks.csv_lines(built, plain)
                at = 0
                for _, length, _ in spans:
                    cut(lines, at, length)
                    at += length
            else:  # the version before: one build per agency and role
                for start, length, key in spans:
                    chunks.csv_bytes(*masks.role(policy, columns, start, length, key))
        spent["mask_csv"] += time.process_time() - t
        t = time.process_time()
    if tokens is not None:
        tokens.close()
        spent["worker"] = _children_cpu() - before
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--token-worker", action="store_true")
    ap.add_argument("--rows-per-chunk", type=int, default=None,
                    help="default: the batch flow's (batch_rows.ROWS_PER_CHUNK), if it has one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gwst") as tmp:
        cfg = config.load(scaffold.init_project(Path(tmp) / "site", agencies=AGENCIES))
        data = synth.to_csv(list(synth.cases(args.cases, [a.code for a in AGENCIES], seed=1)))
        best: dict[str, float] = {}
        per_chunk = args.rows_per_chunk or getattr(batch_rows, "ROWS_PER_CHUNK", None)
        for _ in range(args.repeat):
            for stage, s in once(cfg, data, args.token_worker, per_chunk).items():
                best[stage] = min(best.get(stage, float("inf")), s)
    code = str(Path(chunks.__file__).parents[2])  # which version ran
    print(json.dumps({"cases": args.cases, "repeat": args.repeat, "code": code,
                      "rows_per_chunk": per_chunk or chunks.ROWS_PER_CHUNK,
                      **{f"{k}_cpu_s": round(v, 2) for k, v in best.items()},
                      "total_cpu_s": round(sum(v for k, v in best.items() if k != "worker"), 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
