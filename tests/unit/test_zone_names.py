"""Zone names are validated at the boundary: no generated name escapes the zone directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transfer.base import InvalidName, is_temporary, validate_name
from gateway.transfer.local import LocalZone

names = st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=40) | st.sampled_from(
    ["..", ".", "../x", "a/../../b", "/etc/passwd", "a\\b", "x\x00y", "\n", "ok.csv.pgp"])


@given(names)
def test_no_name_escapes_the_zone(name):
    root = Path("/srv/zone")
    try:
        clean = validate_name(name)
    except InvalidName:
        return
    resolved = Path(os.path.normpath(root / clean))
    assert resolved.parent == root and resolved.name == clean


@given(st.text(min_size=1, max_size=20))
def test_temporary_names(name):
    assert is_temporary("." + name)
    for suffix in (".part", ".tmp", ".filepart"):
        assert is_temporary(name + suffix)


def test_local_zone_refuses_escaping_names(tmp_path):
    zone = LocalZone("bank.outgoing", tmp_path)
    for bad in ("../x", "..", "a/b"):
        with pytest.raises(InvalidName):
            zone.stat(bad)


raw_names = st.binary(min_size=1, max_size=255).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(raw_names)
def test_display_name_round_trips_any_file_name(raw):
    from gateway.transfer.base import display_name, raw_name

    name = os.fsdecode(raw)
    shown = display_name(name)
    assert raw_name(shown) == name
    assert shown.isprintable() and shown.encode("utf-8")  # storable, showable


@given(raw_names)
@settings(deadline=None)  # writes a file per example: a busy disk is not a failure of the rule
def test_a_receipt_name_can_always_be_written(raw):
    from gateway.flows.receipts import receipt_name
    from gateway.transfer.base import is_plain

    name = receipt_name(os.fsdecode(raw), lambda n: False)
    assert len(name.encode("utf-8")) <= 255 and is_plain(name) and not name.startswith(".")
    validate_name(name)
