"""``gateway install``: the host set up for a config, one idempotent step at a time.

Each step knows how to tell whether it is already so (a user exists, a directory has its
owner, group and mode, a file its content) and how to make it so; a plan is the list of
them, in the order they depend on each other (users before the directories they own).
``--dry-run`` prints the plan; a run does what is not yet so and says what it changed, so
a second run changes nothing. What the layout is and why: docs/install.md.

Who may read what (the privilege split):

- the daemon's user owns the state directory, reads the config and the key files (group
  of the config: its own group), owns its secret key (0600), and is a member of each
  party's group, whose zones it owns (setgid directories, so every upload is the group's);
- the console's user is in the daemon's group: it reads the config, the public keys, the
  ledger and the audit log (``console.group_access``), and none of the secret key, the
  passphrase file or the zones (their group is the party's);
- each party's logins are in the party's group: chrooted by sshd in the party's directory.

``--root`` puts every file and directory under a directory of the caller's (the tests'),
while users and groups are the host's: nothing can be made "under" a root for those.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.config import Config, SftpZone
from gateway.errors import GatewayError
from gateway.units import (
    AUTHORIZED_KEYS,
    Names,
    Site,
    console_service,
    gateway_service,
    host_path,
    secrets_env,
    site_of,
    sshd_dropin,
)

NOLOGIN = "/usr/sbin/nologin"
UNIT_DIR = Path("/etc/systemd/system")
SSHD_DROPIN = Path("/etc/ssh/sshd_config.d/gateway-zones.conf")


class Accounts(Protocol):
    """The host's users and groups: looked up, and added to."""

    def uid(self, user: str) -> int | None: ...
    def gid(self, group: str) -> int | None: ...
    def members(self, group: str) -> set[str]: ...
    def add_user(self, user: str) -> None: ...
    def add_group(self, group: str) -> None: ...
    def add_member(self, user: str, group: str) -> None: ...


class HostAccounts:
    """The real ones, through the shadow utilities (as an operator would)."""

    def uid(self, user: str) -> int | None:
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            return None

    def gid(self, group: str) -> int | None:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return None

    def members(self, group: str) -> set[str]:
        try:
            g = grp.getgrnam(group)
        except KeyError:
            return set()
        return set(g.gr_mem) | {p.pw_name for p in pwd.getpwall() if p.pw_gid == g.gr_gid}

    def add_user(self, user: str) -> None:
        # a group of that name made earlier (by hand, or a run stopped half-way) is reused
        group = ["--gid", user] if self.gid(user) is not None else ["--user-group"]
        _run(["useradd", "--system", *group, "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", NOLOGIN, user])

    def add_group(self, group: str) -> None:
        _run(["groupadd", "--system", group])

    def add_member(self, user: str, group: str) -> None:
        _run(["usermod", "--append", "--groups", group, user])


def _run(argv: list[str]) -> None:
    # an argv list, no shell: the account tools, with names the configuration checked
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise GatewayError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")


@dataclass
class Step:
    """One thing the host should be. *done* tells whether it already is; *make* makes it."""

    text: str
    done: Callable[[], bool]
    make: Callable[[], None]


@dataclass
class Note:
    level: str  # info | warn
    text: str


