"""Dead-letter records: the original bytes, and why they could not be processed.

Bad input is data: it is never dropped and never stops a worker. Operations read
``gun.dlq`` to see each fault; the headers say what failed, where it came from, and which
declaration it concerned when that could be read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gun_hub.outbox import Headers, Outbox

HEADER_ERROR_CLASS = "gun.error.class"
HEADER_ERROR_KIND = "gun.error.kind"
HEADER_ERROR_REASON = "gun.error.reason"
HEADER_SOURCE_TOPIC = "gun.source.topic"
HEADER_SOURCE_PARTITION = "gun.source.partition"
HEADER_SOURCE_OFFSET = "gun.source.offset"
HEADER_COMPONENT = "gun.component"
HEADER_REFERENCE = "gun.reference"

_MAX_REASON_BYTES = 2048


class ErrorClass(StrEnum):
    """How a failure is handled (see docs/errors.md)."""

    PERMANENT = "permanent"  # the message itself is wrong: DLQ (+ REFUSE if identifiable)
    SECURITY = "security"  # failed verification: DLQ, metric, audit; never acted on
    RETRIABLE = "retriable"  # the world is wrong for now: back off and retry


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a consumed record came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None

    def describe(self) -> str:
        """``topic/partition/offset``: where a record sits in the log."""
        return f"{self.topic}/{self.partition}/{self.offset}"


def dead_letter_headers(
    *,
    error_class: ErrorClass,
    kind: str,
    reason: str,
    source: SourcePosition,
    component: str,
    reference: str | None = None,
) -> Headers:
    """Headers of a ``gun.dlq`` record; the value is the original bytes, untouched."""
    headers: Headers = [
        (HEADER_ERROR_CLASS, error_class.value.encode()),
        (HEADER_ERROR_KIND, kind.encode()),
        (HEADER_ERROR_REASON, reason.encode("utf-8", "replace")[:_MAX_REASON_BYTES]),
        (HEADER_SOURCE_TOPIC, source.topic.encode()),
        (HEADER_SOURCE_PARTITION, str(source.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(source.offset).encode()),
        (HEADER_COMPONENT, component.encode()),
    ]
    if reference is not None:
        headers.append((HEADER_REFERENCE, reference.encode()))
    return headers


def add_dead_letter(
    outbox: Outbox,
    dlq_topic: str,
    data: bytes,
    *,
    error_class: ErrorClass,
    kind: str,
    reason: str,
    source: SourcePosition,
    component: str,
    reference: str | None = None,
) -> None:
    """Queue the original bytes for the dead-letter topic, under the source record's key
    (so a declaration's dead letters share its partition)."""
    outbox.add(
        dlq_topic,
        reference.encode() if reference else source.key,
        data,
        dead_letter_headers(
            error_class=error_class,
            kind=kind,
            reason=reason,
            source=source,
            component=component,
            reference=reference,
        ),
    )


def header_value(headers: Headers | None, name: str) -> str | None:
    """Read one header as text (readers and tests)."""
    for key, value in headers or []:
        if key == name:
            return value.decode("utf-8", "replace")
    return None
