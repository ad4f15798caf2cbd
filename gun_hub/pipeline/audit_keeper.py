"""Audit keeper: every security-class dead letter, from any component, enters the audit.

Components dead-letter what fails verification (the hub, adapters, the clearance
reader); the hub, the only writer of the audit chains, turns those records into audit
entries. The dead-letter topic is co-partitioned with the hub's inputs, so the worker that
owns a partition's chain also reads that partition of the dead letters.
"""

from __future__ import annotations

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


class AuditKeeper:
    def __init__(self, context: HubContext) -> None:
        self._ctx = context

    def handle(self, headers: Headers, source: SourcePosition) -> Outbox:
        outbox = Outbox()
        if header_value(headers, HEADER_ERROR_CLASS) != ErrorClass.SECURITY.value:
            return outbox
        origin = "/".join(
            header_value(headers, name) or "?"
            for name in (HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION, HEADER_SOURCE_OFFSET)
        )
        self._ctx.record_audit(
            outbox,
            source.partition,
            {
                "kind": "SECURITY_REJECTION",
                "rejection": header_value(headers, HEADER_ERROR_KIND),
                "reason": header_value(headers, HEADER_ERROR_REASON),
                "component": header_value(headers, HEADER_COMPONENT),
                "origin": origin,
                "reference": header_value(headers, HEADER_REFERENCE),
                "dead_letter": source.describe(),
            },
        )
        return outbox
