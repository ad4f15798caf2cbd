"""What the trader and officer listeners share: formats, answers, bounds, metrics."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import Counter

from gun_contract.counters import export_at_zero
from gun_hub.ops.view import ViewQueries
from gun_hub.security.web_auth import EORI
from gun_hub.web.queries import QueryTooSlow, ViewBusy, ViewReader

T = TypeVar("T")

# The declaration reference and document formats of the contract
# (schemas/common-types.xsd); EORI comes with the authentication module.
REFERENCE = re.compile(r"[0-9A-Z][0-9A-Z._/\-]{5,34}")
DOCUMENT = re.compile(r"[0-9A-Za-z][0-9A-Za-z._/\-]{0,69}")
__all__ = ["DOCUMENT", "EORI", "REFERENCE"]

REFUSAL_REASONS = (
    "missing",
    "malformed",
    "algorithm",
    "unknown_key",
    "signature",
    "expired",
    "claims",
    "scope",
    "password",
    "busy",
    "throttled",
)
"""The ``reason`` of ``security.web_auth.Unauthenticated``: a small closed set."""
AUTH_FAILURES = Counter(
    "gun_hub_web_auth_failures_total",
    "Requests refused on a trader or officer listener because the caller did not prove "
    f"who it is (reason: {', '.join(REFUSAL_REASONS)}).",
    ["listener", "reason"],
)

# JSON answers are data: no page, no frame, no sniffing, never cached by a proxy.
_JSON_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


class OncePerSecond:
    """Logs at most one line a second, saying how many it held back since the last (a
    flood must not flood the logs too; a counter counts every one)."""

    def __init__(self, logger: logging.Logger, held_back: str) -> None:
        self._log = logger
        self._held_back = held_back  # "refused": "(3 more refused since the last line)"
        self._last = -1.0
        self._quiet = 0

    def log(self, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            self._quiet += 1
            return
        if self._quiet:
            message += f" ({self._quiet} more {self._held_back} since the last line)"
        self._log.log(level, message, *args)
        self._last, self._quiet = now, 0


class RefusalLog:
    """Logs refused callers at most once a second;
    ``gun_hub_web_auth_failures_total`` counts every one."""

    def __init__(self, logger: logging.Logger, listener: str) -> None:
        self._lines = OncePerSecond(logger, "refused")
        self._listener = listener
        export_at_zero(AUTH_FAILURES, listener=[listener], reason=REFUSAL_REASONS)

    def refused(self, remote: str | None, reason: str, message: str) -> None:
        AUTH_FAILURES.labels(listener=self._listener, reason=reason).inc()
        self._lines.log(
            logging.INFO, "%s listener refused a request from %s: %s", self._listener, remote,
            message,
        )  # fmt: skip


class BadRequest(Exception):
    """A parameter the caller must change; the message says which and how."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """How much one answer may hold (``GUN_HUB_WEB__*``)."""

    stats_default_days: int = 31
    stats_max_days: int = 366
    page_size_default: int = 100
    page_size_max: int = 1000


def answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers={**_JSON_HEADERS, **(headers or {})},
    )


def refuse(
    status: int, error: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    return answer({"error": error, **extra}, status, headers)


async def from_view(
    reader: ViewReader | None, question: Callable[[ViewQueries], T], name: str
) -> T | web.Response:
    """The answer to ``question``, or the response that says why there is none."""
    if reader is None:
        return refuse(503, "the status and statistics view is switched off on this worker")
    try:
        return await reader.ask(question, name)
    except ViewBusy:
        return refuse(503, "too many questions at once: ask again", {"Retry-After": "1"})
    except QueryTooSlow:
        return refuse(503, "the question took too long: narrow it (a shorter date range)")


def day(text: str | None, name: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{name}: not an ISO date (YYYY-MM-DD): {text[:20]!r}") from None


def page(query: Any, bounds: Bounds) -> tuple[int, int]:
    """``(limit, offset)`` from ``?limit=&offset=`` within the bounds."""

    def number(name: str, default: int, most: int) -> int:
        text = query.get(name)
        if text is None:
            return default
        # ASCII digits: "²" is a digit to str.isdigit, and int refuses it (a 500).
        if not (text.isascii() and text.isdigit()) or len(text) > 9:
            raise BadRequest(f"{name}: a whole number from 0 to {most}")
        value = int(text)
        if value > most:
            raise BadRequest(f"{name}: at most {most}")
        return value

    limit = number("limit", bounds.page_size_default, bounds.page_size_max)
    if limit == 0:
        raise BadRequest("limit: at least 1")
    return limit, number("offset", 0, 10**9)


def paged(rows: list[Any], limit: int, offset: int) -> tuple[list[Any], int | None]:
    """One page of rows fetched with ``limit + 1`` and where the next page starts."""
    if len(rows) > limit:
        return rows[:limit], offset + limit
    return rows, None


# A cursor names the last row of a page by its key in the list's order, so that the next
# page starts after it whatever arrived before it meanwhile (offsets shift then). It is
# the key as JSON in base64url: opaque to the officer, checked as any input when it comes
# back (it may have been written by hand).
_CURSOR_MAX = 1024
NOT_A_CURSOR = "after: not a cursor of this list"


def cursor(key: tuple[str | int, ...]) -> str:
    """The ``next_after`` of a page whose last row has ``key``."""
    text = json.dumps(list(key), separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def next_page(
    rows: list[Any],
    following: int | None,
    start: tuple[Any, ...] | None,
    key_of: Callable[[Any], tuple[str | int, ...]],
) -> dict[str, Any]:
    """Where the page after ``rows`` (of :func:`paged`) starts: ``next_after``, the
    cursor of its last row, and ``next_offset`` for a page asked by offset (none after a
    cursor: an offset from there would name another row); both None on the last page."""
    return {
        "next_offset": following if start is None else None,
        "next_after": cursor(key_of(rows[-1])) if following is not None else None,
    }


def after(query: Any, shape: tuple[type, ...]) -> tuple[Any, ...] | None:
    """The key of ``?after=``, whose items are of the types ``shape`` lists; None without
    one. Refused with ``?offset=`` (two starts), or when it is no cursor of this list."""
    text = query.get("after")
    if text is None:
        return None
    if "offset" in query:
        raise BadRequest("after and offset: one or the other")
    if len(text) > _CURSOR_MAX or not re.fullmatch(r"[A-Za-z0-9_-]+", text):
        raise BadRequest(NOT_A_CURSOR)
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are
        raise BadRequest(NOT_A_CURSOR) from None
    if not (
        isinstance(key, list)
        and len(key) == len(shape)
        and all(type(item) is kind for item, kind in zip(key, shape, strict=True))
    ):  # type() is: a JSON true is no line number
        raise BadRequest(NOT_A_CURSOR)
    if any(isinstance(item, int) and not -(2**63) <= item < 2**63 for item in key):
        raise BadRequest(NOT_A_CURSOR)  # beyond what SQLite binds
    try:
        for item in key:
            if isinstance(item, str):
                item.encode()  # a lone surrogate ("\ud800" in JSON): no text SQLite binds
    except UnicodeEncodeError:
        raise BadRequest(NOT_A_CURSOR) from None
    return tuple(key)
