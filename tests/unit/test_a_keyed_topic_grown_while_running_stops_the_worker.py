"""A keyed topic grown while the hub runs is refused at the next assignment, with the
start-up's words (runtime/partition_counts.py; review stop 37, K3). The worker on the real
broker: tests/integration/test_a_topic_with_another_partition_count_stops_the_start.py."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from gun_contract.kafka.admin import PartitionCountMismatch
from gun_hub.runtime.partition_counts import counts_other_than, refuse_other_counts

KEYED = ("gun.declarations", "gun.claims")
PARTITIONS = 4


def _counts(**known: int) -> dict[str, int]:
    return {f"gun.{name}": count for name, count in known.items()}


def test_topics_at_the_count_pass() -> None:
    assigned = {TP("gun.declarations", p) for p in range(PARTITIONS)}
    known = _counts(declarations=4, claims=4)
    assert counts_other_than(assigned, KEYED, PARTITIONS, known.get) == {}


def test_a_grown_topic_is_named_with_its_count_from_the_metadata() -> None:
    # This worker was handed only partition 4 of the 6: the metadata says how many.
    assigned = {TP("gun.declarations", 0), TP("gun.declarations", 4)}
    known = _counts(declarations=6, claims=4)
    assert counts_other_than(assigned, KEYED, PARTITIONS, known.get) == {"gun.declarations": 6}


def test_a_grown_topic_this_worker_was_given_none_of_is_named_too() -> None:
    known = _counts(declarations=4, claims=8)
    assert counts_other_than(set(), KEYED, PARTITIONS, known.get) == {"gun.claims": 8}


def test_an_assigned_partition_past_the_count_proves_a_grown_topic_the_metadata_lacks() -> None:
    assigned = {TP("gun.declarations", 5)}
    assert counts_other_than(assigned, KEYED, PARTITIONS, lambda _topic: None) == {
        "gun.declarations": 6
    }


def test_topics_that_are_not_keyed_are_not_checked() -> None:
    assigned = {TP("gun.ops.lag", 3)}
    known = {"gun.ops.lag": 1}
    assert counts_other_than(assigned, KEYED, PARTITIONS, known.get) == {}


def test_the_refusal_says_what_the_start_up_says() -> None:
    check = refuse_other_counts(KEYED, PARTITIONS, _counts(declarations=6, claims=4).get)
    assigned = {TP("gun.declarations", p) for p in range(6)}
    with pytest.raises(PartitionCountMismatch) as refused:
        asyncio.run(check(assigned))
    message = str(refused.value)
    assert "gun.declarations has 6 partitions, but kafka.partitions is 4" in message
    assert "GUN_HUB_KAFKA__PARTITIONS" in message


def test_an_assignment_at_the_count_goes_through() -> None:
    check = refuse_other_counts(KEYED, PARTITIONS, _counts(declarations=4, claims=4).get)
    asyncio.run(check({TP("gun.declarations", p) for p in range(PARTITIONS)}))
