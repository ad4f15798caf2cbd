"""Which of an adapter's dead letters the desk offers to redrive (ADR 0010, addendum;
gun_contract/request_refusals.py): those whose cause lay outside the request and can be
fixed (a key, a setting, a release); not those where the request is at fault as it is,
which the same bytes read again would only dead-letter again, nor a replay or a refused
redrive, whoever wrote them. An envelope not made for its reader (forged, damaged, another
party's) is every reader's rule: the hub's intake and correlation refuse to redrive it too
(stop 40; they offered it before)."""

from __future__ import annotations

import pytest

from gun_contract.topics import topic_registry
from gun_hub.pipeline.redrive import not_redrivable

TOPICS = topic_registry("gun", ("cites", "dga", "dgal"))


@pytest.mark.parametrize(
    "kind",
    [
        "ENVELOPE_UNKNOWN_KID",
        "ENVELOPE_RETIRED_KEY",
        "ENVELOPE_DECRYPTION_FAILED",
        "ENVELOPE_IAT_SKEW",
        "ENVELOPE_NOT_YET_VALID",
        "ENVELOPE_EXPIRED",
        "UNHANDLED_ERROR",
        "REQUEST_INVALID",
    ],
)
def test_a_request_refused_for_a_cause_outside_it_can_be_redriven(kind: str) -> None:
    assert not_redrivable("adapter.dgal", TOPICS.requests("dgal"), TOPICS, kind) is None


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("REQUEST_MISADDRESSED", "the request is refused again"),
        ("REQUEST_KEY_MISMATCH", "the request is refused again"),
        ("REQUEST_NOT_JSON", "the request is refused again"),
        ("REQUEST_AGED_OUT_OF_THE_LOG", "no original"),
        ("ENVELOPE_BAD_SIGNATURE", "forged"),
        ("ENVELOPE_SENDER_MISMATCH", "forged"),
        ("ENVELOPE_WRONG_TOPIC", "forged"),
        ("ENVELOPE_REPLAY", "already acted on"),
        ("REDRIVE_UNVERIFIED", "the log did not bear out"),
    ],
)
def test_a_request_at_fault_as_it_is_cannot_be_redriven(kind: str, why: str) -> None:
    refused = not_redrivable("adapter.dgal", TOPICS.requests("dgal"), TOPICS, kind)
    assert refused is not None
    assert why in refused


def test_an_adapter_honours_a_redrive_of_its_own_request_topic_only() -> None:
    assert not_redrivable("adapter.dga", TOPICS.requests("dga"), TOPICS) is None
    crossed = not_redrivable("adapter.dga", TOPICS.requests("dgal"), TOPICS)
    assert crossed is not None
    assert "reads" in crossed
    unknown = not_redrivable("adapter.nobody", TOPICS.requests("dgal"), TOPICS)
    assert unknown is not None
    assert "do not honour a redrive" in unknown


FORGED_OR_BROKEN = [
    "ENVELOPE_MALFORMED",
    "ENVELOPE_DISALLOWED_ALG",
    "ENVELOPE_BAD_SIGNATURE",
    "ENVELOPE_HEADER_REFUSED",
    "ENVELOPE_SENDER_MISMATCH",
    "ENVELOPE_NOT_ENTITLED",
    "ENVELOPE_WRONG_RECIPIENT",
    "ENVELOPE_WRONG_TOPIC",
]


@pytest.mark.parametrize(
    ("component", "topic"),
    [
        ("hub.intake", TOPICS.declarations),
        ("hub.correlation", TOPICS.responses("dgal")),
        ("adapter.dgal", TOPICS.requests("dgal")),
    ],
)
@pytest.mark.parametrize("kind", FORGED_OR_BROKEN)
def test_an_envelope_not_made_for_its_reader_is_not_redriven_by_any_reader(
    component: str, topic: str, kind: str
) -> None:
    """Forged, damaged or another party's: the same bytes are refused again, whoever reads
    them. The hub's own inputs offered them until stop 40 (the adapters' did not)."""
    refused = not_redrivable(component, topic, TOPICS, kind)
    assert refused is not None
    assert "forged" in refused
    assert kind in refused


@pytest.mark.parametrize(
    ("component", "topic"),
    [
        ("hub.intake", TOPICS.declarations),
        ("hub.correlation", TOPICS.responses("dgal")),
        ("adapter.dgal", TOPICS.requests("dgal")),
    ],
)
@pytest.mark.parametrize(
    "kind",
    [
        "ENVELOPE_UNKNOWN_KID",
        "ENVELOPE_RETIRED_KEY",
        "ENVELOPE_DECRYPTION_FAILED",
        "ENVELOPE_IAT_SKEW",
        "ENVELOPE_NOT_YET_VALID",
        "ENVELOPE_EXPIRED",
    ],
)
def test_an_envelope_refused_for_what_its_reader_lacked_is_redriven_by_every_reader(
    component: str, topic: str, kind: str
) -> None:
    assert not_redrivable(component, topic, TOPICS, kind) is None
