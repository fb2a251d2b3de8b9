"""The console's Audit log page over a large log: one JSON line of timings.

    .venv/bin/python benchmarks/console_audit.py [--entries 1000000]

Writes a hash-chained audit log of N entries (the mix of a busy gateway: files, slices,
receipts, results, a security event in a thousand), starts the console on a real port
(building its index of the log — timed), then requests pages through HTTP with a session
and reports the best of 5 for each: the first page unfiltered, filtered by event and
agency, by a rare event family and a time range, and a page deep in the log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from gateway import audit, config, scaffold
from gateway.console.app import create_app
from gateway.console.auth import Accounts
from gateway.ledger import Ledger

MIX = [("file.received", 20), ("batch.accepted", 5), ("slice.delivered", 40), ("receipt.sent", 20),
       ("slice.collected", 30), ("results.accepted", 10), ("results.forwarded", 10),
       ("console.view", 5)]


def write_log(path: Path, n: int) -> None:
    """A chained log as AuditLog writes it, without an fsync per entry."""
    rnd = random.Random(1)
    events = [e for e, w in MIX for _ in range(w)]
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prev = audit.GENESIS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        for seq in range(1, n + 1):
            event = "security.cross_agency" if rnd.random() < 0.001 else rnd.choice(events)
            ts = (start + dt.timedelta(seconds=seq * 25)).isoformat().replace("+00:00", "Z")
            entry = {"seq": seq, "ts": ts, "event": event, "actor": "daemon", "prev": prev,
                     "agency": f"AG00{rnd.randrange(1, 6)}", "file": f"B{seq // 1000}.csv.pgp"}
            if event == "security.cross_agency":
                entry["count"] = rnd.randrange(1, 20)
            entry["hash"] = hashlib.sha256(audit.canonical(entry)).hexdigest()
            fh.write(audit.canonical(entry) + b"\n")
            prev = entry["hash"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gwca", dir="/var/tmp") as tmp:
        root = Path(tmp) / "site"
        cfg_path = scaffold.init_project(root, settle_seconds=0)
        cfg = config.load(cfg_path)
        t0 = time.perf_counter()
        write_log(cfg.gateway.state_dir / "audit" / "audit.jsonl", args.entries)
        wrote = time.perf_counter() - t0
        ledger = Ledger(cfg.gateway.db_url)
        Accounts(ledger, audit.AuditLog(cfg.gateway.state_dir / "audit")).add(
            "bench", "auditor", "benchmark password")
        ledger.close()
        t0 = time.perf_counter()
        app = create_app(cfg)
        indexed = time.perf_counter() - t0
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        cookie, _ = app.state.console.signer.session("bench", dt.datetime.now(dt.UTC))
        middle = dt.datetime(2026, 1, 1) + dt.timedelta(seconds=args.entries * 25 // 2)
        pages = {
            "first page, no filter": "/audit",
            "event and agency": "/audit?event=slice.delivered&agency=AG003",
            "rare family and a week": f"/audit?event=security.&since={middle:%Y-%m-%d}"
                                      f"&until={middle + dt.timedelta(days=7):%Y-%m-%d}",
            "deep page": f"/audit?agency=AG002&before={args.entries // 3}",
        }
        timings = {}
        for name, path in pages.items():
            best = None
            for _ in range(5):
                req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                             headers={"Cookie": f"gw_session={cookie}"})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=60) as resp:
                    body = resp.read()
                    assert resp.status == 200 and b'id="matching"' in body, resp.status
                took = time.perf_counter() - t0
                best = took if best is None else min(best, took)
            timings[name] = round(best or 0, 3)
        server.should_exit = True
        thread.join(timeout=10)
        print(json.dumps({"entries": args.entries, "log_mb": round(
            (cfg.gateway.state_dir / "audit" / "audit.jsonl").stat().st_size / 1e6, 1),
            "write_s": round(wrote, 1), "index_build_s": round(indexed, 1),
            "page_s_best_of_5": timings}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
