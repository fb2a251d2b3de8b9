"""One results file's CALL/SMS counts per (case, local day), held in memory while it is read.

The ATTEMPTS flag counts a case's calls and messages of a day across files: what
committed files counted (in the ledger's ``attempts``) plus what this file's earlier
chunks counted. The second part used to be staged in the ledger chunk by chunk
(``staged_attempts``: an upsert per chunk, and a second probe per chunk to read it back)
and added to ``attempts`` at the commit — about 1.6 s of a million-row file's ~3.9 s of
ledger work. Nothing else reads it: a file's staged counts are its own, cleared when a
reading begins and dropped when it ends. :class:`FileCounts` holds them here instead,
and the commit adds them to ``attempts`` in its one transaction.

**Memory.** A key is its case id and day as one fixed-width byte string (the id's bytes
+ 10; sorted arrays per key length, searched with ``np.searchsorted``) and its count an
``int64``: ~32 bytes per (case, day) of the file, ~18 MB for the 556,000 keys of a
million synthetic rows. Past :data:`MAX_BYTES` the reading hands everything to the
ledger's staging (:meth:`FileCounts.rows`) and goes on as before, so memory is bounded
whatever the file's size.

**Arrays, not a dict.** New keys of a chunk become a sorted array of their own; arrays
of like size are merged (sizes double, as in a log-structured merge), so a key is looked
for in at most ~log2(keys / chunk) arrays and each key is copied ~log2 times in all. A
Python dict would cost ~200 bytes and a few objects per key.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gateway.validation.chunks import json_rows

# ~750,000 keys. The last merge of runs of like size holds both and the merged copy for a
# moment: ~2.3 times what is held (measured: 48 MB held peaked at ~109 MB), so the bound
# is half of what the memory budget leaves (see ownership.MAX_BYTES for the sum).
MAX_BYTES = 24 * 1024 * 1024
DAY = 10  # YYYY-MM-DD
PAGE = 50_000  # keys per JSON array handed to the ledger
# Keys of one length: their positions among those asked, the keys, and for each run held
# of that length where each key is in it and whether it is there (:func:`_find`).
_Found = tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]


class FileCounts:
    """The counts so far: per key length, a list of (sorted keys, their counts)."""

    def __init__(self) -> None:
        self._runs: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.nbytes = 0
        # The keys last asked of counted(), and where they were found, for add(): the flow
        # asks a chunk's keys, then adds the same keys' counts (the same two arrays'
        # values), with no other add() between — half of the work of both was finding the
        # keys a second time.
        self._asked: tuple[pa.Array, pa.Array, list[_Found]] | None = None

    def counted(self, case: pa.Array, day: pa.Array) -> dict[int, int]:
        """For distinct (case, day) keys given as two arrays: the count of each key held,
        by position (keys not held are left out)."""
        out: dict[int, int] = {}
        found = self._find_keys(case, day)
        for rows, keys, where in found:
            for (_, counts), (at, hit) in zip(self._runs.get(keys.dtype.itemsize, []), where,
                                              strict=True):
                out.update(zip(rows[hit].tolist(), counts[at[hit]].tolist(), strict=True))
        self._asked = (case, day, found)
        return out

    def add(self, case: pa.Array, day: pa.Array, count: pa.Array) -> None:
        """Add a chunk's counts (each key once)."""
        added = count.to_numpy(zero_copy_only=False).astype(np.int64)
        asked, self._asked = self._asked, None
        if asked is not None and asked[0].equals(case) and asked[1].equals(day):
            found = asked[2]
        else:
            found = self._find_keys(case, day)
        for rows, keys, where in found:
            runs = self._runs.setdefault(keys.dtype.itemsize, [])
            new = np.ones(len(keys), dtype=bool)
            for (_, counts), (at, hit) in zip(runs, where, strict=True):
                counts[at[hit]] += added[rows[hit]]  # keys are distinct: no index twice
                new &= ~hit
            if new.any():
                order = np.argsort(keys[new], kind="stable")
                runs.append((keys[new][order], added[rows[new]][order]))
                self.nbytes += int(new.sum()) * (keys.dtype.itemsize + 8)
                _merge(runs)

    def _find_keys(self, case: pa.Array, day: pa.Array) -> list[_Found]:
        """The keys per length (:func:`_keys`), each with where it is in each run held."""
        return [(rows, keys, [_find(run, keys) for run, _ in
                              self._runs.get(keys.dtype.itemsize, [])])
                for rows, keys in _keys(case, day)]

    def rows(self) -> Iterator[str]:
        """The counts as JSON arrays ``[["case id", "day", count], …]``, :data:`PAGE` keys
        each — how the ledger takes them (its staging, or the commit) — in key order per
        key length: the runs are merged into one first (:func:`_merge_all`).

        Why: the commit's upsert walks ``attempts``' b-tree in the order it is handed the
        keys. Run after run (~10 sorted runs of halving sizes at a million rows), each run
        went over the table's leaf pages again, and with SQLite's 2 MB page cache most of
        them had been spilled in between: in a micro-benchmark of 556,000 keys on a file
        in WAL mode, 1.13–1.38 s of CPU as runs against 0.89–0.91 s in one sorted pass."""
        self._asked = None  # the runs are merged: where keys were found no longer holds
        for length, runs in self._runs.items():
            _merge_all(runs)
            for run, counts in runs:
                for start in range(0, len(run), PAGE):
                    page = np.ascontiguousarray(run[start:start + PAGE])
                    keys = pc.cast(pa.Array.from_buffers(pa.binary(length), len(page), [
                        None, pa.py_buffer(page)]), pa.binary())
                    yield json_rows(pc.cast(pc.binary_slice(keys, 0, length - DAY), pa.string()),
                                    pc.cast(pc.binary_slice(keys, length - DAY, length),
                                            pa.string()),
                                    pa.array(counts[start:start + PAGE]))


