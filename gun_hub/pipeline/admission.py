"""Admission: a sealed declaration is acted on only once its message id is claimed.

The producer chooses a declaration's partition (contract section 2), and faust keeps a
table key in the partition of the event that wrote it: a replay memory kept where the
declaration arrived would find a copy sent to another partition fresh, and decide it
again as a second case. So each id (``jti``) is claimed at one owner, the partition
``claim_partition(jti)`` of the hub-internal claims topic, which one worker at a time
holds (ADR 0008):

1. The intake opens the envelope (every check but the replay one), holds the opened
   declaration in memory (:class:`Admissions`) and sends a :class:`Claim` to the owner.
   The declaration's record is not marked handled: until it is admitted, a crash, a
   rebalance or a dropped record has it read again and claimed again.
2. The claims agent, at the owner, records the id with the position it was read at
   (``TableReplayGuard``) and sends a :class:`ClaimVerdict` back on the declaration's
   partition: first sighting (the same position again is a redelivery: first too) or
   replay.
3. Back in the declaration's partition, waiting declarations are released in log order
   (verdicts of different owners may come back in any order): a first sighting is
   decided as before, a replay dead-lettered as ``ENVELOPE_REPLAY``.

Nothing waits in the agent: the intake goes on with the next record while claims travel.
Held declarations are counted as on their way by the offset watchdog (runtime/).

A redrive (redrive.py, ADR 0010) is *read as* its original: it is claimed and decided at
the original's position (``read_as``), so the owner sees the same position again, a
redelivery, and the intake finds the case it opened there. It is held, released in log
order and settled as itself, at the position it has in the log (``source``).
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.envelope import bare_message_id
from gun_contract.security.replay import TableReplayGuard
from gun_contract.untrusted_json import parse_untrusted
from gun_hub.pipeline.intake import Intake
from gun_hub.pipeline.redrive import parse_position

CLAIM = "claim"
VERDICT = "verdict"


def claim_partition(message_id: str, partitions: int) -> int:
    """The claims partition that owns ``message_id`` (``sender/jti``): a stable hash of
    its ``jti``, which is where a worker of the previous version claimed the bare ``jti``,
    so that both are looked up in one partition's memory during an upgrade (review of
    stop 48's own commits). Only the hub writes and reads the claims topic."""
    return zlib.crc32(bare_message_id(message_id).encode()) % partitions


def claims_memory(
    table: Any, partitions: int, *, keep_after_expiry_s: int, readable_s: int
) -> TableReplayGuard:
    """The claims partitions' memory of message ids (ADR 0008). An id is recorded by its
    claim partition; its copies may be read from any of the ``partitions`` declarations
    partitions, so it is forgotten once every one of them has been read past its expiry
    (plus ``keep_after_expiry_s``), or, while one has not, ``readable_s`` after it: by
    then no copy the broker accepted before the expiry is left in the log."""
    return TableReplayGuard(
        table,
        keep_after_expiry_s=keep_after_expiry_s,
        table_partition=lambda message_id, _position: claim_partition(message_id, partitions),
        sources=partitions,
        readable_s=readable_s,
    )


@dataclass(frozen=True, slots=True)
class Claim:
    """The intake asks the owner of ``message_id`` whether it was read elsewhere."""

    message_id: str
    accept_until: int
    source: SourcePosition
    accepted_at: float | None
    read_as: str | None = None  # a redrive: the original's position, where it is claimed
    # The broker time below which the source partition can no longer be read again: of
    # the record at the offset the broker confirmed committed (``Admissions.readable_from``).
    # What moves the claims memory's clock for that partition; None: unknown (or written
    # by a worker from before stop 36), which moves nothing.
    readable_from: float | None = None

    @property
    def position(self) -> str:
        """Where the id is claimed: the record's position, or the original's."""
        return self.read_as or self.source.describe()

    def to_bytes(self) -> bytes:
        fields: dict[str, Any] = {
            "kind": CLAIM,
            "jti": self.message_id,
            "accept_until": self.accept_until,
            "topic": self.source.topic,
            "partition": self.source.partition,
            "offset": self.source.offset,
            "accepted_at": self.accepted_at,
        }
        if self.read_as is not None:
            fields["read_as"] = self.read_as
        if self.readable_from is not None:
            fields["readable_from"] = self.readable_from
        return json.dumps(fields, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ClaimVerdict:
    """The owner's answer, sent to the claiming declaration's partition."""

    message_id: str
    source: SourcePosition
    first: bool
    held_at: str  # the position the id was first read at

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "kind": VERDICT,
                "jti": self.message_id,
                "topic": self.source.topic,
                "partition": self.source.partition,
                "offset": self.source.offset,
                "first": self.first,
                "held_at": self.held_at,
            },
            separators=(",", ":"),
        ).encode()


