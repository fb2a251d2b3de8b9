"""The gateway against the cost of its cryptography, batch and results, one JSON line each.

    .venv/bin/python benchmarks/throughput.py [--cases 1000000] [--results 1000000]
                                              [--compress-level 6] [--skip-results]
                                              [--floor] [--fixed [--idle-runs 5]]

For one size, in one run on one machine:

1. builds a site: 5 agencies x 3 roles (supervisor, collector, analyst), every key;
2. the bank's file: N realistic cases (valid resident ids and cards, Chinese names and
   addresses) streamed into ``gpg --sign --encrypt`` as the bank (default compression) —
   the benchmark's plaintext never touches the disk;
3. **baseline**: ``gpg --decrypt`` of that file piped into ``gpg --sign --encrypt`` to one
   recipient (default compression) — the cryptography alone, no parsing at all;
4. **gateway**: ``gateway run --once`` as a subprocess, from the file in the drop zone to
   its receipt in the bank's zone, with the resident memory of its whole process tree
   (Python, every gpg child, the agent) sampled every 50 ms — on a site that has run once
   already, as an installed one has (that first run, which creates the ledger, builds the
   keyring and lists the keys, is the line's ``setup_s``);
5. the same for an agency's results file of M rows about its cases (baseline: decrypt, then
   seal to the bank); with ``--floor``, also the ledger's calls for those rows alone
   (``ledger_floor.py``), which a 2x target would have to fit beside everything else.

Prints one JSON line per flow: cases (or rows), MB of CSV, baseline s, gateway s, ratio,
cases/s, peak RSS MB, and the bytes of what the gateway sealed (slices or forwarded file);
and ``start_s``, the best of three ``run --once`` passes with nothing pending (imports,
keyring, ledger, the pass's checks) timed after the batch, with the rate net of it — the
part of a run's fixed cost that makes 100,000 cases look slower per case than a million
(a batch's own fixed work, its 15 sealing processes and manifests, is not in it).

Each flow's line also carries where its file's reading spent its time, from the daemon's
own ``file.stages`` log line (:mod:`gateway.timing`): ``reading_s``, the reading's
wall time, and ``stages``, per thread (``read``, then each stage) its ``busy_s`` (own work),
``idle_s`` (waiting for work: an empty queue, or gpg's plaintext for ``read``),
``blocked_s`` (waiting for room in the next stage's queue), ``drain_s`` (waiting at the
end for the next stage), ``cpu_s`` and, for a stage, ``full_s`` (how long its feeder
waited for room in it) and ``items``. The stage busy nearly all the time is the one the
others wait for.

With ``--fixed``, a last line (``"flow": "fixed"``) gives what a run costs whatever its
size, on the same site after the flows: ``idle_s`` (median; ``idle_best_s``) of
``--idle-runs`` passes with nothing to do, and ``batch100_s`` (median; ``batch100_best_s``)
of three 100-case batches, each with new case and batch ids, beside their own gpg
baseline ``batch100_baseline_s``. ``benchmarks/table.py`` turns the lines into the
tables of README.md and docs/engineering/performance.md (``make bench`` does both).

The gateway's modules are compiled to bytecode first, as pip does when it installs the
wheel: a source checkout run with ``PYTHONDONTWRITEBYTECODE`` (this project's VMs set it)
would otherwise compile ~100 modules at every start, ~0.13 s that no installed gateway
pays.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ledger_floor  # the results flow's ledger calls alone (--floor)
from bench_open import tree_memory_kb  # the process tree's memory, as the engine benchmark samples it

import gateway
from gateway import scaffold, synth
from gateway.crypto import keys
from gateway.ledger import Ledger

AGENCIES = [scaffold.AgencyTemplate(f"AG00{n}", f"Agency {n}", ("supervisor", "collector", "analyst"))
            for n in range(1, 6)]
CHUNK = 20000  # rows generated and written at a time


class Sampler(threading.Thread):
    def __init__(self, root: int, marker: str) -> None:
        super().__init__(daemon=True)
        self.root, self.marker = root, marker
        self.peak_kb = 0  # RSS summed over the tree, as issue 11 asks
        self.peak_pss_kb = 0  # the same, shared pages divided among their sharers
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss, pss = tree_memory_kb(self.root, self.marker)
            self.peak_kb, self.peak_pss_kb = max(self.peak_kb, rss), max(self.peak_pss_kb, pss)
            time.sleep(0.05)


class Gpg:
    """A throw-away keyring holding what the parties and the baseline need."""

    def __init__(self, home: Path, key_files: list[Path]) -> None:
        home.mkdir(mode=0o700)
        self.home = home
        self.base = ["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode",
                     "loopback", "--passphrase", "", "--trust-model", "always"]
        subprocess.run([*self.base, "--import", *map(str, key_files)], check=True,
                       capture_output=True)

    def seal_stream(self, rows: Iterator[bytes], signer: str, recipient: str, out: Path) -> int:
        """Sign and encrypt the byte chunks *rows* into *out*; returns the plaintext size."""
        size = 0
        with out.open("wb") as fh:
            proc = subprocess.Popen([*self.base, "-u", signer, "-r", recipient, "--sign",
                                     "--encrypt"], stdin=subprocess.PIPE, stdout=fh)
            assert proc.stdin is not None
            for chunk in rows:
                proc.stdin.write(chunk)
                size += len(chunk)
            proc.stdin.close()
            if proc.wait() != 0:
                raise SystemExit("gpg could not seal the benchmark's file")
        return size

    def baseline(self, src: Path, signer: str, recipient: str, *, level: int | None = None,
                 out: Path | None = None) -> float:
        """decrypt | sign+encrypt to one recipient (default compression, or zlib *level*),
        output discarded or kept in *out*: the cryptography alone."""
        z = [] if level is None else ["--compress-algo", "zlib" if level else "none", "-z",
                                      str(level)]
        t0 = time.perf_counter()
        dec = subprocess.Popen([*self.base, "--decrypt", str(src)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        with (out.open("wb") if out else open(os.devnull, "wb")) as sink:
            enc = subprocess.Popen([*self.base, "-u", signer, "-r", recipient, *z, "--sign",
                                    "--encrypt"], stdin=dec.stdout, stdout=sink)
            assert dec.stdout is not None
            dec.stdout.close()
            if enc.wait() != 0 or dec.wait() != 0:
                raise SystemExit("the baseline gpg pipe failed")
        return time.perf_counter() - t0

    def floor(self, src: Path, signer: str, slices: list[tuple[str, bytes]], level: int) -> float:
        """The cryptography the gateway's batch cannot avoid, at once as it does it: the
        bank's file decrypted while every slice's plaintext is signed and encrypted to
        its role (as `SealWriter` seals: zlib at *level*, AES256), output discarded."""
        t0 = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            procs = [subprocess.Popen([*self.base, "--decrypt", str(src)], stdout=sink,
                                      stderr=subprocess.DEVNULL)]
            feeders = []
            for recipient, data in slices:
                proc = subprocess.Popen([*self.base, "-u", signer, "-r", recipient, "--sign",
                                         "--encrypt", "--digest-algo", "SHA256", "--cipher-algo",
                                         "AES256", "--compress-algo", "zlib" if level else "none",
                                         "-z", str(level)], stdin=subprocess.PIPE, stdout=sink)
                feeders.append(threading.Thread(target=_feed, args=(proc, data)))
                procs.append(proc)
            for t in feeders:
                t.start()
            for t in feeders:
                t.join()
            if any(p.wait() != 0 for p in procs):
                raise SystemExit("the floor's gpg processes failed")
        return time.perf_counter() - t0

    def decrypt(self, src: Path) -> bytes:
        return subprocess.run([*self.base, "--decrypt", str(src)], check=True,
                              capture_output=True).stdout

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], check=False)


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    view = memoryview(data)
    for start in range(0, len(view), 1 << 20):  # as the gateway writes: a chunk at a time
        proc.stdin.write(view[start:start + (1 << 20)])
    proc.stdin.close()


def floor_of(root: Path, tmp: Path, src: Path, codes: list[str], level: int) -> float:
    """Time :meth:`Gpg.floor` over the slices the gateway delivered (their plaintext is
    recovered in memory with the roles' keys, untimed)."""
    names = [n for n in scaffold.key_names(AGENCIES) if "-" in n]
    gpg = Gpg(tmp / "floor", [root / "keys" / "gateway.sec.asc", root / "keys" / "bank.pub.asc",
                              *(root / "keys" / f"{n}.sec.asc" for n in names)])
    try:
        slices = []
        for code in codes:
            for path in sorted((root / "zones" / code / "inbox").glob("*.csv.pgp")):
                role = path.name.split(".")[-3]  # <batch>.<agency>.<role>.csv.pgp
                slices.append((fingerprint(root, f"{code.lower()}-{role}"), gpg.decrypt(path)))
        return gpg.floor(src, fingerprint(root, "gateway"), slices, level)
    finally:
        gpg.close()


def csv_chunks(records: Iterator[dict[str, str]], columns: list[str] | None = None) -> Iterator[bytes]:
    first = True
    while True:
        chunk = [r for _, r in zip(range(CHUNK), records, strict=False)]
        if not chunk:
            return
        data = synth.to_csv(chunk, columns) if columns else synth.to_csv(chunk)
        yield data if first else data.split(b"\r\n", 1)[1]
        first = False


@dataclass(frozen=True)
class Run:
    """One `gateway run --once`: what it took, and where each file's reading spent it."""

    seconds: float
    peak_rss_mb: float
    peak_pss_mb: float
    cpu_s: float  # the gateway's and its gpg processes' user + system time
    stages: list[dict[str, Any]]  # the daemon's file.stages log lines (none at a terminal)

    def stages_of(self, kind: str) -> dict[str, Any]:
        """The flow's JSON fields from the reading of its file of *kind*: the reading's
        wall time as the daemon timed it, and each thread's busy and waiting seconds."""
        lines = [x for x in self.stages if x.get("kind") == kind]
        if not lines:
            return {}
        line = lines[-1]  # one file per flow; a conflict's retry would read it again
        return {"reading_s": line.get("wall_s"), "stages": line.get("stages", {})}


def stage_lines(log: str) -> list[dict[str, Any]]:
    """The ``file.stages`` lines of the daemon's JSON log (its stdout off a terminal)."""
    found = []
    for text in log.splitlines():
        if not text.startswith("{"):
            continue
        try:
            entry = json.loads(text)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "file.stages":
            found.append(entry)
    return found


def run_gateway(cfg: Path, state: Path, profile: str | None = None,
                terminal: str | None = None) -> Run:
    """`gateway run --once`: seconds, the peak RSS and PSS (MB) of its process tree, the
    CPU seconds (user + system) of the gateway and the gpg processes it waited for, and
    its file.stages log lines. With *terminal*, it runs under ``script`` (a terminal: the
    progress bar shows) and the session is kept in that file (the log lines with it)."""
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    prof = ["-m", "cProfile", "-o", profile] if profile else []
    cmd = [sys.executable, *prof, "-m", "gateway", "run", "--once", "-c", str(cfg)]
    if terminal:
        cmd = ["script", "-qec", shlex.join(cmd), terminal]
    env = {**os.environ, "COLUMNS": "110", "TERM": "xterm"} if terminal else None
    # `run` logs to stdout (JSON off a terminal), its summary to stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL if terminal else subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    sampler = Sampler(proc.pid, str(state))
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"gateway run --once failed: {err.decode(errors='replace')[-500:]}")
    return Run(elapsed, sampler.peak_kb / 1024, sampler.peak_pss_kb / 1024, cpu,
               stage_lines((out or b"").decode(errors="replace")))


