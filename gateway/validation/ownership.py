"""Which case ids are an agency's live cases, answered in memory for one results file.

The results flow asks, of every chunk's distinct case ids, which are *not* the agency's
live cases (``E_NOT_ASSIGNED``). Asked of the ledger once per chunk, that was a quarter
of the ledger's time for a results file (1.0–1.2 s of ~3.9 s at a million rows, one
statement per 4,096 rows, each unpacking a JSON array and probing ``ix_cases_agency`` per
id). :class:`OwnerIndex` reads the agency's live case ids once, when the file's reading
begins, in pages of :data:`PAGE` ids (one statement each, the ids joined by newlines:
no Python object per id), and answers each chunk with ``np.searchsorted``.

**Memory.** The ids are kept as NumPy fixed-width byte strings, one sorted array per
byte length: an id costs its own UTF-8 bytes, no padding, no pointer (~14 bytes for the
ids the bank issues: 14 MB at a million live cases). Past :data:`MAX_BYTES` (an agency of
about three million cases) the index is not built and the flow asks the ledger per
chunk, as before: memory stays bounded whatever the agency's size.

**Exact.** Byte strings of one length compare as their bytes, so a hit is the same id,
byte for byte, as SQLite's ``=`` (BINARY) and PostgreSQL's (a deterministic collation
breaks ties by bytes). A page whose ids do not split back into as many pieces as it
counted (an id holding a newline, which the case-id rule never lets into the ledger)
makes :func:`load` give up: the ledger is asked per chunk.

**When the ledger changes while the file is read.** The index is the agency's cases when
the reading began, after the file was claimed. Cases are added by batches: a case
committed after that moment cannot be in the file honestly (its slice is delivered after
its batch commits, the agency writes about it after that, and the file was complete when
it was claimed), so a row about it is ``E_NOT_ASSIGNED`` — as it would have been at any
instant before. Cases leave the ledger only by a purge (``finish_purge`` deletes all of an
agency's cases at once, at its contract's end). With one runner per state directory a
purge never runs beside a results file on the same ledger; with several nodes on one
PostgreSQL ledger another node may purge the agency while this one reads its file (the
purge's lease and the file's are different items). So the flow notes the agency's count
of finished purges before it reads the index, and its commit asks again: if a purge
finished meanwhile, the commit gives way (``CommitConflict``, nothing committed) and the
driver reads the file again at once, against the cases that are left.
Before, each chunk was checked at its own moment, so a purge in the middle of a file
accepted the rows before it and refused those after it, and the commit added attempt
counts for an agency whose counts the purge had just deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAGE = 200_000  # ids per statement: a page's text and its array stay a few MB
# Of ids in memory (~3 million of the bank's 14-character ids); an agency beyond it is
# asked per chunk. With file_counts.MAX_BYTES (whose merges hold up to ~2.3 times it for a
# moment) and the load's moment of twice this (the pages' arrays and their
# concatenation), the process tree (~111 MB at a million rows without either) stays under
# 256 MB whatever the agency's and the file's size.
MAX_BYTES = 40 * 1024 * 1024
_Sorted = dict[int, np.ndarray]  # byte length -> sorted ids of that length (dtype S<length>)


class OwnerIndex:
    """An agency's live case ids, as they were when the index was read."""

    def __init__(self, by_length: _Sorted) -> None:
        self._by_length = by_length
        self.count = sum(len(a) for a in by_length.values())
        self.nbytes = sum(a.nbytes for a in by_length.values())

    def foreign(self, ids: pa.Array) -> set[str]:
        """Of the distinct *ids* (non-empty strings), those that are not in the index."""
        if not len(ids):
            return set()
        lengths = pc.binary_length(ids).to_numpy(zero_copy_only=False)
        found = np.zeros(len(ids), dtype=bool)
        for length in np.unique(lengths).tolist():
            known = self._by_length.get(length)
            if known is None:
                continue
            rows = np.flatnonzero(lengths == length)
            wanted = _fixed(ids.take(pa.array(rows)), length)
            at = np.minimum(np.searchsorted(known, wanted), len(known) - 1)
            found[rows] = known[at] == wanted
        if found.all():
            return set()
        return set(ids.filter(pa.array(~found)).to_pylist())


def load(pages: Iterable[tuple[int, str]], *, max_bytes: int | None = None) -> OwnerIndex | None:
    """The index of the ids in *pages* (each: how many ids, and the ids joined by
    newlines), or None if one does not split back into its count or they pass
    *max_bytes* (default :data:`MAX_BYTES`, read at the call; the caller then asks the
    ledger per chunk)."""
    max_bytes = MAX_BYTES if max_bytes is None else max_bytes
    parts: dict[int, list[np.ndarray]] = {}
    held = 0
    for count, text in pages:
        if not count:
            continue
        if text.count("\n") != count - 1:
            return None
        ids = pc.split_pattern(pa.array([text], pa.string()), "\n").flatten()
        for length, fixed in _by_length(ids):
            parts.setdefault(length, []).append(fixed)
            held += fixed.nbytes
        if held > max_bytes:
            return None
    return OwnerIndex({length: _sorted(np.concatenate(arrays))
                       for length, arrays in parts.items()})


def _by_length(ids: pa.Array) -> Iterator[tuple[int, np.ndarray]]:
    """The *ids* as fixed-width byte strings, one array (a copy) per byte length."""
    lengths = pc.binary_length(ids)
    for length in pc.unique(lengths).to_pylist():
        if length:  # an empty id is no case (the case-id rule), and is never asked
            yield length, _fixed(ids.filter(pc.equal(lengths, length)), length)


def _fixed(ids: pa.Array, length: int) -> np.ndarray:
    """Strings all *length* (> 0) bytes long as a NumPy ``S<length>`` array (a view of
    the fixed-width copy Arrow makes)."""
    fixed = pc.cast(ids, pa.binary(length))
    return np.frombuffer(fixed.buffers()[1], dtype=f"S{length}", count=len(fixed),
                         offset=fixed.offset * length)


def _sorted(ids: np.ndarray) -> np.ndarray:
    """*ids* in order; pages read in the ledger's index order are usually so already."""
    if len(ids) > 1 and not (ids[1:] >= ids[:-1]).all():
        ids.sort(kind="stable")
    return ids
