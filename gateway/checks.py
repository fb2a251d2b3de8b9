"""``gateway check``: everything that can be verified before the gateway starts.

Each finding is one line a person can act on. Config problems and key-policy
problems are configuration errors (exit 2); a failing self-test or an
unreachable resource is a failure (exit 1).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config, LocalZone
from gateway.config import SftpZone as SftpSpec
from gateway.crypto.engine import Engine
from gateway.crypto.keyring import Keyring
from gateway.crypto.service import KeySet, check_keys, passphrase_from_env
from gateway.errors import ConfigError, GatewayError
from gateway.ledger import Ledger
from gateway.state import Modes, loose_entries
from gateway.transfer.base import ZoneError


@dataclass(frozen=True)
class Finding:
    level: str  # ok | warn | error | info
    text: str


def self_test(cfg: Config, keyset: KeySet) -> None:
    """Seal a probe to ourselves and open it: proves the key, its passphrase and gpg work.

    Uses a throw-away keyring so a running daemon's keyring is never touched.
    """
    home = Path(tempfile.mkdtemp(prefix="gwc", dir="/tmp"))
    try:
        with Keyring(home / "g", secret_keys=[keyset.gateway.path],
                     passphrase=passphrase_from_env(cfg.gateway.passphrase_env)) as ring:
            engine = Engine(ring, signer=keyset.gateway)
            sealed = io.BytesIO()
            with engine.seal(sealed, recipients=[keyset.gateway.fingerprint]) as w:
                w.write(b"gateway self-test\n")
            sealed.seek(0)
            with engine.open(sealed, allowed_signers=[keyset.gateway.fingerprint]) as msg:
                body = b"".join(msg.chunks())
                msg.verdict()
            if body != b"gateway self-test\n":
                raise GatewayError("self-test: decrypted text differs from what was sealed")
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _check_sftp(key_path: str, spec: SftpSpec) -> Finding:
    """Connect (pinned host key, key login), check the path, write and remove a probe file."""
    if not spec.private_key.is_file():
        return Finding("error", f"{key_path}.private_key: {spec.private_key} does not exist")
    mode = spec.private_key.stat().st_mode & 0o777
    if mode & 0o077:
        return Finding("error", f"{key_path}.private_key: {spec.private_key} is readable by group "
                                f"or others (mode {mode:04o}); run chmod 600")
    from gateway.transfer.sftp import SftpZone  # paramiko only where SFTP is configured

    zone = SftpZone(key_path, spec)
    try:
        zone.probe()
    except ZoneError as exc:
        return Finding("error", str(exc))
    finally:
        zone.close()
    return Finding("ok", f"{key_path}: {zone.describe()} (host key matches, login, write)")


def state_dir_findings(root: Path, modes: Modes | None = None) -> list[Finding]:
    """The state directory holds keys, tokens and the ledger: its owner's only (but for
    what *modes* leaves the console's group)."""
    if not root.exists():
        return [Finding("info", f"gateway.state_dir: {root} does not exist yet; the first run "
                                "creates it (mode 0700)")]
    loose = [(p, mode) for p, mode, _ in loose_entries(root, modes)]
    if not loose:
        return [Finding("ok", f"gateway.state_dir: {root} is private (files 0600, directories 0700)")]
    path, mode = loose[0]
    return [Finding("warn", f"gateway.state_dir: {len(loose)} entries are open to group or others, "
                            f"e.g. {path} (mode {mode:04o}); `gateway run` tightens them, or run "
                            f"chmod -R go-rwx {root}")]