def read_claims_record(data: bytes) -> Claim | ClaimVerdict:
    """A record of the claims topic; ``ValueError`` for anything else (dead-lettered).

    Every number is held to what Kafka and a clock can hold: ``Infinity`` or 1e400
    raised OverflowError past this reader, a partition the topic does not have an
    assertion in the producer, and the claims agent crashed on the same record again and
    again; a ``read_as`` that is no position stalled its partition's memory (found by
    review in stop 34)."""
    try:
        fields: Any = parse_untrusted(data)
        source = SourcePosition(
            str(fields["topic"]),
            _whole(fields["partition"], KAFKA_PARTITIONS),
            _whole(fields["offset"], KAFKA_OFFSETS),
            None,
        )
        if fields["kind"] == CLAIM:
            accepted_at = fields["accepted_at"]
            readable_from = fields.get("readable_from")
            read_as = fields.get("read_as")
            if read_as is not None:
                read_as = parse_position(str(read_as)).describe()
            return Claim(
                message_id=str(fields["jti"]),
                accept_until=_whole(fields["accept_until"], KAFKA_OFFSETS),
                source=source,
                accepted_at=_instant(accepted_at) if accepted_at is not None else None,
                read_as=read_as,
                readable_from=_instant(readable_from) if readable_from is not None else None,
            )
        if fields["kind"] == VERDICT:
            return ClaimVerdict(
                message_id=str(fields["jti"]),
                source=source,
                first=bool(fields["first"]),
                held_at=str(fields["held_at"]),
            )
    except (KeyError, TypeError, ValueError, RecursionError, OverflowError) as error:
        raise ValueError(f"not a claims record: {type(error).__name__}: {error}") from None
    raise ValueError(f"not a claims record: kind {fields.get('kind')!r}")


# What Kafka numbers: partitions are 32-bit, offsets (and the seconds of an expiry) 64-bit.
KAFKA_PARTITIONS = 2**31
KAFKA_OFFSETS = 2**63
# Seconds since 1970 of the year 2242: a time that is a time. A claim's time is the
# broker's; one forged far ahead of it still makes the claims memory forget ids early, as
# anyone able to write the claims topic could also forge its verdicts (hub-only topic).
LATEST_TIME_S = 2**33


def _whole(value: object, below: int) -> int:
    """A JSON integer from 0 to ``below`` (excluded); ``ValueError`` for anything else
    (a bool, a float, text, a number past it)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < below:
        raise ValueError(f"{str(value)[:40]!r} is not a whole number from 0 to {below - 1}")
    return value


def _instant(value: object) -> float:
    """Seconds since 1970 as a finite number; ``TypeError`` or ``ValueError`` for anything
    else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{str(value)[:40]!r} is not a time")
    seconds = float(value)  # OverflowError past a float: refused by the reader too
    if not math.isfinite(seconds) or abs(seconds) >= LATEST_TIME_S:
        raise ValueError(f"{value!r} is not a time")
    return seconds


