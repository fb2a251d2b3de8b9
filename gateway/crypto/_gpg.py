"""Process plumbing shared by the key tools and the engine.

Everything here exists to keep GnuPG on a short leash: a private home directory
per use, argv without secrets, and no gpg-agent left running after its owner is
done with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from gateway.errors import GatewayError

# Unix socket paths are limited to 108 bytes (sun_path); gpg-agent puts
# S.gpg-agent.extra/.browser/.ssh in the home directory, the longest is 21 bytes.
_MAX_HOME_LEN = 80
_SUN_PATH = 108
# Where short aliases live: a fixed, short directory (not $TMPDIR, which may be long);
# each alias is a private mkdtemp directory in it, so a shared /tmp is safe.
_ALIAS_ROOT = "/tmp"  # noqa: S108 — mkdtemp (0700, unpredictable) inside it; see short_home

# Options every gpg call gets: never ask, never go to the network, never trust
# a keyserver, and speak the machine-readable status protocol.
BASE_OPTIONS: tuple[str, ...] = (
    "--batch",
    "--no-tty",
    "--no-greeting",
    "--no-auto-key-retrieve",
    "--no-auto-key-locate",
    "--keyid-format",
    "long",
    "--pinentry-mode",
    "loopback",
)
# Keys in our keyrings are exactly the configured ones: the config is the trust
# decision, so gpg's web of trust is switched off for encryption and verification.
TRUST_CONFIGURED = ("--trust-model", "always")


def gpg_binary() -> str:
    """Path of the gpg executable; a missing GnuPG is a setup error, not a crash."""
    path = shutil.which(os.environ.get("GATEWAY_GPG", "gpg"))
    if path is None:
        raise GatewayError("GnuPG (gpg) is not installed; install the Debian package 'gnupg'")
    return path


def short_home(home: Path) -> tuple[Path, Path | None]:
    """Return a path to *home* short enough for gpg-agent's socket.

    When *home* is too long (deep state directories, pytest's tmp paths) a
    private 0700 directory is made in the system temp dir holding one symlink to
    *home*; the agent binds its socket through that link. The second value is the
    directory to remove afterwards.
    """
    if len(str(home)) <= _MAX_HOME_LEN:
        return home, None
    alias_dir = Path(tempfile.mkdtemp(prefix="gwg", dir=_ALIAS_ROOT))
    alias = alias_dir / "h"
    alias.symlink_to(home)
    return alias, alias_dir


def remove_aliases(home: Path) -> None:
    """Remove the short aliases (:func:`short_home`) a killed run left for *home*: ours,
    in /tmp, holding only the link to it. A home short enough never had one: the
    system temp dir is not read for it (it may hold hundreds of entries)."""
    target = str(home)
    if len(target) <= _MAX_HOME_LEN:
        return
    for alias_dir in Path(_ALIAS_ROOT).glob("gwg*"):
        link = alias_dir / "h"
        with contextlib.suppress(OSError):
            if (alias_dir.lstat().st_uid == os.geteuid() and link.is_symlink()
                    and str(link.readlink()) == target):
                shutil.rmtree(alias_dir)


def kill_agent(home: Path, *, wait: float = 5.0) -> None:
    """Stop every gpg-agent serving *home*, and wait (up to *wait* s) until they are gone.

    ``gpgconf --kill`` only asks the agent to exit, and only reaches it through a
    socket path short enough to connect to. An agent left by a run that was killed
    was started through that run's short alias (:func:`short_home`), which a new run
    does not know: it is found by the home its ``--homedir`` resolves to, and sent
    SIGTERM. Leaving it alive was not harmless — once its home was rebuilt it
    noticed its socket gone, shut down, and on the way out unlinked the *new*
    agent's socket (same directory), which failed the next signing on a busy host.
    """
    asked = False
    gpgconf = shutil.which("gpgconf")
    if gpgconf is not None:
        env = gpg_env(home)

        def gpgconf_run(*args: str) -> str:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                # an argv list, no shell: gpgconf on our own home directory
                return subprocess.run([gpgconf, "--homedir", str(home), *args],  # noqa: S603
                                      stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                                      check=False, env=env).stdout.decode("utf-8", "replace")
            return ""

        socket = Path(gpgconf_run("--list-dirs", "agent-socket").strip() or home / "S.gpg-agent")
        if len(os.fsencode(str(socket))) < _SUN_PATH:
            if not socket.exists():
                return  # no agent serves this home (the common case: a scratch home, unused)
            gpgconf_run("--kill", "gpg-agent")
            asked = True
    # reached here: an agent was asked to exit, or this home's socket is out of reach (a
    # long path: an agent of it was started through an alias) — look for the processes
    deadline = time.monotonic() + wait
    signalled: set[int] = set()
    polite_until = time.monotonic() + (0.5 if asked else 0.0)  # gpgconf's request first
    while (pids := agent_pids(home)) and time.monotonic() < deadline:
        if time.monotonic() >= polite_until:
            for pid in pids - signalled:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
                signalled.add(pid)
        time.sleep(0.01)


def agent_pids(home: Path) -> set[int]:
    """The gpg-agents whose ``--homedir`` is *home* or resolves to it (read from /proc;
    empty elsewhere). A zombie's command line is empty, so it does not count."""
    wanted = {os.fsencode(str(home)), os.fsencode(os.path.realpath(home))}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return set()
    found: set[int] = set()
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if not argv[0].endswith(b"gpg-agent") or b"--homedir" not in argv[:-1]:
            continue
        given = argv[argv.index(b"--homedir") + 1]
        if given in wanted or os.fsencode(os.path.realpath(os.fsdecode(given))) in wanted:
            found.add(int(entry.name))
    return found


@contextlib.contextmanager
def scratch_home() -> Iterator[Path]:
    """A throw-away gpg home (0700) whose agent is stopped and files removed on exit."""
    home = Path(tempfile.mkdtemp(prefix="gwk", dir="/tmp"))
    try:
        yield home
    finally:
        kill_agent(home)
        shutil.rmtree(home, ignore_errors=True)


def run(
    home: Path,
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    passphrase: str | None = None,
    timeout: float = 120,
    trust_configured: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a short gpg command to completion; the passphrase goes through its own pipe.

    *trust_configured* False is for ``--show-keys``, which with ``--trust-model
    always`` fails on a revoked key in an empty home (gpg 2.2 wants a trustdb).
    """
    argv = [gpg_binary(), "--homedir", str(home), *BASE_OPTIONS, "--status-fd", "2"]
    if trust_configured:
        argv += TRUST_CONFIGURED
    pass_fds: tuple[int, ...] = ()
    read_fd = write_fd = -1
    if passphrase is not None:
        read_fd, write_fd = os.pipe()
        argv += ["--passphrase-fd", str(read_fd)]
        pass_fds = (read_fd,)
    try:
        proc = subprocess.Popen(  # noqa: S603 — argv list, no shell: gpgconf on our own home
            [*argv, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            env=gpg_env(home),
        )
        if passphrase is not None:
            os.close(read_fd)
            read_fd = -1
            os.write(write_fd, passphrase.encode() + b"\n")
            os.close(write_fd)
            write_fd = -1
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise GatewayError(f"gpg did not finish within {timeout:.0f} s") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


_ENV_KEPT = ("PATH", "HOME", "TMPDIR", "USER", "LOGNAME", "TZ", "SYSTEMROOT")


def gpg_env(home: Path) -> dict[str, str]:
    """A minimal environment, kept to a list: no inherited GNUPGHOME, agent info or locale
    surprises — and no secret a parent holds in its environment (the gateway key's
    passphrase variable never reaches a child's ``/proc/PID/environ``)."""
    env = {k: os.environ[k] for k in _ENV_KEPT if k in os.environ}
    env["GNUPGHOME"] = str(home)
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def status_lines(raw: bytes) -> list[list[str]]:
    """Split ``[GNUPG:] KEYWORD args`` lines into lists; other lines are ignored."""
    lines: list[list[str]] = []
    for line in raw.decode("utf-8", "replace").splitlines():
        if line.startswith("[GNUPG:] "):
            lines.append(line[9:].split())
    return lines
