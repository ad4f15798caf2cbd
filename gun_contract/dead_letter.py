"""Dead-letter records: the original bytes, and why they could not be processed.

Bad input is data: it is never dropped and never stops a worker. Operations read
``gun.dlq`` to see each fault; the headers say what failed, where it came from, and which
declaration it concerned when that could be read.

A dead letter always fits (issue 10, defect 11): the broker may have accepted a record far
larger than any topic takes uncompressed (a 10 MB declaration sent gzip-compressed), and a
foreign producer may have written any key. So the original bytes are kept when they fit
(``MAX_DEAD_LETTER_VALUE_BYTES``); otherwise the value is their head, and headers give the
original size and SHA-256 digest. Every header value is bounded, and so is the key: a dead
letter stays far below the broker's default 1 MiB record limit, whatever failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from gun_contract.effects import Effects, Headers, OutgoingRecord
from gun_contract.limits import MAX_DEAD_LETTER_VALUE_BYTES

HEADER_ERROR_CLASS = "gun.error.class"
HEADER_ERROR_KIND = "gun.error.kind"
HEADER_ERROR_REASON = "gun.error.reason"
HEADER_SOURCE_TOPIC = "gun.source.topic"
HEADER_SOURCE_PARTITION = "gun.source.partition"
HEADER_SOURCE_OFFSET = "gun.source.offset"
HEADER_COMPONENT = "gun.component"
HEADER_REFERENCE = "gun.reference"
# Only on a dead letter whose original did not fit: the value is then its head.
HEADER_ORIGINAL_TRUNCATED = "gun.original.truncated"
HEADER_ORIGINAL_SIZE = "gun.original.size"
HEADER_ORIGINAL_SHA256 = "gun.original.sha256"
# Only when the source record's key was too long to be the dead letter's key.
HEADER_ORIGINAL_KEY_SHA256 = "gun.original.key.sha256"

_MAX_REASON_BYTES = 2048
MAX_HEADER_VALUE_BYTES = 2048
"""No header value of a dead letter is longer (the reason is cut to this too)."""
_MAX_NAME_BYTES = 256  # kind, component, topic, reference: short codes and names
MAX_KEY_BYTES = 256
"""A longer source key is replaced by its SHA-256 digest (hex) as the dead letter's key."""
TRUNCATED_HEAD_BYTES = 64 * 1024
"""How much of an original that does not fit is kept, for a human to see what it was."""


def _bounded(text: str, limit: int) -> bytes:
    """``text`` as UTF-8, cut to ``limit`` bytes without splitting a character."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return encoded
    return encoded[:limit].decode("utf-8", "ignore").encode("utf-8")


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
    """Headers of a ``gun.dlq`` record (every value bounded); for the value and the key,
    see :func:`dead_letter_record`."""
    headers: Headers = [
        (HEADER_ERROR_CLASS, error_class.value.encode()),
        (HEADER_ERROR_KIND, _bounded(kind, _MAX_NAME_BYTES)),
        (HEADER_ERROR_REASON, _bounded(reason, _MAX_REASON_BYTES)),
        (HEADER_SOURCE_TOPIC, _bounded(source.topic, _MAX_NAME_BYTES)),
        (HEADER_SOURCE_PARTITION, str(source.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(source.offset).encode()),
        (HEADER_COMPONENT, _bounded(component, _MAX_NAME_BYTES)),
    ]
    if reference is not None:
        headers.append((HEADER_REFERENCE, _bounded(reference, _MAX_NAME_BYTES)))
    return headers


def dead_letter_record(
    dlq_topic: str,
    data: bytes,
    *,
    error_class: ErrorClass,
    kind: str,
    reason: str,
    source: SourcePosition,
    component: str,
    reference: str | None = None,
) -> OutgoingRecord:
    """The dead letter of ``data``, sized to fit: the original bytes when they fit, else
    their head with the original size and digest in headers; keyed by the reference when
    known, else by the source record's key (its digest when that key is too long)."""
    headers = dead_letter_headers(
        error_class=error_class,
        kind=kind,
        reason=reason,
        source=source,
        component=component,
        reference=reference,
    )
    value = data
    if len(data) > MAX_DEAD_LETTER_VALUE_BYTES:
        value = data[:TRUNCATED_HEAD_BYTES]
        headers += [
            (HEADER_ORIGINAL_TRUNCATED, b"true"),
            (HEADER_ORIGINAL_SIZE, str(len(data)).encode()),
            (HEADER_ORIGINAL_SHA256, hashlib.sha256(data).hexdigest().encode()),
        ]
    key = _bounded(reference, _MAX_NAME_BYTES) if reference else source.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        digest = hashlib.sha256(key).hexdigest()
        headers.append((HEADER_ORIGINAL_KEY_SHA256, digest.encode()))
        key = digest.encode()
    return OutgoingRecord(dlq_topic, key, value, headers)


def add_dead_letter(
    outbox: Effects,
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
    """Queue the dead letter of ``data`` (:func:`dead_letter_record`), under the source
    record's key (so a declaration's dead letters share its partition)."""
    record = dead_letter_record(
        dlq_topic,
        data,
        error_class=error_class,
        kind=kind,
        reason=reason,
        source=source,
        component=component,
        reference=reference,
    )
    outbox.add(record.topic, record.key, record.value, record.headers)


def header_value(headers: Iterable[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """Read one header as text (readers and tests); never fails on what a foreign producer
    wrote: a null value reads as absent, undecodable bytes as replacement characters."""
    for key, value in headers or []:
        if _header_name(key) == name:
            return _header_text(value)
    return None


def _header_text(value: object) -> str | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def _header_name(key: object) -> str:
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).decode("utf-8", "replace")
    return str(key)
