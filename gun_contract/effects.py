"""What a handler wants sent: records for topics, built by pure code, sent by the edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)
    partition: int | None = None  # None: the key's partition (the default partitioner)


@dataclass(slots=True)
class Effects:
    """Records to send, in order, once the handler has updated its state.

    ``after_delivery`` runs once every record is acknowledged by the broker (still in the
    event's context): what must only be recorded once it is certain it left.
    """

    records: list[OutgoingRecord] = field(default_factory=list)
    after_delivery: list[Callable[[], None]] = field(default_factory=list)

    def add(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers | None = None,
        *,
        partition: int | None = None,
    ) -> None:
        self.records.append(OutgoingRecord(topic, key, value, headers or [], partition))

    def to(self, topic: str) -> list[OutgoingRecord]:
        """The records bound for one topic (mostly for tests)."""
        return [record for record in self.records if record.topic == topic]
