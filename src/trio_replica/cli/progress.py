"""A progress display for long runs: a redrawn bar on a terminal, plain lines otherwise.

On a terminal the bar is redrawn in place at most ten times a second, so
drawing never costs more than the work it reports. When the stream is not a
terminal (a log file, a CI job, a pipe), carriage returns would make a mess,
so it prints one plain line each time another tenth of the total is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]

_BAR_WIDTH = 30
_REDRAW_SECONDS = 0.1
_MIN_RATE_SECONDS = 0.5


class Progress:
    """Shows ``done`` out of ``total`` units of work on ``stream``.

    Call :meth:`update` as often as you like with the running count, and
    :meth:`finish` once at the end (it ends the bar's line). ``interactive``
    defaults to whether ``stream`` is a terminal.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        total: int,
        label: str,
        unit: str = "ops",
        interactive: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total <= 0:
            raise ValueError(f"total must be positive, got {total}")
        self._stream = stream
        self._total = total
        self._label = label
        self._unit = unit
        self._clock = clock
        self._interactive = stream.isatty() if interactive is None else interactive
        self._started = clock()
        self._last_draw = float("-inf")
        self._last_tenth = 0
        self._done = 0
        self._finished = False

    @property
    def done(self) -> int:
        """The last count given to :meth:`update`."""
        return self._done

    def _status(self) -> str:
        percent = min(100, self._done * 100 // self._total)
        status = f"{self._done}/{self._total} {self._unit} ({percent}%)"
        elapsed = self._clock() - self._started
        # A rate over a few milliseconds is noise; show it once it means something.
        if elapsed >= _MIN_RATE_SECONDS:
            status += f", {self._done / elapsed:,.0f} {self._unit}/s"
        return status

    def update(self, done: int) -> None:
        """Record that ``done`` units are complete, and redraw if it is time to."""
        self._done = done
        if self._interactive:
            now = self._clock()
            if now - self._last_draw >= _REDRAW_SECONDS:
                self._last_draw = now
                self._draw()
            return
        tenth = min(10, done * 10 // self._total)
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self._stream.write(f"{self._label}: {self._status()}\n")
            self._stream.flush()

    def _draw(self) -> None:
        filled = min(_BAR_WIDTH, self._done * _BAR_WIDTH // self._total)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {self._status()}\x1b[K")
        self._stream.flush()

    def finish(self, note: str = "") -> None:
        """Draw the final count, followed by ``note``, and end the line. Idempotent."""
        if self._finished:
            return
        self._finished = True
        suffix = f" - {note}" if note else ""
        if self._interactive:
            self._draw()
            self._stream.write(f"{suffix}\n")
        else:
            self._stream.write(f"{self._label}: {self._status()}{suffix}\n")
        self._stream.flush()
