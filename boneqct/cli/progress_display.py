"""The command line's progress display: the core's long steps (``boneqct.progress``) as tqdm
lines on stderr, each shown once it has run ``DELAY_S`` seconds and cleared when done.

Shown only on a terminal and without ``--quiet``: a log file or a pipe gets none of it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

from tqdm import tqdm

#: Steps shorter than this (s) are not shown.
DELAY_S = 2.0
#: How often (s) the elapsed time of a running step is redrawn.
REFRESH_S = 0.5


class TerminalProgress:
    """A ``boneqct.progress`` reporter drawing on ``stream`` with tqdm: a step as its name
    and elapsed time, a counted loop as a bar."""

    def __init__(self, stream=None, delay_s: float | None = None):
        self.stream = stream or sys.stderr
        self.delay_s = DELAY_S if delay_s is None else delay_s
        self._step = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def step(self, description: str) -> None:
        with self._lock:
            self._close_step()
            self._step = tqdm(desc=description, bar_format="{desc} ({elapsed})",
                              file=self.stream, delay=self.delay_s, leave=False)

    def bar(self, description: str, total: int | None):
        with self._lock:
            self._close_step()
        return tqdm(desc=description, total=total, unit="step", file=self.stream,
                    delay=self.delay_s, leave=False, dynamic_ncols=True)

    def close(self) -> None:
        self._stop.set()
        self._ticker.join()
        with self._lock:
            self._close_step()

    def _close_step(self) -> None:
        if self._step is not None:
            self._step.close()
            self._step = None

    def _tick(self) -> None:
        """Redraw the running step's elapsed time (tqdm redraws only on an update)."""
        while not self._stop.wait(REFRESH_S):
            with self._lock:
                if self._step is not None and time.time() - self._step.start_t >= self.delay_s:
                    self._step.refresh()


@contextlib.contextmanager
def terminal_progress(quiet: bool) -> Iterator[TerminalProgress | None]:
    """A TerminalProgress on stderr for the block, or None when ``quiet`` or stderr is not a
    terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    display = TerminalProgress()
    try:
        yield display
    finally:
        display.close()