@dataclass
class Plan:
    site: Site
    items: list[Step | Note] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def plan(cfg: Config, *, names: Names | None = None, root: Path | None = None,
         accounts: Accounts | None = None) -> Plan:
    """Everything ``gateway install`` would make true for *cfg*, in order."""
    names = names or Names()
    acc = accounts or HostAccounts()
    root = Path(root).absolute() if root is not None else None
    site = site_of(cfg, names, strip=root)

    def fs(p: Path) -> Path:  # where a host path is, here
        return root / p.relative_to("/") if root is not None else p

    b = _Builder(acc, fs)
    p = Plan(site)
    groups = [c.group for c in site.chroots]
    for g in groups:
        b.group(g)
    b.user(names.user)
    b.user(names.console_user)
    b.member(names.console_user, names.user)  # reads the config, ledger and audit log
    for g in groups:
        b.member(names.user, g)  # reads uploads (0640, the party's group) and writes slices
    # the config: root's, read by the gateway's group; never writable by the daemon
    conf = site.config.parent
    b.directory(conf, "root", names.user, 0o750)
    b.file(site.config, "root", names.user, 0o640)
    keys = conf / "keys"
    if fs(keys).is_dir():
        b.directory(keys, "root", names.user, 0o750)
    for path, owner, group, mode in _key_files(cfg, names, root):
        if fs(path).exists():
            b.file(path, owner, group, mode)
        else:
            b.items.append(Note("warn", f"{fs(path)} is not there yet (put it there, mode "
                                        f"{mode:04o}, and run gateway install again)"))
    if fs(secrets_env(site)).exists():
        b.file(secrets_env(site), "root", "root", 0o600)
    # the state: the gateway's; its group (the console) may pass through to what it reads
    state_mode = 0o710 if cfg.console.group_access else 0o700
    b.parents(site.state_dir)
    b.directory(site.state_dir, names.user, names.user, state_mode)
    if site.shared_dir is not None:
        b.parents(site.shared_dir)
        b.directory(site.shared_dir, names.user, names.user, state_mode)
    if site.ledger_dir is not None and cfg.console.group_access:
        b.directory(site.ledger_dir, names.user, names.user, 0o2770)
    if site.console_dir is not None:
        b.parents(site.console_dir)
        b.directory(site.console_dir, names.console_user, names.console_user, 0o700)
    # the zones: each party's sshd chroot (root's, all the way up), its zones inside
    for c in site.chroots:
        b.parents(c.path)
        b.directory(c.path, "root", "root", 0o755)
        b.directory(c.path / "dev", "root", "root", 0o755)  # rsyslog's socket for internal-sftp
        if c.readable is not None:  # the party removes what it fetched: that is collection
            b.directory(c.readable, names.user, c.group, 0o2770)
        if c.writable is not None:
            b.directory(c.writable, names.user, c.group, 0o2770)
    if site.chroots:
        b.parents(AUTHORIZED_KEYS)
        b.directory(AUTHORIZED_KEYS, "root", "root", 0o755)
    for line in site.remote:
        b.items.append(Note("info", line))
    if root is not None and site.chroots:  # what --root cannot make: the root's own parents
        for above in [root, *root.parents]:
            if not _root_only(above):
                b.items.append(Note("warn", f"{above} is not root's alone (or is writable by "
                                            "others): sshd refuses a chroot below it"))
    b.content(UNIT_DIR / "gateway.service", gateway_service(site))
    b.content(UNIT_DIR / "gateway-console.service", console_service(site))
    if site.chroots:
        b.content(SSHD_DROPIN, sshd_dropin(site))
    p.items = b.items
    p.next_steps = _next_steps(cfg, site, root)
    return p


def _key_files(cfg: Config, names: Names, root: Path | None) -> Iterator[tuple[Path, str, str, int]]:
    """(path, owner, group, mode) of every key file the config names: public keys root's
    and the gateway group's to read; the secret keys and SFTP login keys the gateway
    user's alone; the console's TLS key the console user's alone."""
    g = cfg.gateway
    secret = [g.secret_key, *g.previous_secret_keys]
    secret += [z.private_key for _k, z in cfg.zones() if isinstance(z, SftpZone)]
    public = [*cfg.bank.signing_keys, *cfg.bank.encrypt_to, *cfg.console.gateway_public_keys]
    for a in cfg.agencies:
        public += a.signing_keys
        for role in a.roles.values():
            public += role.encrypt_to

    def host(p: Path) -> Path:
        return host_path(p, root)

    for p in dict.fromkeys(secret):
        yield host(p), names.user, names.user, 0o600
    for p in dict.fromkeys(public):
        yield host(p), "root", names.user, 0o640
    if cfg.console.tls_key is not None:
        yield host(cfg.console.tls_key), names.console_user, names.console_user, 0o600
    if cfg.console.tls_cert is not None:
        yield host(cfg.console.tls_cert), "root", names.user, 0o644


