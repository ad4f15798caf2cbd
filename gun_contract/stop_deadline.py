"""A process asked to stop, or ending after a crash, ends within a bound.

Every component's stop waits on the broker somewhere: a hub worker's faust stop commits
and flushes its producer, an adapter commits what its replica handled, the gateway's
producer flushes what it has not sent. With the broker gone (or a consumer thread a
crash had stopped) those waits never ended: SIGTERM was ignored until the supervisor's
SIGKILL, and a worker that crashed never exited at all, so nothing restarted it (CI of
stop 50; an outside audit of stop 51 with the broker stopped: the hub, an adapter and the
gateway each still up after two minutes). What a stop cuts short is what a crash leaves:
records not committed are read again and handled once (ADR 0001), lodgements not
confirmed were answered so and are lodged again.

:class:`StopDeadline` is started when the stop begins (the signal, or the main coroutine
ending); past ``within_s`` a daemon thread logs where the event loop's tasks wait (the
frame each waits in, never a local: nothing of a secret), says the component's last
words (a refusal of rights is still said in its sentence) and ends the process with
``os._exit``: no wait on a non-daemon thread (faust's consumer thread kept a worker whose
loop was closed alive), no finaliser that blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

# Below the grace period a supervisor gives (deploy/k8s: 60 s; systemd's default: 90 s),
# so that the process ends on its own terms, saying where it waited, not by a SIGKILL.
DEFAULT_STOP_WITHIN_S = 45.0
STOPPED_SHORT = 1  # the exit code of a stop cut short: not a clean one
_MOST_TASKS_SAID = 20
_BACKSTOP_AFTER_S = 5.0


def _no_last_words() -> tuple[int, str | None]:
    return STOPPED_SHORT, None


class StopDeadline:
    """From :meth:`start` on, the process has ``within_s`` to end."""

    def __init__(
        self,
        component: str,
        within_s: float = DEFAULT_STOP_WITHIN_S,
        last_words: Callable[[], tuple[int, str | None]] = _no_last_words,
        exit_now: Callable[[int], Any] = os._exit,
    ) -> None:
        """``last_words``: the exit code and a sentence for stderr (None: none), asked
        when the deadline passes; ``exit_now``: how the process ends (the tests')."""
        self._component = component
        self._within_s = within_s
        self._last_words = last_words
        self._exit_now = exit_now
        self._timer: threading.Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """The stop begins: idempotent, the first start counts. Called in the event loop
        (from a signal handler, or as the main coroutine ends) or outside it."""
        with self._lock:
            if self._timer is not None:
                return
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None
            self._timer = threading.Timer(self._within_s, self._expire)
            self._timer.daemon = True  # never what keeps the process up
            self._timer.start()
            if self._exit_now is os._exit:
                # The backstop of the backstop: a C thread that needs neither the GIL nor
                # a logging lock (the loop's thread may hold either, stuck), dumping
                # every thread's frames (no variable) and exiting 1.
                faulthandler.dump_traceback_later(self._within_s + _BACKSTOP_AFTER_S, exit=True)

    @property
    def within_s(self) -> float:
        return self._within_s

    def watching(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop whose tasks to name when the deadline passes, when :meth:`start` is
        called outside it."""
        self._loop = loop

    def _expire(self) -> None:
        """Say what can be said, then end: each saying a best effort (a handler's stream
        closed, a last word that fails), the end whatever happened before it."""
        code, sentence = STOPPED_SHORT, None
        try:
            code, sentence = self._last_words()
            log.error(
                "%s did not stop within %g s; ended where it waited: %s",
                self._component,
                self._within_s,
                waiting_in(self._loop),
            )
            for handler in logging.getLogger().handlers:
                with contextlib.suppress(Exception):
                    handler.flush()
            if sentence:
                sys.stderr.write(sentence + "\n")
        except Exception:  # noqa: BLE001, S110 - the end comes whatever the saying did
            pass
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
                sys.stdout.flush()
            self._exit_now(code)


def stopping(deadline: StopDeadline, stop: Callable[[], Any]) -> Callable[[], None]:
    """A signal handler: the deadline started, then ``stop``."""

    def handle() -> None:
        deadline.start()
        stop()

    return handle


def waiting_in(loop: asyncio.AbstractEventLoop | None) -> str:
    """Where ``loop``'s tasks wait: each the innermost frame of its chain of awaits
    (``file:line function``), the same place counted once. Read from another thread
    while the loop may run: a best effort, for the log."""
    if loop is None:
        return "(no event loop)" + _threads_left()
    for _ in range(3):
        try:
            tasks = list(asyncio.all_tasks(loop))
            break
        except RuntimeError:  # the set of tasks changed meanwhile: look again
            continue
    else:
        return "(the tasks could not be listed)" + _threads_left()
    places: dict[str, int] = {}
    for task in tasks:
        place = _innermost(task.get_coro())
        places[place] = places.get(place, 0) + 1
    said = [
        f"{place}" + (f" (x{count})" if count > 1 else "")
        for place, count in sorted(places.items(), key=lambda item: -item[1])
    ]
    more = len(said) - _MOST_TASKS_SAID
    tasks_said = "; ".join(said[:_MOST_TASKS_SAID]) + (f"; and {more} more" if more > 0 else "")
    return tasks_said + _threads_left()


def _threads_left() -> str:
    """The non-daemon threads besides the main one, each where it is: one of them keeps
    the process up once its loop is closed (faust's consumer thread did)."""
    frames = sys._current_frames()
    left = [
        f"thread {thread.name}: {_frame_place(frames.get(thread.ident or -1))}"
        for thread in threading.enumerate()
        if not thread.daemon and thread is not threading.main_thread()
    ]
    return ("; " + "; ".join(left)) if left else ""


def _frame_place(frame: Any) -> str:
    if frame is None:
        return "(no frame)"
    code = frame.f_code
    return f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_qualname}"


def _innermost(coro: Any, frames: int = 3) -> str:
    """Where a coroutine's chain of awaits ends (``cr_await``, through coroutines and
    generator-based awaitables): its ``frames`` innermost frames outside asyncio itself,
    innermost first, each ``<-`` what awaited it."""
    chain: list[str] = []
    seen = 0
    while coro is not None and seen < 200:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None and "/asyncio/" not in frame.f_code.co_filename:
            code = frame.f_code
            chain.append(
                f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno} {code.co_qualname}"
            )
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    return " <- ".join(reversed(chain[-frames:])) or "(done)"
