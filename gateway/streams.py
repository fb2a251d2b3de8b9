"""What the gateway reads a file through: ``read`` and nothing more.

A zone's reader (which checks, at the file's end, that nobody was still writing it), the
progress bar's counting reader and an open file all are one. ``typing.BinaryIO`` promised
some twenty methods more that the first two do not have; typing them so needed an
ignore at every place that handed one out, and hid which methods a reader may rely on.
"""

from __future__ import annotations

from typing import Protocol


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes:
        """Up to *size* bytes (all that is left for -1); ``b""`` at the end."""
        ...


class ReadsInto(Readable, Protocol):
    """A reader that also fills a buffer it is given: the columnar reader's input, which
    reads into one buffer for its whole life rather than taking a fresh bytes per read."""

    def readinto(self, buffer: memoryview, /) -> int | None:
        """Bytes put at *buffer*'s start (0 at the end; None: none yet, non-blocking)."""
        ...
