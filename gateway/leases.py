"""The work this node holds, and the thread that keeps holding it (docs/operations.md).

Every work item — an input file, a pending delivery, a receipt to send, a purge —
is claimed in the ledger with a lease that runs out ``lease_seconds`` after it
was last renewed. While a node works on an item, a background thread renews its
leases every third of that time, so a slow item (a million-case batch, a large
slice on a slow SFTP link) is never taken over from a live node; a node that
dies stops renewing, and after ``lease_seconds`` another node takes the item
over. Whatever the holder did half-way is repeated by the new holder: every
effect is idempotent (see :mod:`gateway.flows.intake`), and a file's commit
checks, under a row lock, that the committing node still holds it.

A node that cannot reach the database cannot renew either; if that lasts longer
than the lease, the item may be taken over while this node still works on it —
its commit then fails (:class:`~gateway.ledger.LeaseLost`) and the work is
dropped here. Placing a file in a zone cannot be fenced that way; it is kept
harmless instead: both nodes would write the same staged bytes under the same
name, with an atomic rename.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import structlog

from gateway.errors import GatewayError
from gateway.ledger import Ledger

log = structlog.get_logger("gateway.leases")


class Leases:
    def __init__(self, ledger: Ledger, owner: str, seconds: int) -> None:
        self.ledger, self.owner, self.seconds = ledger, owner, seconds
        self._items: Counter[str] = Counter()
        self._files: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: set[str] = set()
        self.busy_until: float | None = None  # epoch: when a lease another node holds runs out

    def saw_busy(self, until: float) -> None:
        """Another node holds something this pass wanted, until *until*: the daemon looks
        again then (a dead node's work is taken over when its lease runs out, not at the
        next rescan)."""
        self.busy_until = until if self.busy_until is None else min(self.busy_until, until)

    # -- holding ---------------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self, item: str) -> Iterator[bool]:
        """Claim *item* for the block; yields False (and holds nothing) when a live node
        has it. Released at the end, so the next node need not wait for it to run out."""
        if not self.ledger.take_lease(item, self.owner, self.seconds):
            self.saw_busy(time.time() + self.seconds)  # at the latest
            yield False
            return
        with self._lock:
            self._items[item] += 1
        try:
            yield True
        finally:
            with self._lock:
                self._items[item] -= 1
                last = self._items[item] <= 0
                if last:
                    del self._items[item]
            if last:
                with contextlib.suppress(GatewayError):  # it runs out by itself
                    self.ledger.release_lease(item, self.owner)

    @contextlib.contextmanager
    def keep_file(self, file_id: int) -> Iterator[None]:
        """Renew the lease of a file this node claimed (the claim is the ``files`` row)
        while the block runs; a finished file's lease ends with its commit."""
        with self._lock:
            self._files[file_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._files[file_id] -= 1
                if self._files[file_id] <= 0:
                    del self._files[file_id]

    # -- renewing --------------------------------------------------------------------
    def renew(self) -> None:
        """Extend every lease in hand; one that another node holds now is logged as lost
        (the flows find out at their commit)."""
        with self._lock:
            items, files = list(self._items), list(self._files)
        if not items and not files:
            return
        lost = self.ledger.renew_leases(self.owner, items, files, self.seconds)
        for item in sorted(lost - self.lost):
            log.warning("lease.lost", item=item, owner=self.owner)
        self.lost |= lost

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except Exception as exc:  # the database is away: retried a third later; this
                # thread must not die of it (leases would run out under live work)
                log.warning("lease.renewal_failed", error=str(exc))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
