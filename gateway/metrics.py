"""Metrics and health for operations (docs/operations.md): ``/metrics`` (Prometheus) and ``/healthz``.

Every daemon serves both on ``[gateway] metrics_listen`` (default ``127.0.0.1:9464``;
empty switches it off). Labels carry only what the audit log may carry — channels,
outcomes, agency codes, zone key paths, flags, event names, key fingerprints — never
a file name a sender chose, a case id or a personal value.

``/healthz`` answers 200 while the last pass ended within three intervals and no zone
nor piece of the pass is failing, 503 with a one-line JSON reason otherwise (a load balancer or systemd's
watchdog can act on it).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from gateway.errors import GatewayError


class Metrics:
    """One registry per daemon (and per test), so counters never leak between them."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.files = Counter("gateway_files_total", "Input files taken, by channel and outcome",
                             ["channel", "outcome"], registry=r)
        self.cases_delivered = Counter("gateway_cases_delivered_total",
                                       "Cases delivered to an agency", ["agency"], registry=r)
        self.result_rows = Counter("gateway_result_rows_total",
                                   "Result rows forwarded to the bank, by flag (none: unflagged)",
                                   ["agency", "flag"], registry=r)
        self.bytes = Counter("gateway_bytes_total", "Ciphertext bytes taken in and placed out",
                             ["direction"], registry=r)
        self.pass_duration = Histogram("gateway_pass_duration_seconds", "Duration of one pass",
                                       registry=r, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900))
        self.zone_up = Gauge("gateway_zone_up", "1 if the zone answered in the last pass",
                             ["zone"], registry=r)
        self.pending_deliveries = Gauge("gateway_pending_deliveries",
                                        "Committed files not yet placed in their zone", registry=r)
        self.purge_deadline = Gauge("gateway_purge_deadline_timestamp_seconds",
                                    "When each agency's data must be purged (contract end + "
                                    "purge_after_days)", ["agency"], registry=r)
        self.purge_agencies: set[str] = set()  # the labels purge_deadline has now
        self.key_expiry = Gauge("gateway_key_expiry_timestamp_seconds",
                                "When each configured key expires (absent: never)",
                                ["fingerprint", "use"], registry=r)
        self.security_events = Counter("gateway_security_events_total",
                                       "security.* audit events", ["event"], registry=r)
        self.pass_failures = Counter("gateway_pass_failures_total",
                                     "Pieces of a pass that failed unexpectedly (the rest went on)",
                                     ["part"], registry=r)
        self.leases_held = Gauge("gateway_leases_held", "Work items this node holds a lease on",
                                 registry=r)
        self.forward_backlog = Gauge("gateway_forward_backlog",
                                     "Audit entries after the last one a [[forward]] destination "
                                     "confirmed", ["destination"], registry=r)
        self.forward_errors = Counter("gateway_forward_errors_total",
                                      "Failed attempts to send to a [[forward]] destination",
                                      ["destination"], registry=r)
        self.alerts_open = Gauge("gateway_alerts_open", "Alerts open now, by severity",
                                 ["severity"], registry=r)
        self.alerts_failed = Counter("gateway_alerts_failed_total",
                                     "Failed attempts to send an alert's notice (each is retried)",
                                     ["channel"], registry=r)

    def audited(self, event: str) -> None:
        """Called for every audit entry written (the audit log's listener)."""
        if event.startswith("security."):
            self.security_events.labels(event=event).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


MAX_PASS = 900.0  # seconds a single pass may run (a million-case batch) before it counts as hung


@dataclass
class Health:
    """What `/healthz` decides on; written by the daemon around each pass."""

    max_age: float  # seconds: three intervals
    last_pass: float | None = None  # time.monotonic() when the last pass ended
    running_since: float | None = None  # when the pass in progress began
    failing: dict[str, str] = field(default_factory=dict)  # zone key -> error
    parts: dict[str, str] = field(default_factory=dict)  # pass part -> error, last pass
    pass_error: str | None = None  # why the last pass failed as a whole (the ledger, a disk)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self) -> None:
        with self.lock:
            self.running_since = time.monotonic()

    def passed(self, failing: dict[str, str], parts: dict[str, str] | None = None) -> None:
        with self.lock:
            self.last_pass, self.failing = time.monotonic(), dict(failing)
            self.parts = dict(parts or {})
            self.running_since, self.pass_error = None, None

    def failed(self, error: str) -> None:
        with self.lock:
            self.running_since, self.pass_error = None, error

    def verdict(self) -> tuple[int, dict[str, object]]:
        with self.lock:
            now = time.monotonic()
            if self.running_since is not None and now - self.running_since > MAX_PASS:
                return 503, {"status": "stalled", "reason": f"a pass has been running for "
                                                           f"{now - self.running_since:.0f} s"}
            if self.pass_error is not None:
                return 503, {"status": "pass_failed", "reason": self.pass_error[:300]}
            if self.last_pass is None:
                return 503, {"status": "starting", "reason": "no pass has finished yet"}
            age = now - self.last_pass
            if age > self.max_age and self.running_since is None:
                return 503, {"status": "stalled", "reason": f"the last pass ended {age:.0f} s ago "
                                                           f"(limit {self.max_age:.0f} s)"}
            if self.failing:
                zone, error = next(iter(sorted(self.failing.items())))
                return 503, {"status": "zone_failing", "zones": sorted(self.failing),
                             "reason": f"{zone}: {error}"[:300]}
            if self.parts:
                part, error = next(iter(sorted(self.parts.items())))
                return 503, {"status": "part_failing", "parts": sorted(self.parts),
                             "reason": f"{part}: {error}"[:300]}
            return 200, {"status": "ok", "last_pass_seconds_ago": round(age, 1)}


def serve(listen: str, metrics: Metrics, health: Health) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz on *listen* ("host:port"; port 0: any free port) from a
    daemon thread; ``server.server_address`` says where."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                code, body = health.verdict()
                self._send(code, json.dumps(body).encode() + b"\n", "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would flood the operational log

    try:
        server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    except OSError as exc:
        raise GatewayError(f"gateway.metrics_listen: cannot listen on {listen}: "
                           f"{exc.strerror or exc}") from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
