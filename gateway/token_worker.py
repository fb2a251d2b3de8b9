"""The keyed ``token`` rule computed in a second process: off the daemon's interpreter lock.

One HMAC per value is Python work (:func:`masking_columns.token_digests`, ~0.9 µs a
value, no faster in NumPy or through ``hmac``), and in the daemon it ran on the sealing
thread while holding the lock the reading thread needs between its Arrow calls. A child
interpreter computes the same digests from the same bytes instead; the sealer hands it a
chunk's token columns at once and builds the other columns while it hashes.

What keeps the child harmless:

- It is this Python, isolated (``-I -S``: no environment, no site, no user or working
  directory on its path), running :data:`CHILD` from its command line: the standard
  library's ``hashlib``, ``struct`` and ``sys``, nothing of the gateway. It opens no file.
- Case data and keys reach it only through its stdin pipe, and the digests come back
  through its stdout: nothing is written to disk.
- It ends at the end of its stdin: when the daemon closes the pipe, exits or is killed,
  so nothing is left behind. An error in it ends it too (its stderr is discarded: a
  traceback could quote a value), and the daemon then computes the tokens itself.

The protocol, native byte order (the same machine): a request is the job count (uint32),
then per job its value count *n* and data length (uint32 each), HMAC's inner and outer key
blocks (64 bytes each), *n + 1* value offsets from 0 (uint32) and the values' UTF-8 bytes;
the reply is :data:`masking_columns.TOKEN_BYTES` per value, job after job. A request is
written whole before its reply is read, and the child reads one whole before it writes.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import IO

import numpy as np
import pyarrow as pa
import structlog

from gateway.masking_columns import (
    TOKEN_BYTES,
    TokenJobs,
    hex_tokens,
    hmac_pads,
    token_input,
    tokens_here,
)

log = structlog.get_logger("gateway.token_worker")

# The child's program. No "/" in it: the test session's exec audit treats an argument with
# one as a file name (tests/exec_audit.py).
CHILD = """\
import hashlib, struct, sys
TOKEN_BYTES = {TOKEN_BYTES}
src, dst = sys.stdin.buffer, sys.stdout.buffer
def take(n):
    got = src.read(n)
    if len(got) != n:
        raise SystemExit(0)
    return got
while True:
    head = src.read(4)
    if len(head) != 4:
        break
    out = []
    for _ in range(struct.unpack("=I", head)[0]):
        n, size = struct.unpack("=II", take(8))
        copy_inner, copy_outer = hashlib.sha256(take(64)).copy, hashlib.sha256(take(64)).copy
        bounds = memoryview(take(4 * n + 4)).cast("I").tolist()
        data = take(size)
        for start, end in zip(bounds[:-1], bounds[1:]):
            h = copy_inner()
            h.update(data[start:end])
            o = copy_outer()
            o.update(h.digest())
            out.append(o.digest()[:TOKEN_BYTES])
    dst.write(b"".join(out))
    dst.flush()
"""
CHILD = CHILD.replace("{TOKEN_BYTES}", str(TOKEN_BYTES))


class TokenWorker:
    """The child process and its two pipes, for one file's sealing thread."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603 — argv list,
            # no shell: this Python, its program a constant
            [sys.executable, "-I", "-S", "-c", CHILD], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={}, close_fds=True)
        self._pending: list[Callable[[], list[pa.Array]]] = []  # requests not yet read, in order

    def __call__(self, jobs: TokenJobs) -> Callable[[], list[pa.Array]]:
        """A :data:`masking_columns.Tokenizer`: the jobs written to the child now, their
        columns read back when asked for. Replies come in the order of the requests, and
        a request is written only when none is outstanding (else the child, blocked on
        writing a reply nobody reads, would stop reading it: a deadlock). If the child is
        gone, this thread computes."""
        for earlier in self._pending:
            earlier()
        proc = self._proc
        if proc is None:
            return tokens_here(jobs)
        assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 — piped above
        try:
            _write(proc.stdin, jobs)
        except OSError:
            self._lost("write")
            return tokens_here(jobs)
        done: list[pa.Array] = []

        def fetch() -> list[pa.Array]:
            if fetch in self._pending:
                while self._pending[0] is not fetch:
                    self._pending[0]()
                self._pending.pop(0)
                done[:] = self._read(proc, jobs)
            return done

        self._pending.append(fetch)
        return fetch

    def _read(self, proc: subprocess.Popen[bytes], jobs: TokenJobs) -> list[pa.Array]:
        assert proc.stdout is not None  # noqa: S101 — piped
        counts = [len(col) for _, col in jobs]
        total = sum(counts) * TOKEN_BYTES
        data = proc.stdout.read(total) if self._proc is proc else b""
        if len(data) != total:
            self._lost("read")
            return tokens_here(jobs)()
        out, at = [], 0
        for n in counts:
            out.append(hex_tokens(memoryview(data)[at:at + n * TOKEN_BYTES], n))
            at += n * TOKEN_BYTES
        return out

    def _lost(self, when: str) -> None:
        log.warning("token_worker.lost", when=when)
        self.close()

    def close(self) -> None:
        """End the child (its stdin closed: it exits) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _write(pipe: IO[bytes], jobs: TokenJobs) -> None:
    pipe.write(struct.pack("=I", len(jobs)))
    for key, col in jobs:
        offsets, data = token_input(col)
        ipad, opad = hmac_pads(key)
        pipe.write(struct.pack("=II", len(col), len(data)))
        pipe.write(ipad + opad)
        pipe.write(offsets.astype(np.uint32).tobytes())
        pipe.write(data)
    pipe.flush()
