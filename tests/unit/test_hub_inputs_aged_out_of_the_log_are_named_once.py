"""What retention deleted from the hub's inputs before any worker read it is named once:
one dead letter per run of offsets lost (INPUT_AGED_OUT_OF_THE_LOG), an error line and a
counter by topic; internal topics are not named (review stop 38, L1)."""

from __future__ import annotations

import logging

import pytest
from faust.types import TP
from prometheus_client import REGISTRY

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_TOPIC,
    header_value,
)
from gun_contract.effects import OutgoingRecord
from gun_hub.runtime.aged_out import INPUT_AGED_OUT, InputsAgedOut
from gun_hub.runtime.offsets import EmptyOffsets, unsettled_spans

DECLARATIONS = "gun.declarations"


def test_the_runs_lost_leave_out_what_was_handled_or_known_empty() -> None:
    empty = EmptyOffsets()
    empty.add(5, 8)
    assert unsettled_spans(0, 20, {2, 3, 9, 25}, empty) == [
        range(0, 2),
        range(4, 5),
        range(8, 9),
        range(10, 20),
    ]
    assert unsettled_spans(6, 7, (), empty) == []
    # a gap of millions of offsets is one span, found at once
    assert unsettled_spans(10, 10_000_000, (), EmptyOffsets()) == [range(10, 10_000_000)]


def aged_out_count(topic: str) -> float:
    return REGISTRY.get_sample_value("gun_hub_inputs_aged_out_total", {"topic": topic}) or 0.0


@pytest.mark.asyncio
async def test_each_gap_is_one_dead_letter_an_error_and_a_count_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[OutgoingRecord] = []

    async def send(record: OutgoingRecord) -> None:
        sent.append(record)

    named = InputsAgedOut({DECLARATIONS: "declarations never decided"}, "gun.dlq", send)
    tp = TP(DECLARATIONS, 2)
    before = aged_out_count(DECLARATIONS)
    with caplog.at_level(logging.ERROR):
        await named.deleted_unread(tp, [range(3, 10), range(12, 15)])
        # found again (the assignment's check, then the watchdog's look): not named twice
        await named.deleted_unread(tp, [range(3, 15)])
        await named.deleted_unread(TP("gun.claims", 2), [range(0, 100)])

    assert [header_value(r.headers, HEADER_SOURCE_OFFSET) for r in sent] == ["3", "12"]
    for record in sent:
        assert record.topic == "gun.dlq"
        assert record.value == b""
        assert header_value(record.headers, HEADER_ERROR_KIND) == INPUT_AGED_OUT
        assert header_value(record.headers, HEADER_SOURCE_TOPIC) == DECLARATIONS
        assert header_value(record.headers, HEADER_COMPONENT) == "hub.inputs"
    reason = header_value(sent[0].headers, HEADER_ERROR_REASON) or ""
    assert f"records 3 to 9 of {DECLARATIONS}/2" in reason
    assert aged_out_count(DECLARATIONS) - before == 10
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "declarations never decided" in errors[0]


@pytest.mark.asyncio
async def test_a_dead_letter_the_broker_did_not_take_is_named_again() -> None:
    attempts: list[OutgoingRecord] = []

    async def refuse_once(record: OutgoingRecord) -> None:
        attempts.append(record)
        if len(attempts) == 1:
            raise TimeoutError("no acknowledgement")

    named = InputsAgedOut({DECLARATIONS: "declarations never decided"}, "gun.dlq", refuse_once)
    with pytest.raises(TimeoutError):
        await named.deleted_unread(TP(DECLARATIONS, 0), [range(0, 4)])
    await named.deleted_unread(TP(DECLARATIONS, 0), [range(0, 4)])
    assert len(attempts) == 2
