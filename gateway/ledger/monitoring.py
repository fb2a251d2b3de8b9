"""What the daemon reports about its surroundings: each zone's health, files refused in a
zone, and its cursors on the sshd log (docs/cli.md, docs/security-team.md)."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import select

from gateway.ledger.core import Core, _first_row_race
from gateway.ledger.schema import (
    AccessCursorRow,
    RefusedFileRow,
    ZoneRenameRow,
    ZoneStatusRow,
    utcnow,
)


class ZoneSeen(NamedTuple):
    """A zone's health as one pass saw it (``zone_status``)."""

    zone: str
    description: str
    last_scan_at: dt.datetime | None
    waiting: int
    last_error: str | None
    last_error_at: dt.datetime | None


class MonitoringStore(Core):
    def access_cursor(self, source: str) -> AccessCursorRow | None:
        with self.session(write=False) as s:
            row = s.get(AccessCursorRow, source)
            if row is not None:
                s.expunge(row)
            return row

    def save_access_cursor(self, source: str, inode: int | None, offset: int, state: str) -> None:
        with self.session() as s:
            row = s.get(AccessCursorRow, source, with_for_update=True)
            if row is None:
                s.add(AccessCursorRow(source=source, inode=inode, offset=offset, state=state))
            else:
                row.inode, row.offset, row.state, row.updated_at = inode, offset, state, utcnow()

    def save_zone_statuses(self, seen: list[ZoneSeen]) -> None:
        """What a pass saw of its zones, all of it: a field left out would keep the last
        pass's value beside this one's. One transaction for every zone of the pass (they
        were twelve at a site of five agencies), whose commit does not wait for the disk
        (as staging's, ``Ledger.session``): every pass writes every zone's again, and one
        lost with the machine is the next pass's to write."""
        def save() -> None:
            with self.session(staging=True) as s:
                rows = {r.zone: r for r in s.scalars(select(ZoneStatusRow).where(
                    ZoneStatusRow.zone.in_([z.zone for z in seen])))}
                now = utcnow()
                # In key order: two nodes whose configs list the zones in other orders, adding
                # the first rows together, would deadlock on PostgreSQL.
                for z in sorted(seen, key=lambda z: z.zone):
                    if (row := rows.get(z.zone)) is None:
                        row = rows[z.zone] = ZoneStatusRow(zone=z.zone, description=z.description)
                        s.add(row)
                    row.description, row.updated_at = z.description, now
                    row.last_scan_at, row.waiting = z.last_scan_at, z.waiting
                    row.last_error, row.last_error_at = z.last_error, z.last_error_at

        if seen:
            _first_row_race(save)

    def note_refused(self, zone: str, name: str, reason: str) -> bool:
        """Remember a refused entry; True the first time (when it is to be audited)."""
        return _first_row_race(lambda: self._note_refused(zone, name, reason))

    def _note_refused(self, zone: str, name: str, reason: str) -> bool:
        with self.session() as s:
            row = s.get(RefusedFileRow, (zone, name))
            if row is not None and row.reason == reason:
                return False
            if row is None:
                s.add(RefusedFileRow(zone=zone, name=name, reason=reason))
            else:
                row.reason = reason
            return True

    def forget_refused(self, zone: str, present: set[str]) -> None:
        """Entries no longer in the zone (someone removed them) are no longer refused."""
        with self.session() as s:
            for row in s.scalars(select(RefusedFileRow).where(RefusedFileRow.zone == zone)):
                if row.name not in present:
                    s.delete(row)

    def refused_files(self) -> list[RefusedFileRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(RefusedFileRow).order_by(RefusedFileRow.zone,
                                                                  RefusedFileRow.first_seen)))

    def zone_renames(self) -> dict[str, str]:
        """What each zone named by list position became (``agencies[0].inbox`` ->
        ``AG001.inbox``, migration 0009): how audit entries from before are read."""
        with self.session(write=False) as s:
            return {r.old: r.new for r in s.scalars(select(ZoneRenameRow))}

    def zone_statuses(self) -> list[ZoneStatusRow]:
        with self.session(write=False) as s:
            return list(s.scalars(select(ZoneStatusRow).order_by(ZoneStatusRow.zone)))
