"""One conformance suite for every zone kind: local directories and a real OpenSSH SFTP server."""

from __future__ import annotations

import io
import os
import threading
import time

import pytest

from gateway.config import LocalZone as LocalSpec
from gateway.config import SftpZone as SftpSpec
from gateway.transfer import open_zone
from gateway.transfer.base import InvalidName, NameTaken
from gateway.transfer.sftp import AuthFailed, HostKeyMismatch, SftpZone
from gateway.transfer.wrappers import RetryingZone
from tests.sshd import Sshd, keygen

pytestmark = pytest.mark.integration


def sftp_spec(server: Sshd, path, **kw) -> SftpSpec:
    data = {"kind": "sftp", "host": "127.0.0.1", "port": server.port, "username": server.user,
            "private_key": str(server.client_key), "known_host": server.known_host,
            "path": str(path)} | kw
    return SftpSpec.model_validate(data)


@pytest.fixture(params=["local", "sftp"])
def zone(request, tmp_path, sshd):
    d = tmp_path / "zone"
    d.mkdir()
    if request.param == "local":
        z = open_zone("agencies[0].inbox", LocalSpec(kind="local", path=d), settle=0)
    else:
        z = open_zone("agencies[0].inbox", sftp_spec(sshd, d), settle=0.3)
    z.dir = d
    yield z
    z.close()


def test_write_list_read_remove(zone):
    entry = zone.write_atomic("B1.AG001.collector.csv.pgp", io.BytesIO(b"x" * 300_000))
    assert entry.size == 300_000
    assert [e.name for e in zone.list_ready()] == ["B1.AG001.collector.csv.pgp"]
    with zone.open_read("B1.AG001.collector.csv.pgp") as fh:
        assert fh.read() == b"x" * 300_000
    assert zone.stat("B1.AG001.collector.csv.pgp").size == 300_000
    zone.remove("B1.AG001.collector.csv.pgp")
    zone.remove("B1.AG001.collector.csv.pgp")  # idempotent
    assert zone.stat("B1.AG001.collector.csv.pgp") is None
    assert os.listdir(zone.dir) == []  # no temporary file left behind


def test_never_overwrites(zone):
    (zone.dir / "taken.pgp").write_bytes(b"theirs")
    with pytest.raises(NameTaken):
        zone.write_atomic("taken.pgp", io.BytesIO(b"ours"))
    assert (zone.dir / "taken.pgp").read_bytes() == b"theirs"
    assert sorted(os.listdir(zone.dir)) == ["taken.pgp"]


def test_temporary_names_are_never_ready(zone):
    for name in ("a.csv.pgp.part", "b.tmp", "c.filepart", ".hidden.csv.pgp", "ready.csv.pgp"):
        (zone.dir / name).write_bytes(b"1")
    assert [e.name for e in zone.list_ready()] == ["ready.csv.pgp"]
    assert len(zone.list_all()) == 5


def test_names_are_validated(zone):
    for bad in ("../escape", "a/b", "", ".."):  # could leave the zone: refused for everything
        with pytest.raises(InvalidName):
            zone.stat(bad)
    for odd in ("x\ny", "a\\b", "B-\udcb0\udca1.csv.pgp"):  # a sender's odd name: readable,
        assert zone.stat(odd) is None  # removable — but the gateway never writes one
        with pytest.raises(InvalidName):
            zone.write_atomic(odd, io.BytesIO(b"x"))


def test_odd_names_are_listed_read_and_removed(zone):
    """A newline, a backslash or bytes that are not UTF-8 in a sender's name are that file's
    problem: the zone lists it, reads it and removes it like any other."""
    raw = [b"B-EVIL\nX.csv.pgp", b"a\\b.csv.pgp", b"B-\xb0\xa1.csv.pgp"]
    for i, name in enumerate(raw):
        (zone.dir / os.fsdecode(name)).write_bytes(b"%d" % i)
    names = sorted(e.name for e in zone.list_ready())
    assert names == sorted(os.fsdecode(n) for n in raw)
    for name in names:
        with zone.open_read(name) as fh:
            assert fh.read() in (b"0", b"1", b"2")
        zone.remove(name)
    assert zone.list_all() == []


