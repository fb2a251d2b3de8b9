"""Reading internal-sftp's log file exactly once across appends, unfinished lines,
rotation by renaming (with lines still arriving in the old file), cuts in place and
small read limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.access.follow import HEAD, Cursor, read_new


def drain(path, cursor, limit=8 * 1024 * 1024):
    out = []
    while True:
        lines, after = read_new(path, cursor, limit=limit)
        if not lines and after == cursor:
            return out, cursor
        out += [line.text for line in lines]
        cursor = after


def test_appends_and_an_unfinished_line(tmp_path):
    log = tmp_path / "sshd.log"
    log.write_text("a\nb\n")
    lines, cur = drain(log, Cursor(None, 0))
    assert lines == ["a", "b"]
    with log.open("a") as fh:
        fh.write("c\npart")
    lines, cur = drain(log, cur)
    assert lines == ["c"]
    with log.open("a") as fh:
        fh.write("ial\n")
    assert drain(log, cur)[0] == ["partial"]


def test_rotation_by_renaming_loses_and_doubles_nothing(tmp_path):
    log = tmp_path / "sshd.log"
    log.write_text("1\n2\n")
    lines, cur = drain(log, Cursor(None, 0))
    assert lines == ["1", "2"]
    with log.open("a") as fh:
        fh.write("3\n")
    log.rename(tmp_path / "sshd.log.1")  # logrotate
    with (tmp_path / "sshd.log.1").open("a") as fh:
        fh.write("4\n")  # rsyslog still writing to the old file until it reopens
    log.write_text("5\n6\n")
    lines, cur = drain(log, cur)
    assert lines == ["3", "4", "5", "6"]
    assert cur.inode == log.stat().st_ino


def test_a_cut_in_place_starts_again_and_a_missing_file_waits(tmp_path):
    log = tmp_path / "sshd.log"
    log.write_text("old line\n" * 3)
    _, cur = drain(log, Cursor(None, 0))
    log.write_text("new\n")  # truncated and rewritten, same inode
    assert drain(log, cur)[0] == ["new"]
    log.unlink()
    assert read_new(log, cur) == ([], cur)


def test_a_cut_in_place_regrown_past_the_offset_is_read_from_its_start(tmp_path):
    """copytruncate, then more lines than were read before the next pass: the size alone
    says nothing; the file's first bytes no longer match the cursor's fingerprint."""
    log = tmp_path / "sshd.log"
    log.write_text("Dec  7 01:00:00 old one\nDec  7 01:00:01 old two\n")
    _, cur = drain(log, Cursor(None, 0))
    inode = log.stat().st_ino
    with log.open("r+") as fh:
        fh.truncate(0)
        fh.write("".join(f"Dec  7 02:00:{i:02d} new {i}\n" for i in range(10)))
    assert log.stat().st_ino == inode and log.stat().st_size > cur.offset
    lines, _ = drain(log, cur)
    assert lines == [f"Dec  7 02:00:{i:02d} new {i}" for i in range(10)]


def test_a_growing_file_keeps_its_fingerprint_and_is_not_read_again(tmp_path):
    """The fingerprint covers what there was (less than HEAD bytes at first); a file that
    only grew is the same file, however far it grows."""
    log = tmp_path / "sshd.log"
    log.write_text("first\n")
    _, cur = drain(log, Cursor(None, 0))
    for i in range(3):
        with log.open("a") as fh:
            fh.write(f"{i}" * HEAD + "\n")
        lines, cur = drain(log, cur)
        assert lines == [f"{i}" * HEAD]


def test_each_line_says_where_a_cursor_saved_after_it_points(tmp_path):
    """A caller saves the cursor after a line it acted on; resuming from there reads the
    rest, and nothing before it, again."""
    log = tmp_path / "sshd.log"
    log.write_bytes(b"one\r\ntwo\n\xff\xfe odd\nfour\n")
    lines, after = read_new(log, Cursor(None, 0))
    assert [line.text for line in lines] == ["one", "two", "\udcff\udcfe odd", "four"]
    assert lines[-1].end == after.offset == log.stat().st_size
    resumed, _ = drain(log, Cursor(after.inode, lines[1].end, after.head))
    assert resumed == ["\udcff\udcfe odd", "four"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(alphabet="abcé ", min_size=0, max_size=30), min_size=1, max_size=40),
       st.integers(8, 64))
def test_small_limits_read_every_line_once(tmp_path_factory, lines, limit):
    log = tmp_path_factory.mktemp("f") / "sshd.log"
    log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    got, _ = drain(log, Cursor(None, 0), limit=limit)
    assert "".join(got) == "".join(lines)  # a line longer than the limit arrives in pieces
    if all(len(line.encode()) + 1 <= limit for line in lines):
        assert got == lines


def test_a_fifo_or_a_directory_at_the_path_is_an_error_not_a_hang(tmp_path):
    """A FIFO opened for reading blocks until a writer comes — with the pass, and SIGTERM,
    waiting behind it. The follower opens without blocking and refuses what is not a file."""
    import os

    import pytest

    log = tmp_path / "sshd.log"
    os.mkfifo(log)
    with pytest.raises(OSError, match="not a regular file"):
        read_new(log, Cursor(None, 0))
    log.unlink()
    log.mkdir()
    with pytest.raises(OSError):
        read_new(log, Cursor(None, 0))