class _Builder:
    """Steps in the making; each names what it makes as a person would say it."""

    def __init__(self, acc: Accounts, fs: Callable[[Path], Path]) -> None:
        self.acc = acc
        self.fs = fs
        self.items: list[Step | Note] = []
        self._seen: set[Path] = set()

    def group(self, name: str) -> None:
        self.items.append(Step(f"group {name}", lambda: self.acc.gid(name) is not None,
                               lambda: self.acc.add_group(name)))

    def user(self, name: str) -> None:
        self.items.append(Step(f"system user {name} (its own group, no home, {NOLOGIN})",
                               lambda: self.acc.uid(name) is not None,
                               lambda: self.acc.add_user(name)))

    def member(self, user: str, group: str) -> None:
        self.items.append(Step(f"user {user} in group {group}",
                               lambda: user in self.acc.members(group),
                               lambda: self.acc.add_member(user, group)))

    def _ids(self, owner: str, group: str) -> tuple[int, int] | None:
        uid, gid = self.acc.uid(owner), self.acc.gid(group)
        return None if uid is None or gid is None else (uid, gid)

    def _is(self, path: Path, owner: str, group: str, mode: int, kind: int) -> bool:
        ids = self._ids(owner, group)
        try:
            st = self.fs(path).lstat()
        except FileNotFoundError:
            return False
        return (ids is not None and stat.S_IFMT(st.st_mode) == kind
                and (st.st_uid, st.st_gid) == ids and stat.S_IMODE(st.st_mode) == mode)

    def _set(self, path: Path, owner: str, group: str, mode: int) -> None:
        ids = self._ids(owner, group)
        if ids is None:
            raise GatewayError(f"{path}: user {owner} or group {group} does not exist")
        _own(self.fs(path), *ids, mode)

    def directory(self, path: Path, owner: str, group: str, mode: int) -> None:
        if path in self._seen:
            return
        self._seen.add(path)

        def make() -> None:
            target = self.fs(path)
            if target.is_symlink() or (target.exists() and not target.is_dir()):
                raise GatewayError(f"{target} exists and is not a directory")
            target.mkdir(mode=0o700, exist_ok=True)
            self._set(path, owner, group, mode)

        self.items.append(Step(f"directory {self.fs(path)} {owner}:{group} {mode:04o}",
                               lambda: self._is(path, owner, group, mode, stat.S_IFDIR), make))

    def parents(self, path: Path) -> None:
        """Every directory above *path*: made root's 0755 if missing; an existing one left
        as it is, but for write access by anyone but root, which sshd's chroot refuses and
        which would let another user swap what lies below."""
        for parent in reversed(path.parents):
            if parent == Path("/") or parent in self._seen:
                continue
            self._seen.add(parent)
            target = self.fs(parent)
            self.items.append(Step(f"directory {target} owned by root, writable by no one else",
                                   functools.partial(_root_only, target),
                                   functools.partial(_make_root_only, target)))

    def file(self, path: Path, owner: str, group: str, mode: int) -> None:
        def make() -> None:
            if self.fs(path).is_symlink():
                raise GatewayError(f"{self.fs(path)} is a symbolic link; put the file itself there")
            self._set(path, owner, group, mode)

        self.items.append(Step(f"file {self.fs(path)} {owner}:{group} {mode:04o}",
                               lambda: self._is(path, owner, group, mode, stat.S_IFREG), make))

    def content(self, path: Path, text: str) -> None:
        data = text.encode()

        def done() -> bool:
            target = self.fs(path)
            try:
                st = target.lstat()
            except FileNotFoundError:
                return False
            return (stat.S_ISREG(st.st_mode) and st.st_uid == 0
                    and stat.S_IMODE(st.st_mode) == 0o644 and target.read_bytes() == data)

        def make() -> None:
            target = self.fs(path)
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.new")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chown(tmp, 0, 0)
            tmp.chmod(0o644)
            tmp.replace(target)

        self.items.append(Step(f"file {self.fs(path)} (as written for this config)", done, make))


