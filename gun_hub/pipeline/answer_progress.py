"""How far the hub has read each response partition: what a deadline must wait for.

After a restart longer than the request deadline, answers the adapters wrote while the hub
was away sit unread in the log while the deadline timer already fires; deciding in
degraded mode then would throw away answers the hub has (issue 10, defect 10). So a case
may time out only once each response partition it depends on has been read to the end
the broker last reported (the deadline sweep asks for it just before ticking): no answer
that was in the log then is still unread. An answer written after that is late.

Fed, just before each sweep, with the log ends the broker reports and with how far each
partition has been handled without a hole (the consumer's first unsettled offset,
runtime/strict_consumer.py): not the highest offset handled, since faust can drop a
record and go on (its answer would then count as read while it never was).
"""

from __future__ import annotations

from dataclasses import dataclass, field

_Partition = tuple[str, int]


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
