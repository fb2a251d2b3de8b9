"""Open a large message through the engine vs plain `gpg --decrypt`, with the memory it takes.

    .venv/bin/python benchmarks/bench_open.py --mb 1024

Builds a signed+encrypted message of --mb MiB of CSV-like plaintext (bank key ->
gateway key, uncompressed so the size is the size), then times

  1. baseline: `gpg --decrypt FILE > /dev/null` in the same keyring, and
  2. the engine: Engine.open(file) read to the end into a counting sink + verdict,

and samples the resident memory of the whole process tree (this Python, its gpg
children and the keyring's gpg-agent) every 20 ms. Prints MB/s for both and the
ratio, and the peak RSS; exits 1 if the peak is 100 MB or more.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gateway.crypto import keys
from gateway.crypto.engine import Engine
from gateway.crypto.keyring import Keyring

LIMIT_MB = 100


def tree_rss_kb(root: int, marker: str) -> int:
    """RSS of *root*, its descendants and any process whose command line has *marker*."""
    return tree_memory_kb(root, marker)[0]


def tree_memory_kb(root: int, marker: str) -> tuple[int, int]:
    """(RSS, PSS) summed over *root*, its descendants and any process whose command line
    has *marker*. RSS counts a shared library page once per process that maps it — every
    gpg child counts ~5 MB of libc and libgcrypt again; PSS divides each page among the
    processes sharing it, so its sum is the memory the tree really holds."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmdlines[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().decode("latin-1")
        except (OSError, ValueError, IndexError):
            continue
    members = {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    members |= {pid for pid, cmd in cmdlines.items() if marker in cmd}
    # A child between fork and exec is its parent's memory, not more of it: with vfork
    # (which subprocess uses) it even shares the parent's address space; /proc shows
    # the parent's RSS for it until exec, and summing both would count the gateway twice.
    members -= {pid for pid in members
                if parents.get(pid) in members and cmdlines.get(pid) == cmdlines.get(parents[pid])}
    rss = pss = 0
    for pid in members:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss, pss


class Sampler(threading.Thread):
    def __init__(self, marker: str) -> None:
        super().__init__(daemon=True)
        self.marker = marker
        self.peak_kb = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(os.getpid(), self.marker))
            time.sleep(0.02)


def make_message(path: Path, mb: int, bank: keys.GeneratedKey, gw: keys.GeneratedKey,
                 work: Path) -> None:
    home = work / "bank-home"
    home.mkdir(mode=0o700)
    base = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
            "--passphrase", "", "--trust-model", "always"]
    subprocess.run([*base, "--import", str(bank.secret_path), str(gw.public_path)], check=True,
                   capture_output=True)
    rnd = random.Random(7)
    lines = [f"C{i:09d},AG00{i % 3},credit_card,6222{rnd.randrange(10**11, 10**12)},"
             f"name{rnd.randrange(10**6)},11010519900307{rnd.randrange(1000, 9999)},"
             f"138{rnd.randrange(10**7, 10**8)},addr {rnd.randrange(10**9)},"
             f"{rnd.randrange(10**6)}.00,12.34,0.00\n".encode() for i in range(20000)]
    block = b"".join(lines)
    with path.open("wb") as out:
        proc = subprocess.Popen([*base, "-u", bank.fingerprint, "-r", gw.fingerprint, "-z", "0",
                                 "--sign", "--encrypt"], stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        written, target = 0, mb * 1024 * 1024
        while written < target:
            chunk = block[: target - written]
            proc.stdin.write(chunk)
            written += len(chunk)
        proc.stdin.close()
        if proc.wait() != 0:
            raise SystemExit("gpg could not build the test message")
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="plaintext size in MiB (default 1024)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gwb", dir="/var/tmp") as tmp:
        work = Path(tmp)
        gw = keys.generate("gateway", "gw@bench.example", work / "keys")
        bank = keys.generate("bank", "bank@bench.example", work / "keys")
        msg = work / "big.csv.pgp"
        t0 = time.perf_counter()
        make_message(msg, args.mb, bank, gw, work)
        size = msg.stat().st_size
        print(f"message: {size / 1e6:.0f} MB ciphertext, {args.mb} MiB plaintext "
              f"(built in {time.perf_counter() - t0:.1f} s)")

        ring = Keyring(work / "ring", secret_keys=[gw.secret_path], public_keys=[bank.public_path])
        try:
            # 1. baseline: plain gpg, same keyring, output discarded
            t0 = time.perf_counter()
            subprocess.run(["gpg", "--homedir", str(ring.home), "--batch", "--pinentry-mode",
                            "loopback", "--passphrase", "", "--decrypt", str(msg)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            t_gpg = time.perf_counter() - t0

            # 2. the engine into a counting sink, with the process tree's memory sampled
            engine = Engine(ring, max_plaintext=(args.mb + 1) * 1024 * 1024)
            sampler = Sampler(str(ring.home))
            sampler.start()
            t0 = time.perf_counter()
            counted = 0
            with msg.open("rb") as fh, engine.open(fh, allowed_signers=[bank.fingerprint]) as m:
                for chunk in m.chunks():
                    counted += len(chunk)
                verdict = m.verdict()
            t_engine = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
        finally:
            ring.close()
    assert verdict.fingerprint == bank.fingerprint and counted == args.mb * 1024 * 1024
    mb = size / 1e6
    peak_mb = sampler.peak_kb / 1024
    print(f"plain gpg --decrypt : {t_gpg:6.2f} s  {mb / t_gpg:7.1f} MB/s")
    print(f"engine (verified)   : {t_engine:6.2f} s  {mb / t_engine:7.1f} MB/s  "
          f"({t_engine / t_gpg:.2f}x the time of plain gpg)")
    print(f"peak RSS of process tree (python + gpg + gpg-agent): {peak_mb:.1f} MB "
          f"(limit {LIMIT_MB} MB): {'OK' if peak_mb < LIMIT_MB else 'TOO HIGH'}")
    return 0 if peak_mb < LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
