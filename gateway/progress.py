"""Progress of the file in hand, for a person at a terminal (docs/cli.md).

`gateway run --once` on a TTY shows, per file, a bar of the ciphertext read so far
(of its size), the rows, rows per second and the time left. A daemon under systemd
shows nothing: its stdout is not a terminal and journald keeps the JSON lines. The
flows only ever call the three methods of :class:`Progress`; the silent one costs a
method call per 1,000 rows.

The log lines of the same run are printed *through* the bar's console, so they
appear above the bar instead of tearing it.
"""

from __future__ import annotations

import time
from typing import TextIO, cast

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text

from gateway.streams import Readable


class Progress:
    """Silent: what a daemon and the tests use."""

    def track(self, src: Readable, label: str, total: int) -> Readable:
        """*src* (the ciphertext being decrypted), counted when shown."""
        return src

    def rows(self, n: int) -> None:
        """*n* rows of the file in hand have been read."""

    def done(self) -> None:
        """The file in hand is finished (whatever its outcome)."""

    def count(self, label: str, total: int) -> None:
        """Work of *total* items starts (a purge's objects); :meth:`step` per item."""

    def step(self) -> None:
        """One more item of the counted work is done."""

    def close(self) -> None:
        """The run is over."""


class _Counting:
    """A binary reader that counts what was read through it (gpg is fed from a thread)."""

    def __init__(self, src: Readable) -> None:
        self._src = src
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self.count += len(data)
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._src, name)


class _Amount(ProgressColumn):
    """Bytes of ciphertext read for a file (of its size); nothing more for counted work,
    whose count is the next column."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        return self._bytes.render(task) if task.fields.get("unit") == "rows" else Text("")


class TerminalProgress(Progress):
    """A rich progress bar per file on *console* (standard error, a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._bar = RichProgress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            _Amount(),
            TextColumn("{task.fields[rows]:>11,} {task.fields[unit]}"),
            TextColumn("{task.fields[rate]:>9} {task.fields[unit]}/s"),
            TimeRemainingColumn(),
            console=console, transient=False, redirect_stdout=False, redirect_stderr=False)
        self._task: TaskID | None = None
        self._counted: TaskID | None = None  # a purge's objects
        self._steps = 0
        self._total = 1
        self._reader: _Counting | None = None
        self._t0 = 0.0
        self._started = False

    def track(self, src: Readable, label: str, total: int) -> Readable:
        if not self._started:
            self._bar.start()
            self._started = True
        self._reader = _Counting(src)
        self._total = max(total, 1)
        self._task = self._bar.add_task(label, total=self._total, rows=0, rate="-", unit="rows")
        self._t0 = time.monotonic()
        return self._reader

    def rows(self, n: int) -> None:
        if self._task is None or self._reader is None:
            return
        elapsed = time.monotonic() - self._t0
        rate = f"{n / elapsed:,.0f}" if elapsed > 0 else "-"
        self._bar.update(self._task, completed=self._reader.count, rows=n, rate=rate)

    def count(self, label: str, total: int) -> None:
        if not self._started:
            self._bar.start()
            self._started = True
        self._counted = self._bar.add_task(label, total=max(total, 1), rows=0, rate="-",
                                           unit="objects")
        self._steps, self._t0 = 0, time.monotonic()

    def step(self) -> None:
        if self._counted is None:
            return
        self._steps += 1
        elapsed = time.monotonic() - self._t0
        self._bar.update(self._counted, advance=1, rows=self._steps,
                         rate=f"{self._steps / elapsed:,.0f}" if elapsed > 0 else "-")

    def done(self) -> None:
        if self._counted is not None:
            self._bar.stop_task(self._counted)
            self._counted = None
        if self._task is not None:
            self._bar.update(self._task, completed=self._total)
            self._bar.stop_task(self._task)
        self._task = self._reader = None

    def close(self) -> None:
        if self._started:
            self._bar.stop()
            self._started = False

    def log_stream(self) -> TextIO:
        """Where the run's log lines go while the bar is shown: above it. (structlog types
        its PrintLogger's file as TextIO; it calls write, flush and isatty, all here.)"""
        return cast(TextIO, _ConsoleStream(self.console))


class _ConsoleStream:
    """A text stream (for structlog's PrintLogger) that prints through a rich console."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._line = ""

    def write(self, text: str) -> int:
        """Whole lines only: a line printed in two writes (``print`` writes the text, then
        the newline) would leave the cursor mid-line for the bar to be drawn after."""
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        self._console.file.flush()

    def isatty(self) -> bool:
        return True  # readable lines, not JSON: a person is watching
