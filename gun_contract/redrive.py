"""A redrive checked against the log (ADR 0010): shared by every reader that honours one
(the hub's intake and correlation, the adapters).

A redrive record carries the original record's key and bytes, on the original's topic and
partition, with a header naming the original's position (``gun.redrive.of``). Its reader
believes nothing the header says that it cannot read back from the broker: the claimed
original must be an earlier record of the same topic and partition, still in the log, with
the same key and bytes. Then the redrive is handled *as the original read again*: at the
original's position (the replay memory sees a redelivery, never a replay) and with the
original's log-append time (freshness judged as the first time). A claim that does not
hold is a security dead letter (``REDRIVE_UNVERIFIED``), never acted on; so is a claim
naming a record that is itself a redrive (a chain: only the first original is read
again, at its own position and time).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import KafkaError

from gun_contract.dead_letter import SourcePosition, header_value
from gun_contract.kafka.log_reader import LoggedRecord

log = logging.getLogger(__name__)

HEADER_REDRIVE_OF = "gun.redrive.of"
"""``topic/partition/offset`` of the original record a redrive is a copy of."""
HEADER_REDRIVE_DEAD_LETTER = "gun.redrive.dead-letter"
"""The id (``PARTITION:OFFSET``) of the dead letter that was redriven (information)."""
REDRIVE_UNVERIFIED = "REDRIVE_UNVERIFIED"
"""The dead-letter kind of a redrive whose claim the log does not bear out."""

_NUMBER = r"0|[1-9][0-9]{0,18}"
_POSITION = re.compile(rf"(.{{1,249}})/({_NUMBER})/({_NUMBER})")
_READ_ATTEMPTS = 3


def parse_position(text: str) -> SourcePosition:
    """``topic/partition/offset``; ``ValueError`` for anything else."""
    found = _POSITION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text[:80]!r} is not a topic/partition/offset")
    partition, offset = int(found.group(2)), int(found.group(3))
    if partition >= 2**31 or offset >= 2**63:
        raise ValueError(f"{text[:80]!r}: beyond what Kafka numbers")
    return SourcePosition(found.group(1), partition, offset)


class RedriveRefused(ValueError):
    """A redrive claim the log does not bear out; the message says which part."""


def verify_claim(
    claim: str, arrived: SourcePosition, value: bytes, original: LoggedRecord | None
) -> SourcePosition:
    """The original position a redrive read at ``arrived`` stands for, once checked
    against ``original`` (the record at the claimed position, as the broker holds it).
    Raises :class:`RedriveRefused`."""
    try:
        claimed = parse_position(claim)
    except ValueError as err:
        raise RedriveRefused(f"{HEADER_REDRIVE_OF}: {err}") from None
    if (claimed.topic, claimed.partition) != (arrived.topic, arrived.partition):
        # What a record causes is written on the partition it arrived on (ADR 0005): a
        # copy on another partition would be handled where its declaration does not live.
        raise RedriveRefused(
            f"claims {claimed.describe()[:120]}, a record of another topic or partition"
        )
    if claimed.offset >= arrived.offset:
        raise RedriveRefused(f"claims {claimed.describe()}, which is not an earlier record")
    if original is None:
        raise RedriveRefused(
            f"{claimed.describe()} is no longer in the log (retention) or never held a record"
        )
    chained = chained_from(original)
    if chained is not None:
        raise RedriveRefused(chained)
    if original.value != value:
        raise RedriveRefused(f"its bytes differ from those of {claimed.describe()}")
    if original.key != arrived.key:
        raise RedriveRefused(f"its key differs from that of {claimed.describe()}")
    return SourcePosition(claimed.topic, claimed.partition, claimed.offset, original.key)


def chained_from(original: LoggedRecord) -> str | None:
    """Why ``original`` cannot be redriven when it is itself a redrive (None: it is not).

    A dead letter about a redrive's own position (an error handled where the record was
    read rather than where it was read as) would, redriven, have the copy read as an
    original of its own: at its position and broker time, not the first original's (an
    envelope expired by then revived, a replay judged as a first sighting). Every
    redrive names the first original; that one's dead letter is the one to redrive."""
    first = redrive_claim(original.headers)
    if first is None:
        return None
    return (
        f"{original.describe()} is itself a redrive of {first[:120]!r}: a redrive names "
        "the first original (redrive that one's dead letter)"
    )


class RecordReader(Protocol):
    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None: ...


@dataclass(frozen=True, slots=True)
class Original:
    """What a verified redrive is read as: the original's position and broker time."""

    position: SourcePosition
    accepted_at: float | None


async def read_as_original(
    reader: RecordReader,
    claim: str,
    arrived: SourcePosition,
    value: bytes,
    *,
    retry_s: float = 0.5,
) -> Original:
    """The original a redrive (``value``, read at ``arrived``, claiming ``claim``) stands
    for, read back from the broker and checked; :class:`RedriveRefused` when the claim
    does not hold. A broker that does not answer is asked again a few times; then its
    error goes up: not the record's fault, so its reader stops and reads the redrive
    again when it starts over (never a dead letter about the redrive's own position,
    which, redriven, would have the redrive read as itself, at its own broker time)."""
    original = await _claimed_record(reader, claim, arrived, retry_s)
    position = verify_claim(claim, arrived, value, original)
    assert original is not None  # noqa: S101 - verify_claim refuses a missing original
    return Original(position, original.accepted_at)


def redrive_claim(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The position a record claims to be a redrive of (None: an ordinary record)."""
    return header_value(headers, HEADER_REDRIVE_OF)


async def _claimed_record(
    reader: RecordReader, claim: str, arrived: SourcePosition, retry_s: float
) -> LoggedRecord | None:
    """The record at the claimed position (None for a claim that names none of this
    partition: verify_claim says why)."""
    try:
        claimed = parse_position(claim)
    except ValueError:
        return None
    if (claimed.topic, claimed.partition) != (arrived.topic, arrived.partition):
        return None
    for attempt in range(_READ_ATTEMPTS):
        try:
            return await reader.read(claimed.topic, claimed.partition, claimed.offset)
        except (KafkaError, TimeoutError, OSError) as err:
            if attempt == _READ_ATTEMPTS - 1:
                raise
            log.warning(
                "redrive at %s: %s reading %s back; asked again",
                arrived.describe(),
                type(err).__name__,
                claimed.describe(),
            )
            await asyncio.sleep(retry_s * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover
