"""Keyword arguments described by a ``TypedDict`` (``**options: Unpack[KeyOptions]``): a
function takes a few named, typed options without a long parameter list, and its callers
keep writing them as plain keywords.

The type checker checks every call it sees; :func:`check` is for the calls it does not
(a module it is told to skip, a test, a script), where ``**options`` would otherwise take
a misspelled keyword without a word and the function would act as if it were absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def check(given: Mapping[str, object], typed: Any) -> None:
    """Raise :class:`TypeError`, as a missing or unexpected keyword argument does, unless
    *given* has every required key of the ``TypedDict`` class *typed* and no other key.

    *typed* is ``Any``: there is no type for "a TypedDict class". Its optional keys must be
    declared in a ``total=False`` class: under ``from __future__ import annotations``
    Python cannot see ``NotRequired`` and counts such a key as required."""
    required: frozenset[str] = typed.__required_keys__
    unexpected = sorted(given.keys() - required - typed.__optional_keys__)
    if unexpected:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(unexpected)} "
                        f"(known: {', '.join(sorted(typed.__annotations__))})")
    missing = sorted(required - given.keys())
    if missing:
        raise TypeError(f"missing keyword argument(s) {', '.join(missing)}")
