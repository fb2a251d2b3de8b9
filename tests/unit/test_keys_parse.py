"""Reading `gpg --with-colons` listings (fixed text: no gpg needed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from gateway.crypto.keys import parse_colons

LISTING = """\
pub:-:255:22:B0C4ECE1642B2429:1795385463:1858457463::-:::scESC:::::ed25519:::0:
fpr:::::::::C14E946D6CFA66BE2648AB94B0C4ECE1642B2429:
uid:-::::1795385463::1D79::Bank <bank@x>::::::::::0:
sub:-:255:18:35E0A148E14E2483:1795385463:1858457463:::::e:::::cv25519::
fpr:::::::::9BB74C9ED446FD7EB064A80A35E0A148E14E2483:
"""
NOW = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)


def test_parse_ed25519():
    (info,) = parse_colons(Path("k"), LISTING, now=NOW)
    assert info.fingerprint == "C14E946D6CFA66BE2648AB94B0C4ECE1642B2429"
    assert info.user_ids == ("Bank <bank@x>",)
    assert info.primary.curve == "ed25519" and info.primary.strength_problem is None
    assert info.subkeys[0].capabilities == "e" and info.can("e") and info.can("s")
    assert not info.revoked and not info.expired


def test_expiry_is_computed_not_only_read():
    later = dt.datetime(2029, 1, 1, tzinfo=dt.UTC)
    (info,) = parse_colons(Path("k"), LISTING, now=later)
    assert info.expired and not info.can("e")


def test_revoked_and_weak():
    text = LISTING.replace("pub:-:255:22", "pub:r:255:22")
    (info,) = parse_colons(Path("k"), text, now=NOW)
    assert info.revoked and not info.can("s")
    weak = "pub:-:2048:1:AAAA:1795385463:::-:::scESC::::::::0:\nfpr:::::::::" + "A" * 40 + ":\n"
    (info,) = parse_colons(Path("k"), weak, now=NOW)
    assert info.primary.strength_problem == "RSA 2048 bits is too weak (minimum 3072)"
    dsa = "pub:-:3072:17:AAAA:1795385463:::-:::scESC::::::::0:\nfpr:::::::::" + "B" * 40 + ":\n"
    (info,) = parse_colons(Path("k"), dsa, now=NOW)
    assert "DSA keys are not accepted" in info.primary.strength_problem
