"""The books of a benchmark run's decisions, read once its last phase is over.

While a phase runs, a benchmark times each declaration by its first decision, and sees a
second one only if it arrives while it still reads: after the last phase nothing was
read again, so a late duplicate (a record a hub worker handles again) was never counted
(review stop 37, T11). Once the last phase is over, the decisions topic is therefore
read from its beginning to its end offsets by a reader of its own, every record opened
(no replay memory: a copy of a decision is one decision more), and every (reference,
version) decided more than once is counted over the whole run, as the chaos checker does.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from gun_contract.envelope import Envelope
from gun_contract.kafka.client import Connect
from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision, Unreadable

Version = tuple[str, int]

READ_WITHIN_S = 300.0
"""How long the final read may take: tens of thousands of envelopes to open on a loaded
two-core machine. A read that does not reach the ends in time makes the run untrusted."""
_READ_BATCH = 1000
_EXAMPLES = 10


def decision_books(decided: Iterable[Version]) -> dict[str, Any]:
    """How many decisions, versions and duplicates ``decided`` (one entry per decision
    read) holds, with the first few versions decided more than once by name."""
    counts = Counter(decided)
    doubled = sorted(version for version, n in counts.items() if n > 1)
    return {
        "decisions": sum(counts.values()),
        "versions": len(counts),
        "duplicate_decisions": sum(n - 1 for n in counts.values()),
        "versions_decided_more_than_once": len(doubled),
        "examples": [f"{r} v{v}: {counts[(r, v)]} decisions" for r, v in doubled[:_EXAMPLES]],
    }


class DecisionSource(Protocol):
    """What the final read needs of a reader (:class:`DecisionReader`)."""

    unreadable: list[Unreadable]

    async def end_offsets(self) -> dict[int, int]: ...

    async def reached(self, ends: Mapping[int, int]) -> bool: ...

    async def collect(self, *, expected: int, timeout_s: float) -> list[ReceivedDecision]: ...


async def read_every_decision(
    reader: DecisionSource,
    *,
    timeout_s: float = READ_WITHIN_S,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """The books of every decision ``reader`` reads from where it is to the topic's end
    offsets as they are when this begins; ``read_to_end`` False if it did not get there
    within ``timeout_s`` (the books then cover only what was read)."""
    ends = await reader.end_offsets()
    decided: list[Version] = []
    deadline = clock() + timeout_s
    while not (complete := await reader.reached(ends)) and clock() < deadline:
        for received in await reader.collect(expected=_READ_BATCH, timeout_s=0.5):
            decided.append((received.decision.reference, received.decision.version))
    return decision_books(decided) | {
        "read_to_end": complete,
        "end_offsets": {str(partition): offset for partition, offset in sorted(ends.items())},
        "unreadable": len(reader.unreadable),
    }


async def books_of_the_run(
    connect: Connect, topic: str, envelope: Envelope, *, timeout_s: float = READ_WITHIN_S
) -> dict[str, Any]:
    """Every decision of ``topic`` from its beginning, read by a reader of its own
    (``envelope``: the clearance system's, with no replay memory), and its books."""
    reader = DecisionReader(connect, topic, envelope)
    await reader.start(from_beginning=True)
    try:
        return await read_every_decision(reader, timeout_s=timeout_s)
    finally:
        await reader.stop()


def summary(books: Mapping[str, Any]) -> str:
    """One line of the books, for the run's output."""
    line = (
        f"decisions topic read again to its end: {books['decisions']} decisions of "
        f"{books['versions']} versions, {books['duplicate_decisions']} duplicate(s)"
    )
    if books["examples"]:
        line += " (" + "; ".join(books["examples"]) + ")"
    if not books["read_to_end"]:
        line += f"; NOT read to its end within the time allowed ({books['end_offsets']})"
    if books["unreadable"]:
        line += f"; {books['unreadable']} record(s) not readable as decisions"
    return line
