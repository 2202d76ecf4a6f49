"""Progress lines of long steps (targets, sequences, dataset) in the rule's log.

``Progress(what, total, unit)`` is told how much is done (``update(n)``) and logs, at most
every ``every_s`` seconds (``PROGRESS_EVERY_S``, 30), one line: done / total, share, rate and
ETA, e.g. ``targets: 51,200 / 199,324 rows (25.7%), 1,702 rows/s, ETA 1 min 56 s``;
``finish()`` logs the total and the mean rate. ``every_s=None`` reads ``PROGRESS_EVERY_S`` when
the step starts (tests set it to 0 to see every line). A line is written only when ``update`` is
called, so a step reports at least every ``every_s`` seconds as long as each of its updates
comes sooner (a block of GCT rows, a batch of transcripts: well under a second each).
The clock is a parameter so tests drive it by hand.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

PROGRESS_EVERY_S = 30.0

_log = logging.getLogger(__name__)


def format_seconds(seconds: float) -> str:
    """``75.2`` -> ``1 min 15 s``; ``3725`` -> ``1 h 2 min``; ``4.2`` -> ``4 s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


class Progress:
    """Counts what a step has done and logs a progress line every ``every_s`` seconds."""

    def __init__(
        self,
        what: str,
        total: int | None = None,
        unit: str = "rows",
        every_s: float | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.log = logger or _log
        self.clock = clock
        self.done = 0
        self.lines = 0  # progress lines logged so far
        self.start = self._last = clock()

    def update(self, n: int = 1) -> None:
        """``n`` more done; a progress line when ``every_s`` has passed since the last."""
        self.done += n
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self.lines += 1
            self.log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.what}: {self.done:,}"
        if self.total:
            text += f" / {self.total:,} {self.unit} ({self.done / self.total:.1%})"
        else:
            text += f" {self.unit}"
        text += f", {rate:,.0f} {self.unit}/s"
        if self.total and rate > 0:
            text += f", ETA {format_seconds(max(0, self.total - self.done) / rate)}"
        return text

    def finish(self) -> None:
        """The closing line: how much in how long, at what mean rate."""
        elapsed = self.clock() - self.start
        rate = f", {self.done / elapsed:,.0f} {self.unit}/s" if elapsed > 0 else ""
        self.log.info(
            "%s: %s %s done in %s%s",
            self.what,
            f"{self.done:,}",
            self.unit,
            format_seconds(elapsed),
            rate,
        )