def test_symlinks_and_fifos_are_refused_never_read(zone, tmp_path):
    (tmp_path / "elsewhere").write_bytes(b"secret")
    os.symlink(tmp_path / "elsewhere", zone.dir / "link.csv.pgp")
    os.mkfifo(zone.dir / "pipe.csv.pgp")
    listed = {e.name: e.refused for e in zone.list_ready()}
    assert listed == {"link.csv.pgp": "symlink", "pipe.csv.pgp": "special"}
    assert zone.list_all() == []  # nothing a purge or a pick-up would read


def test_a_growing_remote_file_is_not_ready(tmp_path, sshd):
    d = tmp_path / "out"
    d.mkdir()
    z = SftpZone("bank.outgoing", sftp_spec(sshd, d), settle=0.5)
    stop = threading.Event()

    def grow():
        with (d / "B1.csv.pgp").open("wb") as fh:
            while not stop.is_set():
                fh.write(b"y" * 1000)
                fh.flush()
                time.sleep(0.05)
    t = threading.Thread(target=grow)
    t.start()
    try:
        time.sleep(0.2)
        assert z.list_ready() == []  # still being uploaded
    finally:
        stop.set()
        t.join()
    assert [e.name for e in z.list_ready()] == ["B1.csv.pgp"]  # stable across two polls now
    z.close()


def test_wrong_host_key_is_refused(tmp_path, sshd):
    other = keygen(tmp_path / "other_host_key")
    z = SftpZone("bank.incoming", sftp_spec(sshd, tmp_path, known_host=" ".join(other.split()[:2])))
    with pytest.raises(HostKeyMismatch, match="does not match the pinned"):
        z.list_all()


def test_unknown_client_key_is_refused(tmp_path, sshd):
    keygen(tmp_path / "stranger")
    z = SftpZone("bank.incoming", sftp_spec(sshd, tmp_path, private_key=str(tmp_path / "stranger")))
    with pytest.raises(AuthFailed):
        z.list_all()


def test_upload_survives_a_server_restart(tmp_path):
    """The server dies mid-upload and comes back: one complete copy, no .part left."""
    server = Sshd(tmp_path / "sshd2")
    server.start()
    d = tmp_path / "inbox"
    d.mkdir()
    inner = SftpZone("agencies[0].inbox", sftp_spec(server, d))
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        time.sleep(seconds)
    z = RetryingZone(inner, attempts=8, base=0.2, cap=1.0, sleep=sleep)
    payload = os.urandom(6 * 1024 * 1024)
    restart = threading.Timer(1.0, server.start)

    class Outage(io.BytesIO):
        tripped = False

        def read(self, n=-1):
            if not self.tripped and self.tell() > 2 * 1024 * 1024:
                self.tripped = True
                server.stop()
                restart.start()
            return super().read(n)
    try:
        z.write_atomic("B1.AG001.supervisor.csv.pgp", Outage(payload))
        assert delays, "the outage did not interrupt the upload"
        assert (d / "B1.AG001.supervisor.csv.pgp").read_bytes() == payload
        assert os.listdir(d) == ["B1.AG001.supervisor.csv.pgp"]
    finally:
        z.close()
        if restart.is_alive() or restart.finished.is_set():
            restart.join()
        server.stop()


def test_probe(tmp_path, sshd):
    z = SftpZone("bank.incoming", sftp_spec(sshd, tmp_path))
    z.probe()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".gateway-probe")]
    z.close()


def test_a_temporary_left_by_a_kill_after_the_rename_is_cleaned(zone):
    """Killed between moving a file into place and removing its temporary: the retry finds
    the name taken (same content: done) and still clears the temporary — no partial file
    stays visible to the party (found by the fault harness)."""
    (zone.dir / ".C1.json.asc.0123abcd.part").write_bytes(b"half")
    (zone.dir / "C1.json.asc").write_bytes(b"whole")
    with pytest.raises(NameTaken):
        zone.write_atomic("C1.json.asc", io.BytesIO(b"whole"))
    assert sorted(p.name for p in zone.dir.iterdir()) == ["C1.json.asc"]