class ClaimJudge:
    """At the owner partition: first sighting or replay, remembered in a table written
    in the claim's own event (so the table partition is the id's claim partition)."""

    def __init__(self, memory: TableReplayGuard, claims_topic: str) -> None:
        self._memory = memory
        self._topic = claims_topic

    def judge(self, claim: Claim) -> Effects:
        position = claim.position
        bare = bare_message_id(claim.message_id)  # as a worker of the previous version kept it
        first = self._memory.first_sighting(
            claim.message_id,
            claim.accept_until,
            position,
            claim.accepted_at,
            # A redrive is claimed at its original's position, on another partition
            # maybe: what it says of its own partition is no clock of the original's.
            readable_from=claim.readable_from if claim.read_as is None else None,
            known_before_as=bare,
        )
        held_at = (
            position if first else self._memory.position_of(claim.message_id, known_before_as=bare)
        )
        verdict = ClaimVerdict(
            message_id=claim.message_id, source=claim.source, first=first, held_at=held_at
        )
        outbox = Effects()
        outbox.add(
            self._topic,
            claim.message_id.encode(),
            verdict.to_bytes(),
            partition=claim.source.partition,
        )
        return outbox


@dataclass(slots=True)
class Waiting:
    """An opened declaration waiting for its claim's verdict (``first`` once known)."""

    source: SourcePosition
    sealed: bytes  # as received: what a replay's dead letter keeps
    document: bytes  # the declaration XML, verified and decrypted
    message_id: str
    first: bool | None = None
    held_at: str = ""
    read_as: SourcePosition | None = None  # a redrive: the original's position
    sender: str | None = None  # the party that sealed it (None: plain XML)

    @property
    def position(self) -> SourcePosition:
        """The position the declaration is decided at: its own, or its original's."""
        return self.read_as or self.source


@dataclass(slots=True)
class _Partition:
    waiting: dict[int, Waiting] = field(default_factory=dict)  # offset -> waiting
    # Offsets of this partition the intake has read and not yet seen settled: held, being
    # admitted, or being dead-lettered. Every other offset from where reading must start
    # is one faust has not handed over (yet): nothing after it may be decided before it.
    read: set[int] = field(default_factory=set)
    # The broker time of each record read from the confirmed commit point on
    # (``times_from``), and the latest of those read below it (``floor``): what a claim
    # says of how far the partition can no longer be read again (``readable_from``).
    times: dict[int, float] = field(default_factory=dict)
    times_from: int = 0
    floor: float | None = None
    # Copies released as replays (offset -> message id, where it was held) that this
    # worker may read again (a watchdog seek back to its first unsettled offset): a
    # replay acted on stands, whatever a later judging of the same claim says.
    refused: dict[int, tuple[str, str]] = field(default_factory=dict)


ReadFrom = Callable[[int], "int | None"]
_PRUNE_AT = 4096  # read offsets kept before those already settled are dropped


