"""One trace identifier per declaration version, followed across the hub, the adapters
and the partner systems.

The trace id of (reference, version) is derived from them (32 lowercase hex digits, the
W3C Trace Context trace-id format): every component that handles the version (intake,
correlation, deadlines, a write-off replayed a day later by an adapter) names it the same
without asking anyone, a record sent again after a crash carries the same one, and an
operator finds it from the declaration number alone (``gun-hub trace REF VERSION``). It is
no secret and reveals nothing a record does not already carry: every record about a
declaration is keyed by its reference.

Where it travels:

* **Kafka records**: header ``gun.trace.id`` on every record the hub and the adapters write
  about a version (requests, answers, decisions and their outbox, status events, facts,
  audit records, deadline ticks, dead letters of a declaration that could be identified);
  a reader takes the header when it is well formed and derives it otherwise.
* **Partner calls**: the W3C ``traceparent`` header (``00-<trace id>-<span id>-01``, a new
  span id per call), which partner systems with OpenTelemetry continue as is.
* **Log lines**: field ``trace_id`` of the JSON lines (``trace=`` in text lines), from
  :data:`current_trace` while a component handles one version (:func:`tracing`), or from
  ``extra={"trace_id": ...}`` on one call.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

TRACE_HEADER = "gun.trace.id"
TRACEPARENT = "traceparent"

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_INVALID = "0" * 32  # W3C: an all-zero trace id is invalid

current_trace: ContextVar[str | None] = ContextVar("gun_hub_trace_id", default=None)


# A version's handling names its trace about a dozen times (each record's header, the log
# line): hashed once. Bounded, as references come from outside; typed, so that a version
# True never answers for version 1.
@functools.lru_cache(maxsize=1024, typed=True)
def trace_id_for(reference: str, version: int) -> str:
    """The trace id of one declaration version."""
    digest = hashlib.sha256(f"gun-hub/trace/v1|{reference}|{version}".encode()).hexdigest()
    trace_id = digest[:32]
    return trace_id if trace_id != _INVALID else digest[32:64]


def is_trace_id(value: str) -> bool:
    return bool(_TRACE_ID.fullmatch(value)) and value != _INVALID


def trace_header(reference: str, version: int) -> tuple[str, bytes]:
    """The Kafka header naming the trace of (reference, version)."""
    return TRACE_HEADER, trace_id_for(reference, version).encode()


def trace_in(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The well-formed trace id of a record's headers, if any (the first one)."""
    for name, value in headers:
        if name == TRACE_HEADER and value is not None:
            text = value.decode("ascii", "replace")
            return text if is_trace_id(text) else None
    return None


def traceparent(trace_id: str) -> str:
    """A W3C ``traceparent`` value for one call of the trace (a fresh span id)."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


def trace_of_traceparent(value: str | None) -> str | None:
    """The trace id a ``traceparent`` header carries, if it is well formed."""
    found = _TRACEPARENT.fullmatch((value or "").strip().lower())
    if found is None or not is_trace_id(found.group(1)):
        return None
    return found.group(1)


@contextmanager
def tracing(trace_id: str | None) -> Iterator[None]:
    """Every log line (and partner call) made inside names ``trace_id``."""
    token = current_trace.set(trace_id)
    try:
        yield
    finally:
        current_trace.reset(token)


class TraceFilter(logging.Filter):
    """Gives each log record the trace it was logged in (``record.trace_id``), unless the
    call named one itself with ``extra``. Runs in the logging call's own context, so an
    asyncio task sees its own trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", None) is None:
            record.trace_id = current_trace.get()
        return True
