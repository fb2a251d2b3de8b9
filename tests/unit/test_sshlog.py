"""The internal-sftp log parser against lines a real OpenSSH 9.2 wrote (tests/golden/), and
against the log's awkward corners: interleaved sessions, a session seen from its middle,
the year syslog leaves out, other programs' lines."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from pathlib import Path

from gateway.access.sshlog import Event, SftpLog

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "internal-sftp.syslog"
TZ = zoneinfo.ZoneInfo("UTC")
NOW = dt.datetime(2026, 11, 23, 18, 30, tzinfo=TZ)
AT = dt.datetime(2026, 11, 23, 18, 17, 12, tzinfo=TZ)


def feed(lines: list[str], now: dt.datetime = NOW) -> list[Event]:
    log = SftpLog(TZ, now)
    return [e for line in lines for e in log.feed(line)]


def test_what_a_real_sshd_logged():
    """Captured from `internal-sftp -l INFO` in a chroot (its <chroot>/dev/log): a whole
    download, a read of 1,000 of 100,000 bytes, a remove, a listing, a missing file, an
    upload under a temporary name renamed into place, then a second session's download."""
    events = feed(GOLDEN.read_text().splitlines())
    who = ("root", "127.0.0.1")
    assert [(e.kind, e.pid, (e.login, e.address), e.path, e.bytes) for e in events] == [
        ("login", 20330, who, "", 0),
        ("read", 20330, who, "/inbox/S1.csv.pgp", 100000),
        ("read", 20330, who, "/inbox/S2.csv.pgp", 1000),
        ("remove", 20330, who, "/inbox/S1.csv.pgp", 0),
        ("write", 20330, who, "/inbox/.R1.part", 5000),
        ("rename", 20330, who, '/inbox/R 1 "q".csv.pgp', 0),
        ("logout", 20330, who, "", 0),
        ("login", 20350, who, "", 0),
        ("read", 20350, who, "/inbox/S2.csv.pgp", 100000),
        ("logout", 20350, who, "", 0),
    ]
    assert all(e.at == AT for e in events)
    assert events[5].old == "/inbox/.R1.part"


def test_sessions_interleave_by_pid_and_a_mid_session_start_has_no_login():
    p = "<38>Nov 23 10:00:0{} internal-sftp[{}]: "
    sup, col = "/inbox/B1.AG001.supervisor.csv.pgp", "/inbox/B1.AG001.collector.csv.pgp"
    lines = [
        p.format(0, 7) + "session opened for local user ag001-col from [10.0.0.5]",
        p.format(1, 8) + f'open "{sup}" flags READ mode 0666',
        p.format(1, 7) + f'open "{col}" flags READ mode 0666',
        "<30>Nov 23 10:00:02 sshd[9]: Accepted publickey for someone",  # another program
        p.format(3, 8) + f'close "{sup}" bytes read 10 written 0',
        p.format(3, 7) + f'close "{col}" bytes read 20 written 0',
        p.format(4, 7) + "session closed for local user ag001-col from [10.0.0.5]",
        p.format(5, 7) + 'remove name "/inbox/x"',  # after its session ended
    ]
    events = feed(lines)
    reads = [(e.pid, e.login, e.address, e.path, e.bytes) for e in events if e.kind == "read"]
    assert reads == [(8, None, None, sup, 10), (7, "ag001-col", "10.0.0.5", col, 20)]
    assert (events[-1].kind, events[-1].login) == ("remove", None)


def test_ipv6_addresses_and_a_log_line_without_priority():
    events = feed(["Nov 23 10:00:00 host internal-sftp[7]: session opened for local user u from [::1]"])
    assert (events[0].login, events[0].address) == ("u", "::1")


def test_the_year_is_the_latest_not_after_tomorrow():
    new_year = dt.datetime(2027, 1, 1, 0, 5, tzinfo=TZ)
    (e,) = feed(['<38>Dec 31 23:59:59 internal-sftp[1]: session opened for local user u from [1.2.3.4]'],
                now=new_year)
    assert e.at == dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=TZ)
    (e,) = feed(['<38>Jan  1 00:00:01 internal-sftp[1]: session opened for local user u from [1.2.3.4]'],
                now=new_year)
    assert e.at.year == 2027


def test_memory_holds_only_open_sessions_and_files():
    log = SftpLog(TZ, NOW)
    for pid in range(1000):
        p = f"<38>Nov 23 10:00:00 internal-sftp[{pid}]: "
        for line in (p + "session opened for local user u from [1.2.3.4]",
                     p + 'open "/f" flags READ mode 0666',
                     p + "session closed for local user u from [1.2.3.4]"):
            log.feed(line)
    assert log.sessions == {} and log.reading == {}


def test_open_sessions_survive_a_restart_through_the_saved_state():
    """The daemon saves the parser's open sessions with its cursor: a session that began
    before a restart still names its login after it."""
    p, name = "<38>Nov 23 10:00:00 internal-sftp[7]: ", "/inbox/a b.csv.pgp"
    first = SftpLog(TZ, NOW)
    first.feed(p + "session opened for local user anna from [10.1.2.3]")
    first.feed(p + f'open "{name}" flags READ mode 0666')
    later = SftpLog(TZ, NOW)
    later.restore(json.loads(json.dumps(first.snapshot())))
    (e,) = later.feed(p + f'close "{name}" bytes read 5 written 0')
    assert (e.kind, e.login, e.address, e.path, e.bytes) == ("read", "anna", "10.1.2.3", name, 5)


P = "<38>Nov 23 10:00:00 internal-sftp[9]: "


def test_a_refused_write_open_does_not_turn_the_next_read_into_a_write():
    """internal-sftp logs an open before the file system answers it: a refused open never
    gets its close line, and its flags must not be taken for the next handle's."""
    events = feed([P + "session opened for local user anna from [10.0.0.1]",
                   P + 'open "/inbox/f" flags WRITE,CREATE,TRUNCATE mode 0666',
                   P + 'open "/inbox/f" flags READ mode 0666',
                   P + 'close "/inbox/f" bytes read 17 written 0'])
    assert [(e.kind, e.bytes) for e in events if e.kind in ("read", "write")] == [("read", 17)]


def test_a_reused_pid_starts_without_the_old_sessions_handles():
    log = SftpLog(TZ, NOW)
    for line in (P + "session opened for local user anna from [10.0.0.1]",
                 P + 'open "/inbox/f" flags WRITE mode 0666',  # refused: no close
                 P + "session opened for local user bob from [10.0.0.2]"):  # pid 9 again
        log.feed(line)
    assert log.reading == {}


def test_open_handles_are_bounded_whatever_an_agency_opens():
    from gateway.access.sshlog import MAX_OPEN

    log = SftpLog(TZ, NOW)
    log.feed(P + "session opened for local user anna from [10.0.0.1]")
    for i in range(MAX_OPEN * 4):
        log.feed(P + f'open "/inbox/refused-{i}" flags WRITE mode 0666')
    assert sum(len(v) for v in log.reading.values()) == MAX_OPEN
    assert len(json.dumps(log.snapshot())) < 64 * 1024


def test_a_long_line_is_ignored_and_the_patterns_stay_fast():
    import time

    from gateway.access.sshlog import MAX_LINE

    log = SftpLog(TZ, NOW)
    started = time.monotonic()
    near = P + "session opened for local user " + "a" * (MAX_LINE - 200) + " from [x"
    assert log.feed(near) == []  # no closing bracket: every split tried, each bounded
    assert log.feed(P + "session opened for local user " + "a" * MAX_LINE + " from [1.2.3.4]") == []
    assert time.monotonic() - started < 2
