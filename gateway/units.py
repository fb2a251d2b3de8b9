"""The files the host's services read about the gateway: its two systemd units and the sshd
drop-in that locks each agency in its zones — written by ``gateway install`` from the
config, so that the units' paths, users, groups and ``ReadWritePaths`` are the ones the
installer gave the directories. ``deploy/`` holds what they are for the default layout
(a unit test keeps the two the same).

Paths here are as the host will see them: ``gateway install --root DIR`` writes these
files under DIR, but the paths inside them are DIR's ``/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config, LocalZone
from gateway.errors import ConfigError

VENV = Path("/opt/gateway/.venv")
BANK = "bank"  # the bank's group is the agency-group pattern with this for the code
# The parties' public keys, one file per login, root's: their logins have no home of their
# own (the chroot's / is theirs to see, not to write), so sshd's default would be shared.
AUTHORIZED_KEYS = Path("/etc/ssh/gateway-authorized-keys")


# The systemd sandbox both units share: what neither process needs of the host.
_SANDBOX = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
"""
_NO_CAPABILITIES = """\
SystemCallArchitectures=native
CapabilityBoundingSet=
AmbientCapabilities=
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
"""

@dataclass(frozen=True)
class Names:
    """The host accounts the gateway runs under; overridable so that a test can use
    names of its own."""

    user: str = "gateway"
    console_user: str = "gateway-console"
    agency_group: str = "gw-{code}"  # {code}: the agency's code, lowercased

    def group_of(self, code: str) -> str:
        return self.agency_group.format(code=code.lower())


@dataclass(frozen=True)
class Chroot:
    """One party's directory on the host's sshd: root-owned, holding its two zones.
    *writable* is the zone the party uploads to, *readable* the one it fetches from."""

    key: str  # the config key of the party, e.g. agencies[0]
    path: Path
    group: str
    readable: Path | None
    writable: Path | None


@dataclass(frozen=True)
class Site:
    """What the installer makes, from one config, as the host will see it."""

    config: Path
    state_dir: Path
    shared_dir: Path | None
    ledger_dir: Path | None  # the SQLite ledger's own directory (console.group_access)
    console_dir: Path | None  # the console's index directory, outside state_dir
    chroots: list[Chroot]
    remote: list[str]  # one line per SFTP zone: nothing to make on this host
    names: Names

    @property
    def zones_root(self) -> Path | None:
        """What the daemon's unit may write of the zones: their common directory."""
        paths = [str(c.path) for c in self.chroots]
        if not paths:
            return None
        common = Path(os.path.commonpath(paths))
        return common if common != Path("/") else None


def host_path(p: Path, strip: Path | None) -> Path:
    """*p* as the host will see it: *strip* is a root the config's paths may already lie
    in (``gateway install --root``), taken off."""
    p = Path(p).absolute()
    if strip is not None and (p == strip or strip in p.parents):
        return Path("/") / p.relative_to(strip)
    return p


