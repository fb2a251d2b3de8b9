"""Shared unit-test fixtures."""

from __future__ import annotations

import datetime as dt

import pytest

from gateway import config, scaffold


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """Two agencies: AG001's contract runs all year, AG002's ended in October 2026."""
    path = scaffold.init_project(tmp_path_factory.mktemp("c") / "gw", today=dt.date(2026, 1, 1),
                                 agencies=[scaffold.AgencyTemplate("AG001", "A"),
                                           scaffold.AgencyTemplate("AG002", "B")])
    text = path.read_text()
    # AG002's contract ended in October; AG001's runs all year.
    text = text.replace("end = 2027-01-01", "end = 2026-10-31", 2).replace(
        "end = 2026-10-31", "end = 2027-01-01", 1)
    path.write_text(text)
    return config.load(path)
