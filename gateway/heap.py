"""Keep the process's heap the size of what it holds, not of what it once held.

The columnar engine frees megabyte-sized buffers (blocks of the decrypted CSV,
chunks of columns, CSV text for the sealing pipes) many times a second, from the
main thread and from the gpg drain threads. glibc's allocator raises its mmap
threshold to the largest block freed so far, after which such buffers come from
per-thread heaps that fragment and are never given back: measured on a 100,000-
case batch, the daemon grew to ~210 MB where ~160 MB is live. A fixed threshold
(big buffers are mapped and unmapped, as their size deserves), a heap per core
rather than per thread, and Arrow on the
same system allocator (its default, mimalloc, keeps freed pages for reuse) hold
the daemon flat at the lower figure. Called once, before any work.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import sys
from collections.abc import Iterator

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # mallopt parameters, from glibc's <malloc.h>
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, now fixed
ARENAS = 2  # not one heap per thread (the 15 drain threads): one per core


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library already loaded in this process (``dlopen(NULL)``): not
    ``ctypes.util.find_library``, which starts ``/sbin/ldconfig`` (or gcc, ld, from PATH)
    — the daemon starts no program but gpg (tests/exec_audit.py)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


@functools.cache
def bound() -> bool:
    """Whether glibc took the setting (not on another C library: nothing to do there).

    Call before pyarrow and NumPy are imported: Arrow's C++ side picks its allocator
    once, from ``ARROW_DEFAULT_MEMORY_POOL``; NumPy's OpenBLAS starts its thread pool at
    import, from ``OPENBLAS_NUM_THREADS`` — a thread per extra core that spins while it
    waits for matrix work the gateway never gives it (0.1 s of CPU in the first half
    second, 1-2 % of a batch's samples in ``perf``: taken from the two cores' work)."""
    if "pyarrow" not in sys.modules:
        os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    libc = _libc()  # None: not glibc, nothing to tune
    return bool(libc and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and libc.mallopt(M_ARENA_MAX, ARENAS))


@contextlib.contextmanager
def loading() -> Iterator[None]:
    """Import the gateway's modules with the cyclic garbage collector off, then freeze what
    they made (``gc.freeze``): later collections skip it.

    A start builds a few hundred thousand objects that live as long as the process
    (modules, classes, the ORM's and pydantic's tables); while they are made, the collector
    runs a collection every 700 allocations and walks them again and again — ~250
    collections and ~0.1 s of a ~0.9 s ``run --once`` with nothing to do. Nothing they make
    is garbage, so there is nothing to wait for. Collection is on again when the block
    ends, whatever happened in it (a long-running command collects as usual)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
        gc.freeze()
