"""The decision publisher's lane remembers each declaration partition's latest decisions
apart from its count of all of them (ADR 0025's addendum of stop 47;
gun_hub/runtime/published_memory.py): a repeat comes from the uncommitted records of its
own partition, and a partition stuck for long while the others' decisions go on through
the lane would otherwise be forgotten by the count. The real broker's side (a lane kept,
a lane taken over) is tests/integration/
test_a_repeat_from_a_partition_stuck_for_long_is_not_published_again.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.decision_outbox import HEADER_ORIGIN, origin_of
from gun_hub.runtime.published_memory import (
    DUPLICATE,
    MOST_METADATA_CHARS,
    OTHER_DECLARANT,
    SUPERSEDED,
    Published,
    PublishedMemory,
    spans_of_windows_before,
    window_metadata,
    windows_in,
)
from tests.builders import declaration_xml
from tests.unit.test_an_outbox_decision_under_a_state_key_not_deployed_stops_the_publisher import (
    DEPLOYED,
    _Lane,
    _sealed,
)
from tests.unit.test_pipeline import Hub

QUIET, BUSY = 1, 0  # a partition that stopped deciding, one that goes on


def flow(memory: PublishedMemory, count: int, *, offset: int = 100) -> None:
    """``count`` decisions of the busy partition."""
    for n in range(count):
        memory.remember(Published((f"BUSY{n}".encode(), b"1"), b"", BUSY, offset + n))


def test_a_stuck_partitions_last_decision_outlives_the_lanes_count() -> None:
    memory = PublishedMemory(capacity=4)
    memory.remember(Published((b"STUCK", b"1"), b"", QUIET, 0))
    flow(memory, 50)
    assert (b"STUCK", b"1") not in memory.identities()  # the count forgot it
    assert memory.refusal((b"STUCK", b"1")) == DUPLICATE  # its partition's window did not


def test_the_partitions_first_decision_once_back_does_not_push_its_last_ones_out() -> None:
    """Brought back after an hour, the partition's answers and deadlines decide at once,
    beside the repeats its intake announces: a window bounded in time let its first new
    decision push out the decisions whose repeats were on their way (review of stop 47)."""
    memory = PublishedMemory(capacity=4, per_origin=3)
    memory.remember(Published((b"STUCK", b"1"), b"", QUIET, 0))
    flow(memory, 50)
    memory.remember(Published((b"ANSWERED", b"1"), b"", QUIET, 200))
    assert memory.refusal((b"STUCK", b"1")) == DUPLICATE


def test_a_decision_naming_no_origin_is_remembered_by_the_count_only() -> None:
    """Published before the origin header existed: as before stop 47."""
    memory = PublishedMemory(capacity=4)
    memory.remember(Published((b"OLD", b"1"), b"", None, 0))
    flow(memory, 50)
    assert memory.refusal((b"OLD", b"1")) is None


def test_a_window_keeps_its_partitions_latest_decisions_up_to_its_share() -> None:
    memory = PublishedMemory(capacity=10, per_origin=3)
    for n in range(5):
        memory.remember(Published((f"Q{n}".encode(), b"1"), b"", QUIET, n))
    flow(memory, 10, offset=10)
    assert [memory.refusal((f"Q{n}".encode(), b"1")) for n in range(5)] == [
        None,
        None,
        DUPLICATE,
        DUPLICATE,
        DUPLICATE,
    ]
    assert memory.windows()[QUIET] == (2, 4)


def test_a_window_remembers_the_highest_version_and_the_declarant() -> None:
    memory = PublishedMemory(capacity=2)
    memory.remember(Published((b"SPLIT", b"2"), b"owner", QUIET, 0))
    flow(memory, 50)
    assert memory.refusal((b"SPLIT", b"1"), b"owner") == SUPERSEDED
    assert memory.refusal((b"SPLIT", b"3"), b"someone else") == OTHER_DECLARANT
    assert memory.refusal((b"SPLIT", b"3"), b"owner") is None


def test_a_version_one_window_let_go_is_a_duplicate_while_another_holds_its_reference() -> None:
    """Version 1 decided on the busy partition, version 2 on the stuck one (a reference
    split over partitions); the busy one's window moves on. Version 1 announced again is
    a repeat of a decision the clearance system has: not recorded as superseded, which
    would tell it a version it received was ignored (review stop 38-g, G1, again in the
    review of stop 47)."""
    memory = PublishedMemory(capacity=2, per_origin=3)
    memory.remember(Published((b"SPLIT", b"1"), b"", BUSY, 0))
    memory.remember(Published((b"SPLIT", b"2"), b"", QUIET, 1))
    flow(memory, 50, offset=10)
    assert memory.refusal((b"SPLIT", b"1")) == DUPLICATE
    assert memory.highest(b"SPLIT") == 2


def test_what_is_remembered_is_twice_the_count_at_most_whatever_the_partitions() -> None:
    """A window each of a quarter of the count grew with the partitions feeding the lane
    (24 partitions: 95 MiB a lane, some 2.3 GB for a worker holding them all; review of
    stop 47): all windows together hold the count at most, the largest giving way."""
    memory = PublishedMemory(capacity=100, per_origin=25)
    for n in range(10_000):
        memory.remember(Published((f"R{n}".encode(), b"1"), b"", n % 24, n))
    assert len(memory) <= 2 * 100
    windows = memory.windows()
    assert len(windows) == 24
    assert all(last >= 10_000 - 24 for _, last in windows.values())  # each its latest


def test_a_stuck_partition_keeps_its_share_of_the_windows_however_long_the_others_go_on() -> None:
    memory = PublishedMemory(capacity=100, per_origin=25)
    for n in range(200):  # four partitions, the stuck one among them
        memory.remember(Published((f"R{n}".encode(), b"1"), b"", n % 4, n))
    for n in range(200, 100_000):  # the three others go on
        memory.remember(Published((f"R{n}".encode(), b"1"), b"", 1 + n % 3, n))
    stuck = [f"R{n}".encode() for n in range(196, 200) if n % 4 == 0]
    assert all(memory.refusal((reference, b"1")) == DUPLICATE for reference in stuck)
    first, last = memory.windows()[0]
    assert last - first >= 4 * (100 // 4 - 1)  # a quarter of the windows: its share


def test_the_windows_said_in_a_commit_are_read_back() -> None:
    windows = {0: (120, 180), 3: (5, 40), 11: (0, 0)}
    said = window_metadata(windows)
    assert windows_in(said) == windows
    assert said.startswith("windows/1 11:0-0 3:5-40")  # the oldest first


def test_a_commit_that_says_no_windows_or_something_else_names_none() -> None:
    assert windows_in("") == {}
    assert windows_in("committed by hand") == {}
    assert windows_in("windows/1 x:1-2 4:9-3 5:1-2") == {5: (1, 2)}
    # A digit that is no ASCII digit ("²".isdigit() is true, int refuses it): the
    # commit's metadata is anyone's in the group, and the publisher reads it as its
    # partitions are assigned (review of stop 55).
    assert windows_in("windows/1 ²:1-2 5:1-2") == {5: (1, 2)}
    assert windows_in("windows/1 4:1-²") == {}


def test_too_many_windows_for_a_commit_leave_the_latest_out() -> None:
    """The broker refuses a commit's metadata beyond 4 kB by default, which would fail
    every transaction of the lane."""
    windows = {origin: (1_000_000 + origin, 2_000_000 + origin) for origin in range(400)}
    said = window_metadata(windows)
    assert len(said) <= MOST_METADATA_CHARS
    kept = windows_in(said)
    assert 0 in kept
    assert 399 not in kept
    assert set(kept) == set(range(len(kept)))


def test_a_takeover_reads_each_window_before_the_latest_offsets_merged_and_bounded() -> None:
    windows = {
        0: (900, 990),  # within the latest offsets (read from 800): nothing more
        1: (100, 150),
        2: (140, 200),  # overlaps window 1: read once
        3: (300, 790),  # long: its latest 100 offsets only
        4: (10, 20),  # partly deleted by retention
    }
    assert spans_of_windows_before(windows, 800, beginning=15, most=100) == [
        (15, 21),
        (100, 201),
        (691, 791),
    ]
    assert spans_of_windows_before({}, 800, beginning=0, most=100) == []


def test_a_decision_names_the_declaration_partition_whose_case_decided_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The outbox lane is chosen by the reference's hash: the partition the decision came
    from travels in a header, copied to gun.decisions and read back at a takeover."""
    hub = Hub(routing_table, keys_dir)
    declaration = declaration_xml(reference="26FR000690I0000077", version=1).replace(
        b"<Version>1</Version>", b"<Version>one</Version>"
    )
    refused = hub.intake.handle(
        hub.sealed_by_clearance(declaration),
        SourcePosition("gun.declarations", 3, 41, b"26FR000690I0000077"),
    )
    [record] = refused.to(hub.topics.decision_outbox)
    assert origin_of(record.headers) == 3


@pytest.mark.asyncio
async def test_a_transactions_commit_says_where_the_windows_lie_its_own_decisions_included() -> (
    None
):
    """The lane's next owner reads the windows from the last commit: a transaction that
    said only the windows before it (its decisions not yet delivered) left a lane whose
    last transaction held the whole burst with nothing to read back."""
    lane = _Lane([DEPLOYED])
    batch = [_sealed([DEPLOYED], f"26FRWIN0000000000{n}".encode(), n) for n in range(3)]
    for record, origin in zip(batch, (QUIET, BUSY, QUIET), strict=True):
        record.headers.append((HEADER_ORIGIN, str(origin).encode()))

    assert await lane.publish(batch)

    # The fake producer numbers what it sent from 0: the three decisions, in order.
    assert [windows_in(said) for said in lane.producer.said] == [{QUIET: (0, 2), BUSY: (1, 1)}]
    assert lane.memory.windows() == {QUIET: (0, 2), BUSY: (1, 1)}
