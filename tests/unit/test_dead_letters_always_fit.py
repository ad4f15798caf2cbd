"""A dead letter always fits (issue 10, defect 11).

A record the broker accepted (a 10 MB declaration sent gzip-compressed, a hostile key or
header) must still be dead-lettered: the original bytes when they fit, else their head,
their size and their digest; every header bounded; the whole record far below the broker's
default 1 MiB record limit, whatever the failure said.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_ORIGINAL_KEY_SHA256,
    HEADER_ORIGINAL_SHA256,
    HEADER_ORIGINAL_SIZE,
    HEADER_ORIGINAL_TRUNCATED,
    HEADER_REFERENCE,
    HEADER_SOURCE_TOPIC,
    MAX_HEADER_VALUE_BYTES,
    TRUNCATED_HEAD_BYTES,
    ErrorClass,
    SourcePosition,
    add_dead_letter,
    dead_letter_headers,
    header_value,
)
from gun_contract.effects import Effects, OutgoingRecord
from gun_contract.limits import MAX_DEAD_LETTER_VALUE_BYTES

BROKER_DEFAULT_RECORD_LIMIT = 1024 * 1024
# What Kafka adds around a record in a batch, generously (varints, attributes, header
# framing): the dead letter must stay far below the limit, not just under it.
FRAMING_ALLOWANCE = 1024
FAR_BELOW = BROKER_DEFAULT_RECORD_LIMIT * 3 // 4

SOURCE = SourcePosition("gun.declarations", 2, 41, b"26FR000690I0000012")


def dead_letter(
    data: bytes,
    *,
    reason: str = "too large",
    kind: str = "DECLARATION_TOO_LARGE",
    component: str = "hub.intake",
    reference: str | None = None,
    source: SourcePosition = SOURCE,
) -> OutgoingRecord:
    outbox = Effects()
    add_dead_letter(
        outbox,
        "gun.dlq",
        data,
        error_class=ErrorClass.PERMANENT,
        kind=kind,
        reason=reason,
        source=source,
        component=component,
        reference=reference,
    )
    [record] = outbox.records
    return record


def record_size(record: OutgoingRecord) -> int:
    return (
        len(record.key or b"")
        + len(record.value)
        + sum(len(name.encode()) + len(value) for name, value in record.headers)
        + FRAMING_ALLOWANCE
    )


def test_the_original_bytes_are_kept_untouched_when_they_fit() -> None:
    original = b"<Declaration>" + b"x" * 1000
    record = dead_letter(original)
    assert record.value == original
    assert header_value(record.headers, HEADER_ORIGINAL_TRUNCATED) is None
    assert record.key == SOURCE.key


def test_a_value_of_exactly_the_limit_is_kept_whole() -> None:
    original = b"a" * MAX_DEAD_LETTER_VALUE_BYTES
    record = dead_letter(original)
    assert record.value == original
    assert header_value(record.headers, HEADER_ORIGINAL_TRUNCATED) is None


def test_a_10_mb_declaration_leaves_its_head_size_and_digest() -> None:
    original = b"<Declaration>" + bytes(range(256)) * (10 * 1024 * 1024 // 256)
    record = dead_letter(original, reference="26FR000690I0000012")
    assert record.value == original[:TRUNCATED_HEAD_BYTES]
    assert header_value(record.headers, HEADER_ORIGINAL_TRUNCATED) == "true"
    assert header_value(record.headers, HEADER_ORIGINAL_SIZE) == str(len(original))
    assert header_value(record.headers, HEADER_ORIGINAL_SHA256) == (
        hashlib.sha256(original).hexdigest()
    )
    assert header_value(record.headers, HEADER_REFERENCE) == "26FR000690I0000012"
    assert record_size(record) < FAR_BELOW


def test_one_byte_over_the_limit_is_truncated() -> None:
    original = b"b" * (MAX_DEAD_LETTER_VALUE_BYTES + 1)
    record = dead_letter(original)
    assert len(record.value) == TRUNCATED_HEAD_BYTES
    assert header_value(record.headers, HEADER_ORIGINAL_SIZE) == str(len(original))


def test_every_header_is_bounded_whatever_the_failure_said() -> None:
    huge = "é" * 3_000_000  # 6 MB of two-byte characters: a cut must not split one
    record = dead_letter(
        b"x",
        reason=huge,
        kind=huge,
        component=huge,
        reference=huge,
        source=SourcePosition("t" * 100_000, 0, 0, b"k" * 5_000_000),
    )
    for name, value in record.headers:
        assert len(value) <= MAX_HEADER_VALUE_BYTES, name
        value.decode("utf-8")  # still valid UTF-8
    assert len(header_value(record.headers, HEADER_ERROR_REASON) or "") > 100
    assert len(record.key or b"") <= MAX_HEADER_VALUE_BYTES
    assert record_size(record) < FAR_BELOW


def test_a_huge_key_is_replaced_by_its_digest() -> None:
    key = b"\xff" * 1_000_000
    record = dead_letter(b"x", source=SourcePosition("gun.dlq", 0, 0, key))
    assert header_value(record.headers, HEADER_ORIGINAL_KEY_SHA256) == (
        hashlib.sha256(key).hexdigest()
    )
    assert record.key is not None
    assert len(record.key) <= 64


def test_the_headers_alone_keep_their_signature_and_are_bounded() -> None:
    headers = dead_letter_headers(
        error_class=ErrorClass.SECURITY,
        kind="ENVELOPE_MALFORMED",
        reason="r" * 10_000,
        source=SourcePosition("gun.responses.dgal", 1, 7),
        component="hub.correlation",
    )
    assert header_value(headers, HEADER_ERROR_KIND) == "ENVELOPE_MALFORMED"
    assert header_value(headers, HEADER_SOURCE_TOPIC) == "gun.responses.dgal"
    assert header_value(headers, HEADER_COMPONENT) == "hub.correlation"
    assert len(header_value(headers, HEADER_ERROR_REASON) or "") == 2048


def test_reading_a_header_never_fails_on_what_a_foreign_producer_wrote() -> None:
    headers = [
        ("gun.error.kind", None),
        ("gun.component", b"\xff\xfe\x00"),
        (b"gun.reference", b"bytes-named"),
    ]
    assert header_value(headers, HEADER_ERROR_KIND) is None  # type: ignore[arg-type]
    assert header_value(headers, HEADER_COMPONENT) == "\ufffd\ufffd\x00"  # type: ignore[arg-type]
    assert header_value(headers, HEADER_REFERENCE) == "bytes-named"  # type: ignore[arg-type]
    assert header_value(None, HEADER_REFERENCE) is None


@settings(max_examples=60, deadline=None)
@given(
    size=st.one_of(
        st.integers(0, 4096),
        st.integers(MAX_DEAD_LETTER_VALUE_BYTES - 2, MAX_DEAD_LETTER_VALUE_BYTES + 2),
        st.integers(MAX_DEAD_LETTER_VALUE_BYTES, 3 * MAX_DEAD_LETTER_VALUE_BYTES),
    ),
    reason=st.text(max_size=5000),
    kind=st.text(max_size=600),
    reference=st.none() | st.text(max_size=600),
    key=st.none() | st.binary(max_size=5000),
)
def test_any_dead_letter_fits_far_below_the_broker_default(
    size: int, reason: str, kind: str, reference: str | None, key: bytes | None
) -> None:
    original = b"\x00" * size
    record = dead_letter(
        original,
        reason=reason,
        kind=kind,
        reference=reference,
        source=SourcePosition("gun.declarations", 0, 0, key),
    )
    assert record_size(record) < FAR_BELOW
    assert len(record.value) <= MAX_DEAD_LETTER_VALUE_BYTES
    if size <= MAX_DEAD_LETTER_VALUE_BYTES:
        assert record.value == original
    else:
        assert header_value(record.headers, HEADER_ORIGINAL_SIZE) == str(size)
    for name, value in record.headers:
        assert len(value) <= MAX_HEADER_VALUE_BYTES, name
