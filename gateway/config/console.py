"""The ``[console]`` and ``[access]`` sections: where the security team's console listens
and behind which proxy, and where the access evidence is read from."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from gateway.config.base import ConfigPath, _Model


def _listen_address(v: str) -> str:
    if not re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}", v) or \
            not 0 <= int(v.rpartition(":")[2]) < 65536:
        raise ValueError('must be "host:port" such as "127.0.0.1:8080" (port 0: any free port)')
    return v


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_HOST_NAME_RE = re.compile(r"(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?")


def _host_name(v: str) -> str:
    """A name the console answers to, as a browser writes it in ``Host`` (port aside)."""
    name = v.strip().lower()
    if name == "*":
        raise ValueError('"*" would let any site\'s pages talk to the console (DNS '
                         "rebinding); name the host(s) people type")
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        if not _HOST_NAME_RE.fullmatch(name):
            raise ValueError(f'"{v}" is not a host name such as "console.bank.example" (no '
                             "scheme, port or path)") from None
        return name
    return f"[{ip}]" if ip.version == 6 else str(ip)


def _proxy_address(v: str) -> str:
    try:
        net = ipaddress.ip_network(v.strip())
    except ValueError:
        raise ValueError(f'"{v}" is not an IP address such as "127.0.0.1" (or a network '
                         'such as "10.0.0.0/24")') from None
    return str(net.network_address) if net.num_addresses == 1 else str(net)


class ConsoleSection(_Model):
    """The security team's console (docs/security-team.md): where it listens, and its TLS files if it
    serves HTTPS itself rather than behind the bank's reverse proxy."""

    listen: Annotated[str, AfterValidator(_listen_address)] = Field(
        default="127.0.0.1:8080",
        description="Where the console listens, as \"host:port\" (port 0: any free port): behind "
                    "the bank's TLS reverse proxy, or serving HTTPS itself with tls_cert and "
                    "tls_key.")
    tls_cert: ConfigPath | None = Field(
        default=None, description="The certificate file (PEM) when the console serves HTTPS "
                                  "itself; set together with tls_key, or neither.")
    tls_key: ConfigPath | None = Field(
        default=None, description="The private key file of tls_cert; set both or neither.")
    # The names the console answers to (the Host header, port aside); any other is a 400,
    # so a page of another site that a DNS trick points at the console cannot use it, and
    # no redirect is built from a forged Host. Default: see :attr:`hosts`.
    allowed_hosts: list[Annotated[str, AfterValidator(_host_name)]] | None = Field(
        default=None, min_length=1,
        description="The host names the console answers to, e.g. [\"console.bank.example\"] (no "
                    "scheme, port or path; not \"*\"); a request for any other name is refused, so "
                    "another site's page cannot use the console through a DNS trick. Unset: the "
                    "host of listen (unless 0.0.0.0 or ::), localhost, 127.0.0.1 and [::1].")
    # The reverse proxy's address(es): only a request from there has its X-Forwarded-For
    # (the client's address), -Proto (https: Secure cookies) and -Host believed.
    trusted_proxy: list[Annotated[str, AfterValidator(_proxy_address)]] = Field(
        default=[],
        description="The reverse proxy's IP address or network (one, or a list): only a request "
                    "from there has its X-Forwarded-For, -Proto and -Host headers believed (see "
                    "docs/console-behind-nginx.md).")
    stale_days: int = Field(  # a slice not collected after this is an alert
        default=7, ge=1, le=365,
        description="A slice its agency has not collected after this many days is an alert.")
    # The gateway's *public* key file(s), old and new across a rotation: the console checks
    # deletion certificates and audit checkpoints with them (it never reads the secret key).
    gateway_public_keys: list[ConfigPath] = Field(
        default=[],
        description="The gateway's public key file(s), old and new across a rotation: the "
                    "console checks deletion certificates and audit checkpoints with them (it "
                    "never reads the secret key).")
    # The console's index of the audit log (a cache, rebuilt when missing); default
    # state_dir/audit/console-index.sqlite. The console's user must be able to write it.
    audit_index: ConfigPath | None = Field(
        default=None,
        description="The console's index of the audit log (a cache, rebuilt when missing), "
                    "which the console's user must be able to write. Unset: "
                    "state_dir/audit/console-index.sqlite.")

    # The console as a user of its own in the gateway's group (deploy/gateway-console.service,
    # `gateway install`): the daemon leaves that group what the console reads and writes.
    group_access: bool = Field(
        default=False,
        description="The console runs as a user of its own in the gateway's group (as "
                    "`gateway install` sets it up): the gateway then leaves that group access "
                    "to what the console reads and writes — the SQLite ledger (in a directory "
                    "of its own), the audit log, its checkpoints and the deletion certificates "
                    "— and to nothing else under state_dir.")

    @field_validator("trusted_proxy", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @property
    def hosts(self) -> list[str]:
        """``allowed_hosts``, or by default the host of ``listen`` (unless it is every
        address: 0.0.0.0 or ::) and the loopback names."""
        if self.allowed_hosts is not None:
            return list(self.allowed_hosts)
        host = self.listen.rpartition(":")[0]
        bare = host.strip("[]")
        own = [] if bare in ("0.0.0.0", "::") else [_host_name(host)]  # noqa: S104 — naming a bind-all, not binding
        return list(dict.fromkeys([*own, *LOOPBACK_NAMES]))

    @model_validator(mode="after")
    def _both_or_neither(self) -> ConsoleSection:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both (HTTPS) or neither "
                             "(plain HTTP behind a TLS reverse proxy)")
        return self


class AccessSection(_Model):
    """Access evidence (docs/security-team.md): internal-sftp's log as a file that rsyslog writes (its
    offset and inode are remembered in the ledger; rotation loses and doubles nothing)."""

    sshd_log: ConfigPath | None = Field(
        default=None,
        description="The file rsyslog writes internal-sftp's log lines to (deploy/rsyslog.d): "
                    "the gateway reads from it who fetched which delivered file. Rotate it by "
                    "renaming it. Unset: no access evidence is read.")
    # The path at which each agency's chrooted sshd serves its inbox, as the log names
    # files: {inbox} is the inbox directory's own name, {agency} the agency's code. The
    # default fits deploy/: the chroot is the inbox's parent, so the inbox is /inbox.
    inbox_path: str = Field(
        default="/{inbox}",
        description="Where each agency's chrooted sshd serves its inbox, as the log names files "
                    "(an absolute path inside the chroot): {inbox} stands for the inbox "
                    "directory's own name, {agency} for the agency's code. Only a read there "
                    "counts. The default fits deploy/, where the chroot is the inbox's parent.")

    @field_validator("inbox_path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/") or v.rstrip("/") == "":
            raise ValueError("must be an absolute path inside the chroot, such as /{inbox}")
        unknown = set(re.findall(r"\{([^}]*)\}", v)) - {"inbox", "agency"}
        if unknown:
            raise ValueError(f"{{{sorted(unknown)[0]}}} is not known: use {{inbox}} or {{agency}}")
        return v.rstrip("/")
