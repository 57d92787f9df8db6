"""Progress on stderr that counts what is finished, not what was read.

A tool that works on one record at a time finishes a record when it asks for the next one; a
tool that reads ahead (a pool of requests or sandbox jobs in flight, `threaded_aiter`) finishes
one when it writes it. The count shown is the finished records; the bar is the input's bytes
read, scaled by the share of the records read so far that are finished, so 24 sandbox jobs read
at once show 0 % until the first one is done, and the time left follows what finishes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

#: seconds of samples behind the rate and the time left; rich's default (30 s) shows no time
#: left at all when one unit takes longer than that (an SFT step, a long trajectory)
SPEED_WINDOW = 3600.0
#: seconds between two updates of the display (rich draws 10 times a second)
REDRAW = 0.05


class RecordStream:
    """An iterator of records whose consumer may say it reads ahead (`threaded_aiter` does):
    then a record is finished when it is written, not when the next one is taken."""

    def __init__(self, items: Iterator[Any], on_read_ahead: Callable[[], None]):
        self.items, self.on_read_ahead = items, on_read_ahead

    def __iter__(self) -> RecordStream:
        return self

    def __next__(self) -> Any:
        return next(self.items)

    def read_ahead(self) -> None:
        self.on_read_ahead()

    def close(self) -> None:
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def stderr_is_terminal() -> bool:
    """Progress is drawn only for a person watching stderr."""
    return sys.stderr.isatty()


class RunProgress:
    """A rich progress display on stderr for one run over records."""

    def __init__(
        self,
        tool: str,
        unit: str,
        total_bytes: int | None,
        per_record: int = 1,
        console: Any = None,
        clock: Callable[[], float] | None = None,
    ):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.unit = unit
        self.per_record = per_record
        self.total_bytes = total_bytes
        self.bytes_read = 0
        self.consumed = 0  # input records taken (bad and skipped ones too)
        self.finished = 0  # output units finished
        self.clock = clock or time.monotonic
        self._t0 = self.clock()
        self._drawn = -REDRAW
        self.bar = Progress(
            TextColumn(f"[bold]{tool}"),
            BarColumn(),
            TextColumn(
                "{task.fields[n]} " + unit + " · {task.fields[rate]}/s {task.fields[extra]}"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
            speed_estimate_period=SPEED_WINDOW,
            get_time=self.clock,
        )
        self.task = self.bar.add_task(tool, total=total_bytes, n=0, rate="-", extra="")

    @property
    def console(self) -> Any:
        return self.bar.console

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self._draw()
        self.bar.stop()

    def read(self, nbytes: int) -> None:
        """Bytes of input read (drives the bar only through `finish`)."""
        self.bytes_read += nbytes

    def take(self, n: int = 1) -> None:
        """`n` input records taken from the input."""
        self.consumed += n

    def elapsed(self) -> float:
        """Seconds since the display was made (never 0)."""
        return max(self.clock() - self._t0, 1e-9)

    def finish(self, units: int = 1) -> None:
        """`units` output units done: the count, the rate and the bar follow (redrawn at most
        every REDRAW seconds: a fast tool finishes 100,000 records a second)."""
        self.finished += units
        if self.clock() - self._drawn >= REDRAW:
            self._draw()

    def _draw(self) -> None:
        self._drawn = self.clock()
        fields: dict[str, Any] = {
            "n": self.finished,
            "rate": rate_text(self.finished / self.elapsed()),
        }
        if self.total_bytes is not None and self.consumed:
            share = min(1.0, self.finished / (self.consumed * self.per_record))
            fields["completed"] = self.bytes_read * share
        self.bar.update(self.task, **fields)

    def status(self, text: str) -> None:
        self.bar.update(self.task, extra=text)

    def fields(self) -> dict[str, Any]:
        """What the display shows now: count, rate, extra text, completed and total."""
        self._draw()
        task = self.bar.tasks[0]
        return {**task.fields, "completed": task.completed, "total": task.total}


def rate_text(per_second: float) -> str:
    """A rate as people read it: 1,234 / 12.3 / 0.25."""
    if per_second >= 100:
        return f"{per_second:,.0f}"
    if per_second >= 1:
        return f"{per_second:.1f}"
    return f"{per_second:.2f}"


def clock_text(seconds: float | None) -> str:
    """h:mm:ss, or -:--:-- when unknown."""
    if seconds is None:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