def site_of(cfg: Config, names: Names, strip: Path | None = None) -> Site:
    """The site *cfg* describes, every path the host's (see :func:`host_path`)."""

    def host(p: Path) -> Path:
        return host_path(p, strip)

    g = cfg.gateway
    url = g.db_url
    ledger_dir = None
    if url.startswith("sqlite:///"):
        parent = Path(url.removeprefix("sqlite:///")).parent
        if parent not in (g.state_dir, g.shared):
            ledger_dir = host(parent)
    console_dir = None
    if cfg.console.audit_index is not None:
        index_dir = host(cfg.console.audit_index.parent)
        state = host(g.state_dir)
        if index_dir != state and state not in index_dir.parents:
            console_dir = index_dir
    chroots: list[Chroot] = []
    remote: list[str] = []
    parties = [("bank", BANK, cfg.bank.outgoing, cfg.bank.incoming, "outgoing", "incoming")]
    parties += [(cfg.zone_key(cfg.zone_name(a.code, "inbox")).rpartition(".")[0], a.code, a.outbox, a.inbox,
                 "outbox", "inbox") for a in cfg.agencies]
    for key, code, up, down, up_name, down_name in parties:
        local: dict[str, Path] = {}
        for box, zone in ((up_name, up), (down_name, down)):
            if isinstance(zone, LocalZone):
                local[box] = host(zone.path)
            else:
                remote.append(f"{key}.{box}: an SFTP zone on {zone.host}: nothing to make on "
                              "this host")
        if not local:
            continue
        parents = {p.parent for p in local.values()}
        if len(parents) > 1:
            raise ConfigError(f"{key}.{down_name}: {local[down_name]} and {key}.{up_name} "
                              f"{local[up_name]} must lie in one directory, the party's sshd "
                              "chroot")
        chroot = Chroot(key, parents.pop(), names.group_of(code), local.get(down_name),
                        local.get(up_name))
        for other in chroots:  # one group, one chroot per party: a shared one is a shared zone
            if other.group == chroot.group or other.path == chroot.path:
                raise ConfigError(f"{key}: its sshd group {chroot.group} or chroot {chroot.path} "
                                  f"is {other.key}'s too; every party needs its own (an agency "
                                  f"code differing only in case, or the code {BANK!r}?)")
        if len(chroot.group) > 32:
            raise ConfigError(f"{key}: the group name {chroot.group} is longer than the 32 "
                              "characters a Linux group may have; shorten --agency-group")
        chroots.append(chroot)
    return Site(config=host(cfg.source), state_dir=host(g.state_dir),
                shared_dir=host(g.shared_dir) if g.shared_dir else None, ledger_dir=ledger_dir,
                console_dir=console_dir, chroots=chroots, remote=remote, names=names)


def secrets_env(site: Site) -> Path:
    """The passphrase file the daemon's unit reads (root's only), beside the config."""
    return site.config.parent / "secrets.env"


def gateway_service(site: Site) -> str:
    n = site.names
    writable = [site.state_dir, *([site.shared_dir] if site.shared_dir else []),
                *([site.zones_root] if site.zones_root else [])]
    return f"""\
# /etc/systemd/system/gateway.service — the case-file exchange gateway.
# Written by `gateway install` (docs/install.md), which also makes the user, the groups and
# every directory named here with its owner and mode; rerun it after changing the config.
#   systemctl daemon-reload && systemctl enable --now gateway
#   journalctl -u gateway -f          # operational logs, one JSON object per line
[Unit]
Description=Case-file exchange gateway (bank <-> collection agencies)
Documentation=file:///opt/gateway/docs/install.md
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={n.user}
Group={n.user}
Environment=GATEWAY_CONFIG={site.config}
# If the gateway's secret key has a passphrase (gateway.passphrase_env), keep it out of
# the unit file: EnvironmentFile is readable by root only.
EnvironmentFile=-{secrets_env(site)}
ExecStartPre={VENV}/bin/gateway check
ExecStart={VENV}/bin/gateway run
# SIGTERM: the file in hand is finished or rolled back, then exit 0.
KillSignal=SIGTERM
TimeoutStopSec=120
Restart=on-failure
RestartSec=10s
UMask=0077

# Hardening: the gateway needs its state dir, its local zones, and the network for SFTP.
{_SANDBOX}MemoryDenyWriteExecute=yes
{_NO_CAPABILITIES}ReadOnlyPaths={site.config.parent}
ReadWritePaths={' '.join(map(str, writable))}

[Install]
WantedBy=multi-user.target
"""


