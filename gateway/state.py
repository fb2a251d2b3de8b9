"""The state directory: what lives where, and the few local-disk helpers the flows share.

Everything under it is ciphertext, identifiers or keys — never plaintext case
data::

    state_dir/                   this node's own
      gateway.db        ledger (SQLite default)
      gateway.lock      one runner per state directory (flock)
      gnupg/            the private keyring, rebuilt at start when a key file changed
      keys.listed.json  what gpg said of each key file, by its bytes (a cache)
      audit/            the hash-chained audit log and its signed checkpoints
    shared_dir/                  = state_dir unless configured: what another node may
      archive/          ciphertexts as received, named by SHA-256      need to finish
      quarantine/       rejected originals, byte for byte               this node's work
      staging/<file>/   sealed slices, manifests and receipts not yet delivered
      staging/checkpoints/  checkpoint copies not yet delivered to the bank
      secrets/tokens/   per-contract keys for the `token` masking rule (0600)
      certificates/     deletion certificates

With several nodes on one PostgreSQL ledger, each keeps its own state directory
and all mount one shared directory: a node that dies leaves a claimed file in
the archive, or committed slices in staging, and the node that takes its lease
over must be able to read them (docs/operations.md).

With ``console.group_access`` the security console runs as a user of its own in the
gateway's group: it must read the ledger, the audit log, the checkpoints and the
certificates, and write the ledger (accounts) and append to the audit log. Those few
paths, and only those, keep group bits (:class:`Modes`); everything else stays the
gateway's own. The SQLite ledger then lives in a directory of its own (setgid, group
writable), where the console may create the ``-wal`` and ``-shm`` files SQLite needs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import signal
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.errors import GatewayError
from gateway.streams import Readable

if TYPE_CHECKING:
    from gateway.config import Config

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class StateBusy(GatewayError):
    """Another gateway process holds the state directory."""

    def __init__(self, message: str, *, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def _read_pid(fd: int) -> int | None:
    raw = os.pread(fd, 32, 0).strip()
    return int(raw) if raw.isdigit() else None


UMASK = 0o077  # everything the gateway creates is readable by its own user only


SHARED = ("archive", "quarantine", "staging", "staging/checkpoints", "secrets/tokens",
          "certificates")


def node_name(root: Path) -> str:
    """This node's name in leases, checkpoints and the audit log: the host name and a short
    hash of the state directory — stable across restarts (so a node restarted after a crash
    resumes its own work at once), and distinct for two state directories on one host."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()).strip("-.")[:48] or "gateway"
    tag = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:6]
    return f"{host}-{tag}"


@dataclass(frozen=True)
class Modes:
    """The mode each entry of the state (and shared) directory should have: the gateway's
    own (files 0600, directories 0700), except, with *group_access*, what the console's
    user reaches through the gateway's group."""

    root: Path
    shared: Path
    ledger_file: Path | None = None  # the SQLite ledger, if that is the database
    group_access: bool = False

    @classmethod
    def of(cls, cfg: Config) -> Modes:
        url = cfg.gateway.db_url
        ledger = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
        return cls(Path(cfg.gateway.state_dir), Path(cfg.gateway.shared),
                   ledger, cfg.console.group_access)

    def group_paths(self) -> dict[Path, int]:
        """The entries the console needs, with their modes (empty without group access).
        Directories: traverse (0710) to reach a named file, list (0750) where the console
        reads every file, and the ledger's own directory setgid and group-writable."""
        if not self.group_access:
            return {}
        audit = self.root / "audit"
        modes = {self.root: 0o710, self.shared: 0o710, audit: 0o750,
                 audit / "checkpoints": 0o750, self.shared / "certificates": 0o750,
                 audit / "audit.jsonl": 0o660, self.root / "gateway.lock": 0o640}
        if self.ledger_file is not None:
            if self.ledger_file.parent not in (self.root, self.shared):
                modes[self.ledger_file.parent] = 0o2770
            for suffix in ("", "-wal", "-shm"):
                modes[Path(f"{self.ledger_file}{suffix}")] = 0o660
        return modes

    def wanted(self, path: Path, is_dir: bool) -> int:
        """The most *path* may grant."""
        if (mode := self.group_paths().get(path)) is not None:
            return mode
        if self.group_access and not is_dir and path.parent in (
                self.root / "audit" / "checkpoints", self.shared / "certificates"):
            return 0o640
        return 0o700 if is_dir else 0o600


