"""View questions asked off the event loop.

The hub's event loop runs every agent, the feed and the probes: a statistics question
over 200,000 decisions takes a second or two of SQLite, which on the loop would stall
them all (and ``/livez`` with them). Questions therefore run in a small pool of threads,
each thread with its own read-only SQLite connection to the view's file (WAL mode lets
them read while the feed writes). SQLite releases the GIL while it works, and the threads
run at a lower CPU priority than the loop's.

Bounds: at most ``max_waiting`` questions run or wait at once (more are refused as busy,
answered 503 with ``Retry-After``), and a question still running after ``timeout_s`` is
interrupted (503: narrow the question) within the statement it runs, or as its next
statement starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from prometheus_client import Counter, Histogram

from gun_contract.sqlite import open_read_only
from gun_hub.ops.view import ViewQueries

T = TypeVar("T")

QUERY_SECONDS = Histogram(
    "gun_hub_view_query_seconds",
    "Seconds a web question spent on the operations view (in its thread).",
    ["question"],
    buckets=(0.005, 0.02, 0.1, 0.5, 1, 2, 5, 15),
)
QUERIES_REFUSED = Counter(
    "gun_hub_view_queries_refused_total",
    "Web questions refused: too many waiting (busy) or stopped at their time limit (slow).",
    ["reason"],
)
# Nice value of the question threads (the loop's thread keeps the process's own).
_NICER = 10


def _yield_to_the_loop() -> None:
    """Lower this worker thread's CPU priority (Linux schedules threads by their own nice
    value): on a busy machine the event loop's thread, which keeps the agents and the
    probes going, comes first, and questions take what is left."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _NICER)


class ViewBusy(Exception):
    """Too many questions are running or waiting: ask again shortly."""


class QueryTooSlow(Exception):
    """The question ran past its time limit and was stopped."""


class ViewReader:
    """Asks :class:`~gun_hub.ops.view.ViewQueries` questions in worker threads."""

    def __init__(
        self, path: Path, *, threads: int = 2, max_waiting: int = 8, timeout_s: float = 15.0
    ) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="gun-view", initializer=_yield_to_the_loop
        )
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._max_waiting = max_waiting
        self._timeout_s = timeout_s
        self._waiting = 0
        self._closing = False

    async def ask(self, question: Callable[[ViewQueries], T], name: str = "other") -> T:
        """``question``'s answer, computed in a worker thread."""
        if self._waiting >= self._max_waiting:
            QUERIES_REFUSED.labels(reason="busy").inc()
            raise ViewBusy
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._answer, question, name)
        finally:
            self._waiting -= 1

    def _answer(self, question: Callable[[ViewQueries], T], name: str) -> T:
        db = self._connection()
        started = time.monotonic()
        deadline = started + self._timeout_s

        def at_each_statement(_sql: str) -> None:
            # sqlite3_interrupt only stops the statements running when it is called: one
            # sent before the first statement or between two is forgotten. SQLite calls
            # this as each statement starts to run, so a question past its limit, or of a
            # closing reader, is interrupted again there: it stops at its next statement.
            if self._closing or time.monotonic() >= deadline:
                db.interrupt()

        # Within a statement, interrupted from a timer thread (sqlite3_interrupt is
        # thread-safe): no Python callback every so many SQLite instructions, which
        # would take the GIL from the loop again and again (a progress handler did, and
        # the probes' latency showed it); the one above runs once a statement.
        db.set_trace_callback(at_each_statement)
        alarm = threading.Timer(self._timeout_s, db.interrupt)
        alarm.daemon = True
        alarm.start()
        try:
            return question(ViewQueries(db))
        except sqlite3.OperationalError as err:
            if "interrupt" not in str(err):
                raise
            QUERIES_REFUSED.labels(reason="slow").inc()
            raise QueryTooSlow from None
        finally:
            alarm.cancel()
            db.set_trace_callback(None)
            QUERY_SECONDS.labels(question=name).observe(time.monotonic() - started)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = open_read_only(self.path)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def close(self) -> None:
        """Stop the threads (a running question is interrupted, at the latest as its next
        statement starts) and close connections."""
        self._closing = True  # before the interrupts: a statement starting after sees it
        with self._lock:
            for db in self._connections:
                db.interrupt()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
