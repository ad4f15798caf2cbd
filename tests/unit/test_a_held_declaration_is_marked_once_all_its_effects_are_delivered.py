"""A declaration held from its own event until its decision is marked handled only once
its own effects and its decision are both on the broker (runtime/held_declarations.py).

Found by review in stop 32: a held declaration's mark came from its decision's settling
alone, so its own effects (the claim, a redrive's audit link, its table writes) were
ordered before the commit in practice only; a plain declaration (development only),
admitted within its own event, was marked by its empty own outbox before its decision
was delivered; and a verdict that failed on the second of three declarations it released
left the second and third held until a rebalance.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError

from gun_contract.dead_letter import SourcePosition
from gun_contract.settings import Settings
from gun_hub.pipeline.admission import Waiting
from gun_hub.runtime.app import _raw_table
from gun_hub.runtime.faust_app import HubApp, as_if_handling
from gun_hub.runtime.held_declarations import HeldDeclarations, OwnEffectsLost
from gun_hub.runtime.settling import Settling
from tests.unit.test_a_record_settles_once_its_table_writes_are_on_the_broker import (
    _changelog_writes,
)

DECLARATIONS = "gun.declarations"
CLAIMS = "gun.claims"


class Marks:
    def __init__(self) -> None:
        self.marked: list[int] = []
        self.released: list[int] = []

    def held(self, settling: Settling) -> HeldDeclarations:
        return HeldDeclarations(
            settling,
            lambda _partition, offset: self.marked.append(offset),
            lambda _partition, offset: self.released.append(offset),
        )


def _pending() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _delivered() -> asyncio.Future[None]:
    done = _pending()
    done.set_result(None)
    return done


async def _let_tasks_run() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _waiting(offset: int) -> Waiting:
    return Waiting(SourcePosition(DECLARATIONS, 0, offset, b"ref"), b"", b"", f"id-{offset}")


async def test_a_held_declaration_waits_for_its_own_effects_as_well_as_its_decision() -> None:
    marks, settling = Marks(), Settling(limit=10)
    held = marks.held(settling)
    own = _pending()  # its claim, still on its way
    with as_if_handling(DECLARATIONS, 0, 7):
        held.own_effects(0, 7, own)
    with as_if_handling(DECLARATIONS, 0, 7):
        held.decided(0, 7, _delivered())
    await _let_tasks_run()
    assert marks.marked == []
    own.set_result(None)
    await settling.drained()
    assert marks.marked == [7]
    assert len(held) == 0


async def test_a_plain_declaration_decided_in_its_own_event_is_marked_after_its_decision() -> None:
    marks, settling = Marks(), Settling(limit=10)
    held = marks.held(settling)
    decision = _pending()
    with as_if_handling(DECLARATIONS, 0, 3):
        held.own_effects(0, 3, _delivered())  # nothing of its own to send
        held.decided(0, 3, decision)
    await _let_tasks_run()
    assert marks.marked == []
    decision.set_result(None)
    await settling.drained()
    assert marks.marked == [3]


async def test_its_own_table_writes_are_awaited_before_the_mark(tmp_path: Path) -> None:
    """The own event's writes (a redrive's audit head, say) are found in its own event:
    the verdict's event does not know them."""
    app = HubApp("held-test", broker="kafka://127.0.0.1:9", store="memory://")
    table = _raw_table(app, Settings(), "audit_heads")
    table._verified_source_topics_for_partitions.update({DECLARATIONS, CLAIMS})
    marks, settling = Marks(), Settling(limit=10)
    held = marks.held(settling)
    with as_if_handling(DECLARATIONS, 1, 7):
        table[b"head"] = b"linked"
        held.own_effects(1, 7, _delivered())
    with as_if_handling(CLAIMS, 1, 3):  # the verdict
        held.decided(1, 7, _delivered())
    await _let_tasks_run()
    assert marks.marked == []
    [write] = _changelog_writes(app)
    write.set_result(None)
    await settling.drained()
    assert marks.marked == [7]


async def test_own_effects_lost_let_the_record_go_and_the_decision_never_marks_it() -> None:
    marks, settling = Marks(), Settling(limit=10)
    held = marks.held(settling)
    own = _pending()
    with as_if_handling(DECLARATIONS, 0, 9):
        held.own_effects(0, 9, own)
        held.decided(0, 9, _delivered())
    own.set_exception(KafkaTimeoutError())
    with pytest.raises((KafkaTimeoutError, OwnEffectsLost)):  # whichever the agent stops on
        await settling.drained()
    await _let_tasks_run()
    assert marks.marked == []
    assert 9 in marks.released


async def test_a_verdict_that_fails_on_one_lets_go_of_it_and_every_one_after_it() -> None:
    marks, settling = Marks(), Settling(limit=10)
    held = marks.held(settling)
    released = [_waiting(offset) for offset in (4, 5, 6)]

    async def decide(waiting: Waiting) -> None:
        if waiting.source.offset == 5:
            raise KafkaTimeoutError  # its state could not be read, ten times in a row
        with as_if_handling(DECLARATIONS, 0, waiting.source.offset):
            held.decided(0, waiting.source.offset, _delivered())

    with pytest.raises(KafkaTimeoutError):
        await held.admit(released, decide)
    await settling.drained()
    assert marks.marked == [4]
    assert marks.released == [5, 6]  # read again, not held until a rebalance


async def test_a_partition_given_up_forgets_its_held_records() -> None:
    marks, settling = Marks(), Settling(limit=10)
    held = marks.held(settling)
    given_up = _pending()
    with as_if_handling(DECLARATIONS, 2, 1):
        held.own_effects(2, 1, given_up)
    with as_if_handling(DECLARATIONS, 3, 1):
        held.own_effects(3, 1, _delivered())
    held.forget({2})
    assert len(held) == 1
    given_up.set_result(None)
    await settling.drained()