def fixed_costs(cfg: Path, root: Path, gpg: Gpg, codes: list[str], idle_runs: int,
                batch_runs: int) -> dict[str, Any]:
    """What a run costs whatever its size, on the site the flows just used: *idle_runs*
    passes with nothing pending (imports, keyring, ledger, the pass's checks), then
    *batch_runs* batches of 100 cases, each with case ids and a batch id of its own (none
    is a duplicate), beside the same batch's gpg baseline. Medians, and the best."""
    idle = [run_gateway(cfg, root / "var").seconds for _ in range(idle_runs)]
    bank, gw = fingerprint(root, "bank"), fingerprint(root, "gateway")
    collector = fingerprint(root, "ag001-collector")
    runs: list[Run] = []
    bases: list[float] = []
    for k in range(batch_runs):
        src = root / f"fixed{k}.csv.pgp"
        gpg.seal_stream(csv_chunks(synth.cases(100, codes, seed=100 + k, prefix=f"F{k}")), bank,
                        gw, src)
        bases.append(gpg.baseline(src, gw, collector))
        name = f"FIXED100-{k}-{time.time_ns()}"
        os.link(src, root / "zones" / "bank" / "outgoing" / f"{name}.csv.pgp")
        runs.append(run_gateway(cfg, root / "var"))
        if not (root / "zones" / "bank" / "incoming" / f"{name}.csv.pgp.receipt.json.pgp").exists():
            raise SystemExit("no receipt for a 100-case batch")
        if (got := outcome(root, "case_file"))["status"] != "accepted":
            raise SystemExit(f"a 100-case batch was not accepted: {got}")
        src.unlink()
    took = [r.seconds for r in runs]
    middle = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    return {"idle_s": round(statistics.median(idle), 2), "idle_best_s": round(min(idle), 2),
            "idle_runs_s": [round(t, 2) for t in idle],
            "batch100_s": round(statistics.median(took), 2),
            "batch100_best_s": round(min(took), 2),
            "batch100_runs_s": [round(t, 2) for t in took],
            "batch100_baseline_s": round(statistics.median(bases), 2),
            "batch100_peak_pss_mb": round(middle.peak_pss_mb, 1),
            "batch100_peak_rss_mb": round(middle.peak_rss_mb, 1),
            **{f"batch100_{k}": v for k, v in middle.stages_of("case_file").items()}}