def fits(day: pa.Array) -> bool:
    """Whether every day is ``YYYY-MM-DD`` long (the key's layout needs it; the engine's
    days always are)."""
    return not len(day) or pc.all(pc.equal(pc.binary_length(day), DAY)).as_py() is True


def _keys(case: pa.Array, day: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Case and day as one byte string per key: (the keys' positions, the keys), per
    length. Case first: the commit then adds them in the order of ``attempts``' key."""
    joined = pc.binary_join_element_wise(case, day, "")
    lengths = pc.binary_length(joined).to_numpy(zero_copy_only=False)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        same = joined if len(rows) == len(joined) else joined.take(pa.array(rows))
        fixed = pc.cast(same, pa.binary(length))
        yield rows, np.frombuffer(fixed.buffers()[1], dtype=f"S{length}", count=len(fixed),
                                  offset=fixed.offset * length)


def _find(run: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each key is in *run*, and whether it is there at all."""
    at = np.minimum(np.searchsorted(run, keys), len(run) - 1)
    return at, run[at] == keys


def _merge(runs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Merge the newest runs while the one before is not twice as large (two sorted runs
    of distinct keys: each of the smaller's keys goes where ``searchsorted`` puts it)."""
    while len(runs) > 1 and len(runs[-2][0]) <= 2 * len(runs[-1][0]):
        _merge_last(runs)


def _merge_all(runs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Merge every run into one, the newest (smallest) first. Each merge holds its two
    runs and their merged copy for a moment, as :func:`_merge` does: at most twice what is
    held, within the bound :data:`MAX_BYTES` was set for."""
    while len(runs) > 1:
        _merge_last(runs)


def _merge_last(runs: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Merge the two newest runs into one."""
    (a, ca), (b, cb) = runs[-2], runs[-1]
    if len(a) < len(b):
        (a, ca), (b, cb) = (b, cb), (a, ca)
    at = np.searchsorted(a, b) + np.arange(len(b))
    rest = np.ones(len(a) + len(b), dtype=bool)
    rest[at] = False
    keys, counts = np.empty(len(rest), dtype=a.dtype), np.empty(len(rest), dtype=np.int64)
    keys[at], counts[at] = b, cb
    keys[rest], counts[rest] = a, ca
    runs[-2:] = [(keys, counts)]
