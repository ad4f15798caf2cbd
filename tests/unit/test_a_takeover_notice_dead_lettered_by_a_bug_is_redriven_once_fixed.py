"""A takeover notice dead-lettered by a bug where it was read is redriven, once the bug is
fixed, like any other dead letter (carried defect "takeover notices dead-lettered by a bug
cannot be redriven").

A later version of a reference read on another partition sends a notice to every other
partition of the hub's deadlines topic (pipeline/takeover.py); the deadlines agent hands
it to ``Takeover``. A handling bug there dead-lettered it (``UNHANDLED_ERROR``) as any
agent does, under the agent's name, ``hub.deadlines``, and the dead-letter desk refused
every dead letter of that component: "written by 'hub.deadlines': only what the hub's
intake and correlation and the adapters refused can be redriven". Nothing else brings a
notice back (its version, read again, tells the others again only after a crash), so the
earlier version's case on that partition went on holding what the later version had
taken over: a control waited for a result that had come elsewhere, reservations held at
the partner for ever.

Reading a notice again is what the hub does after a crash already: the case taken over
once, its follow-ups sent again under the same request ids, which the partners apply once
(docs/decisions.md, "One reference on several partitions"). So a notice is redriven as
the intake's declarations are: checked against the log, read as the original at its
position (redrive.py), audited. Its dead letters name ``hub.takeover``; the ticks the same
agent reads are not redriven (the hub ticks again for as long as a case waits), and a
notice an earlier release dead-lettered under ``hub.deadlines`` is told apart by its value
where the desk has it (``dlq show``, the redrive).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gun_contract.dead_letter import ErrorClass, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.dead_letters import DeadLetterId
from gun_hub.pipeline.redrive import (
    HEADER_REDRIVE_OF,
    RedriveGate,
    not_redrivable,
    redrive_headers,
)
from gun_hub.pipeline.takeover import NOTICE_STATE, Notice, Takeover, agent_name
from gun_hub.runtime.app import UNHANDLED, _handled
from gun_hub.security.operator_actions import ActionKind
from tests.builders import declaration_xml, document, goods_item
from tests.dead_letters import dead_letters_in
from tests.unit.test_a_redrive_is_the_original_read_again import Log
from tests.unit.test_dead_letter_desk import TOPICS, Desk, desk
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at, requests

__all__ = ["desk"]  # the fixture, used by name below

KEY = REF.encode()
CHED_1 = document("N853", "CHEDP.FR.2026.0001234", 1, "10")
CHED_2 = document("N853", "CHEDP.FR.2026.0009999", 1, "10")


class Bug(RuntimeError):
    """A fault in the receiving partition's handling of a notice (fixed later)."""


def raising(*_: object, **__: object) -> None:
    raise Bug("a bug in the takeover")


def split(routing_table: RoutingTable, keys_dir: Path) -> tuple[Hub, bytes]:
    """Version 1 lodged on partition 0, its partner not answered yet (undecided, its CHED
    asked to be reserved); version 2, quoting another CHED, read on partition 1: the
    worker of partition 0 and the notice partition 1 sent it."""
    first = Hub(routing_table, keys_dir)
    first.intake.handle(declaration_xml(version=1, items=(goods_item(1, (CHED_1,)),)), at(0))
    other = Hub(routing_table, keys_dir)
    lodged = other.intake.handle(
        declaration_xml(version=2, items=(goods_item(1, (CHED_2,)),)), at(0, partition=1)
    )
    [notice] = [
        r.value for r in lodged.to(other.topics.deadlines) if r.partition == 0 and r.key == KEY
    ]
    assert notice is not None
    return first, notice


