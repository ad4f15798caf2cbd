"""The chaos workload and schedule (no broker): valid declarations unless spoiled on
purpose, every story and fault present, the same seed giving the same run."""

from __future__ import annotations

from collections import Counter

import pytest
import xmlschema

from chaos import faults
from chaos.checker.model import DecisionSeen, DocumentResultSeen
from chaos.orchestrator import fault_switch_held
from chaos.workload import STORY_WEIGHTS, Workload
from tests.conftest import REPO

SCHEMA = xmlschema.XMLSchema(str(REPO / "schemas" / "declaration.xsd"))


def test_first_versions_are_valid_unless_spoiled_on_purpose() -> None:
    workload = Workload(300, seed=5)
    kinds = Counter(story.kind for story in workload.stories)
    assert set(STORY_WEIGHTS) | {"giant", "oversized"} <= set(kinds)
    assert set(Counter(story.client for story in workload.stories)) == {"aiokafka", "confluent"}
    sizes = []
    for story in workload.stories:
        for version in story.first():
            sub = version.submission
            if sub.oversized:
                assert sub.size > 1024 * 1024
                continue
            if sub.unreadable:
                with pytest.raises(xmlschema.XMLSchemaException):
                    SCHEMA.validate(version.data)
                assert f"<Reference>{sub.reference}</Reference>".encode() in version.data[:400]
                continue
            SCHEMA.validate(version.data)
            sizes.append((len(sub.documents), sub.size))
    assert any(items == 999 for items, _ in sizes), "a declaration of 999 goods items"
    assert sum(1 for _, size in sizes if size >= 100_000) >= 3, "large declarations"


def test_the_same_seed_gives_the_same_workload() -> None:
    def fingerprint(seed: int) -> list[tuple[str, str, str]]:
        return [(s.reference, s.kind, s.client) for s in Workload(200, seed).stories]

    assert fingerprint(9) == fingerprint(9)
    assert fingerprint(9) != fingerprint(10)


def test_the_office_ends_every_control() -> None:
    story = next(s for s in Workload(200, seed=3).stories if s.kind == "simple")
    [first] = story.first()
    controlled = DecisionSeen(
        story.reference,
        1,
        "CONTROL_DOCUMENTARY",
        0.0,
        documents=tuple(
            DocumentResultSeen(d.goods_item, d.code, d.reference, d.authority, "UNAVAILABLE")
            for d in first.submission.documents
        ),
    )
    [follow_up] = story.react(controlled)
    assert follow_up.submission.stage == "CANCELLED"  # degraded: the office refuses the goods
    assert follow_up.submission.version == 2
    assert story.react(controlled) == []  # a decision of an older version: nothing


@pytest.mark.parametrize("profile", ["short", "full"])
def test_every_fault_kind_is_scheduled(profile: str) -> None:
    schedule = faults.schedule(profile, 100.0, 15.0, seed=1)
    assert set(faults.required(schedule)) >= {
        "hub_kill",
        "adapter_kill:dgal",
        "adapter_kill:cites",
        "adapter_kill:dga",
        "partner_outage",
        "partner_timeouts",
        "partner_garbage",
        "partner_in_progress",
        "broker_restart",
        "poison",
        "clearance_held_back",
    }
    assert sum(f.kind == faults.HUB_KILL for f in schedule) >= 2
    outage = next(f for f in schedule if f.kind == faults.PARTNER_OUTAGE)
    assert outage.duration_s == 15.0
    assert schedule == faults.schedule(profile, 100.0, 15.0, seed=1)


def test_a_counted_down_fault_switch_reads_back_as_taken() -> None:
    """``in_progress_next`` counts down as calls come in: read back lower (calls came
    between the switch and the read), it was taken; the hang it was set with says the
    simulator holds this switch, not the previous one."""
    switched = {"in_progress_next": 20, "hang_s": 10.0}

    def taken(held: dict[str, object]) -> bool:
        return all(fault_switch_held(held, k, v) for k, v in switched.items())

    assert taken({"in_progress_next": 3, "hang_s": 10.0})
    assert not taken({"in_progress_next": 0, "hang_s": 30.0})
    assert not fault_switch_held({"in_progress_next": 21}, "in_progress_next", 20)