def run_checks(cfg: Config) -> list[Finding]:
    """Keys, self-test, zones and ledger for a config that already loaded (ConfigError otherwise)."""
    findings = [Finding("ok", f"config {cfg.source} is valid (sha256 {cfg.sha256[:16]}…)")]
    keyset = _check_all_keys(cfg)  # raises ConfigError with every key problem
    findings += [Finding("warn", w) for w in keyset.warnings]
    gw = keyset.gateway
    findings.append(Finding("ok", f"gateway key {gw.fingerprint} ({gw.primary.description}, "
                                  f"expires {gw.expires.date() if gw.expires else 'never'})"))
    n_keys = len(keyset.files)
    findings.append(Finding("ok", f"{n_keys} partner key(s) meet the key policy"))
    try:
        self_test(cfg, keyset)
        findings.append(Finding("ok", "gateway key self-test (sign, encrypt, decrypt, verify)"))
    except GatewayError as exc:
        findings.append(Finding("error", f"gateway.secret_key: self-test failed: {exc}"))
    findings += state_dir_findings(cfg.gateway.state_dir, Modes.of(cfg))
    for name, zone in cfg.zones():
        key_path = cfg.zone_key(name)
        if isinstance(zone, LocalZone):
            if not zone.path.is_dir():
                findings.append(Finding("error", f"{key_path}.path: {zone.path} is not a directory"))
            elif zone.path.is_symlink():
                findings.append(Finding("error", f"{key_path}.path: {zone.path} is a symlink"))
            else:
                findings.append(Finding("ok", f"{key_path}: {zone.describe()}"))
        else:
            findings.append(_check_sftp(key_path, zone))
    try:
        ledger = Ledger(cfg.gateway.db_url)
        ledger.close()
        findings.append(Finding("ok", "ledger database opens"))
    except GatewayError as exc:
        findings.append(Finding("error", f"gateway.database_url: {exc}"))
    findings += sharing_findings(cfg)
    findings += console_findings(cfg)
    findings += forward_findings(cfg)
    findings += alert_findings(cfg)
    return findings


def forward_findings(cfg: Config) -> list[Finding]:
    """The [[forward]] destinations' files and secrets (their receivers are not contacted:
    `gateway status` shows whether each confirms what it is sent)."""
    from gateway.config.forward import file_problems

    problems = file_problems(cfg.forward)
    return [Finding("error", p) for p in problems] or [
        Finding("ok", f"forward[{i}] {d.name}: {d.describe()}") for i, d in enumerate(cfg.forward)]


def alert_findings(cfg: Config) -> list[Finding]:
    """The [alerts] channels' files and secrets (nothing is sent: `gateway alerts test` does
    that)."""
    from gateway.config.alerts import file_problems

    if cfg.alerts is None:
        return []
    problems = file_problems(cfg.alerts)
    return [Finding("error", p) for p in problems] or [Finding("ok", "alerts: channels' files "
                                                               "and secrets present")]


def _check_all_keys(cfg: Config) -> KeySet:
    """The key policy's problems and the console's TLS key's, refused together."""
    from gateway.console.startup import tls_key_problem

    console = [p for p in [tls_key_problem(cfg.console)] if p]
    try:
        keyset = check_keys(cfg)
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *console], source=exc.source) from exc
    if console:
        raise ConfigError(console, source=str(cfg.source))
    return keyset


def console_findings(cfg: Config) -> list[Finding]:
    """What `gateway console` would warn of when it starts (the same words)."""
    from gateway.console.startup import cleartext_warning

    warning = cleartext_warning(cfg.console)
    return [Finding("warn", warning)] if warning else []


def sharing_findings(cfg: Config) -> list[Finding]:
    """Several nodes on one ledger must see one archive and staging area (docs/operations.md)."""
    gw = cfg.gateway
    postgresql = gw.db_url.startswith("postgresql")
    if gw.shared_dir is not None:
        found = [Finding("ok", f"gateway.shared_dir: {gw.shared_dir} (archive, staging, "
                               "certificates; every node of this ledger must mount it)")]
        if not postgresql:
            found.append(Finding("warn", "gateway.shared_dir is set but the ledger is SQLite: "
                                         "one node only; several nodes need PostgreSQL"))
        return found
    if postgresql:
        return [Finding("info", "gateway.shared_dir is not set: this node keeps its archive and "
                                "staging in state_dir — fine alone; a second node on this "
                                "ledger could not finish this node's work (set shared_dir "
                                "on both to one shared directory)")]
    return []
