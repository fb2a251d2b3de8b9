"""A zone on a remote SFTP server, reached with paramiko.

* The server's host key is pinned in the config and compared byte for byte;
  a mismatch is refused (:class:`HostKeyMismatch`), never learned.
* Key authentication only; one connection reused across operations, with
  keepalives; a dropped connection is re-opened on the next call.
* A remote file is ready once its size and mtime are unchanged across two
  polls at least ``settle`` seconds apart (an upload in progress keeps growing).
* Uploads go to an exclusive hidden temporary name, the size is verified, then
  the file is renamed into place with SFTP ``rename`` — which OpenSSH's server
  implements as link + unlink, so it *fails* if the target exists: the same
  no-overwrite guarantee as the local zone. (``posix-rename`` would replace an
  existing file.) Our own stale temporaries from an interrupted upload of the
  same name are removed first.

Errors are classified: :class:`TransientZoneError` (network, server restart —
worth retrying, see :mod:`gateway.transfer.retry`) or a plain ZoneError.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import socket
import stat
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import paramiko
from paramiko.sftp import CMD_CLOSE, CMD_HANDLE, CMD_NAME, CMD_OPENDIR, CMD_READDIR

from gateway.config import SftpZone as SftpSpec
from gateway.streams import Readable
from gateway.transfer.base import (
    Entry,
    FileChanged,
    FileMissing,
    NameTaken,
    TransientZoneError,
    ZoneError,
    ZoneUnavailable,
    check_component,
    display_name,
    is_temporary,
    iter_chunks,
    name_bytes,
    snapshot_changed,
    validate_name,
)

KEEPALIVE = 30  # seconds between SSH keepalives
CONNECT_TIMEOUT = 15.0  # seconds
_KEY_TYPES = {
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256"),
    "rsa-sha2-256": ("rsa-sha2-512", "rsa-sha2-256"),
    "rsa-sha2-512": ("rsa-sha2-512", "rsa-sha2-256"),
}


class HostKeyMismatch(ZoneUnavailable):
    """The server's host key is not the pinned one: refused, never learned."""

    code = "E_HOST_KEY"


class AuthFailed(ZoneUnavailable):
    """The server refused our key."""

    code = "E_AUTH"