class State:
    def __init__(self, root: Path, shared: Path | None = None, *,
                 modes: Modes | None = None) -> None:
        os.umask(UMASK)  # before anything is created: files 0600, directories 0700
        self.root = Path(root)
        self.shared = Path(shared) if shared is not None else self.root
        self.modes = modes or Modes(self.root, self.shared)
        self.node = node_name(self.root)
        if self.shared != self.root:
            self._refuse_split_state()
        (self.root / "audit" / "checkpoints").mkdir(parents=True, exist_ok=True, mode=0o700)
        for sub in SHARED:
            (self.shared / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(self.modes.wanted(self.root, True))
        self.shared.chmod(self.modes.wanted(self.shared, True))
        self._drop_planted_links()

    def _drop_planted_links(self) -> None:
        """With console.group_access another user may write the ledger's directory: a
        ``-wal`` or ``-shm`` there that is a symlink (or not a regular file) would have
        SQLite write through it into whatever it names. Before the ledger opens, such an
        entry is removed — SQLite makes its own again."""
        ledger = self.modes.ledger_file if self.modes.group_access else None
        if ledger is None:
            return
        for suffix in ("-wal", "-shm", "-journal"):
            side = Path(f"{ledger}{suffix}")
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISREG(side.lstat().st_mode):
                    side.unlink()

    @classmethod
    def of(cls, cfg: Config) -> State:
        return cls(cfg.gateway.state_dir, cfg.gateway.shared_dir, modes=Modes.of(cfg))

    def share(self) -> int:
        """Give what the console reads the group bits it needs (console.group_access): the
        ledger's files once the ledger is open, the audit log once written, and every
        checkpoint and certificate. Returns how many entries were changed."""
        changed = 0
        paths = dict(self.modes.group_paths())
        if paths:
            for folder in (self.root / "audit" / "checkpoints", self.shared / "certificates"):
                with contextlib.suppress(FileNotFoundError):
                    paths.update((p, 0o640) for p in folder.iterdir() if not p.name.startswith("."))
        for path, mode in paths.items():
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
                continue
            if _chmod_no_follow(path, mode):
                changed += 1
        return changed

    def publish(self, path: Path) -> None:
        """A checkpoint or certificate just written: readable by the console's group too,
        when the console runs as its own user."""
        if self.modes.group_access:
            _chmod_no_follow(path, 0o640)

    def _refuse_split_state(self) -> None:
        """shared_dir set on a node that ran without it: its archive and staging are still
        under state_dir, where no other node — and, now, not this one — would look."""
        for sub in ("archive", "staging", "certificates", "secrets/tokens"):
            old = self.root / sub
            if old.is_dir() and any(p.name not in ("receipts", "checkpoints")
                                    for p in old.iterdir()):
                raise GatewayError(f"gateway.shared_dir: {old} still holds files from before "
                                   "shared_dir was set; stop the gateway and move archive, "
                                   "quarantine, staging, secrets and certificates from "
                                   f"{self.root} to {self.shared}")

    def tighten(self) -> int:
        """Give anything loose under the state directory (left by an older version, a
        restore, a hand-made copy) the modes the gateway creates: files 0600, directories
        0700. Returns how many were changed."""
        changed = 0
        for base in dict.fromkeys((self.root, self.shared)):
            for path, mode, want in loose_entries(base, self.modes):
                path.chmod(mode & want)
                changed += 1
        return changed

    @property
    def archive(self) -> Path:
        return self.shared / "archive"

    def archived(self, sha256: str) -> Path:
        return self.archive / f"{sha256}.pgp"

    @property
    def quarantine(self) -> Path:
        return self.shared / "quarantine"

    def quarantined(self, sha256: str, name: str) -> Path:
        return self.quarantine / f"{sha256[:16]}-{_SAFE.sub('_', name)[:120]}"

    @property
    def staging_root(self) -> Path:
        return self.shared / "staging"

    def staging(self, file_id: int) -> Path:
        return self.staging_root / str(file_id)

    @property
    def certificates(self) -> Path:
        return self.shared / "certificates"

    def temporary(self, kind: str) -> Path:
        """A temporary name in the archive that only this node's clean-up will remove (the
        archive may be shared with a node copying a file at this very moment)."""
        return self.archive / f".{kind}-{self.node}-{secrets.token_hex(8)}"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One runner per state directory on this host; a second one fails fast. The holder
        writes its pid into the lock file, so a command can hand work to it."""
        fd = os.open(self.root / "gateway.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateBusy(f"another gateway process is running on {self.root}",
                                pid=_read_pid(fd)) from None
            _survive_pass_requests()  # before the pid is where a command can find it
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:  # a pid left behind could be another process's by the next look
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def clean_temporaries(self) -> int:
        """Remove half-written copies a killed run left in the archive (ciphertext, but
        garbage), and of the key listings. Only safe under :meth:`lock`: no other runner is
        writing them."""
        removed = 0
        for pattern in (f".incoming-{self.node}-*", f".verify-{self.node}-*"):
            for path in self.archive.glob(pattern):
                path.unlink(missing_ok=True)
                removed += 1
        for path in self.root.glob(".keys.listed.json.*.part"):  # a save cut short
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def token_secret(self, contract_id: str) -> bytes:
        """The contract's key for the `token` rule: created once, 32 random bytes, mode 0600."""
        path = self.token_secret_path(contract_id)
        if not path.exists():  # written whole, then linked: another node never reads half a key
            tmp = path.with_name(f".{path.name}.{self.node}.{secrets.token_hex(4)}")
            write_private(tmp, secrets.token_bytes(32))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another node made it first: theirs is the key
            finally:
                tmp.unlink()
        return path.read_bytes()

    @property
    def token_secrets(self) -> Path:
        return self.shared / "secrets" / "tokens"

    def token_secret_path(self, contract_id: str) -> Path:
        return self.token_secrets / f"{_SAFE.sub('_', contract_id)}.key"


def _survive_pass_requests() -> None:
    """`gateway retention run` asks the holder of the lock for a pass with SIGUSR1, whose
    default action kills. A daemon installs its handler only when its loop starts, after
    the lock: a request sent in between killed it (signal 10, then a restart loop). So the
    holder ignores the signal from before its pid is published until it has a handler.
    Nothing is lost by ignoring it: a daemon's first pass purges whatever is due, and any
    other holder is a short command, after which `retention run` takes the lock itself."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def runner_active(root: Path) -> bool:
    """Whether a gateway process holds the state directory's lock now (read-only probe)."""
    try:
        fd = os.open(Path(root) / "gateway.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases a lock we took
    return False


def write_private(path: Path, data: bytes) -> None:
    """Write a whole file atomically (temp, fsync, rename, fsync the directory), mode 0600;
    an existing file of that name is replaced — used for documents we re-create the same."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_regular(path: Path, *, limit: int) -> bytes:
    """A small file's bytes, refusing anything that is not a regular file — a FIFO named
    like a checkpoint once hung `audit verify` in ``read_bytes()`` — and anything longer
    than *limit* bytes (OSError either way). Opened without blocking, checked, then read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:  # it grew since fstat: still not a file to trust whole
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
        return data
    finally:
        os.close(fd)


def loose_entries(root: Path, modes: Modes | None = None) -> Iterator[tuple[Path, int, int]]:
    """(path, mode, wanted) for every file or directory under *root* whose mode grants more
    than the gateway's own (files 0600, directories 0700; or what *modes* allows the
    console's group); symlinks and sockets are skipped."""
    modes = modes or Modes(Path(root), Path(root))
    for path, _dirs, files in os.walk(root):
        base = Path(path)
        for p, want in [(base, modes.wanted(base, True)),
                        *((base / f, modes.wanted(base / f, False)) for f in files)]:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            mode = stat.S_IMODE(st.st_mode)
            if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and mode & ~want:
                yield p, mode, want


def copy_hashed(src: Readable, dst: Path | None, *, head: bytes = b"") -> tuple[str, int]:
    """Copy *head* and then *src* into a new file *dst* (fsynced) — or only hash them, when
    *dst* is None — and return the SHA-256 and size. A local write error (a full disk)
    names *dst*, so the one line a person sees says where."""
    h = hashlib.sha256()
    size = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600) if dst is not None else -1
    try:
        chunk = head
        while chunk:
            h.update(chunk)
            size += len(chunk)
            if fd >= 0:
                _write_all(fd, chunk, dst)
            chunk = src.read(256 * 1024)
        if fd >= 0:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(dst)) from exc
    finally:
        if fd >= 0:
            os.close(fd)
    return h.hexdigest(), size


def _write_all(fd: int, data: bytes, path: Path | None) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        view = view[n:]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(256 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _chmod_no_follow(path: Path, mode: int) -> bool:
    """chmod through a descriptor opened without following a link: the ledger's directory
    is the console's to write too, and an entry swapped for a symlink between ``lstat``
    and a chmod by name would hand the console's group the link's target (the secret
    key). Only the daemon's own files are changed; False if *path* was not one."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, OSError):
        return False  # gone, or a symlink (ELOOP): nothing of ours to open up
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            return False
        os.fchmod(fd, mode)
        return True
    finally:
        os.close(fd)
