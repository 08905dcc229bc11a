"""Progress as plain lines, for a stderr that is a file or a pipe (a log, ``nohup``, CI).

A live bar redraws itself in place, which a file cannot show: written to a log it leaves
nothing or a mess of control codes. :class:`LineProgress` prints instead one line such as

    fit: 1024/7239 (14%), 61.8/s, elapsed 0:16, eta 1:40

at most every ``interval`` seconds (:data:`PROGRESS_INTERVAL_S`, or the environment's
``REIDCTL_PROGRESS_INTERVAL``), and one closing line for each stage that printed any. A
command that ends within the interval prints nothing at all.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable

from reidctl.errors import InputError

PROGRESS_INTERVAL_S = 5.0
PROGRESS_INTERVAL_ENV = "REIDCTL_PROGRESS_INTERVAL"


def progress_interval() -> float:
    """Seconds between two progress lines: ``REIDCTL_PROGRESS_INTERVAL`` when set, else
    :data:`PROGRESS_INTERVAL_S` (0 prints a line at every step).

    Raises:
        InputError: the variable is not a finite number >= 0.
    """
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return PROGRESS_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"{PROGRESS_INTERVAL_ENV} must be a number of seconds >= 0, "
                         f"got {raw!r}")
    return value


def _clock_text(seconds: float) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _rate_text(rate: float) -> str:
    return f"{rate:.0f}/s" if rate >= 100 else f"{rate:.1f}/s" if rate >= 1 else f"{rate:.2f}/s"


class LineTask:
    """One stage of a :class:`LineProgress`: ``advance(n)`` or ``update(completed)``."""

    def __init__(self, owner: LineProgress, description: str, total: int,
                 completed: int = 0) -> None:
        self.owner, self.description, self.total = owner, description, max(int(total), 0)
        self.completed = self.first = completed
        self.started = owner.clock()
        self.printed = self.closed = False
        self.detail = ""

    def advance(self, n: int) -> None:
        """``n`` more steps done."""
        self.update(self.completed + n)

    def update(self, completed: int, detail: str = "") -> None:
        """``completed`` steps done so far; ``detail`` (e.g. a running loss) ends the line."""
        self.completed, self.detail = completed, detail or self.detail
        if self.closed:
            return
        if self.total and completed >= self.total:
            self.closed = True
            if self.printed:  # a stage that was reported on is also reported finished
                self.owner.emit(self.line(done=True))
        elif self.owner.due():
            self.printed = True
            self.owner.emit(self.line())

    def line(self, *, done: bool = False) -> str:
        """The stage's progress line: done/total, percentage, rate, elapsed time, ETA."""
        elapsed = max(self.owner.clock() - self.started, 1e-9)
        rate = (self.completed - self.first) / elapsed
        head = f"{self.description}: {self.completed}/{self.total}"
        if done:
            text = f"{head} done in {_clock_text(elapsed)} ({_rate_text(rate)})"
        else:
            pct = f" ({100 * self.completed / self.total:.0f}%)" if self.total else ""
            left = self.total - self.completed
            eta = _clock_text(left / rate) if rate > 0 and self.total else "?"
            text = (f"{head}{pct}, {_rate_text(rate)}, elapsed {_clock_text(elapsed)}, "
                    f"eta {eta}")
        return f"{text}, {self.detail}" if self.detail else text


class LineProgress:
    """Progress of the stages of one command as plain lines, written through ``write``.

    Lines are printed when a stage advances, at most one per ``interval`` seconds over all
    stages (counted from the start), plus a closing line for each stage that printed one.

    Args:
        write: prints one line (the CLI's stderr console, which masks secrets).
        interval: seconds between two lines (0: every step).
        clock: monotonic seconds (replaceable in tests).
    """

    def __init__(self, write: Callable[[str], None], interval: float = PROGRESS_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, interval, clock
        self.last = clock()

    def due(self) -> bool:
        """Whether a line may be printed now (``interval`` since the last one)."""
        return self.clock() - self.last >= self.interval

    def emit(self, line: str) -> None:
        """Prints ``line`` and restarts the interval."""
        self.last = self.clock()
        self.write(line)

    def stage(self, description: str, total: int, completed: int = 0) -> LineTask:
        """A new stage of ``total`` steps, ``completed`` of them already done."""
        return LineTask(self, description, total, completed)
