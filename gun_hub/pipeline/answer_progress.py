"""How far the hub has read the partitions a case depends on: what a deadline must wait for.

After a restart longer than the request deadline, answers the adapters wrote while the hub
was away sit unread in the log while the deadline timer already fires; deciding in
degraded mode then would throw away answers the hub has (issue 10, defect 10). The same
holds for the declarations partition: a declaration the hub was handling when it stopped
is read again on its return and asks its partners again (its requests may never have
left); timing its case out first would leave those requests unsent for good (a CANCELLED
version's DELETE never reaching the partner: a reservation held forever, seen in the
short chaos run).

So a case may time out only once its inputs (each response partition of its partition,
and the declarations partition itself) have been read to the end the broker last
reported (the deadline sweep asks for it just before ticking): nothing that was in the
log then is still unread. An answer written after that is late.

Fed with the log ends the broker reports and with how far each partition has been handled
without a hole (the consumer's first unsettled offset, runtime/strict_consumer.py): not
the highest offset handled, since faust can drop a record and go on (its answer would
then count as read while it never was). Both are forgotten when a partition is revoked
(``forget``): the ends a worker saw in an earlier tenure say nothing of a log another
worker read on meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gun_contract.topics import TopicRegistry

_Partition = tuple[str, int]


def inputs_of(
    topics: TopicRegistry, partition: int, authorities: Iterable[str] | None = None
) -> list[_Partition]:
    """What a case on ``partition`` is decided from: its declarations partition and the
    same partition of the responses (ADR 0005: carried, never re-hashed) of
    ``authorities``, the ones it waits for (None: not known, every authority's). Only
    those: an answer on another authority's partition cannot be the case's, and one
    adapter flooding its own answers topic held back the deadlines of every authority's
    cases on that partition (stop 46's open item)."""
    known = topics.authorities
    waited = known if authorities is None else [a for a in known if a in set(authorities)]
    return [(topics.declarations, partition)] + [
        (topics.responses(authority), partition) for authority in waited
    ]


@dataclass(slots=True)
class AnswerProgress:
    """Per (topic, partition): the next offset to read, and the log end last reported."""

    _next: dict[_Partition, int] = field(default_factory=dict)
    _end: dict[_Partition, int] = field(default_factory=dict)

    def set_read_up_to(self, topic: str, partition: int, offset: int) -> None:
        """Every record before ``offset`` was handled (or holds nothing); it was not."""
        self._next[(topic, partition)] = offset

    def set_end(self, topic: str, partition: int, end: int) -> None:
        """The log end offset, as the broker last reported it."""
        self._end[(topic, partition)] = end

    def read_to_end(self, topic: str, partition: int) -> bool:
        """True when every record that was in the log at the last report has been read."""
        where = (topic, partition)
        end = self._end.get(where)
        if end is None:
            return False  # never asked: answers may be waiting
        return end == 0 or self._next.get(where, 0) >= end

    def all_read(self, inputs: list[_Partition]) -> bool:
        return all(self.read_to_end(topic, partition) for topic, partition in inputs)

    def forget(self, partitions: Iterable[_Partition]) -> None:
        """``partitions`` revoked: what was read of them, and where they ended, is no
        longer known. Given back, a partition's consumer starts again from the offset
        committed, and its log has moved on while another worker held it: judged by the
        end reported before, a tick read again there decided while an answer written
        since waited to be read again (a review of degraded mode: two owners of a
        deadline). Unknown, it waits for the sweep to ask its end again."""
        for where in partitions:
            self._next.pop(where, None)
            self._end.pop(where, None)
