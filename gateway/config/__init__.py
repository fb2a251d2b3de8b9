"""``gateway.toml``: pydantic models, loading, and errors that name the key path.

Every problem becomes one line ``<file>: <key.path>: <what is wrong>`` so bank IT
can fix it without reading code. Structure and values are checked here; key
files (which need gpg) are checked by :mod:`gateway.crypto.service`. The sections'
common base is :mod:`.base`; the console's and the access log's sections are
:mod:`.console`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
import posixpath
import re
import zoneinfo
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway import identifiers
from gateway.config.alerts import AlertsSection
from gateway.config.base import (
    _FILE_MODE_HELP,
    _HOSTKEY_TYPES,
    AGENCY_CODE_RE,
    MAX_PURGE_AFTER_DAYS,
    ROLE_NAME_RE,
    ConfigPath,
    FileMode,
    _loc,
    _message,
    _Model,
    read_toml,
    within,
)
from gateway.config.console import AccessSection, ConsoleSection
from gateway.config.forward import Forward, SyslogForward, WebhookForward, name_problems
from gateway.config.trust import inside_zone_problems
from gateway.config.unmask import UnmaskSection
from gateway.config.unmask import problems as unmask_problems
from gateway.errors import ConfigError
from gateway.masking import Rule, rule_problem
from gateway.validation.schema import CASE_FIELDS

__all__ = [
    "AGENCY_CODE_RE", "MAX_PURGE_AFTER_DAYS", "ROLE_NAME_RE", "AccessSection", "Agency",
    "AgencyRole", "BankSection", "Config", "ConfigPath", "ConsoleSection", "Contract", "FileMode",
    "GatewaySection", "LocalZone", "SchemaSection", "SftpZone", "SyslogForward", "WebhookForward",
    "load"]


class LocalZone(_Model):
    kind: Literal["local"] = Field(
        description='"local": a directory on this host (or on a filesystem mounted here).')
    path: ConfigPath = Field(
        description="The zone's directory. Every zone needs a directory of its own, outside "
                    "gateway.state_dir and gateway.shared_dir.")
    settle_seconds: float = Field(  # left unchanged this long = complete
        default=2.0, ge=0, le=600,
        description="A file is taken once nothing has changed it (size, modification or change "
                    "time) for this many seconds, so a file still being written is never read "
                    "half-way.")
    file_mode: FileMode = Field(default=0o640, description=_FILE_MODE_HELP)

    def describe(self) -> str:
        return f"local:{self.path}"


class SftpZone(_Model):
    kind: Literal["sftp"] = Field(description='"sftp": a directory on a remote SFTP server.')
    host: str = Field(min_length=1, description="The SFTP server's host name or IP address.")
    port: int = Field(default=22, ge=1, le=65535, description="The SFTP server's port.")
    username: str = Field(min_length=1, description="The gateway's login on the SFTP server.")
    private_key: ConfigPath = Field(
        description="The SSH private key file the gateway logs in with (file mode 0600).")
    passphrase_env: str | None = Field(
        default=None, description="Name of the environment variable holding the private key's "
                                  "passphrase, if it has one.")
    known_host: str = Field(
        description='The server\'s pinned host key, such as "ssh-ed25519 AAAA…" as '
                    "`ssh-keyscan -t ed25519 HOST` prints it (a known_hosts line \"host type "
                    "key\" is accepted too). There is no trust on first use.")
    path: str = Field(description="The zone's directory on the server, as an absolute path.")
    settle_seconds: float = Field(  # stability check between two polls
        default=2.0, ge=0.1, le=600,
        description="A remote file is taken once its size and modification time have stayed "
                    "the same for this many seconds.")
    file_mode: FileMode = Field(default=0o640, description=_FILE_MODE_HELP)

    @field_validator("known_host")
    @classmethod
    def _pinned_key(cls, v: str) -> str:
        parts = v.split()
        if len(parts) >= 3 and parts[1] in _HOSTKEY_TYPES:
            parts = parts[1:]  # a known_hosts line "host type key" is accepted too
        if len(parts) < 2 or parts[0] not in _HOSTKEY_TYPES:
            raise ValueError('must be a pinned host key such as "ssh-ed25519 AAAA…" '
                             "(ssh-keyscan prints it); there is no trust on first use")
        try:
            base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("host key is not valid base64") from None
        return f"{parts[0]} {parts[1]}"

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not PurePosixPath(v).is_absolute():
            raise ValueError("must be an absolute path on the SFTP server")
        return v

    def describe(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}{self.path}"


Zone = Annotated[LocalZone | SftpZone, Field(discriminator="kind")]


def _hours(v: str) -> str:
    m = re.fullmatch(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})", v)
    if not m:
        raise ValueError('must look like "08:00-21:00"')
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
        raise ValueError("is not a valid time range")
    if (h1, m1) >= (h2, m2):
        raise ValueError("start must be before end (a range over midnight is not supported)")
    return v


class GatewaySection(_Model):
    state_dir: ConfigPath = Field(
        description="The gateway's own directory: ledger (when SQLite), keyring, archive, "
                    "quarantine, audit log, certificates. Only the gateway's user may read it; "
                    "zones must lie outside it.")
    database_url: str | None = Field(
        default=None,
        description="The ledger's database, e.g. \"postgresql+psycopg://gw@db/gateway\" (needed "
                    "when several nodes share the work). Unset: SQLite, gateway.db in state_dir.")
    secret_key: ConfigPath = Field(
        description="The gateway's own OpenPGP key pair file (file mode 0600): it signs what the "
                    "gateway sends and decrypts what is sent to it.")
    passphrase_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the secret key's passphrase, if "
                    "it has one; the variable must be set wherever the gateway starts.")
    previous_secret_keys: list[ConfigPath] = Field(
        default=[], description="Old gateway key files during a key rotation: used only to "
                                "decrypt what was encrypted to them.")
    timezone: str = Field(
        default="Asia/Shanghai",
        description="The local time zone, by its IANA name such as \"Asia/Shanghai\": contract "
                    "dates, contact hours and report months are local time here.")
    purge_after_days: int = Field(
        default=30, ge=0,
        description="Days after a contract's end (or early termination) until its data is "
                    "purged: at most 30, since data must be deleted within 30 days of a "
                    "contract's end.")
    contact_hours: Annotated[str, AfterValidator(_hours)] = Field(
        default="08:00-21:00",
        description="The hours in which collection actions are allowed, local time, as "
                    "\"HH:MM-HH:MM\" (the end may be 24:00); actions outside them are flagged "
                    "HOURS. The start must be before the end: a range over midnight is not "
                    "supported.")
    max_daily_attempts: int = Field(
        default=6, ge=1, le=1000,
        description="Calls and text messages on one case in one local day beyond this number "
                    "are flagged ATTEMPTS.")
    max_plaintext_mb: int = Field(
        default=4096, ge=1,
        description="The most an incoming file may decrypt to, in MiB; a file that decrypts to "
                    "more is refused (the cap against compression bombs).")
    metrics_listen: str = Field(  # /metrics and /healthz; "" switches them off
        default="127.0.0.1:9464",
        description="Where the running gateway serves /metrics and /healthz, as \"host:port\" "
                    "(port 0: any free port); \"\" switches them off.")
    # Several nodes on one PostgreSQL ledger: where any node finds another's work to finish
    # (archive, quarantine, staging, certificates, token keys); default: state_dir.
    shared_dir: ConfigPath | None = Field(
        default=None,
        description="Several nodes on one PostgreSQL ledger: the directory they all mount, where "
                    "any node finds another's work to finish (archive, quarantine, staging, "
                    "certificates, token keys). Zones must lie outside it. Unset: state_dir.")
    lease_seconds: int = Field(  # a dead node's work is taken over after
        default=60, ge=5, le=3600,
        description="Several nodes: a node's hold on a piece of work lasts this long unless "
                    "renewed, so a dead node's work is taken over after this many seconds.")
    # zlib level of what the gateway seals (slices, receipts, results), 0 = none. Level 1:
    # 2.5x less gpg CPU than 6 for 16 % more bytes (docs/engineering/performance.md, "Compression").
    compress_level: int = Field(
        default=1, ge=0, le=9,
        description="zlib level of what the gateway encrypts (slices, receipts, results): 0 is "
                    "none, 9 the smallest. Level 1 costs about 2.5 times less CPU than 6 for "
                    "16 % more bytes.")

    @field_validator("metrics_listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v and not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}", v):
            raise ValueError('must be "host:port" such as "127.0.0.1:9464", or "" to switch '
                             "the endpoint off")
        if v and not 0 <= int(v.rpartition(":")[2]) < 65536:
            raise ValueError("port must be 0..65535 (0: any free port)")
        return v

    @field_validator("purge_after_days")
    @classmethod
    def _at_most_30(cls, v: int) -> int:
        if v > MAX_PURGE_AFTER_DAYS:
            raise ValueError(f"is {v}, but data must be deleted within {MAX_PURGE_AFTER_DAYS} days "
                             "of a contract's end (allowed: 0..30)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'"{v}" is not a known time zone (e.g. "Asia/Shanghai")') from None
        return v

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def shared(self) -> Path:
        return self.shared_dir or self.state_dir

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'gateway.db'}"

    @property
    def contact_window(self) -> tuple[dt.time, dt.time]:
        a, b = self.contact_hours.split("-")
        end = dt.time.max if b == "24:00" else dt.time.fromisoformat(b)
        return dt.time.fromisoformat(a), end


class BankSection(_Model):
    signing_keys: list[ConfigPath] = Field(
        min_length=1, description="The bank's public key files whose signatures on case files "
                                  "are accepted.")
    encrypt_to: list[ConfigPath] = Field(
        min_length=1, description="The bank's public key files that receipts, results, "
                                  "certificates and reports are encrypted to.")
    outgoing: Zone = Field(description="The zone where the bank drops case files.")
    incoming: Zone = Field(
        description="The zone where the gateway places what the bank receives: receipts, "
                    "results, deletion certificates, audit checkpoints, monthly reports.")


class SchemaSection(_Model):
    encoding: Literal["utf-8", "gb18030"] = Field(
        default="utf-8", description="Character encoding of the bank's case files; a UTF-8 "
                                     "byte order mark is accepted either way.")
    delimiter: str = Field(
        default=",", min_length=1, max_length=1,
        description="The one character that separates fields in the bank's case files, such as "
                    "\",\", \";\", \"\\t\" or \"|\"; a quote, a line end or NUL cannot.")
    on_invalid: Literal["reject_batch", "skip_rows"] = Field(
        default="reject_batch",
        description="A case file with some invalid rows: \"reject_batch\" rejects it whole; "
                    "\"skip_rows\" delivers the valid rows and reports the rest in the receipt.")
    columns: dict[str, str] = Field(
        default={},
        description="The headers of the bank's file where they differ from the canonical field "
                    "names: canonical field = \"header in the bank's file\". A header may stand "
                    "for one field only and must not be empty.")

    @field_validator("delimiter")
    @classmethod
    def _separates(cls, v: str) -> str:
        """A quote, a line end or NUL cannot separate fields: no export writes them, and a
        file read with one is read as something else than was meant."""
        if v in ('"', "\r", "\n", "\x00"):
            raise ValueError(f"{v!r} cannot separate fields (try \",\", \";\", \"\\t\" or \"|\")")
        return v

    @field_validator("columns")
    @classmethod
    def _canonical(cls, v: dict[str, str]) -> dict[str, str]:
        for name, header in v.items():
            if name not in CASE_FIELDS:
                raise ValueError(f'"{name}" is not a canonical case field')
            if not header.strip():
                raise ValueError(f"{name}: header must not be empty")
        headers = [h.strip() for h in v.values()]
        dup = {h for h in headers if headers.count(h) > 1}
        if dup:
            raise ValueError(f"header {sorted(dup)[0]!r} is mapped to more than one field")
        return v

    def header_for(self, field: str) -> str:
        return self.columns.get(field, field)


class Contract(_Model):
    id: str = Field(
        pattern=f"^{identifiers.CONTRACT_ID}$",
        description="The contract's id, used by no other agency: 1 to 64 letters, digits, \".\", "
                    "\"_\" or \"-\", beginning with a letter or digit.")
    start: dt.date = Field(description="The contract's first day.")
    end: dt.date = Field(description="The contract's last day; not before start.")
    terminated_on: dt.date | None = Field(
        default=None,
        description="Set on early termination: the contract's end from then on (between start "
                    "and end), from which the purge deadline counts.")

    @model_validator(mode="after")
    def _order(self) -> Contract:
        if self.end < self.start:
            raise ValueError("end is before start")
        if self.terminated_on is not None and not self.start <= self.terminated_on <= self.end:
            raise ValueError("terminated_on must lie between start and end")
        return self

    @property
    def effective_end(self) -> dt.date:
        return self.terminated_on or self.end


class AgencyRole(_Model):
    encrypt_to: list[ConfigPath] = Field(
        min_length=1, description="Public key files of the staff in this role: the role's "
                                  "slices are encrypted to these keys only.")


class Agency(_Model):
    code: str = Field(
        pattern=AGENCY_CODE_RE,
        description="The agency's code, used by no other agency, as case files' agency_code "
                    "and file names carry it: 1 to 32 letters, digits, \"_\" or \"-\", beginning "
                    "with a letter or digit (no dots).")
    name: str = Field(min_length=1, max_length=200,
                      description="The agency's name, as people read it.")
    signing_keys: list[ConfigPath] = Field(
        min_length=1, description="The agency's public key files whose signatures on results "
                                  "files are accepted.")
    inbox: Zone = Field(description="The zone where the gateway places the agency's slices, "
                                    "manifests and the receipts for its results files.")
    outbox: Zone = Field(description="The zone where the agency drops its results files.")
    contract: Contract = Field(
        description="The agency's contract: its end decides when the agency's data is purged.")
    roles: dict[str, AgencyRole] = Field(
        description="The roles the agency's staff work in, each one defined under [roles], with "
                    "the keys its slices are encrypted to. At least one.")
    acknowledge_within_days: int | None = Field(
        default=None, ge=1, le=90,
        description="The agency runs the agency kit (gateway-agency), which acknowledges each "
                    "batch it received whole: a slice or manifest not acknowledged this many "
                    "days after delivery is overdue (gateway status, the console, the monthly "
                    "report, an alert), and the agency's deletion attestation is expected "
                    "within 30 days of the contract's end. Unset: the agency does not use the "
                    "kit and neither is expected.")
    receipts_role: str = Field(
        default="supervisor",
        description="The role whose keys receive the receipts for the agency's results files; "
                    "one of the agency's roles.")
    # SSH logins of the agency's staff on the host's sshd, and the role each works in
    # (docs/security-team.md): who fetched a slice is read from internal-sftp's log by login.
    ssh_users: dict[str, str] = Field(
        default={},
        description="The SSH logins of the agency's staff on this host's sshd and the role each "
                    "works in, e.g. { \"ag001-anna\" = \"collector\" }: who fetched a slice is read "
                    "from internal-sftp's log by login. A login (up to 64 letters, digits, "
                    "\".\", \"_\", \"@\" or \"-\", not beginning with \"@\" or \"-\") belongs to "
                    "one agency.")


class Config(_Model):
    gateway: GatewaySection = Field(
        description="The gateway itself: its directories, its key, local time, retention and "
                    "the limits it enforces.")
    console: ConsoleSection = Field(
        default_factory=ConsoleSection,
        description="The security team's console (`gateway console`): where it listens, and "
                    "its TLS files if it serves HTTPS itself rather than behind the bank's "
                    "reverse proxy.")
    access: AccessSection = Field(
        default_factory=AccessSection,
        description="Access evidence: who fetched which delivered file, read from "
                    "internal-sftp's log as rsyslog writes it (rotation loses and doubles "
                    "nothing).")
    bank: BankSection = Field(description="The bank: its keys and its two zones.")
    schema_: SchemaSection = Field(
        default_factory=SchemaSection, alias="schema",
        description="How the bank's case files are read: encoding, delimiter, headers, and what "
                    "happens to invalid rows.")
    roles: dict[str, dict[str, Rule]] = Field(
        description="What each kind of agency staff may see: per role, canonical case field = "
                    "rule; a field a role does not list is dropped. A role name is a lowercase "
                    "letter, then up to 31 lowercase letters, digits or \"_\". Every role must "
                    "keep case_id (agencies report results by it).")
    agencies: list[Agency] = Field(
        min_length=1, description="One [[agencies]] table per collection agency.")
    forward: list[Forward] = Field(default=[], description=(
        "Where the daemon sends a copy of every audit entry, at least once and in order "
        "(docs/operations.md, \"Forwarding the audit log to a SIEM\"): one [[forward]] table "
        "per destination, kind = \"syslog\" or \"webhook\"."))
    alerts: AlertsSection | None = Field(default=None, description=(
        "Who is told when something needs a person, by e-mail and webhook "
        "(docs/operations.md, \"Alerts\"). Unset: the daemon neither keeps nor sends alerts."))
    unmask: UnmaskSection | None = Field(default=None, description=(
        "Unmasking by approval (docs/operations.md, \"Unmasking by approval\"): which fields "
        "each role may ask to see for named cases, for which purposes, and how many approvers "
        "decide. Unset: agencies' unmask requests are refused."))

    # Set by load(); not part of the file.
    source: Path = Field(default=Path("gateway.toml"), exclude=True,
                         description="The file the configuration was read from (not a key).")
    sha256: str = Field(default="", exclude=True,
                        description="The SHA-256 of the file read (not a key): the audit log "
                                    "records which configuration was in force.")

    def agency(self, code: str) -> Agency:
        for a in self.agencies:
            if a.code == code:
                return a
        raise KeyError(code)

    def ssh_login(self, login: str) -> tuple[str, str] | None:
        """(agency code, role) of an SSH login, or None for a login no agency names."""
        for a in self.agencies:
            if login in a.ssh_users:
                return a.code, a.ssh_users[login]
        return None

    def zone_name(self, code: str, box: Literal["inbox", "outbox"]) -> str:
        """The name an agency's zone goes by in status, the ledger, the audit log and the
        metrics: ``AG001.inbox``. By code, not by list position, so reordering the agencies
        in the file renames nothing."""
        self.agency(code)  # a code no agency has is a bug, not a new zone
        return f"{code}.{box}"

    def zone_key(self, name: str) -> str:
        """The config key path that configures the zone called *name* (``AG001.inbox`` ->
        ``agencies[0].inbox``): what a misconfiguration message names."""
        code, _, box = name.rpartition(".")
        for i, a in enumerate(self.agencies):
            if a.code == code:
                return f"agencies[{i}].{box}"
        return name  # bank.outgoing, bank.incoming: their name is their key

    def zones(self) -> list[tuple[str, LocalZone | SftpZone]]:
        """Every zone with its name (``bank.outgoing``, ``AG001.inbox``)."""
        out: list[tuple[str, LocalZone | SftpZone]] = [
            ("bank.outgoing", self.bank.outgoing), ("bank.incoming", self.bank.incoming)]
        for a in self.agencies:
            out += [(self.zone_name(a.code, "inbox"), a.inbox),
                    (self.zone_name(a.code, "outbox"), a.outbox)]
        return out


def _cross_checks(cfg: Config) -> list[str]:
    """Rules that span sections; each problem names its key path."""
    problems: list[str] = []
    for role, rules in cfg.roles.items():
        if not ROLE_NAME_RE.match(role):
            problems.append(f"roles.{role}: role names must match [a-z][a-z0-9_]{{0,31}}")
        if not rules:
            problems.append(f"roles.{role}: a role must keep at least case_id")
        for field, rule in rules.items():
            if field not in CASE_FIELDS:
                problems.append(f'roles.{role}.{field}: "{field}" is not a canonical case field')
                continue
            if (why := rule_problem(field, rule)) is not None:
                problems.append(f"roles.{role}.{field}: {why}")
        if rules and rules.get("case_id", Rule.DROP) is Rule.DROP:
            problems.append(f"roles.{role}.case_id: every role must keep case_id "
                            "(agencies report results by it)")
    codes: dict[str, int] = {}
    contracts: dict[str, int] = {}
    logins: dict[str, str] = {}
    for i, a in enumerate(cfg.agencies):
        where = f"agencies[{i}]"
        if a.code in codes:
            problems.append(f"{where}.code: {a.code} is already used by agencies[{codes[a.code]}]")
        codes.setdefault(a.code, i)
        if a.contract.id in contracts:
            problems.append(f"{where}.contract.id: {a.contract.id} is already used by "
                            f"agencies[{contracts[a.contract.id]}]")
        contracts.setdefault(a.contract.id, i)
        if not a.roles:
            problems.append(f"{where}.roles: agency {a.code} has no roles; it needs at least one "
                            "role with keys to receive anything")
        for role in a.roles:
            if role not in cfg.roles:
                problems.append(f'{where}.roles.{role}: role "{role}" is not defined under [roles]')
        if a.roles and a.receipts_role not in a.roles:
            problems.append(f'{where}.receipts_role: agency {a.code} has no role '
                            f'"{a.receipts_role}" to receive receipts')
        for login, role in a.ssh_users.items():
            if not re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._@-]{0,63}", login):
                problems.append(f'{where}.ssh_users: "{login}" is not an SSH login name')
            elif login in logins:
                problems.append(f'{where}.ssh_users.{login}: the login is already mapped by '
                                f"{logins[login]} (a login belongs to one agency)")
            logins.setdefault(login, where)
            if role not in a.roles:
                problems.append(f'{where}.ssh_users.{login}: agency {a.code} has no role "{role}"')
    problems += _zone_aliases(cfg)
    if cfg.unmask is not None:
        problems += unmask_problems(cfg.unmask, cfg.roles, CASE_FIELDS)
    problems += name_problems(cfg.forward)
    url = cfg.gateway.db_url
    if cfg.console.group_access and url.startswith("sqlite:///") and Path(
            url.removeprefix("sqlite:///")).parent in (cfg.gateway.state_dir, cfg.gateway.shared):
        problems.append("console.group_access: the SQLite ledger must have a directory of its own, "
                        "where the console may create SQLite's -wal and -shm files; set "
                        'gateway.database_url = "sqlite:///<state_dir>/ledger/gateway.db"')
    # gateway.passphrase_env is checked where the secret key is opened (crypto.service): the
    # console, `status`, `users` never open it, and their units do not see the passphrase.
    return problems


def _zone_aliases(cfg: Config) -> list[str]:
    """Two zones that are one directory (symlinks resolved) would mix two parties' files —
    and a purge of one agency would delete the other's. The state directory must not lie
    inside a zone either (a party could read the archive), nor a zone inside it."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    private = {"state_dir": cfg.gateway.state_dir}
    if cfg.gateway.shared_dir is not None:
        private["shared_dir"] = cfg.gateway.shared_dir
    for name, zone in cfg.zones():
        key = cfg.zone_key(name)
        if isinstance(zone, LocalZone):
            real = os.path.realpath(zone.path)
            ident = f"local:{real}"
            for what, state in private.items():
                if within(state, real) or within(real, state):
                    problems.append(f"{key}.path: {zone.path} and gateway.{what} ({state}) "
                                    f"overlap; zones must lie outside the "
                                    f"{'state' if what == 'state_dir' else 'shared'} directory")
        else:
            ident = f"sftp://{zone.host.lower()}:{zone.port}{posixpath.normpath(zone.path)}"
        if ident in seen:
            problems.append(f"{key}: same location as {seen[ident]} ({ident}); every zone needs "
                            "a directory of its own")
        seen.setdefault(ident, key)
    return problems


