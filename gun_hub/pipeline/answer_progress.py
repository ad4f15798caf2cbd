"""How far the hub has read each response partition: what a deadline must wait for.

After a restart longer than the request deadline, answers the adapters wrote in time can
sit unread in the log while the deadline timer already fires; deciding in degraded mode
then would be wrong (issue 10, defect 10). Time is judged as the broker judges it: an
answer is in time if the broker accepted it before the deadline. So a case may time out
only once each response partition it depends on has been read past a record the broker
accepted after the deadline, or to the end of the log (nothing unread can hide there).

Fed by the correlation agent (each record processed), the consumer's committed offsets
at assignment, and the log ends the deadline sweep asks the broker for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_Partition = tuple[str, int]


@dataclass(slots=True)
class AnswerProgress:
    """Per (topic, partition): next offset to read, broker time read up to, log end."""

    _next: dict[_Partition, int] = field(default_factory=dict)
    _read_time: dict[_Partition, float] = field(default_factory=dict)
    _end: dict[_Partition, int] = field(default_factory=dict)

    def processed(self, topic: str, partition: int, *, offset: int, accepted_at: float) -> None:
        """A record was handled (and what it caused was sent)."""
        where = (topic, partition)
        self._next[where] = max(self._next.get(where, 0), offset + 1)
        self._read_time[where] = max(self._read_time.get(where, 0.0), accepted_at)

    def set_committed(self, topic: str, partition: int, offset: int) -> None:
        """The group's committed offset (known at assignment): everything before it was read."""
        where = (topic, partition)
        self._next[where] = max(self._next.get(where, 0), offset)

    def set_end(self, topic: str, partition: int, end: int) -> None:
        """The log end offset, as the broker last reported it."""
        self._end[(topic, partition)] = end

    def read_until(self, topic: str, partition: int, when: float) -> bool:
        """True when no record the broker accepted before ``when`` can still be unread."""
        where = (topic, partition)
        read_time = self._read_time.get(where)
        if read_time is not None and read_time >= when:
            return True
        end = self._end.get(where)
        if end is None:
            return False  # never asked: answers may be waiting
        return end == 0 or self._next.get(where, 0) >= end

    def forget(self, topic: str, partition: int) -> None:
        """The partition was revoked: what this worker knew of it is stale."""
        where = (topic, partition)
        self._next.pop(where, None)
        self._read_time.pop(where, None)
        self._end.pop(where, None)