class SftpZone:
    def __init__(self, key: str, spec: SftpSpec, *, settle: float = 2.0) -> None:
        self.key = key
        self.spec = spec
        self.settle = settle  # seconds between the two polls of the stability check
        self.file_mode = spec.file_mode
        self._transport: paramiko.Transport | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.RLock()
        self._snapshot: tuple[float, dict[str, tuple[int, float]]] | None = None

    def describe(self) -> str:
        return self.spec.describe()

    # -- connection ---------------------------------------------------------------
    def _client(self) -> paramiko.SFTPClient:
        with self._lock:
            if self._sftp is not None and self._transport is not None and self._transport.is_active():
                return self._sftp
            self.close()
            self._sftp = self._connect()
            return self._sftp

    def _connect(self) -> paramiko.SFTPClient:
        spec = self.spec
        key_type, key_b64 = spec.known_host.split()
        try:
            sock = socket.create_connection((spec.host, spec.port), timeout=CONNECT_TIMEOUT)
        except OSError as exc:
            raise TransientZoneError(f"{self.key}: cannot connect to {spec.host}:{spec.port}: "
                                     f"{exc.strerror or exc}") from exc
        transport = paramiko.Transport(sock)
        try:
            transport.get_security_options().key_types = _KEY_TYPES.get(key_type, (key_type,))
            try:
                transport.start_client(timeout=CONNECT_TIMEOUT)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise TransientZoneError(f"{self.key}: SSH handshake with {spec.host}:{spec.port} "
                                         f"failed: {exc}") from exc
            server_key = transport.get_remote_server_key()
            if server_key.get_base64() != key_b64:
                raise HostKeyMismatch(
                    f"{self.key}: host key of {spec.host}:{spec.port} does not match the pinned "
                    f"known_host ({server_key.get_name()} {server_key.fingerprint}); refusing to "
                    "connect")
            try:
                pkey = paramiko.PKey.from_path(str(spec.private_key), password=self._passphrase())
            except (OSError, paramiko.SSHException) as exc:
                raise ZoneError(f"{self.key}.private_key: cannot load {spec.private_key}: {exc}") \
                    from exc
            try:
                transport.auth_publickey(spec.username, pkey)
            except paramiko.AuthenticationException as exc:
                raise AuthFailed(f"{self.key}: {spec.host} refused key authentication for user "
                                 f"{spec.username}") from exc
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise TransientZoneError(f"{self.key}: authentication interrupted: {exc}") from exc
            transport.set_keepalive(KEEPALIVE)
            self._transport = transport
            client = paramiko.SFTPClient.from_transport(transport)
            if client is None:  # the server opened no session channel
                raise TransientZoneError(f"{self.key}: {spec.host} opened no SFTP session")
            return client
        except BaseException:
            transport.close()
            raise

    def _passphrase(self) -> str | None:
        return os.environ.get(self.spec.passphrase_env) if self.spec.passphrase_env else None

    def close(self) -> None:
        with self._lock:
            for thing in (self._sftp, self._transport):
                if thing is not None:
                    with contextlib.suppress(Exception):
                        thing.close()
            self._sftp = self._transport = None

    def _p(self, name: str) -> bytes:
        """The remote path as bytes: a sender's name that is not UTF-8 is still reachable."""
        return name_bytes(posixpath.join(self.spec.path, check_component(name)))

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Translate paramiko/socket errors at the boundary; drop a broken connection."""
        try:
            yield
        except ZoneError:
            raise
        except FileNotFoundError as exc:
            raise FileMissing(f"{self.key}: {display_name(what)}: no such file or directory") \
                from exc
        except PermissionError as exc:
            raise ZoneError(f"{self.key}: {display_name(what)}: permission denied") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # The server answering "no" leaves the connection up; a broken link does not.
            alive = self._transport is not None and self._transport.is_active()
            if alive and isinstance(exc, OSError) and not isinstance(exc, socket.timeout):
                raise ZoneError(f"{self.key}: {display_name(what)}: {exc}") from exc
            self.close()
            raise TransientZoneError(f"{self.key}: {display_name(what)}: connection lost "
                                     f"({exc})") from exc

    # -- the zone interface --------------------------------------------------------
    def _listdir(self) -> list[paramiko.SFTPAttributes]:
        """``listdir_attr`` that keeps names as the server sent them: paramiko decodes
        them strictly, so one file name that is not UTF-8 would make the whole zone
        unlistable. Undecodable bytes travel as surrogates (``os.fsdecode``)."""
        client = self._client()
        t, msg = _request(client, CMD_OPENDIR, name_bytes(self.spec.path))
        if t != CMD_HANDLE:
            raise paramiko.SFTPError("expected a handle")
        handle = msg.get_binary()
        found = []
        try:
            while True:
                try:
                    t, msg = _request(client, CMD_READDIR, handle)
                except EOFError:
                    break
                if t != CMD_NAME:
                    raise paramiko.SFTPError("expected a name response")
                for _ in range(msg.get_int()):
                    name = os.fsdecode(msg.get_string())
                    longname = os.fsdecode(msg.get_string())
                    attr = paramiko.SFTPAttributes._from_msg(  # type: ignore[attr-defined]  # private: see _request
                        msg, name, longname)
                    if name not in (".", ".."):
                        found.append(attr)
        finally:
            _request(client, CMD_CLOSE, handle)
        return found

    def _entries(self) -> list[Entry]:
        with self._errors("list"):
            attrs = self._listdir()
        out = []
        for a in attrs:
            mode = a.st_mode or 0
            if stat.S_ISDIR(mode):
                continue
            refused = None if stat.S_ISREG(mode) else "symlink" if stat.S_ISLNK(mode) else "special"
            out.append(Entry(a.filename, a.st_size or 0, float(a.st_mtime or 0), refused=refused))
        return sorted(out, key=lambda e: (e.mtime, e.name))

    def list_all(self) -> list[Entry]:
        return [e for e in self._entries() if e.refused is None]

    def list_ready(self) -> list[Entry]:
        """Files whose size and mtime did not change between two polls ``settle`` s apart
        (and, marked ``refused``, entries that are not regular files)."""
        now = time.monotonic()

        def listing() -> tuple[dict[str, Entry], list[Entry]]:
            entries = [e for e in self._entries() if not is_temporary(e.name)]
            return ({e.name: e for e in entries if e.refused is None},
                    [e for e in entries if e.refused is not None])

        current, refused = listing()
        previous = self._snapshot
        if previous is None or now - previous[0] < self.settle:
            if previous is None:
                time.sleep(self.settle)
            else:
                time.sleep(self.settle - (now - previous[0]))
            before = {n: (e.size, e.mtime) for n, e in current.items()}
            current, refused = listing()
        else:
            before = previous[1]
        self._snapshot = (time.monotonic(), {n: (e.size, e.mtime) for n, e in current.items()})
        return refused + [e for n, e in sorted(current.items(), key=lambda kv: (kv[1].mtime, kv[0]))
                          if before.get(n) == (e.size, e.mtime)]

    @contextlib.contextmanager
    def open_read(self, name: str) -> Iterator[Readable]:
        with self._errors(f"open {name}"):
            fh = self._client().open(self._p(name), "rb")
            fh.prefetch()
        try:
            yield _Reader(self, name, fh)
        finally:
            with contextlib.suppress(Exception):
                fh.close()

    def stat(self, name: str) -> Entry | None:
        with self._errors(f"stat {name}"):
            try:
                a = self._client().lstat(self._p(name))
            except FileNotFoundError:
                return None
        if a.st_mode is None or not stat.S_ISREG(a.st_mode):
            return None
        return Entry(name, a.st_size or 0, float(a.st_mtime or 0))

    def remove(self, name: str) -> None:
        with self._errors(f"remove {name}"):
            try:
                self._client().remove(self._p(name))
            except FileNotFoundError:
                return  # already gone: removal is idempotent

    def write_atomic(self, name: str, src: BinaryIO) -> Entry:
        final = posixpath.join(self.spec.path, validate_name(name))
        self._remove_stale_temporaries(name)  # first: a kill after the rename leaves one too
        if self.stat(name) is not None:
            raise NameTaken(f"{self.key}: {name} exists already")
        tmp = posixpath.join(self.spec.path, f".{name[:200]}.{secrets.token_hex(4)}.part")
        written = 0
        with self._errors(f"upload {name}"):
            client = self._client()
            with client.open(tmp, "wbx") as out:
                out.set_pipelined(True)
                for chunk in iter_chunks(src):
                    out.write(chunk)
                    written += len(chunk)
            client.chmod(tmp, self.file_mode)  # exact mode, whatever the server's umask
            size = client.stat(tmp).st_size
            if size != written:
                with contextlib.suppress(OSError):
                    client.remove(tmp)
                raise ZoneError(f"{self.key}: upload of {name} is {size} bytes on the server, "
                                f"{written} were sent")
            try:
                client.rename(tmp, final)  # link+unlink on OpenSSH: fails if *final* exists
            except OSError:
                with contextlib.suppress(OSError):
                    client.remove(tmp)
                if self.stat(name) is not None:
                    raise NameTaken(f"{self.key}: {name} exists already") from None
                raise
        return Entry(name, written, time.time())

    def _remove_stale_temporaries(self, name: str) -> None:
        prefix = f".{name[:200]}."
        for e in self.list_all():
            if e.name.startswith(prefix) and e.name.endswith(".part"):
                self.remove(e.name)

    def probe(self) -> None:
        """For `gateway check`: connect, verify the path is a directory, write and remove a file."""
        with self._errors("probe"):
            client = self._client()
            st = client.stat(self.spec.path)
            if st.st_mode is None or not stat.S_ISDIR(st.st_mode):
                raise ZoneError(f"{self.key}.path: {self.spec.path} is not a directory on the server")
            probe = posixpath.join(self.spec.path, f".gateway-probe-{secrets.token_hex(4)}.tmp")
            try:
                with client.open(probe, "wbx") as fh:
                    fh.write(b"probe")
            except PermissionError:
                raise ZoneError(f"{self.key}.path: no write permission in {self.spec.path}") from None
            client.remove(probe)


class _Reader:
    """Translates errors of the *remote* read only; the caller's own errors (a full local
    disk while archiving, say) pass through as what they are. At the end of the file it
    checks that size and mtime did not move while it read (:class:`FileChanged`)."""

    def __init__(self, zone: SftpZone, name: str, fh: paramiko.SFTPFile) -> None:
        self._zone, self._name, self._fh = zone, name, fh
        with zone._errors(f"stat {name}"):
            self._before = _identity(fh)
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        with self._zone._errors(f"read {self._name}"):
            data = self._fh.read(size)
            self._read += len(data)
            if not data and snapshot_changed(self._before, _identity(self._fh), self._read):
                raise FileChanged(f"{self._zone.key}: {display_name(self._name)!r} changed while "
                                  "it was read (still being uploaded?)")
            return data


def _request(client: paramiko.SFTPClient, t: int, *args: object) -> tuple[int, paramiko.Message]:
    """One request and its reply, by paramiko's own private method: its public listing
    decodes names strictly (see ``SftpZone._listdir``), and its stubs leave the private
    methods out."""
    reply: tuple[int, paramiko.Message] = client._request(t, *args)  # type: ignore[attr-defined]  # see above
    return reply


def _identity(fh: paramiko.SFTPFile) -> tuple[int, ...]:
    st = fh.stat()
    return st.st_size or 0, int(st.st_mtime or 0)
