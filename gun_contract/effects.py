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
    event's context): what must only be recorded once it is certain it left;
    ``if_undelivered`` if that will not happen.
    """

    records: list[OutgoingRecord] = field(default_factory=list)
    after_delivery: list[Callable[[], None]] = field(default_factory=list)
    # Run if the delivery fails for good or is given up (the record is read again): what
    # was noted as on its way is no longer (hub_context.py ``announcing``).
    if_undelivered: list[Callable[[], None]] = field(default_factory=list)

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