def _root_only(p: Path) -> bool:
    try:
        st = p.lstat()
    except FileNotFoundError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022


def _own(path: Path, uid: int, gid: int, mode: int) -> None:
    """chown and chmod through one descriptor opened without following a link: a path
    under a directory another user may write (the ledger's, a zone) could be swapped for
    a symlink between a check and a chmod by name — and root would chmod its target."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise GatewayError(f"{path}: cannot open it to set its owner and mode ({exc.strerror}); "
                           "a symlink is never followed") from exc
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode) and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise GatewayError(f"{path} is neither a directory nor a regular file")
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)  # after chown, which clears the setgid bit
    finally:
        os.close(fd)


def _make_root_only(p: Path) -> None:
    """Make a missing parent root's, 0755. An existing one is never changed: it may be
    /tmp, a home, a shared mount — chown or chmod there would break the host. If it is
    not root's or is writable by others, sshd refuses a chroot below it: say so."""
    if p.is_symlink() or (p.exists() and not p.is_dir()):
        raise GatewayError(f"{p} exists and is not a directory")
    if not p.exists():
        p.mkdir(mode=0o755)
        _own(p, 0, 0, 0o755)
        return
    st = p.stat()
    raise GatewayError(f"{p} (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}) is above "
                       "a directory the gateway's parties or users are confined to: it must be "
                       "root's and writable by no one else; the installer changes no existing "
                       "directory it did not make — choose another place, or fix it by hand")


def _next_steps(cfg: Config, site: Site, root: Path | None) -> list[str]:
    n = site.names
    run_as = f"runuser -u {n.user} --"
    lines = []
    if root is None:
        lines.append("systemctl daemon-reload")
    lines += [f"sshd -t && systemctl reload ssh          # the chroots in {SSHD_DROPIN}",
              f"{run_as} gateway check -c {site.config}",
              "systemctl enable --now gateway",
              f"{run_as} gateway users add NAME --role auditor -c {site.config}",
              "systemctl enable --now gateway-console"]
    if not cfg.gateway.db_url.startswith("sqlite:"):
        lines.append("PostgreSQL: give the console's database role SELECT on every table and "
                     "INSERT, UPDATE on console_accounts (docs/install.md)")
    if site.chroots:
        lines.append(f"each party's SSH logins: useradd --gid {site.chroots[-1].group} "
                     f"--no-create-home --home-dir / --shell {NOLOGIN} LOGIN; usermod -p '*' "
                     f"LOGIN; its public key in {AUTHORIZED_KEYS}/LOGIN (root's, 0644)")
    return lines


def execute(p: Plan, *, dry_run: bool) -> Iterable[tuple[str, str]]:
    """(mark, text) per item as it is checked or done: ``ok`` already so, ``todo`` (dry
    run) or ``done`` made so now, ``info``/``warn`` notes. A step that fails stops the
    run (GatewayError or OSError): what came before it stays done, and a rerun resumes."""
    for item in p.items:
        if isinstance(item, Note):
            yield item.level, item.text
        elif item.done():
            yield "ok", item.text
        elif dry_run:
            yield "todo", item.text
        else:
            item.make()
            if not item.done():
                raise GatewayError(f"{item.text}: still not so after making it")
            yield "done", item.text


def reload_services(changed: list[str]) -> list[str]:
    """Without --root, after a run that changed unit files: systemd rereads them, and sshd
    is checked and reloaded if its drop-in changed. Returns what was run."""
    ran = []
    systemctl = shutil.which("systemctl")
    if systemctl and any(UNIT_DIR.as_posix() in t for t in changed):
        _run([systemctl, "daemon-reload"])
        ran.append("systemctl daemon-reload")
    if systemctl and any(SSHD_DROPIN.as_posix() in t for t in changed):
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        _run([sshd, "-t"])
        _run([systemctl, "reload", "ssh"])
        ran.append("sshd -t && systemctl reload ssh")
    return ran