class Admissions:
    """This worker's declarations waiting for a verdict, per partition of the
    declarations topic, released in log order. In memory only: what it holds was never
    marked handled, so after a crash or a reassignment it is read and claimed again.

    Log order means the log's, not the order faust hands records over: faust skips
    records while a rebalance suspends its flow, and hands over the next ones (the
    watchdog has the skipped one read again later). ``read_from(partition)`` is where
    the consumer says reading must start, its first offset neither handled nor known
    to hold no record (None: not known yet, so nothing to wait for). A declaration is
    released only when every offset from there to it was read by the intake: deciding
    version 1 while version 2, before it in the log, was skipped would decide a stale
    version (seen in the short chaos run).

    ``committed(partition)`` is the offset the broker confirmed committed (None: not
    known): from it, the partition may be read again (after a crash, a rebalance), so a
    claim says how far it can *not* be (``readable_from``)."""

    def __init__(
        self, read_from: ReadFrom | None = None, committed: ReadFrom | None = None
    ) -> None:
        self._partitions: dict[int, _Partition] = {}
        self._read_from = read_from
        self._committed = committed

    def saw(self, partition: int, offset: int, accepted_at: float | None = None) -> None:
        """The intake read the record at ``offset`` (whatever becomes of it), appended by
        the broker at ``accepted_at`` (None: not known)."""
        held = self._partitions.setdefault(partition, _Partition())
        held.read.add(offset)
        if accepted_at is not None and self._committed is not None:
            held.times[offset] = accepted_at
            if len(held.times) > _PRUNE_AT:
                self._forget_times_below_commit(partition, held)
        if len(held.read) > _PRUNE_AT:
            start = self._start(partition)
            if start is not None:
                held.read = {o for o in held.read if o >= start}
                held.refused = {o: r for o, r in held.refused.items() if o >= start}

    def readable_from(self, partition: int) -> float | None:
        """The broker time below which ``partition`` can no longer be read again: of the
        record at the offset the broker confirmed committed, as the intake read it, or,
        while that one is not read, of the latest record read before it (the broker's
        times grow along a partition). None: neither read (or no commit known).

        Not how far the intake has *read* (stop 36, found by review): a partition is read
        again from its committed offset after a crash or a rebalance, so a copy judged a
        replay there is claimed again, and the claims memory must still know its id. Not
        the offset being committed either: a crash before the broker answers reads again
        from the older one."""
        held = self._partitions.get(partition)
        if held is None:
            return None
        committed = self._forget_times_below_commit(partition, held)
        if committed is None:
            return None
        at_commit = held.times.get(committed)
        return at_commit if at_commit is not None else held.floor

    def _forget_times_below_commit(self, partition: int, held: _Partition) -> int | None:
        """Drop the times of records the partition can no longer read again (keeping
        the latest of them); the offset confirmed committed."""
        committed = self._committed(partition) if self._committed is not None else None
        if committed is None or committed <= held.times_from:
            return committed
        below = [at for offset, at in held.times.items() if offset < committed]
        if below:
            held.floor = max(below + ([held.floor] if held.floor is not None else []))
            held.times = {o: at for o, at in held.times.items() if o >= committed}
        held.times_from = committed
        return committed

    def wait(self, waiting: Waiting) -> None:
        """Hold ``waiting`` (read again: the newer reading replaces the older, keeping a
        replay verdict the older one had, or one this worker acted on there)."""
        source = waiting.source
        self.saw(source.partition, source.offset)
        partition = self._partitions[source.partition]
        older = partition.waiting.get(source.offset)
        refused = partition.refused.get(source.offset)
        if older is not None and older.message_id == waiting.message_id and older.first is False:
            waiting.first, waiting.held_at = False, older.held_at
        elif refused is not None and refused[0] == waiting.message_id:
            waiting.first, waiting.held_at = False, refused[1]
        partition.waiting[source.offset] = waiting

    def settle(self, verdict: ClaimVerdict) -> list[Waiting]:
        """Record ``verdict``; every declaration now releasable, in log order. A verdict
        for nothing held (a claim sent again, a partition since reassigned) is ignored.

        A replay verdict is never overturned: two judgings of one claim that disagree
        (a zombie owner and its successor, an owner judging its partition again from its
        commit point after deleting the id: found by review, stop 36) mean the id was
        forgotten in between and another position may hold it now. Nothing was acted on
        while the declaration is held, so a replay after a first sighting refuses it."""
        partition = self._partitions.get(verdict.source.partition)
        if partition is None:
            return []
        waiting = partition.waiting.get(verdict.source.offset)
        if waiting is None or waiting.message_id != verdict.message_id:
            return []
        if waiting.first is not False:
            waiting.first = verdict.first
            waiting.held_at = verdict.held_at
        return self._release(verdict.source.partition, partition)

    def admit_without_claim(self, waiting: Waiting) -> list[Waiting]:
        """A declaration that needs no claim (plain XML, local development only) still
        waits for those read before it: the releasable ones, in log order."""
        waiting.first = True
        self.wait(waiting)
        number = waiting.source.partition
        return self._release(number, self._partitions[number])

    def release_ready(self) -> list[Waiting]:
        """Declarations whose wait ended without a record arriving (the consumer learnt
        that the offsets before them hold nothing), in log order per partition."""
        released: list[Waiting] = []
        for number, partition in list(self._partitions.items()):
            if partition.waiting:
                released += self._release(number, partition)
        return released

    def blocked(self) -> dict[int, int]:
        """Partitions whose held declarations wait for a record the intake has not read
        (faust skipped it), with that record's offset: never to be paused for holding
        too much, or the record is never fetched again and the partition waits for good
        (seen in the full chaos run with two workers)."""
        found: dict[int, int] = {}
        for number, partition in self._partitions.items():
            start = self._start(number) if partition.waiting else None
            if start is None:
                continue
            lowest = min(partition.waiting)
            unread = next((o for o in range(start, lowest) if o not in partition.read), None)
            if unread is not None:
                found[number] = unread
        return found

    def holds(self, partition: int, offset: int) -> bool:
        held = self._partitions.get(partition)
        return held is not None and offset in held.waiting

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions taken from this worker: their next owner reads them again (from
        the commit the broker has: a new reading tells its times)."""
        for partition in partitions:
            self._partitions.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(p.waiting) for p in self._partitions.values())

    def _start(self, partition: int) -> int | None:
        return self._read_from(partition) if self._read_from is not None else None

    def _release(self, number: int, partition: _Partition) -> list[Waiting]:
        start = self._start(number)
        released: list[Waiting] = []
        for offset in sorted(partition.waiting):
            if partition.waiting[offset].first is None:
                break
            if start is not None:
                if any(o not in partition.read for o in range(start, offset)):
                    break  # a record before it was not read: it comes first
                start = offset + 1
            waiting = partition.waiting.pop(offset)
            if waiting.first is False:
                partition.refused[offset] = (waiting.message_id, waiting.held_at)
            released.append(waiting)
        return released


class AdmissionGate:
    """The intake's two steps around the claim: ``receive`` a record of the declarations
    topic, ``settle`` a verdict, ``admit`` each declaration released."""

    def __init__(
        self, intake: Intake, admissions: Admissions, claims_topic: str, partitions: int
    ) -> None:
        self._intake = intake
        self._admissions = admissions
        self._topic = claims_topic
        self._partitions = partitions

    def receive(
        self,
        data: bytes,
        source: SourcePosition,
        accepted_at: float | None,
        *,
        read_as: SourcePosition | None = None,
    ) -> tuple[Effects, list[Waiting]]:
        """What the record at ``source`` causes now (its dead letter, or its claim), and
        the declarations it releases (a plain one with none waiting before it).
        ``read_as``: a redrive's original position (``accepted_at`` is then the
        original's broker time)."""
        outbox = Effects()
        original = read_as if read_as is not None and read_as != source else None
        # A redrive's broker time is its original's, earlier than its own: no later than
        # the time it can be read again from.
        self._admissions.saw(source.partition, source.offset, accepted_at)
        position = original or source
        unsealed = self._intake.unseal(outbox, data, position, accepted_at, check_replay=False)
        if unsealed is None:
            return outbox, []
        message_id = unsealed.message_id
        waiting = Waiting(
            source,
            data,
            unsealed.document,
            message_id or "",
            read_as=original,
            sender=unsealed.sender,
        )
        if message_id is None:
            return outbox, self._admissions.admit_without_claim(waiting)
        claim = Claim(
            message_id,
            unsealed.accept_until,
            source,
            accepted_at,
            original.describe() if original is not None else None,
            # A redrive is judged at its original's position: no clock of that partition.
            self._admissions.readable_from(source.partition) if original is None else None,
        )
        # Built before anything waits for it: a claim that cannot be built must not leave
        # its declaration (and every one after it on its partition) waiting for good.
        key, value = message_id.encode(), claim.to_bytes()
        partition = claim_partition(message_id, self._partitions)
        self._admissions.wait(waiting)
        outbox.add(self._topic, key, value, partition=partition)
        return outbox, []

    def settle(self, verdict: ClaimVerdict) -> list[Waiting]:
        return self._admissions.settle(verdict)

    def release_ready(self) -> list[Waiting]:
        return self._admissions.release_ready()

    def admit(self, waiting: Waiting) -> Effects:
        """Decide a released declaration, or dead-letter a replay."""
        outbox = Effects()
        if waiting.first:
            self._intake.admit(
                outbox, waiting.sealed, waiting.document, waiting.position, waiting.sender
            )
        else:
            self._intake.refuse_replay(
                outbox, waiting.sealed, waiting.position, waiting.message_id, waiting.held_at
            )
        return outbox
