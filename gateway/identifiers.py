"""The identifiers the gateway takes from configuration and from file names, each
written once.

Every one starts with a letter or digit and goes on with a few safe characters, so it
can stand in a file name, a log line or an audit field without quoting or escaping;
the lengths keep file names under common limits. The patterns are unanchored: a caller
anchors them (``fullmatch``, ``^…$``) or builds a file name pattern around them.
"""

from __future__ import annotations

import re


def _word(length: int, more: str = "._-") -> str:
    return rf"[A-Za-z0-9][A-Za-z0-9{more}]{{0,{length - 1}}}"


BATCH_ID = _word(64)  # a case file's name without .csv.pgp; the slices' names begin with it
CONTRACT_ID = _word(64)
KEY_NAME = _word(64)  # `gateway keys generate NAME`: the file names of a key pair
NODE = _word(64, ".-")  # a host name
AGENCY_CODE = _word(32, "_-")  # between dots in slice names (B1.AG001.collector…): no dot
FILE_NAME = _word(255)  # a file name shown and audited as itself (else by its hash)
ROLE = r"[a-z][a-z0-9_]{0,31}"
ENCRYPTED_CSV = r"\.csv\.(?:pgp|gpg|asc)"  # the suffixes an inbound file may have


def full(pattern: str) -> re.Pattern[str]:
    """*pattern* as a whole string, nothing before or after."""
    return re.compile(rf"^(?:{pattern})$")
