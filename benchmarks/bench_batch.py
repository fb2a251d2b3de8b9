"""The batch flow on a large synthetic batch: throughput and the memory it takes.

    .venv/bin/python benchmarks/bench_batch.py --cases 100000 [--cases 10000 ...]

For each size: builds a site (3 agencies, 2-4 roles each), has GnuPG seal a
batch as the bank, runs the flow in this process, and samples the resident
memory of the whole process tree (this Python, every gpg child, the agent)
every 50 ms. Printing several sizes side by side shows whether memory grows
with the batch (it must not: rows are streamed, case ids checked in chunks).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_open import Sampler

from gateway import config, daemon, scaffold, synth
from gateway.crypto import keys

AGENCIES = [
    scaffold.AgencyTemplate("AG001", "A", ("supervisor", "collector", "field_visitor", "analyst")),
    scaffold.AgencyTemplate("AG002", "B", ("supervisor", "collector")),
    scaffold.AgencyTemplate("AG003", "C", ("supervisor", "collector")),
]


def one(n: int, work: Path) -> tuple[float, float, int]:
    root = work / f"site-{n}"
    cfg_path = scaffold.init_project(root, agencies=AGENCIES)
    for name in scaffold.key_names(AGENCIES):
        keys.generate(name, f"{name}@bench.example", root / "keys")
    plain = root / "batch.csv"
    with plain.open("wb") as fh:
        recs = synth.cases(n, [a.code for a in AGENCIES], seed=1)
        first = True
        while True:
            chunk = [r for _, r in zip(range(10000), recs, strict=False)]
            if not chunk:
                break
            data = synth.to_csv(chunk)
            fh.write(data if first else data.split(b"\r\n", 1)[1])
            first = False
    home = Path(tempfile.mkdtemp(prefix="gwbb", dir="/tmp"))
    base = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
            "--passphrase", "", "--trust-model", "always"]
    subprocess.run([*base, "--import", str(root / "keys" / "bank.sec.asc"),
                    str(root / "keys" / "gateway.pub.asc")], check=True, capture_output=True)
    bank = keys.inspect(root / "keys" / "bank.pub.asc").fingerprint
    gw = keys.inspect(root / "keys" / "gateway.pub.asc").fingerprint
    out = root / "zones" / "bank" / "outgoing" / f"B{n}.csv.pgp"
    subprocess.run([*base, "-u", bank, "-r", gw, "--sign", "--encrypt", "-o", str(out), str(plain)],
                   check=True, capture_output=True)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)
    shutil.rmtree(home, ignore_errors=True)
    size = plain.stat().st_size
    plain.unlink()  # the benchmark's own plaintext; the gateway never writes one
    cfg = config.load(cfg_path)
    sampler = Sampler(str(root))
    sampler.start()
    t0 = time.perf_counter()
    with daemon.open_context(cfg) as ctx:
        outcome = daemon.run_once(ctx)
    elapsed = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    assert outcome == {"accepted": 1}, outcome
    return elapsed, sampler.peak_kb / 1024, size


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, action="append", help="batch size (repeatable)")
    args = ap.parse_args()
    sizes = args.cases or [10000, 100000]
    import logging

    from gateway.audit import configure_logging
    configure_logging(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="gwbb", dir="/var/tmp") as tmp:
        print(f"{'cases':>9} {'csv MB':>8} {'seconds':>8} {'cases/s':>9} {'MB/s':>6} {'peak RSS MB':>12}")
        for n in sizes:
            elapsed, peak, size = one(n, Path(tmp))
            print(f"{n:>9} {size / 1e6:>8.1f} {elapsed:>8.1f} {n / elapsed:>9.0f} "
                  f"{size / 1e6 / elapsed:>6.1f} {peak:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
