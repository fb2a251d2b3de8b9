"""``gateway init``: a commented config and the default roles — no secrets.

Two layouts. The production one (:class:`Layout`) is what the systemd units in
``deploy/`` and ``gateway install`` expect: config in /etc/gateway, state in
/var/lib/gateway, zones under /srv/gateway/zones, the console as a user of its own;
``init`` writes only the config and its ``keys/`` folder, because the directories need
owners and modes that only the installer, which creates the users, can give. The
self-contained trial layout (``init_project(DIR)`` without a layout) keeps everything
under DIR and makes its folders at once, for a demo or a test.

The written config is meant to be read: every section says what it is for and
what bank IT has to change. Key files are referenced, not created; ``init``
prints the ``gateway keys generate`` commands that make them for a trial.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import UsageError
from gateway.masking import DEFAULT_ROLES

_HEADER = '''\
# gateway.toml — configuration of the case-file exchange gateway (every key, its type,
# default and meaning: docs/configuration.md).
# Relative paths are relative to this file. `gateway check -c {name}` validates it.

[gateway]
state_dir = "{state_dir}"{state_pad}# ledger, archive, quarantine, audit log, certificates
{database}secret_key = "keys/gateway.sec.asc"        # the gateway's own key pair (mode 0600)
# passphrase_env = "GATEWAY_KEY_PASSPHRASE" # if the secret key has a passphrase
previous_secret_keys = []                  # old gateway keys, decrypt-only, during a key rotation
timezone = "Asia/Shanghai"                 # contract dates and contact hours are local time here
purge_after_days = 30                      # 0..30: days after a contract's end until its data is purged
contact_hours = "08:00-21:00"              # collection actions outside these hours are flagged HOURS
max_daily_attempts = 6                     # more CALL/SMS on one case in one local day: flag ATTEMPTS
# metrics_listen = "127.0.0.1:9464"        # the daemon's /metrics and /healthz; "" switches them off
# Several hosts on one PostgreSQL ledger (docs/operations.md, "Several nodes"): each keeps its own
# state_dir; all mount one shared_dir for archive, staging and certificates.
# shared_dir = "/srv/gateway-shared"
# lease_seconds = 60                       # a dead node's work is taken over after this
# compress_level = 1                       # zlib level of sealed slices: 0 (none) .. 9

[bank]
signing_keys = ["keys/bank.pub.asc"]       # whose signatures on case files are accepted
encrypt_to = ["keys/bank.pub.asc"]         # receipts, results and certificates are encrypted to these
outgoing = {{ kind = "local", path = "{zones}/bank/outgoing"{zopts} }}   # the bank drops case files here
incoming = {{ kind = "local", path = "{zones}/bank/incoming"{zopts} }}   # receipts, results, certificates
# Local zones: a file is taken once it has been left unchanged for settle_seconds (default 2);
# files the gateway places get file_mode (default 0o640: the zone's SFTP group may read them).
# A zone on a remote SFTP server instead (the host key is pinned; no trust on first use):
# [bank.incoming]
# kind = "sftp"
# host = "sftp.bank.example"
# port = 22
# username = "gateway"
# private_key = "keys/sftp_ed25519"         # mode 0600
# known_host = "ssh-ed25519 AAAA..."        # from `ssh-keyscan -t ed25519 sftp.bank.example`
# path = "/incoming"

[console]                                  # the security team's console (`gateway console`)
{console}listen = "127.0.0.1:8080"                  # behind the bank's TLS reverse proxy, or set both:
# tls_cert = "/etc/gateway/console.crt"
# tls_key = "/etc/gateway/console.key"
# allowed_hosts = ["console.bank.example"]   # Host names it answers (default: listen's, localhost)
# trusted_proxy = "127.0.0.1"                # whose X-Forwarded-* it believes (docs/console-behind-nginx.md)
gateway_public_keys = ["keys/gateway.pub.asc"]   # checks certificates, checkpoints (no secret key)
stale_days = 7                             # a slice not collected after this many days is an alert

[schema]
encoding = "utf-8"                         # or "gb18030"; a UTF-8 BOM is accepted either way
delimiter = ","
on_invalid = "reject_batch"                # or "skip_rows": deliver valid rows, report the rest
[schema.columns]                           # canonical field = "header in the bank's file"
# customer_name = "客户姓名"

# Roles: what each kind of agency staff may see. field = full | mask | last4 | region | token | drop;
# a field a role does not list is dropped.
'''

_AGENCY = '''
[[agencies]]
code = "{code}"
name = "{name}"
signing_keys = ["keys/{lower}.pub.asc"]     # accepted signers of this agency's result files
inbox  = {{ kind = "local", path = "{zones}/{code}/inbox"{zopts} }}
outbox = {{ kind = "local", path = "{zones}/{code}/outbox"{zopts} }}
receipts_role = "supervisor"               # whose keys receive receipts for the agency's uploads
  [agencies.contract]
  id = "{contract}"
  start = {start}
  end = {end}                              # last day of the contract
  # terminated_on = 2026-06-30             # set on early termination
{roles}'''


@dataclass(frozen=True)
class AgencyTemplate:
    code: str
    name: str
    roles: tuple[str, ...] = ("supervisor", "collector")


@dataclass(frozen=True)
class Layout:
    """Where a production site keeps what is not its config: what the units in deploy/ and
    ``gateway install`` use unless told otherwise."""

    state_dir: Path = Path("/var/lib/gateway")
    zones_dir: Path = Path("/srv/gateway/zones")
    console_dir: Path = Path("/var/lib/gateway-console")  # the console's own index of the log

    @property
    def ledger(self) -> Path:
        """The SQLite ledger, in a directory of its own: the console (another user, in the
        gateway's group) must be able to create SQLite's -wal and -shm files beside it."""
        return self.state_dir / "ledger" / "gateway.db"


PRODUCTION = Layout()
CONFIG_DIR = Path("/etc/gateway")

_TRIAL_DATABASE = ('# database_url = "postgresql+psycopg://gw@db/gateway"   '
                   "# default: SQLite in state_dir\n")
_PRODUCTION_DATABASE = (
    'database_url = "sqlite:///{ledger}"\n'
    '# database_url = "postgresql+psycopg://gw@db/gateway"   # PostgreSQL instead of SQLite\n')
_PRODUCTION_CONSOLE = (
    "group_access = true                        # its own user, in the gateway's group\n"
    'audit_index = "{index}"   # its index of the audit log, in a directory of its own\n')


def render(name: str, agencies: list[AgencyTemplate], today: dt.date,
           settle_seconds: float | None = None, layout: Layout | None = None) -> str:
    """The text of a fresh gateway.toml (*settle_seconds* set on every zone if given);
    with *layout*, the production one (absolute paths, the console as its own user)."""
    zopts = "" if settle_seconds is None else f", settle_seconds = {settle_seconds:g}"
    if layout is None:
        state, zones, database, console = "var", "zones", _TRIAL_DATABASE, ""
    else:
        state, zones = str(layout.state_dir), str(layout.zones_dir)
        database = _PRODUCTION_DATABASE.format(ledger=layout.ledger)
        console = _PRODUCTION_CONSOLE.format(index=layout.console_dir / "audit-index.sqlite")
    pad = " " * max(1, 29 - len(state))
    out = _HEADER.format(name=name, zopts=zopts, state_dir=state, state_pad=pad,
                         database=database, zones=zones, console=console)
    for role, rules in DEFAULT_ROLES.items():
        out += f"[roles.{role}]\n" + "".join(f'{f} = "{r}"\n' for f, r in rules.items()) + "\n"
    for i, a in enumerate(agencies, start=1):
        lower = a.code.lower()
        roles = "".join(f'  [agencies.roles.{r}]\n  encrypt_to = ["keys/{lower}-{r}.pub.asc"]\n'
                        for r in a.roles)
        out += _AGENCY.format(code=a.code, name=a.name, lower=lower, zopts=zopts, zones=zones,
                              contract=f"C-{today.year}-{i:03d}", start=today.isoformat(),
                              end=(today + dt.timedelta(days=365)).isoformat(), roles=roles)
    return out


def key_names(agencies: list[AgencyTemplate]) -> list[str]:
    """Key files the config refers to, by `gateway keys generate` name."""
    names = ["gateway", "bank"]
    for a in agencies:
        names.append(a.code.lower())
        names += [f"{a.code.lower()}-{r}" for r in a.roles]
    return names


DEFAULT_AGENCIES = [AgencyTemplate("AG001", "Example Collections Co.")]


def init_project(directory: Path, *, agencies: list[AgencyTemplate] | None = None,
                 today: dt.date | None = None, settle_seconds: float | None = None,
                 layout: Layout | None = None) -> Path:
    """Create DIR/gateway.toml and DIR/keys/; refuse to overwrite a config. Without
    *layout*, the self-contained trial: zone folders and var/ under DIR too. With it,
    nothing else: the zones and the state directory need the owners and modes that
    ``gateway install`` gives them once the users exist (folders made here would be
    root's, and sshd's chroot rules and the agencies' groups mended by hand)."""
    agencies = agencies or DEFAULT_AGENCIES
    directory = Path(directory)
    config = directory / "gateway.toml"
    if config.exists():
        raise UsageError(f"{config} already exists; not overwriting it")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(mode=0o700, exist_ok=True)
    if layout is None:
        (directory / "var").mkdir(mode=0o700, exist_ok=True)
        for zone in ("bank/outgoing", "bank/incoming"):
            (directory / "zones" / zone).mkdir(parents=True, exist_ok=True)
        for a in agencies:
            for zone in ("inbox", "outbox"):
                (directory / "zones" / a.code / zone).mkdir(parents=True, exist_ok=True)
    config.write_text(render(config.name, agencies, today or dt.date.today(), settle_seconds,
                             layout), encoding="utf-8")
    return config