async def test_a_notice_a_bug_dead_lettered_is_redriven_to_its_effect_and_only_once(
    routing_table: RoutingTable, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, notice = split(routing_table, keys_dir)
    topics = first.topics
    original = SourcePosition(topics.deadlines, 0, 3, KEY)
    log = Log()
    log.put(original, notice)

    def handle(source: SourcePosition) -> Effects:
        return first._delivered(Takeover(first.context, first.cases).handle)(REF, notice, source)

    # The bug: dead-lettered as the deadlines agent does (app.py ``agent``), nothing done.
    monkeypatch.setattr(Takeover, "_supersede", raising)
    failed = await _handled(
        lambda: handle(original),
        notice,
        original,
        topics.dlq,
        agent_name(notice),
        rollback=first.context,
    )
    [dead] = dead_letters_in(failed, topics.dlq)
    assert (dead["kind"], dead["component"]) == (UNHANDLED, "hub.takeover")
    assert not first.decisions(failed)
    assert not_redrivable(dead["component"] or "", topics.deadlines, topics, UNHANDLED) is None

    # The bug fixed, the dead letter redriven: read as the original, the case taken over.
    monkeypatch.undo()
    gate = RedriveGate(log, first.context, retry_s=0)

    async def redrive(offset: int) -> Effects:
        copy = SourcePosition(topics.deadlines, 0, offset, KEY)
        headers = redrive_headers(original, DeadLetterId(0, 7))
        log.put(copy, notice, headers=headers)
        arrival = await gate.arrival(headers, notice, copy, time.time())
        assert arrival.handle
        assert arrival.source == original
        outbox = handle(arrival.source)
        return Effects(arrival.outbox.records + outbox.records)

    redriven = await redrive(9)
    assert first.decisions(redriven) == [(REF, 1, Outcome.REFUSE)]
    assert StatusKind.SUPERSEDED in first.status_kinds(redriven)
    deleted = requests(first, redriven)
    assert [(r.operation, r.version) for r in deleted] == [(Operation.DELETE, 2)]
    audited = [json.loads(r.value) for r in redriven.to(topics.audit)]
    assert [(a["origin"], a["redrive"]) for a in audited if a.get("kind") == "REDRIVE"] == [
        (f"{topics.deadlines}/0/3", f"{topics.deadlines}/0/9")
    ]

    # Redriven again: read as the same notice read again, nothing decided again; its
    # deletion asked again under the same request id, which the partner applies once.
    again = await redrive(10)
    assert first.decisions(again) == []
    assert StatusKind.SUPERSEDED not in first.status_kinds(again)
    assert [r.request_id for r in requests(first, again)] == [r.request_id for r in deleted]


# -- the dead-letter desk ---------------------------------------------------------------------


def sealed_notice(desk: Desk) -> bytes:
    told = Notice(2, f"{TOPICS.declarations}/1/0", Stage.LODGED, "", frozenset())
    return desk.cipher.seal(NOTICE_STATE, "26FRDSK00000000001", told.to_bytes())


@pytest.mark.parametrize("component", ["hub.takeover", "hub.deadlines"])
async def test_the_desk_redrives_a_notice_to_its_partition_audited_first(
    desk: Desk, component: str
) -> None:
    """``hub.deadlines``: a notice an earlier release dead-lettered under the agent's
    name; its value tells it from a tick."""
    notice = sealed_notice(desk)
    key = b"26FRDSK00000000001"
    desk.broker.put(TOPICS.deadlines, 1, 5, key, notice)
    desk.dead_letter(
        0,
        notice,
        kind=UNHANDLED,
        component=component,
        source_topic=TOPICS.deadlines,
        error_class=ErrorClass.PERMANENT,
    )
    status, shown = await desk.call("GET", "/dead-letters/1:0", "bob")
    assert status == 200
    assert (shown["redrivable"], shown["not_redrivable"]) == (True, None)
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 200, body
    action, redrive = desk.broker.sent  # audited first
    assert action.topic == TOPICS.operator_actions
    assert desk.actions() == [(ActionKind.DLQ_REDRIVE.value, "alice", 1)]
    assert (redrive.topic, redrive.partition, redrive.key, redrive.value) == (
        TOPICS.deadlines,
        1,
        key,
        notice,
    )
    assert header_value(redrive.headers, HEADER_REDRIVE_OF) == f"{TOPICS.deadlines}/1/5"
    assert body["origin"] == f"{TOPICS.deadlines}/1/5"


async def test_the_list_says_a_notice_can_be_redriven_and_a_tick_why_not(desk: Desk) -> None:
    notice = sealed_notice(desk)
    desk.dead_letter(
        0, notice, kind=UNHANDLED, component="hub.takeover", source_topic=TOPICS.deadlines
    )
    # A deadline tick (its value the version) whose handling failed.
    desk.dead_letter(
        1, b"1", kind=UNHANDLED, component="hub.deadlines", source_topic=TOPICS.deadlines
    )
    status, body = await desk.call("GET", "/dead-letters", "bob")
    assert status == 200
    rows = {row["id"]: row for row in body["dead_letters"]}
    assert (rows["1:0"]["redrivable"], rows["1:0"]["not_redrivable"]) == (True, None)
    assert rows["1:1"]["redrivable"] is False
    why = rows["1:1"]["not_redrivable"]
    assert "ticks again" in why, why
    assert "dlq show" in why, why  # the list cannot tell a notice of an earlier release
    # Shown (its value read): a tick, and said as such, with nothing of earlier releases.
    status, shown = await desk.call("GET", "/dead-letters/1:1", "bob")
    assert (shown["redrivable"], "ticks again" in shown["not_redrivable"]) == (False, True)
    assert "dlq show" not in shown["not_redrivable"]


async def test_a_tick_is_not_redriven_and_nothing_is_sent(desk: Desk) -> None:
    desk.broker.put(TOPICS.deadlines, 1, 5, b"26FRDSK00000000001", b"1")
    desk.dead_letter(
        0, b"1", kind=UNHANDLED, component="hub.deadlines", source_topic=TOPICS.deadlines
    )
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 409
    assert "ticks again" in body["error"]
    assert desk.broker.sent == []