def console_service(site: Site) -> str:
    n = site.names
    writable = [f"-{site.ledger_dir}" if site.ledger_dir else None,
                f"-{site.state_dir / 'audit' / 'audit.jsonl'}",
                str(site.console_dir) if site.console_dir else None]
    zones = [site.zones_root] if site.zones_root else [c.path for c in site.chroots]
    hidden = [f"-{site.config.parent / 'keys' / 'gateway.sec.asc'}", f"-{secrets_env(site)}",
              *(f"-{z}" for z in zones)]
    return f"""\
# /etc/systemd/system/gateway-console.service — the security team's console.
# Written by `gateway install` (docs/install.md). Its own user, in the gateway's group
# ([console] group_access = true): it reads the ledger and the audit log, appends its own
# audit entries (console.*), writes its accounts in the ledger and keeps its index of the
# log in a directory of its own. It can never read the gateway's secret key (mode 0600,
# owner {n.user}), the passphrase file or a zone — and they are hidden from this unit too.
#   gateway users add alice --role auditor    # as the gateway's user: runuser -u {n.user} -- …
#   systemctl daemon-reload && systemctl enable --now gateway-console
#   Serve it behind the bank's TLS reverse proxy, or set [console] tls_cert and tls_key.
#   With PostgreSQL: a role with SELECT on every table and INSERT/UPDATE on console_accounts.
[Unit]
Description=Gateway security-team console
Documentation=file:///opt/gateway/docs/install.md
After=network-online.target gateway.service
Wants=network-online.target

[Service]
Type=simple
User={n.console_user}
Group={n.console_user}
SupplementaryGroups={n.user}
Environment=GATEWAY_CONFIG={site.config}
ExecStart={VENV}/bin/gateway console
# The first start indexes the whole audit log (~50 s for a million entries).
TimeoutStartSec=300
Restart=on-failure
RestartSec=5s
UMask=0077

{_SANDBOX}{_NO_CAPABILITIES}ReadOnlyPaths={site.config.parent} {site.state_dir}
ReadWritePaths={' '.join(p for p in writable if p)}
# Never: the gateway's secret key, its passphrase file, the zones (the console needs none).
InaccessiblePaths={' '.join(hidden)}

[Install]
WantedBy=multi-user.target
"""


def sshd_dropin(site: Site) -> str:
    """One Match block per party with local zones: its logins (members of its group)
    locked in its directory, SFTP only, every file they open logged."""
    n = site.names
    example = site.chroots[-1] if site.chroots else None
    head = f"""\
# /etc/ssh/sshd_config.d/gateway-zones.conf — the parties fetch and upload their files over
# SFTP from the gateway's local zones. Written by `gateway install` (docs/install.md) from
# gateway.toml. One block per party: its staff's logins are in its group, locked in its
# directory, with SFTP only — and internal-sftp logs each file they open, read and remove,
# at INFO, to <chroot>/dev/log (rsyslog listens there: deploy/rsyslog.d/gateway-sftp.conf).
#
# The chroot and every directory above it must be owned by root and writable by no one
# else (sshd refuses it otherwise); `gateway install` made them so, and the zones inside
# owned by {n.user}, group the party's, setgid — as if by:
"""
    if example is not None:
        grp = example.group
        login = f"{example.path.name.lower()}-anna"
        head += f"""\
#   groupadd --system {grp}
#   install -d -o root -g root -m 0755 {example.path} {example.path / 'dev'}
"""
        if example.readable:
            head += f"#   install -d -o {n.user} -g {grp} -m 2770 {example.readable}\n"
        if example.writable:
            head += f"#   install -d -o {n.user} -g {grp} -m 2770 {example.writable}\n"
        head += f"""\
# A login of the party's staff, key login only (but not a locked account), its public
# key in a root-owned file named after it:
#   useradd --gid {grp} --no-create-home --home-dir / --shell /usr/sbin/nologin {login}
#   usermod -p '*' {login}
#   install -o root -g root -m 0644 {login}.pub {AUTHORIZED_KEYS}/{login}
# and, for an agency, map each login to its role in gateway.toml:
#   [[agencies]] code = "…" … ssh_users = {{ "{login}" = "collector" }}
"""
    head += "# Check with `sshd -t`, then `systemctl reload ssh`.\n"
    blocks = "".join(f"""
Match Group {c.group}
    ChrootDirectory {c.path}
    AuthorizedKeysFile {AUTHORIZED_KEYS}/%u
    ForceCommand internal-sftp -l INFO -u 0027
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    AllowTcpForwarding no
    AllowStreamLocalForwarding no
    AllowAgentForwarding no
    X11Forwarding no
    PermitTunnel no
    PermitTTY no
""" for c in site.chroots)
    return head + blocks
