"""The envelope seam checks recipient, topic and expiry before anything is used."""

from __future__ import annotations

import pytest

from gun_hub.envelope import (
    ContentType,
    EnvelopeRejected,
    EnvelopeRejectionKind,
    PlainEnvelope,
)


def test_a_sealed_message_opens_for_its_recipient_on_its_topic() -> None:
    sealed = PlainEnvelope("hub").seal(
        b"<x/>", recipient="dgal", topic="gun.requests.dgal", content_type=ContentType.XML
    )
    opened = PlainEnvelope("dgal").open(sealed, topic="gun.requests.dgal")
    assert (opened.payload, opened.sender, opened.content_type) == (b"<x/>", "hub", ContentType.XML)


@pytest.mark.parametrize(
    ("reader", "topic", "kind"),
    [
        ("cites", "gun.requests.dgal", EnvelopeRejectionKind.WRONG_RECIPIENT),
        ("dgal", "gun.requests.cites", EnvelopeRejectionKind.WRONG_TOPIC),
    ],
)
def test_a_message_for_someone_else_or_elsewhere_is_rejected(
    reader: str, topic: str, kind: EnvelopeRejectionKind
) -> None:
    sealed = PlainEnvelope("hub").seal(
        b"{}", recipient="dgal", topic="gun.requests.dgal", content_type=ContentType.JSON
    )
    with pytest.raises(EnvelopeRejected) as rejected:
        PlainEnvelope(reader).open(sealed, topic=topic)
    assert rejected.value.kind is kind


def test_an_expired_message_is_rejected() -> None:
    sealed = PlainEnvelope("hub", lifetime_s=-1).seal(
        b"{}", recipient="dgal", topic="t", content_type=ContentType.JSON
    )
    with pytest.raises(EnvelopeRejected) as rejected:
        PlainEnvelope("dgal").open(sealed, topic="t")
    assert rejected.value.kind is EnvelopeRejectionKind.EXPIRED


@pytest.mark.parametrize("garbage", [b"", b"a.b.c", b"!!!.???", b"e30.e30"])
def test_garbage_is_rejected_as_malformed(garbage: bytes) -> None:
    with pytest.raises(EnvelopeRejected) as rejected:
        PlainEnvelope("dgal").open(garbage, topic="t")
    assert rejected.value.kind is EnvelopeRejectionKind.MALFORMED