_SET_BY_LOAD = ("source", "sha256")  # Config fields load() fills in about the file


def load(path: Path | str) -> Config:
    """Read and validate *path*; raise ConfigError listing every problem, one per line."""
    path = Path(path)
    label = str(path)
    raw, data = read_toml(path, init_hint="gateway init DIR")
    base = path.resolve().parent
    # Config declares these so the rest of the code can read them, which also lets the
    # file set them; written there they would be overwritten below without a word.
    unknown = [f"{key}: unknown key (check the spelling)" for key in _SET_BY_LOAD if key in data]
    try:
        cfg = Config.model_validate({k: v for k, v in data.items() if k not in _SET_BY_LOAD},
                                    context={"base": base})
    except ValidationError as exc:
        lines = [f"{_loc(e['loc'])}: {_message(e)}" if e["loc"] else _message(e)
                 for e in exc.errors()]
        raise ConfigError(list(dict.fromkeys(lines + unknown)), source=label) from None
    if unknown:
        raise ConfigError(unknown, source=label)
    problems = _cross_checks(cfg) + inside_zone_problems(cfg, path.absolute())
    if problems:
        raise ConfigError(problems, source=label)
    return cfg.model_copy(update={"source": path, "sha256": hashlib.sha256(raw).hexdigest()})
