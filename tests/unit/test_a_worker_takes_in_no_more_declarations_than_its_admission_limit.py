"""A hub worker takes in at most ``hub.admission_limit`` declarations at once: held while
their claims are judged, waiting in the intake's queue, and in its hands, counted
together (runtime/admission_limit.py, ADR 0008). The consumer, the held declarations and
the intake's hand are stand-ins here: what the limit decides from what they report.
On the real broker: tests/e2e/test_a_backlog_is_held_within_the_admission_limit.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from faust.types import TP
from prometheus_client import REGISTRY

from gun_hub.runtime.admission_limit import AdmissionLimit
from gun_hub.runtime.faust_app import InHand

DECLARATIONS = "gun.declarations"
LIMIT = 6


class _Held:
    def __init__(self) -> None:
        self.count = 0
        self.waiting_for: dict[int, int] = {}  # partition -> the record not yet read

    def __len__(self) -> int:
        return self.count

    def blocked(self) -> dict[int, int]:
        return dict(self.waiting_for)


class _Consumer:
    def __init__(self, partitions: int = 3) -> None:
        self.throttled: set[TP] = set()
        self.in_queue = 0
        self.assigned = [TP(DECLARATIONS, p) for p in range(partitions)] + [TP("gun.hub.claims", 0)]
        self.unthrottled: list[set[TP] | None] = []
        self.during_unthrottle: list[object] = []

    def queued(self, topic: str) -> int:
        return self.in_queue if topic == DECLARATIONS else 0

    def assignment(self) -> Iterable[TP]:
        return list(self.assigned)

    def throttle(self, tps: Iterable[TP]) -> None:
        self.throttled |= set(tps)

    async def unthrottle(self, only: Iterable[TP] | None = None) -> None:
        chosen = set(self.throttled if only is None else self.throttled & set(only))
        self.unthrottled.append(None if only is None else chosen)
        for change in self.during_unthrottle:
            change()  # type: ignore[operator]
        self.throttled -= chosen


def _limit(
    held: _Held, consumer: _Consumer | None, in_hand: InHand | None = None
) -> AdmissionLimit:
    return AdmissionLimit(held, lambda: consumer, DECLARATIONS, LIMIT, in_hand or InHand())


def _throttled_count() -> float:
    return REGISTRY.get_sample_value("gun_hub_declaration_fetch_throttled_total") or 0.0


def _held_gauge() -> float | None:
    return REGISTRY.get_sample_value("gun_hub_declarations_held")


def test_a_declaration_is_handed_over_while_held_queued_and_in_hand_stay_under_the_limit() -> None:
    held, consumer, in_hand = _Held(), _Consumer(), InHand()
    limit = _limit(held, consumer, in_hand)
    held.count, consumer.in_queue, in_hand.count = 3, 1, 1  # 5 of 6
    assert limit.may_take(TP(DECLARATIONS, 0))
    for crowded in ("held", "queued", "in hand"):
        held.count, consumer.in_queue, in_hand.count = 3, 1, 1
        if crowded == "held":
            held.count += 1
        elif crowded == "queued":
            consumer.in_queue += 1
        else:
            in_hand.count += 1
        assert not limit.may_take(TP(DECLARATIONS, 0)), f"6 taken in, one more {crowded}"


def test_records_of_other_topics_are_handed_over_whatever_is_held() -> None:
    held, consumer = _Held(), _Consumer()
    held.count = LIMIT * 10
    limit = _limit(held, consumer)
    assert limit.may_take(TP("gun.hub.claims", 0))
    assert limit.may_take(TP("gun.responses.dgal", 2))
    assert not limit.may_take(TP(DECLARATIONS, 2))


def test_a_partition_waiting_for_a_record_not_yet_read_is_handed_its_records_over_the_limit() -> (
    None
):
    held, consumer = _Held(), _Consumer()
    held.count, held.waiting_for = LIMIT, {1: 41}
    limit = _limit(held, consumer)
    assert limit.may_take(TP(DECLARATIONS, 1)), "the record that would release what it holds"
    assert not limit.may_take(TP(DECLARATIONS, 0))


def test_a_declaration_refused_counts_one_throttling_not_one_per_record() -> None:
    held, consumer = _Held(), _Consumer()
    held.count = LIMIT
    limit = _limit(held, consumer)
    before = _throttled_count()
    assert not limit.may_take(TP(DECLARATIONS, 0))
    consumer.throttle([TP(DECLARATIONS, 0)])  # what the consumer does with a record left
    assert not limit.may_take(TP(DECLARATIONS, 0))
    assert not limit.may_take(TP(DECLARATIONS, 1))
    assert _throttled_count() == before + 1


def test_before_the_consumer_exists_everything_is_handed_over_and_nothing_paused() -> None:
    held = _Held()
    held.count = LIMIT * 2
    limit = _limit(held, None)
    assert limit.may_take(TP(DECLARATIONS, 0))
    asyncio.run(limit.keep())  # nothing to steer: no error


def test_under_the_limit_nothing_is_paused_and_the_gauge_reads_the_held() -> None:
    held, consumer = _Held(), _Consumer()
    held.count = LIMIT - 1
    asyncio.run(_limit(held, consumer).keep())
    assert consumer.throttled == set()
    assert consumer.unthrottled == []
    assert _held_gauge() == LIMIT - 1


def test_at_the_limit_every_declarations_partition_but_a_blocked_one_is_paused() -> None:
    held, consumer = _Held(), _Consumer(partitions=3)
    held.count, held.waiting_for = LIMIT, {2: 7}
    asyncio.run(_limit(held, consumer).keep())
    assert consumer.throttled == {TP(DECLARATIONS, 0), TP(DECLARATIONS, 1)}
    assert _held_gauge() == LIMIT


def test_paused_partitions_are_fetched_again_once_what_is_taken_in_is_down_to_half() -> None:
    held, consumer, in_hand = _Held(), _Consumer(), InHand()
    limit = _limit(held, consumer, in_hand)
    held.count = LIMIT
    asyncio.run(limit.keep())
    assert len(consumer.throttled) == 3
    held.count = LIMIT // 2 - 1
    consumer.in_queue = 1  # half: 2 held and 1 queued
    asyncio.run(limit.keep())
    assert consumer.unthrottled == [None]
    assert consumer.throttled == set()


def test_paused_partitions_stay_paused_while_the_queue_and_the_hand_keep_it_above_half() -> None:
    """Judged on the held alone they were fetched again and left at once by ``may_take``,
    which counts the queue and the hand too: one seek per declaration (stop 49's review)."""
    held, consumer, in_hand = _Held(), _Consumer(), InHand()
    limit = _limit(held, consumer, in_hand)
    held.count = LIMIT
    asyncio.run(limit.keep())
    held.count, consumer.in_queue, in_hand.count = 1, 2, 1  # the held alone below half
    asyncio.run(limit.keep())
    assert consumer.unthrottled == []
    assert len(consumer.throttled) == 3


def test_a_paused_partition_found_waiting_for_a_record_is_fetched_again_at_once() -> None:
    held, consumer = _Held(), _Consumer()
    limit = _limit(held, consumer)
    held.count = LIMIT
    asyncio.run(limit.keep())
    held.waiting_for = {1: 12}  # faust skipped its record 12 meanwhile
    asyncio.run(limit.keep())
    assert consumer.unthrottled == [{TP(DECLARATIONS, 1)}]
    assert consumer.throttled == {TP(DECLARATIONS, 0), TP(DECLARATIONS, 2)}


def test_the_held_are_counted_again_after_a_fetch_again_that_yielded() -> None:
    """Unthrottling a blocked partition yields to the loop; verdicts admitted meanwhile
    bring the held under the limit, and nothing is paused for a count that is gone."""
    held, consumer = _Held(), _Consumer()
    limit = _limit(held, consumer)
    held.count = LIMIT
    asyncio.run(limit.keep())
    consumer.throttled = {TP(DECLARATIONS, 1)}
    held.waiting_for = {1: 12}

    def admitted() -> None:
        held.count = LIMIT - 2

    consumer.during_unthrottle.append(admitted)
    asyncio.run(limit.keep())
    assert consumer.throttled == set()
