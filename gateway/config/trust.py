"""Where the gateway's own files may lie, and who besides the gateway may write them.

A zone is a directory a partner writes (over SFTP, or a local path the partner's SFTP
login reaches). So none of the gateway's own files may lie in one: not ``state_dir`` or
``shared_dir`` (:func:`gateway.config._zone_aliases` refuses those, either way round), not
the configuration file, not any file the configuration names (keys, certificates, the
sshd log, the audit index) — a partner who could replace a key file could make the gateway
accept its signature as the bank's (Cleo 2024: a folder a file drop reaches, trusted as
code). Paths are compared with symlinks resolved, component by component
(:func:`gateway.config.base.within`), never as strings: ``/zones/AG0010`` is not inside
``/zones/AG001``.

And nobody but the gateway may change what it trusts. The rule, for the configuration
file, ``state_dir``, ``shared_dir`` and every key file (:func:`key_files`), checked by
:func:`writable_problems` where the keys are checked (``gateway check``, ``gateway run``
and every command that opens the gateway's key):

- the path itself must belong to the gateway's user (the process's effective uid) or to
  root, must not be writable by its group unless that group is the gateway's own (the
  process's effective gid), and must not be writable by others;
- so must every directory above it (whoever may write a directory may put another file in
  its place), except that a directory with the sticky bit (``/tmp``) may be writable by
  group and others: there only an entry's owner may rename or remove it.

So a root-owned ``/etc/gateway`` (0755, files 0644 or root:gateway 0640) read by a gateway
user is fine; a key file 0664 of group ``staff``, or a ``state_dir`` under another user's
home, is not. Zones are the partners' to write and are not checked. The console's TLS
files are the console's (they may belong to its user) and are checked by
:func:`gateway.console.startup.tls_key_problem`; the sshd log and the audit index are
written by rsyslog and the console.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# configured paths that are not the gateway's keys: the zones and the gateway's
# directories (checked on their own), and files others write by design
_NOT_FILES = ("gateway.state_dir", "gateway.shared_dir")
_WRITTEN_BY_OTHERS = ("access.sshd_log", "console.audit_index", "console.tls_cert",
                      "console.tls_key")


def configured_paths(model: BaseModel, key: str = "") -> Iterator[tuple[str, Path]]:
    """Every path *model* names, with its key path (``agencies[0].signing_keys[1]``); a
    local zone's directory is not one of them (zones are :meth:`Config.zones`)."""
    for name, field in type(model).model_fields.items():
        if field.exclude or (name == "path" and getattr(model, "kind", None) == "local"):
            continue
        yield from _paths(getattr(model, name), f"{key}.{field.alias or name}".lstrip("."))


def _paths(value: Any, key: str) -> Iterator[tuple[str, Path]]:
    if isinstance(value, BaseModel):
        yield from configured_paths(value, key)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _paths(item, f"{key}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _paths(item, f"{key}.{k}")
    elif isinstance(value, Path):
        yield key, value


def key_files(cfg: BaseModel) -> list[tuple[str, Path]]:
    """The files the gateway trusts by configuration: its own and the partners' OpenPGP
    keys, SFTP login keys, the console's copy of the gateway's public keys, the forwarding
    and alert channels' certificates and keys."""
    return [(k, p) for k, p in configured_paths(cfg)
            if k not in _NOT_FILES and k not in _WRITTEN_BY_OTHERS]


def inside_zone_problems(cfg: Any, config_file: Path) -> list[str]:
    """The configuration file, or a file it names, inside a local zone's directory.

    Each path is resolved once (a site's ~25 files against its ~12 zones were ~650
    resolutions, ~8 % of a `run --once` with nothing to do); the comparison is
    :func:`~gateway.config.base.within`'s, component by component."""
    from gateway.config import LocalZone

    problems: list[str] = []
    files = [(k, p, Path(os.path.realpath(p))) for k, p in configured_paths(cfg)
             if k not in _NOT_FILES]
    config_real = Path(os.path.realpath(config_file))
    for name, zone in cfg.zones():
        if not isinstance(zone, LocalZone):
            continue
        zone_real = os.path.realpath(zone.path)
        where = f"the zone {cfg.zone_key(name)} ({zone.path}), where a partner writes"
        if config_real.is_relative_to(zone_real):
            problems.append(f"{cfg.zone_key(name)}.path: {zone.path} contains the configuration "
                            f"file {config_file}; a partner could rewrite it — keep the "
                            "configuration outside every zone")
        problems += [f"{key}: {path} lies inside {where}; keep the gateway's files outside "
                     "every zone" for key, path, real in files if real.is_relative_to(zone_real)]
    return problems


def writable_problems(cfg: Any, *, uid: int | None = None, gid: int | None = None) -> list[str]:
    """The configuration file, ``state_dir``, ``shared_dir`` or a key file that a user or
    group other than the gateway's own may write (the rule: this module's docstring)."""
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    checked: list[tuple[str, Path]] = [("the configuration file", Path(cfg.source)),
                                       ("gateway.state_dir", cfg.gateway.state_dir)]
    if cfg.gateway.shared_dir is not None:
        checked.append(("gateway.shared_dir", cfg.gateway.shared_dir))
    checked += key_files(cfg)
    seen: dict[Path, str | None] = {}
    problems: list[str] = []
    for key, path in checked:
        if (why := foreign_writer(path, uid, gid, seen)) is not None:
            problems.append(f"{key}: {why}; only root or the gateway's user, {_user(uid)}, may "
                            "own it and the directories above it, and no group but the "
                            f"gateway's, {_group(gid)}, may write to them")
    return problems


def foreign_writer(path: Path, uid: int, gid: int,
                   seen: dict[Path, str | None] | None = None) -> str | None:
    """Who other than *uid*/*gid* (and root) may write *path* or a directory above it, as
    words; None if nobody. A path that does not exist is not checked (the gateway makes
    ``state_dir`` 0700; a missing key file is the key check's to report)."""
    seen = {} if seen is None else seen
    try:
        real = Path(os.path.realpath(path))
        top = real.stat()
    except OSError:
        return None
    if (why := _writers(real, top, uid, gid, sticky_ok=False)) is not None:
        return why
    for folder in real.parents:
        if folder not in seen:
            try:
                seen[folder] = _writers(folder, folder.stat(), uid, gid, sticky_ok=True)
            except OSError:
                seen[folder] = None
        if seen[folder] is not None:
            return seen[folder]
    return None


def _writers(path: Path, st: os.stat_result, uid: int, gid: int, *, sticky_ok: bool) -> str | None:
    mode = stat.S_IMODE(st.st_mode)
    sticky = sticky_ok and stat.S_ISDIR(st.st_mode) and bool(mode & stat.S_ISVTX)
    if st.st_uid not in (uid, 0):
        return f"{path} belongs to {_user(st.st_uid)}"
    if mode & stat.S_IWGRP and st.st_gid != gid and not sticky:
        return f"{path} is writable by group {_group(st.st_gid)} (mode {mode:04o})"
    if mode & stat.S_IWOTH and not sticky:
        return f"{path} is writable by any user (mode {mode:04o})"
    return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"