def outcome(root: Path, kind: str) -> dict[str, int | str]:
    """What the ledger says of the last file of *kind*: status, accepted and rejected rows."""
    ledger = Ledger(f"sqlite:///{root / 'var' / 'gateway.db'}")
    try:
        (f,) = ledger.files(kind=kind, limit=1)
        return {"status": f.status, "accepted": f.accepted, "rejected": f.rejected}
    finally:
        ledger.close()


OUT: list[Path] = []  # --out: where the lines are appended too


def emit(line: dict[str, Any]) -> None:
    """One JSON line: printed as it is measured, and appended to --out's file, so a
    run cut short keeps what it measured."""
    text = json.dumps(line)
    print(text, flush=True)
    for path in OUT:
        with path.open("a") as fh:
            fh.write(text + "\n")


def fingerprint(root: Path, name: str) -> str:
    return keys.inspect(root / "keys" / f"{name}.pub.asc").fingerprint


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--results", type=int, default=None, help="result rows (default: --cases)")
    ap.add_argument("--compress-level", type=int, default=None,
                    help="[gateway] compress_level for the run (default: the config's default)")
    ap.add_argument("--skip-results", action="store_true")
    ap.add_argument("--terminal", metavar="FILE",
                    help="run the batch at a terminal (script(1)) and keep the session in FILE")
    ap.add_argument("--profile", metavar="PREFIX",
                    help="run the gateway under cProfile: PREFIX.batch.prof, PREFIX.results.prof")
    ap.add_argument("--floor", action="store_true",
                    help="also time the batch's unavoidable cryptography: the bank's file "
                         "decrypted while every delivered slice is sealed again, at once; "
                         "and the results file's ledger calls alone")
    ap.add_argument("--fixed", action="store_true",
                    help="after the flows, the fixed costs: --idle-runs passes of `run --once` "
                         "with nothing to do, and three 100-case batches (one more JSON line, "
                         "flow \"fixed\")")
    ap.add_argument("--idle-runs", type=int, default=5, help="idle passes timed by --fixed")
    ap.add_argument("--out", type=Path, metavar="FILE",
                    help="also append the JSON lines to FILE (benchmarks/table.py reads it)")
    ap.add_argument("--compression", action="store_true",
                    help="also time the baseline pipe at zlib levels 6, 1 and 0 (and the bytes)")
    args = ap.parse_args()
    OUT[:] = [args.out] if args.out else []
    compileall.compile_dir(Path(gateway.__file__).parent, quiet=1)  # as an installed wheel is
    n = args.cases
    with tempfile.TemporaryDirectory(prefix="gwtp", dir="/var/tmp") as tmp:
        root = Path(tmp) / "site"
        cfg = scaffold.init_project(root, agencies=AGENCIES, settle_seconds=0)
        if args.compress_level is not None:
            cfg.write_text(cfg.read_text().replace("# compress_level = 1",
                                                   f"compress_level = {args.compress_level}"))
        for name in scaffold.key_names(AGENCIES):
            keys.generate(name, f"{name}@bench.example", root / "keys")
        gpg = Gpg(Path(tmp) / "parties", [root / "keys" / "bank.sec.asc",
                                          root / "keys" / "gateway.sec.asc",
                                          root / "keys" / "ag001.sec.asc",
                                          root / "keys" / "ag001-collector.pub.asc"])
        try:
            bank, gw = fingerprint(root, "bank"), fingerprint(root, "gateway")
            collector = fingerprint(root, "ag001-collector")
            codes = [a.code for a in AGENCIES]
            src = root / "bank-file.csv.pgp"
            plain = gpg.seal_stream(csv_chunks(synth.cases(n, codes, seed=1)), bank, gw, src)
            base = gpg.baseline(src, gw, collector)
            if args.compression:  # what each zlib level costs gpg, and what it saves
                levels = {}
                for z in (6, 1, 0):
                    out = root / f"z{z}.pgp"
                    t = min(gpg.baseline(src, gw, collector, level=z, out=out) for _ in range(3))
                    levels[z] = {"s": round(t, 2), "mb": round(out.stat().st_size / 1e6, 1)}
                    out.unlink()
                emit({"flow": "compression", "cases": n, "csv_mb": round(plain / 1e6, 1),
                      "best_of": 3, "levels": levels})
            # The site's first run, with nothing pending, as its installation's is: it creates
            # the ledger (every migration), builds the keyring and lists every key — once in a
            # site's life, not a batch's work (kept in the line as setup_s).
            setup = run_gateway(cfg, root / "var").seconds
            os.link(src, root / "zones" / "bank" / "outgoing" / f"B{n}.csv.pgp")
            run = run_gateway(cfg, root / "var", args.profile and f"{args.profile}.batch.prof",
                              args.terminal)
            took, peak, pss, cpu = run.seconds, run.peak_rss_mb, run.peak_pss_mb, run.cpu_s
            if not (root / "zones" / "bank" / "incoming" / f"B{n}.csv.pgp.receipt.json.pgp").exists():
                raise SystemExit("no receipt for the batch")
            sealed = sum(p.stat().st_size for a in codes
                         for p in (root / "zones" / a / "inbox").iterdir())
            start = min(run_gateway(cfg, root / "var").seconds for _ in range(3))  # nothing pending
            floor = {}
            if args.floor:
                level = 1 if args.compress_level is None else args.compress_level
                f = floor_of(root, Path(tmp), src, codes, level)
                floor = {"floor_s": round(f, 2), "floor_ratio": round(f / base, 2)}
            emit({"flow": "batch", "cases": n, "mb": round(plain / 1e6, 1),
                  **timed("cases", n, base, took, start, cpu, peak, pss, sealed),
                  "compress_level": args.compress_level, "setup_s": round(setup, 2), **floor,
                  **outcome(root, "case_file"), **run.stages_of("case_file")})
            if not args.skip_results:
                results(args, root, Path(tmp), cfg, gpg, start)
            if args.fixed:
                fixed = fixed_costs(cfg, root, gpg, codes, args.idle_runs, 3)
                emit({"flow": "fixed", "cases": n, **fixed})
        finally:
            gpg.close()
    return 0


