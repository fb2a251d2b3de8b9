"""Zone names are validated at the boundary: no generated name escapes the zone directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
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
