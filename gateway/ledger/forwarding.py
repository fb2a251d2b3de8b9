"""Cursors of the audit log's forwarding (docs/operations.md, "Forwarding the audit log to a
SIEM"): per destination and node, the last entry a receiver confirmed."""

from __future__ import annotations

from sqlalchemy import select

from gateway.ledger.core import Core, _first_row_race
from gateway.ledger.schema import GENESIS_HASH, ForwardCursorRow, LeaseLost, LeaseRow, utcnow


class ForwardStore(Core):
    def forward_cursor(self, destination: str, node: str) -> ForwardCursorRow | None:
        with self.session(write=False) as s:
            row = s.get(ForwardCursorRow, (destination, node))
            if row is not None:
                s.expunge(row)
            return row

    def forward_cursors(self, node: str) -> list[ForwardCursorRow]:
        with self.session(write=False) as s:
            rows = list(s.scalars(select(ForwardCursorRow).where(ForwardCursorRow.node == node)))
            for row in rows:
                s.expunge(row)
            return rows

    def save_forwarded(self, destination: str, node: str, *, seq: int, hash_: str, offset: int,
                       lease: tuple[str, str], sent: bool = True) -> None:
        """Move the cursor to the entry *seq* the receiver confirmed — only while the lease
        *lease* (item, owner) is still ours, in the same transaction: a node whose lease ran
        out (it could not reach the database) must not move a cursor another node now moves.
        Raises :class:`LeaseLost` then; what it sent is sent again by the new holder.
        *sent*: the receiver confirmed entries (not only entries it does not want passed
        over) — then it works, and its last error is cleared, in this same transaction (a
        restarted daemon knows of no failure to recover from)."""
        item, owner = lease

        def save() -> None:
            with self.session() as s:
                held = s.get(LeaseRow, item, with_for_update=True)
                if held is None or held.owner != owner or held.until <= self.clock(s):
                    raise LeaseLost(f"forwarding to {destination} was taken over by "
                                    f"{held.owner if held else 'nobody'}")
                row = s.get(ForwardCursorRow, (destination, node), with_for_update=True)
                if row is None:
                    row = ForwardCursorRow(destination=destination, node=node)
                    s.add(row)
                row.seq, row.hash, row.offset = seq, hash_, offset
                row.updated_at = utcnow()
                if sent:
                    row.delivered_at, row.last_error = row.updated_at, None

        _first_row_race(save)

    def save_forward_error(self, destination: str, node: str, error: str | None) -> None:
        """The destination's last error (None: it works again), for `gateway status`."""
        def save() -> None:
            with self.session() as s:
                row = s.get(ForwardCursorRow, (destination, node), with_for_update=True)
                if row is None:
                    row = ForwardCursorRow(destination=destination, node=node, seq=0,
                                           hash=GENESIS_HASH, offset=0)
                    s.add(row)
                row.updated_at = utcnow()
                if error is None:
                    row.last_error = None
                else:
                    row.last_error, row.last_error_at = error[:500], utcnow()

        _first_row_race(save)