def timed(unit: str, n: int, base: float, took: float, start: float, cpu: float,
          peak: float, pss: float, sealed: int) -> dict[str, float | int]:
    """A flow's line: its time against the baseline's, its rate (also net of the start),
    CPU, memory and the bytes it sealed — the same fields for both flows."""
    return {"baseline_s": round(base, 2), "gateway_s": round(took, 2),
            "ratio": round(took / base, 2), f"{unit}_per_s": round(n / took),
            "start_s": round(start, 2), f"{unit}_per_s_after_start": round(n / (took - start)),
            "cpu_s": round(cpu, 1), "peak_rss_mb": round(peak, 1), "peak_pss_mb": round(pss, 1),
            "sealed_mb": round(sealed / 1e6, 1)}


def results(args: argparse.Namespace, root: Path, tmp: Path, cfg: Path, gpg: Gpg,
            start: float) -> None:
    """The results flow on the site the batch left: M rows about AG001's cases."""
    n, m = args.cases, args.results or args.cases
    codes = [a.code for a in AGENCIES]
    bank, gw, agency = fingerprint(root, "bank"), fingerprint(root, "gateway"), fingerprint(root, "ag001")
    today = time.strftime("%Y%m")
    mine = [f"C{today}{i:07d}" for i in range(0, n, len(codes))]  # AG001's cases
    res = root / "results.csv.pgp"
    plain = gpg.seal_stream(csv_chunks(synth.results(mine, m), synth.RESULT_COLUMNS),
                            agency, gw, res)
    base = gpg.baseline(res, gw, bank)
    os.link(res, root / "zones" / "AG001" / "outbox" / f"R{m}.csv.pgp")
    run = run_gateway(cfg, root / "var", args.profile and f"{args.profile}.results.prof")
    took, peak, pss, cpu = run.seconds, run.peak_rss_mb, run.peak_pss_mb, run.cpu_s
    fwd = [p for p in (root / "zones" / "bank" / "incoming").iterdir()
           if p.name.startswith("results.")]
    if len(fwd) != 1:
        raise SystemExit("the results file was not forwarded")
    ledger = {}
    if args.floor:  # the ledger's calls for these rows alone, on a ledger of their own
        spent = ledger_floor.measure(f"sqlite:///{tmp / 'floor.db'}", mine, m)
        ledger = {"ledger_floor_s": spent["total_s"],
                  "ledger_floor_ratio": round(spent["total_s"] / base, 2)}
    emit({"flow": "results", "rows": m, "mb": round(plain / 1e6, 1),
          **timed("rows", m, base, took, start, cpu, peak, pss, fwd[0].stat().st_size),
          "compress_level": args.compress_level, **ledger,
          **outcome(root, "results"), **run.stages_of("results")})


if __name__ == "__main__":
    sys.exit(main())
