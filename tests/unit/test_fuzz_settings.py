"""How long the fuzz suites (``test_fuzz_*.py``) run: bounded in CI, as long as asked outside.

Each property states the examples it runs in CI, chosen so that the whole fuzz suite takes
well under a minute on one core. ``GATEWAY_FUZZ_EXAMPLES=N`` gives every property N
examples instead, for a long run on a workstation::

    GATEWAY_FUZZ_EXAMPLES=20000 .venv/bin/pytest -q tests/unit/test_fuzz_*.py \\
        --hypothesis-show-statistics

The profiles are registered under their own names and applied per test, never loaded as
the default: the other property tests keep their own settings.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

ENV = "GATEWAY_FUZZ_EXAMPLES"

# No deadline: a shared CI core may stall any example; the suite's time is bounded by the
# example counts instead. A failure prints the blob that replays it (@reproduce_failure).
settings.register_profile(
    "gateway-fuzz-ci", deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
settings.register_profile("gateway-fuzz-long", parent=settings.get_profile("gateway-fuzz-ci"))


def examples(ci: int, env: dict[str, str] | None = None) -> int:
    """The examples a property runs: *ci* unless the environment asks for more (or fewer)."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return ci
    if not raw.isdecimal() or int(raw) < 1:  # a typo must not silently run the CI count
        raise ValueError(f"{ENV} must be a positive whole number, not {raw!r}")
    return int(raw)


def fuzz(ci: int) -> settings:
    """The settings of one fuzz property that runs *ci* examples in CI."""
    long = bool(os.environ.get(ENV, "").strip())
    profile = settings.get_profile("gateway-fuzz-long" if long else "gateway-fuzz-ci")
    return settings(profile, max_examples=examples(ci))


def test_the_environment_sets_the_examples():
    assert examples(150, {}) == 150
    assert examples(150, {ENV: " 20000 "}) == 20000
    for bad in ("lots", "-5", "0", "1e4"):
        with pytest.raises(ValueError, match=ENV):
            examples(150, {ENV: bad})


def test_the_fuzz_settings_have_no_deadline():
    assert fuzz(7).deadline is None and fuzz(7).max_examples == examples(7)
