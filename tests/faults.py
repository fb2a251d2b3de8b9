"""Fault-injection harness: SIGKILL `gateway run --once` from outside at seeded random moments.

``python -m tests.faults --kills 60 --seed 1`` (``make faults``) builds a site with a
20,000-case bank batch, an agency's results file and a contract whose purge is due,
then, round after round, starts `gateway run --once` and kills its whole process
group (the gateway and its gpg children) at a random moment, until a run gets to
the end by itself; then it checks the round's outcome and starts the next round
from the same inputs. After every kill it checks what must hold at *any* moment,
and after every completed round what must hold at the end::

    any moment   no plaintext personal value in any file under the site or the
                 system temp directory; no input answered twice (receipts,
                 forwarded results, certificates); every file in a zone that the
                 ledger says was delivered is complete (its size and SHA-256);
                 the audit chain verifies (a torn last line is allowed: the
                 next start repairs it)
    at the end   each input delivered exactly once (3 slices of the batch, the
                 forwarded results, one receipt per input, one certificate);
                 no temporary or partial file in any zone; AG002's inbox empty;
                 `gateway audit verify` (chain and signed checkpoints) passes

It prints ``kills: N, lost: 0, duplicated: 0, plaintext files: 0, audit breaks: 0``
and, with ``--json FILE``, writes the counts and the kills per phase (from the last
audit event before each kill) for the reliability table in docs/engineering/reliability.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import getpass
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from gateway import audit, synth
from gateway.state import file_sha256
from tests.conftest import KeyBox
from tests.flowsite import Site
from tests.leaks import LeakScanner

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
# The last audit event before a kill tells what the gateway was doing (a run's events come
# in this order; the label is the work that follows the event).
PHASES = {
    None: "start-up: keyring, ledger", "audit.repaired": "start-up: keyring, ledger",
    "config.loaded": "taking the batch: archive copy, claim",
    "file.received": "reading, checking and sealing the batch",
    "batch.accepted": "moving slices into the inbox", "slice.delivered": "moving slices, receipt",
    "receipt.sent": "taking and reading the results file",
    "results.accepted": "forwarding results to the bank",
    "results.forwarded": "results receipt, purge plan and deletions",
    "retention.purged": "delivering the deletion certificate",
    "certificate.delivered": "signing the audit checkpoint",
    "audit.checkpoint": "delivering the audit checkpoint",
}
# Half the kills come at a random moment of a run; the other half a few milliseconds after
# a randomly chosen event, so that every phase is hit, not just the long ones.
TARGETS = [e for e in PHASES if e not in (None, "audit.repaired")]


@dataclass
class Summary:
    kills: int = 0
    rounds: int = 0
    lost: int = 0
    duplicated: int = 0
    plaintext_files: int = 0
    audit_breaks: int = 0
    partial_files: int = 0  # temporaries left visible in a zone after a completed round
    problems: list[str] = field(default_factory=list)
    phases: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"kills: {self.kills}, lost: {self.lost}, duplicated: {self.duplicated}, "
                f"plaintext files: {self.plaintext_files}, audit breaks: {self.audit_breaks}, "
                f"partial files: {self.partial_files}")


def results_csv(case_ids: list[str]) -> bytes:
    yesterday = (dt.datetime.now(TZ) - dt.timedelta(days=1)).strftime("%Y-%m-%dT10:00:00")
    rows = ["case_id,action_at,action_code,contact_target,collector_id"]
    rows += [f"{c},{yesterday},VISIT,debtor,c1" for c in case_ids]
    return ("\r\n".join(rows) + "\r\n").encode()


def build_template(root: Path, keys: KeyBox, cases: int) -> tuple[Site, list[dict[str, str]]]:
    """The inputs of every round: a big batch, a results file, a purge that is due."""
    site = Site(root, keys)
    small = list(synth.cases(6, ["AG001", "AG002"], seed=100, prefix="S"))
    site.drop_cases("B0.csv.pgp", small)
    assert site.run() == {"accepted": 1}
    ended = (dt.datetime.now(TZ).date() - dt.timedelta(days=1)).isoformat()
    text = site.config.read_text()
    i = text.index('code = "AG002"')
    site.config.write_text(text[:i] + text[i:].replace("# terminated_on = 2026-06-30",
                                                        f"terminated_on = {ended}", 1))
    site.edit("purge_after_days = 30", "purge_after_days = 0")
    big = list(synth.cases(cases, ["AG001"], seed=101))
    site.drop_cases("B1.csv.pgp", big)
    site.upload("AG001", "R1.csv.pgp",
                results_csv([r["case_id"] for r in small if r["agency_code"] == "AG001"]))
    return site, small + big


def start(site: Site) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "gateway", "run", "--once", "-c",
                             str(site.config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def audit_size(site: Site) -> int:
    path = site.state / "audit" / "audit.jsonl"
    return path.stat().st_size if path.exists() else 0


def last_event(site: Site, since: int) -> str | None:
    """The newest event the current run wrote (the log from byte *since* on), if any."""
    path = site.state / "audit" / "audit.jsonl"
    with path.open("rb") as fh:
        fh.seek(since)
        data = fh.read()
    for line in reversed(data.splitlines()):
        try:
            return json.loads(line)["event"]
        except (ValueError, KeyError):
            continue  # a torn last line
    return None


def count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern)))


def answered(site: Site) -> dict[str, int]:
    """How many times each input was answered or delivered, so far."""
    bank_in, ag1 = site.zone("bank", "incoming"), site.zone("AG001", "inbox")
    return {"batch receipt": count(bank_in, "B1.csv.pgp*.receipt.json.pgp"),
            "batch slices (AG001 inbox)": count(ag1, "B1.AG001.*"),
            "results receipt": count(ag1, "R1.csv.pgp*.receipt.json.pgp"),
            "forwarded results": count(bank_in, "results.AG001.*.csv.pgp"),
            "deletion certificate": count(bank_in, "deletion-certificate.*.json.asc")}


EXPECTED = {"batch receipt": 1, "batch slices (AG001 inbox)": 3, "results receipt": 1,
            "forwarded results": 1, "deletion certificate": 1}


def delivered_files_are_whole(site: Site) -> list[str]:
    """Every file the ledger marks delivered and that is still in its zone is complete."""
    from gateway.ledger import DeliveryRow, Ledger

    ledger = Ledger(f"sqlite:///{site.state / 'gateway.db'}")
    problems = []
    try:
        with ledger.session() as s:
            rows = list(s.query(DeliveryRow).filter(DeliveryRow.delivered_at.is_not(None),
                                                    DeliveryRow.purged_at.is_(None)))
        cfg = site.cfg()
        where = {key: Path(spec.path) for key, spec in cfg.zones()}
        for d in rows:
            path = where[d.zone] / d.name
            if path.exists() and (path.stat().st_size != d.size or file_sha256(path) != d.sha256):
                problems.append(f"{d.zone}/{d.name} differs from what the ledger delivered")
    finally:
        ledger.close()
    return problems


def temporaries(site: Site) -> list[str]:
    return [str(p) for p in (site.root / "zones").rglob("*")
            if p.is_file() and (p.name.startswith(".") or p.name.endswith(".part"))]


def check_any_moment(site: Site, scanner: LeakScanner, since: float, s: Summary,
                     workdir: Path) -> None:
    leaks = scanner.scan_files([*site.written_files(), *written_since(since, workdir)])
    if leaks:
        s.plaintext_files += len({f for f, _ in leaks})
        s.problems += [f"plaintext {field} in {f}" for f, field in leaks[:5]]
    for what, n in answered(site).items():
        if n > EXPECTED[what]:
            s.duplicated += n - EXPECTED[what]
            s.problems.append(f"{what}: {n} (expected at most {EXPECTED[what]})")
    whole = delivered_files_are_whole(site)
    s.lost += len(whole)
    s.problems += whole
    chain = audit.verify(site.state / "audit" / "audit.jsonl")
    torn_tail = (not chain.ok and chain.problem.startswith("entry is incomplete")
                 and _lines(site) == chain.broken_seq)
    if not chain.ok and not torn_tail:
        s.audit_breaks += 1
        s.problems.append(f"audit chain broken at {chain.broken_seq}: {chain.problem}")


def check_end(site: Site, s: Summary) -> None:
    for what, n in answered(site).items():
        if n < EXPECTED[what]:
            s.lost += EXPECTED[what] - n
            s.problems.append(f"round {s.rounds}: {what}: {n} (expected {EXPECTED[what]})")
    if site.inbox("AG002"):
        s.problems.append(f"round {s.rounds}: AG002's inbox is not empty after the purge")
        s.lost += 1
    if temps := temporaries(site):
        s.problems.append(f"round {s.rounds}: temporary files left in zones: {temps[:3]}")
        s.partial_files += len(temps)
    proc = subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "-c",
                           str(site.config)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        s.audit_breaks += 1
        s.problems.append(f"round {s.rounds}: audit verify: {proc.stderr.strip()}")


def _lines(site: Site) -> int:
    return (site.state / "audit" / "audit.jsonl").read_bytes().count(b"\n") + 1


def written_since(since: float, workdir: Path) -> list[Path]:
    """Regular files in the system temp directory modified since *since*, outside *workdir*.

    A walk with `os.walk` (scandir underneath), pruning the harness's own directory:
    pathlib's `rglob` with a `parents` test took ~4 s per kill in CI, where the temp
    directory holds the checkout's virtualenv and pytest's earlier sites.
    """
    found = []
    # Not looked into: the harness's own directory; under pytest, the test session's
    # record of programs started (tests/exec_audit.py) and the other tests' temporary
    # directories — with the suite on both cores, another test writes there meanwhile,
    # and what it writes is its own test's to judge, not this harness's.
    skip = {os.path.realpath(workdir)}
    # Nor the virtualenv's installed packages and scripts, which a checkout cloned into the
    # temp directory brings there (~19,000 entries, each walk ~0.2 s more): the gateway
    # writes nothing into its interpreter's installation. The rest of the virtualenv and
    # the checkout are looked into (the gateway runs with the checkout as its working
    # directory, which an editable install may have put inside the virtualenv).
    skip |= {os.path.realpath(sysconfig.get_path(k)) for k in ("purelib", "platlib", "scripts")}
    if exec_log := os.environ.get("GATEWAY_TEST_EXEC_LOG"):
        skip.add(os.path.realpath(exec_log))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        skip.add(os.path.realpath(os.path.join(tempfile.gettempdir(),
                                               f"pytest-of-{getpass.getuser()}")))
    for top, dirs, files in os.walk(os.path.realpath(tempfile.gettempdir())):
        dirs[:] = [d for d in dirs if os.path.join(top, d) not in skip]
        for name in files:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # removed while we walked
            if stat.S_ISREG(st.st_mode) and st.st_mtime >= since:
                found.append(Path(path))
    return found


def run(kills: int, *, seed: int = 1, cases: int = 20000, workdir: Path | None = None,
        log=print) -> Summary:
    """Kill until *kills* kills were made; every round ends with a run that completed."""
    rng = random.Random(seed)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="gwfaults"))
    keys = KeyBox(workdir / "keys")
    (workdir / "keys").mkdir(exist_ok=True)
    began = time.time()
    template, records = build_template(workdir / "template", keys, cases)
    scanner = LeakScanner(records)
    s = Summary()
    # One undisturbed run measures how long a whole run takes (and that it works at all).
    site = _copy(template, workdir / "calibration")
    t0 = time.monotonic()
    proc = start(site)
    _, err = proc.communicate()
    full = time.monotonic() - t0
    assert proc.returncode == 0, err.decode()
    check_end(site, s)
    log(f"an undisturbed run takes {full:.1f} s; killing within [0, {full * 1.1:.1f}] s")
    while s.kills < kills:
        s.rounds += 1
        site = _copy(template, workdir / f"round{s.rounds}")
        while True:
            offset = audit_size(site)
            proc = start(site)
            if rng.random() < 0.5:
                alive = _wait(proc, rng.uniform(0.0, full * 1.1))
            else:
                alive = _wait_for_event(site, proc, rng.choice(TARGETS), rng.uniform(0, 0.05))
            if alive:
                event = last_event(site, offset)
                phase = PHASES.get(event, f"after {event}")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                s.kills += 1
                s.phases[phase] += 1
                check_any_moment(site, scanner, began, s, workdir)
                continue
            proc.wait()
            if proc.returncode != 0:
                s.problems.append(f"round {s.rounds}: run failed: {proc.stderr.read().decode()}")
            check_end(site, s)
            check_any_moment(site, scanner, began, s, workdir)
            break
        log(f"round {s.rounds}: {s.kills} kills so far; {s.line()}")
        shutil.rmtree(site.root, ignore_errors=True)
    s.seconds = time.time() - began
    return s


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait up to *seconds*; True if the process is still running then."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def _wait_for_event(site: Site, proc: subprocess.Popen[bytes], event: str, after: float) -> bool:
    """Wait until *event* is in the audit log, then *after* seconds more; True if the
    process is still running then (False: it finished first)."""
    path = site.state / "audit" / "audit.jsonl"
    start_size = path.stat().st_size if path.exists() else 0
    needle = f'"event":"{event}"'.encode()
    while proc.poll() is None:
        if path.exists() and path.stat().st_size > start_size:
            with path.open("rb") as fh:
                fh.seek(start_size)
                if needle in fh.read():
                    return _wait(proc, after)
        time.sleep(0.002)
    return False


def _copy(template: Site, root: Path) -> Site:
    shutil.copytree(template.root, root, symlinks=True)
    site = Site.__new__(Site)
    site.root, site.keys, site.config = root, template.keys, root / "gateway.toml"
    return site


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cases", type=int, default=20000)
    p.add_argument("--json", type=Path, help="write the summary here")
    args = p.parse_args()
    s = run(args.kills, seed=args.seed, cases=args.cases)
    for problem in s.problems:
        print(f"problem: {problem}")
    print(s.line())
    if args.json:
        args.json.write_text(json.dumps({
            "kills": s.kills, "rounds": s.rounds, "lost": s.lost, "duplicated": s.duplicated,
            "plaintext_files": s.plaintext_files, "audit_breaks": s.audit_breaks,
            "partial_files": s.partial_files,
            "phases": dict(s.phases), "seed": args.seed, "cases": args.cases,
            "seconds": round(s.seconds)}, indent=2) + "\n")
    return 0 if not s.problems else 1


if __name__ == "__main__":
    sys.exit(main())
