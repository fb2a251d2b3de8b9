"""What is wrong with the console's setup before it serves a page, said once and the same
way by ``gateway check`` and ``gateway console`` (issue 22, findings 9 and 10): a plain
HTTP console reachable from other machines, a TLS key others may read.

Kept apart from :mod:`gateway.console.app` so that ``gateway check`` does not load the
web stack to ask.
"""

from __future__ import annotations

import ipaddress
import stat

from gateway.config import ConsoleSection


def loopback_only(listen: str) -> bool:
    """Whether ``listen`` can be reached from this machine alone. A name other than
    localhost counts as reachable: what it resolves to may change."""
    host = listen.rpartition(":")[0].strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cleartext_warning(section: ConsoleSection) -> str | None:
    """Why the console would take passwords and TOTP codes over the network in clear: it
    listens beyond loopback, without TLS of its own, and no trusted proxy in front
    (whose TLS ends at this machine) is configured."""
    if loopback_only(section.listen) or section.tls_cert is not None or section.trusted_proxy:
        return None
    return (f"console.listen: {section.listen} can be reached from other machines and the "
            "console serves plain HTTP there: passwords and TOTP codes would cross the "
            "network in clear; set console.tls_cert and console.tls_key, or listen on "
            "127.0.0.1 behind a TLS reverse proxy (console.trusted_proxy, see "
            "docs/console-behind-nginx.md)")


def tls_key_problem(section: ConsoleSection) -> str | None:
    """Why the console's TLS key file is refused: as the gateway's secret key
    (:func:`gateway.crypto.keys.file_mode_problem`), readable by its owner only."""
    path = section.tls_key
    if path is None:
        return None
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"console.tls_key: {path} does not exist"
    except PermissionError:
        return None  # another user's file (the console's own): checked when it starts
    except OSError as exc:
        return f"console.tls_key: {path}: {exc.strerror}"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (f"console.tls_key: {path}: TLS key file is readable by group or others "
                f"(mode {mode:04o}); run chmod 600 {path}")
    return None
