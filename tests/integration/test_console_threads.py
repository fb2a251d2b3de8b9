"""The console's pages wait for the database, the audit log's lock and gpg on worker
threads, never on the event loop (issue 23, item 6): one slow page must not stall the
others. Served as `gateway console` serves it (uvicorn on a loopback socket), with a
real dependency made slow — the audit log's ``flock`` held the way another writer holds
it — rather than anything in the console replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway import audit
from tests.unit.test_console_app import Http, served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HELD = 5.0  # seconds the audit log stays locked once the slow page waits for it


def waiting_for(path: Path, deadline: float) -> bool:
    """Whether some open file description is blocked waiting for *path*'s ``flock``: the
    kernel lists such waiters in /proc/locks with ``->`` (``maj:min:inode`` of the file)."""
    inode = os.stat(path).st_ino
    while time.monotonic() < deadline:
        with open("/proc/locks") as locks:
            if any("->" in line and f":{inode} " in line for line in locks):
                return True
        time.sleep(0.02)
    return False


def test_a_page_waiting_for_the_audit_log_does_not_hold_up_other_requests(tmp_path: Path) -> None:
    """The audit page records the person's view, which takes the log's exclusive lock; while
    another writer holds it (the daemon appending a batch's entries), that page waits. The
    login page and the stylesheet, which do not write the log, answer meanwhile; the audit
    page completes once the lock is released."""
    server, clock, client, cfg, secret = served(tmp_path, "")
    try:
        client.log_in(secret, clock)
        log_path = cfg.gateway.state_dir / "audit" / "audit.jsonl"
        slow = Http(server.port)
        slow.cookies = dict(client.cookies)
        answer: dict[str, Any] = {}

        def audit_page() -> None:
            begun = time.monotonic()
            answer["response"] = slow.get("/audit")
            answer["took"] = time.monotonic() - begun

        with log_path.open("ab") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            release = threading.Timer(HELD, fcntl.flock, (held, fcntl.LOCK_UN))
            first = threading.Thread(target=audit_page, daemon=True)
            first.start()
            try:
                assert waiting_for(log_path, time.monotonic() + 20), \
                    "the audit page never waited for the log's lock"
                release.start()  # whatever happens below, the log is released in HELD s
                fast = Http(server.port)
                for path in ("/login", "/static/console.css"):
                    begun = time.monotonic()
                    status, _, body = fast.get(path)
                    took = time.monotonic() - begun
                    assert status == 200, (path, body[:300])
                    assert took < 2.0, f"{path} took {took:.1f} s behind the waiting audit page"
                assert first.is_alive(), "the audit page did not wait for the log"
            finally:
                if release.ident is not None:  # started
                    release.join(timeout=HELD + 5)
                fcntl.flock(held, fcntl.LOCK_UN)  # no-op once the timer released it
            first.join(timeout=30)
        assert not first.is_alive(), "the audit page never answered"
        status, _, page = answer["response"]
        assert status == 200, page[:300]
        assert answer["took"] >= HELD
        viewed = [e for e in audit.AuditLog(log_path.parent).entries()
                  if e["event"] == "console.view"]
        assert viewed and viewed[-1]["page"] == "audit"
    finally:
        server.stop()


def test_pages_and_exports_at_once_while_the_log_grows(tmp_path: Path) -> None:
    """Pages on several worker threads at once bring the audit index up to date, page it
    and export it while another writer appends to the log: the index's one SQLite
    connection, shared by the threads, must give each of them whole answers. (Unguarded,
    two refreshes at once began a transaction inside a transaction — a 500 — and the
    index marked the intact chain as broken.)"""
    server, clock, client, cfg, secret = served(tmp_path, "")
    stop = threading.Event()
    rounds = 12
    lanes = (("/audit", "/"), ("/", "/audit?event=console."), ("/audit", "/audit/export.jsonl"),
             ("/compliance", "/audit"), ("/access", "/"), ("/audit/export.csv", "/audit"))
    answers: list[tuple[str, int, bytes]] = []
    try:
        client.log_in(secret, clock)
        writer = audit.AuditLog(cfg.gateway.state_dir / "audit", actor="admin")

        def grow() -> None:
            while not stop.is_set():
                writer.record("console.view", account="alice", page="overview")

        def ask(paths: tuple[str, ...]) -> None:
            reader = Http(server.port)
            reader.cookies = dict(client.cookies)
            for _ in range(rounds):
                for path in paths:
                    status, _, body = reader.get(path)
                    answers.append((path, status, body))

        threads = [threading.Thread(target=grow, daemon=True)] + [
            threading.Thread(target=ask, args=(paths,), daemon=True) for paths in lanes]
        for t in threads:
            t.start()
        for t in threads[1:]:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in threads[1:]), "a request never answered"
        stop.set()
        threads[0].join(timeout=10)
        answers.append(("/audit", *client.get("/audit")[::2]))  # after the last append
    finally:
        stop.set()
        server.stop()
    assert len(answers) == len(lanes) * rounds * 2 + 1
    failed = [(path, status, body[:200]) for path, status, body in answers if status != 200]
    assert not failed, failed
    broken = [path for path, _, body in answers if b"chain is broken" in body]
    assert not broken, broken
    for path, _, body in answers:
        if path.endswith(".jsonl"):  # every entry, whole and in order
            seqs = [json.loads(line)["seq"] for line in body.splitlines()]
            assert seqs == list(range(1, len(seqs) + 1)), path
