"""Fuzzing the sshd log's way in (issue 22): whatever a log line holds, the parser, the
follower and the audit fields built from it never raise. An agency's staff choose their
login's spelling on some systems (``CORP\\anna``), sshd writes the client's address as it
saw it (``fe80::1%eth0``, ``UNKNOWN``), and file names are logged unescaped: none of it
may stop the pass that reads it.

Examples per property: ``GATEWAY_FUZZ_EXAMPLES`` (CI: the default below)."""

from __future__ import annotations

import datetime as dt
import os
import zoneinfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.access.follow import Cursor, read_new
from gateway.access.sshlog import SftpLog
from gateway.audit import AuditLog, outside, verify

TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=TZ)
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HOSTILE_LOGINS = ["CORP\\anna", 'ev"il<b>pwn</b>', "a" * 80, "\ufffd\ufffdanna", "-rf", "..",
                  "anna\x1b[31m", "ӓnna", "ann a"]
HOSTILE_ADDRESSES = ["fe80::1%eth0", "UNKNOWN", "::ffff:10.0.0.1", "1.2.3.4:22",
                     "<script>", "%" * 50]

text = st.text(st.characters(codec="utf-8"), max_size=120)
field = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=90)  # one line
logins = st.one_of(st.sampled_from(HOSTILE_LOGINS), field.filter(
    lambda s: s and s.strip() == s and " from [" not in s))
addresses = st.one_of(st.sampled_from(HOSTILE_ADDRESSES), field.filter(  # as sshd writes one:
    lambda s: 0 < len(s) <= 64 and "]" not in s and not any(c.isspace() for c in s)))  # no gaps
paths = st.one_of(st.just("/inbox/B1.AG001.collector.csv.pgp"), field.map(lambda s: "/inbox/" + s),
                  field)


def session(pid: int, login: str, address: str, path: str, nread: int) -> list[str]:
    p = f"<38>Dec  7 09:{pid % 60:02d}:00 internal-sftp[{pid}]: "
    return [p + f"session opened for local user {login} from [{address}]",
            p + f'open "{path}" flags READ mode 0666',
            p + f'close "{path}" bytes read {nread} written 0',
            p + f"session closed for local user {login} from [{address}]"]


@FUZZ
@given(st.lists(text, max_size=20))
@example(["<38>Xyz 23 04:58:18 internal-sftp[1]: open \"/f\" flags READ mode 0666"])
@example(["<38>Feb 29 99:99:99 internal-sftp[99999999999999999999]: session opened for "
          "local user a from [b]"])
@example(["<38>Nov 23 04:58:18 internal-sftp[1]: close \"/f\" bytes read ١٢ written 0"])
def test_any_line_is_taken_or_ignored(lines):
    parser = SftpLog(TZ, NOW)
    for line in lines:
        parser.feed(line)


@FUZZ
@given(st.integers(1, 2**40), logins, addresses, paths, st.integers(0, 2**64))
def test_every_field_of_a_read_fits_the_audit_log(tmp_path_factory, pid, login, address, path,
                                                   nread):
    """A read parsed from a hostile session is audited whole: the login and address as
    they are when they fit, else as their hash — and the chain stays sound."""
    parser = SftpLog(TZ, NOW)
    events = [e for line in session(pid, login, address, path, nread) for e in parser.feed(line)]
    (read,) = [e for e in events if e.kind == "read"]
    assert (read.login, read.address, read.path, read.bytes) == (login, address, path, nread)
    audit = AuditLog(tmp_path_factory.mktemp("audit"), actor="daemon")
    fields = {**outside("login", read.login), **outside("address", read.address)}
    entry = audit.record("slice.accessed", bytes=read.bytes, **fields)
    assert ("login" in entry) != ("login_sha256" in entry)
    assert ("address" in entry) != ("address_sha256" in entry)
    assert verify(audit.path).ok


def test_ordinary_odd_addresses_are_kept_as_they_are():
    for address in ("fe80::1%eth0", "UNKNOWN", "::1", "10.0.0.7"):
        assert outside("address", address) == {"address": address}
    assert set(outside("login", "CORP\\anna")) == {"login_sha256"}


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["append", "truncate", "rotate"]),
                          st.binary(max_size=200)), max_size=12),
       st.integers(4, 300))
def test_the_follower_never_raises_and_never_goes_backwards(tmp_path_factory, steps, limit):
    """Appends of any bytes (no line end, NULs, invalid UTF-8), cuts in place and rotations
    in any order: reading never raises, and within one file the cursor only moves on."""
    where = tmp_path_factory.mktemp("log")
    log = where / "sshd.log"
    log.write_bytes(b"")
    cursor = Cursor(None, 0)
    for n, (step, data) in enumerate(steps):
        if step == "truncate":
            log.write_bytes(data)
        elif step == "rotate":
            log.rename(where / f"sshd.log.{n}")
            log.write_bytes(data)
        else:
            with log.open("ab") as fh:
                fh.write(data)
        for reread in range(len(data) + 3):
            lines, after = read_new(log, cursor, limit=limit)
            cut = step == "truncate" and reread == 0  # a new file in the old inode
            if after.inode == cursor.inode and lines and not cut:
                assert after.offset > cursor.offset
                assert [line.end for line in lines] == sorted(line.end for line in lines)
            if after == cursor and not lines:
                break
            cursor = after
