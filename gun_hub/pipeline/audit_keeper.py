"""Audit keeper: every security-class dead letter, from any component, enters the audit.

Components dead-letter what fails verification (the hub, adapters, the clearance
reader); the hub, the only writer of the audit chains, turns those records into audit
entries. The dead-letter topic is co-partitioned with the hub's inputs, so the worker that
owns a partition's chain also reads that partition of the dead letters.

Any party may write the dead-letter topic, so its headers can be anything (issue 10,
defect 3): missing, null, not UTF-8, megabytes long, not even pairs. The keeper never
raises on them: it reads what it can, cuts every field to a bounded length, and a security
dead letter still becomes one audit entry of bounded size.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from gun_hub.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_REFERENCE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    ErrorClass,
    SourcePosition,
    header_value,
)
from gun_hub.outbox import Headers, Outbox
from gun_hub.pipeline.context import HubContext

log = logging.getLogger(__name__)

_MAX_REASON_BYTES = 2048
_MAX_FIELD_BYTES = 256  # kind, component, reference, each part of the origin


class AuditKeeper:
    def __init__(self, context: HubContext) -> None:
        self._ctx = context

    def handle(self, headers: Headers | Any, source: SourcePosition) -> Outbox:
        outbox = Outbox()
        pairs = _pairs(headers)
        if header_value(pairs, HEADER_ERROR_CLASS) != ErrorClass.SECURITY.value:
            return outbox

        def field(name: str, limit: int = _MAX_FIELD_BYTES) -> str | None:
            return _cut(header_value(pairs, name), limit)

        origin = "/".join(
            field(name) or "?"
            for name in (HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET)
        )
        self._ctx.record_audit(
            outbox,
            source.partition,
            {
                "kind": "SECURITY_REJECTION",
                "rejection": field(HEADER_ERROR_KIND),
                "reason": field(HEADER_ERROR_REASON, _MAX_REASON_BYTES),
                "component": field(HEADER_COMPONENT),
                "origin": origin,
                "reference": field(HEADER_REFERENCE),
                "dead_letter": source.describe(),
            },
        )
        return outbox


def _pairs(headers: object) -> list[tuple[str, bytes]]:
    """The (name, value) pairs of whatever a record's headers turned out to be: a list of
    pairs, a mapping, nothing; anything that is no pair is ignored."""
    if not headers:
        return []
    items: Any = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, bytes]] = []
    try:
        for item in items:
            if isinstance(item, tuple | list) and len(item) == 2:
                pairs.append((item[0], item[1]))
    except TypeError:  # not iterable at all
        log.warning("dead letter with unreadable headers (%s)", type(headers).__name__)
    return pairs


def _cut(text: str | None, limit: int) -> str | None:
    """``text`` cut to ``limit`` bytes of UTF-8, never inside a character."""
    if text is None:
        return None
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text.encode("utf-8", "replace").decode("utf-8")
    return encoded[:limit].decode("utf-8", "ignore")
