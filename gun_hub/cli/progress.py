"""Progress bars for long command-line runs, drawn only on an interactive terminal.

Piped, captured or CI output gets nothing from here, so the lines that scripts and tests
parse stay exactly as they were. Bars go to stderr: stdout keeps the command's results.

Cost: :meth:`ProgressBar.advance` is under a microsecond when a bar is shown (rich only
updates a counter; drawing happens on rich's own thread a few times a second) and a bare
method call when it is not, so calling it per message is affordable; call sites still
advance per batch where they have one.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

REFRESH_PER_SECOND = 8


class RateColumn(ProgressColumn):
    """Items per second over rich's recent window, e.g. ``412.5 decisions/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.speed
        shown = "-" if speed is None else f"{speed:,.1f}"
        return Text(f"{shown} {self.unit}/s", style="progress.data.speed")


class ProgressBar:
    """One run's progress. Every method does nothing when the bar is not shown."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def set_completed(self, completed: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=completed)

    def set_total(self, total: int | None) -> None:
        """Set or change the total; ``None`` makes the bar indeterminate (a pulse)."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total)


HIDDEN = ProgressBar()
"""A bar that is never drawn: the default of functions that accept one."""


def stderr_console() -> Console:
    """A console on stderr that counts as a terminal only if stderr really is one.

    rich also treats ``FORCE_COLOR`` as "this is a terminal"; CI sets it for colours, and
    an animated bar in a CI log is noise, so the stream itself decides.
    """
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        terminal = bool(isatty and isatty())
    except ValueError:  # closed stream (end of a pytest run)
        terminal = False
    return Console(stderr=True, force_terminal=terminal)


@contextmanager
def progress_bar(
    description: str,
    *,
    total: int | None = None,
    unit: str = "items",
    console: Console | None = None,
    transient: bool = True,
) -> Iterator[ProgressBar]:
    """A bar with description, done/total, rate and elapsed time, for the ``with`` body.

    Args:
        description: what is being counted, e.g. ``"waiting for decisions"``.
        total: how many steps make 100 %; ``None`` when not known (yet).
        unit: the counted thing, for the rate column (``"records"`` -> ``records/s``).
        console: where to draw; stderr by default. Nothing is written unless the console
            is an interactive terminal.
        transient: erase the bar at the end, leaving the output as it is without one.
    """
    console = console or stderr_console()
    if not (console.is_terminal and console.is_interactive):  # interactive: not TERM=dumb
        yield HIDDEN
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        console=console,
        transient=transient,
        refresh_per_second=REFRESH_PER_SECOND,
    ) as progress:
        yield ProgressBar(progress, progress.add_task(description, total=total))
