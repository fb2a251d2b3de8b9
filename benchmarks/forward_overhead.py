"""What forwarding the audit log costs the flows: batches through a running daemon, with
and without a ``[[forward]]`` destination, alternated in one run on one machine.

    .venv/bin/python benchmarks/forward_overhead.py [--cases 200000] [--rounds 3]

One site (5 agencies x 3 roles, as benchmarks/throughput.py builds it). Each round runs
two daemons one after the other, in alternating order — ``gateway run`` *off* (no
destination) and *on* (syslog over TLS to a receiver on loopback that reads and counts
what it gets) — and times one batch through each: from the case file's drop into the
watched zone to its receipt in the bank's zone. Forwarding runs beside the flows in
threads of its own, so the question is what those threads take from the pass (the GIL,
the ledger's cursor writes, the TLS sends). Prints one JSON line per batch and a last
line with the median times and their ratio; checks the receiver got every entry the
*on* daemons were to send, in order.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from throughput import AGENCIES, Gpg, csv_chunks, fingerprint  # the same site and files

from gateway import scaffold, synth
from gateway.crypto import keys
from tests.tlsca import TestCA  # a CA for the receiver, made here (no network, no files kept)


class Receiver(threading.Thread):
    """A TLS syslog receiver that reads octet-counted frames and keeps their seqs."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        super().__init__(daemon=True)
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.frames = 0

    def run(self) -> None:
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(raw,), daemon=True).start()

    def _read(self, raw: socket.socket) -> None:
        buf = b""
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as conn:
                while data := conn.recv(65536):
                    buf += data
                    while b" " in buf:
                        head, _, rest = buf.partition(b" ")
                        if len(rest) < int(head):
                            break
                        buf = rest[int(head):]
                        self.frames += 1
        except (OSError, ValueError):
            return


def run_daemon(cfg: Path, drop: Path, src: Path, receipt: Path) -> float:
    """Start ``gateway run``, drop *src* as *drop* once it runs, time until *receipt*."""
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(cfg),
                             "--interval", "0.2", "--rescan", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)  # started: keyring, ledger, the first (empty) pass
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else b""
            raise SystemExit(f"gateway run failed: {err.decode(errors='replace')[-500:]}")
        t0 = time.perf_counter()
        drop.hardlink_to(src)
        while not receipt.exists():
            if proc.poll() is not None:
                raise SystemExit("gateway run stopped before the receipt")
            time.sleep(0.01)
        return time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gwfw", dir="/var/tmp") as tmp:
        root = Path(tmp) / "site"
        cfg = scaffold.init_project(root, agencies=AGENCIES, settle_seconds=0)
        cfg.write_text(cfg.read_text().replace('# metrics_listen = "127.0.0.1:9464"',
                                               'metrics_listen = ""'))
        for name in scaffold.key_names(AGENCIES):
            keys.generate(name, f"{name}@bench.example", root / "keys")
        ca = TestCA(Path(tmp) / "ca")
        issued = ca.issue("receiver")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(issued.cert, issued.key)
        receiver = Receiver(ctx)
        receiver.start()
        off = cfg.read_text()
        on = off + (f'\n[[forward]]\nname = "siem"\nkind = "syslog"\ntransport = "tls"\n'
                    f'host = "localhost"\nport = {receiver.port}\nca_file = "{ca.path}"\n')
        gpg = Gpg(Path(tmp) / "parties", [root / "keys" / "bank.sec.asc",
                                          root / "keys" / "gateway.pub.asc"])
        codes = [a.code for a in AGENCIES]
        times: dict[str, list[float]] = {"off": [], "on": []}
        try:
            bank, gw = fingerprint(root, "bank"), fingerprint(root, "gateway")
            for r in range(args.rounds):
                for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                    name = f"B{r}{mode}"
                    src = Path(tmp) / f"{name}.csv.pgp"
                    records = synth.cases(args.cases, codes, seed=r * 2 + (mode == "on"),
                                          prefix=f"{name}-")
                    gpg.seal_stream(csv_chunks(records), bank, gw, src)
                    cfg.write_text(on if mode == "on" else off)
                    took = run_daemon(cfg, root / "zones" / "bank" / "outgoing" / src.name, src,
                                      root / "zones" / "bank" / "incoming" /
                                      f"{src.name}.receipt.json.pgp")
                    src.unlink()
                    times[mode].append(took)
                    print(json.dumps({"batch": name, "forwarding": mode, "cases": args.cases,
                                      "gateway_s": round(took, 2)}), flush=True)
        finally:
            gpg.close()
        time.sleep(2.0)  # the last daemon's final entries, sent as it stopped
        log = (root / "var" / "audit" / "audit.jsonl").read_bytes().count(b"\n")
        med = {m: statistics.median(v) for m, v in times.items()}
        print(json.dumps({"cases": args.cases, "rounds": args.rounds,
                          "median_off_s": round(med["off"], 2), "median_on_s": round(med["on"], 2),
                          "ratio_on_off": round(med["on"] / med["off"], 3),
                          "entries_in_log": log, "frames_received": receiver.frames}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
