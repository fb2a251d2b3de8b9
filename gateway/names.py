"""File names as senders choose them, spelled so that anything can store and show them.

A zone file name may hold a newline, a backslash, bytes that are not UTF-8 or invisible
characters. The ledger stores, receipts carry and messages show its reversible
printable spelling (:func:`display_name`); :func:`raw_name` gives the name back. Kept
apart from the zones so that the ledger, which stores names, depends on no transport.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata

from gateway import identifiers


def name_bytes(name: str) -> bytes:
    """The name as the file system holds it (undecodable bytes travel as surrogates)."""
    return os.fsencode(name)


def display_name(name: str) -> str:
    """A reversible, printable spelling of any name: backslash escapes for backslashes,
    control and formatting characters, spaces other than U+0020 and undecodable bytes. Used wherever a name is
    stored or shown (ledger, receipts, messages); :func:`raw_name` undoes it."""
    out = []
    for c in name:
        if c == "\\":
            out.append("\\\\")
        elif 0xDC80 <= ord(c) <= 0xDCFF:  # an undecodable byte (surrogateescape)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") or \
                (c != " " and not c.isprintable()):  # NBSP, U+3000: a name that looks spaced
            out.append(f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return "".join(out)


_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def raw_name(shown: str) -> str:
    """The file name a :func:`display_name` spelling stands for."""
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "\\":
            return "\\"
        if code[0] == "x":
            return chr(0xDC00 + int(code[1:], 16))
        point = int(code[1:], 16)  # \uXXXX or \UXXXXXXXX
        return chr(point) if point <= 0x10FFFF else m.group(0)  # not ours: left as it is
    return _ESCAPE.sub(one, shown)


_SAFE_NAME = identifiers.full(identifiers.FILE_NAME)


def file_fields(name: str, sha256: str) -> dict[str, str]:
    """Audit a file by name when the name is plainly safe, else by its hash only."""
    return {"file": name} if _SAFE_NAME.fullmatch(name) else {"file_sha256": sha256}


def name_fields(name: str) -> dict[str, str]:
    """Audit an entry that was never read by its name when safe, else by the name's hash
    (a name may be anything a sender typed; the audit log holds no free text)."""
    if _SAFE_NAME.fullmatch(name):
        return {"file": name}
    return {"name_sha256": hashlib.sha256(name_bytes(name)).hexdigest()}
