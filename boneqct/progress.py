"""Progress of long steps, for whoever wants to show it; silent unless asked.

The core marks its long steps with :func:`step` (one indivisible step, e.g. "FE linear solve")
and :func:`track` (a loop whose items are counted, e.g. the load increments). Nothing is shown
unless a caller installs a reporter for the duration of a call with :func:`reporting`: the
command line installs a terminal display (``boneqct.cli.progress_display``), Slicer may install
one that moves its progress bar. Without a reporter both calls cost nothing.

A reporter is any object with two methods:

- ``step(description)``: a step named ``description`` starts now (it ends at the next call
  or when the reporting block ends);
- ``bar(description, total)``: a counted loop starts; returns an object with ``update(n)``
  and ``close()`` (a ``tqdm`` bar fits).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    """What :func:`reporting` installs (see the module docstring)."""

    def step(self, description: str) -> None: ...

    def bar(self, description: str, total: int | None) -> Any: ...


_REPORTER: ContextVar[Reporter | None] = ContextVar("boneqct_progress_reporter", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Report the steps of the core run inside the block to ``reporter`` (None: silent)."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def step(description: str) -> None:
    """Say that the step ``description`` starts now (no effect without a reporter)."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter.step(description)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items``, counting each one done to the reporter (none: plain iteration);
    ``total`` defaults to ``len(items)`` where it has one."""
    reporter = _REPORTER.get()
    if reporter is None:
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    bar = reporter.bar(description, total)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()
