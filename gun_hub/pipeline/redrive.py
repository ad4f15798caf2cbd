"""Redrive: a dead letter's original read again, once its cause is fixed (ADR 0010).

A redrive record carries the original record's key and bytes, on the original's topic and
partition, with a header naming the original's position (``gun.redrive.of``). The hub
handles it *as the original read again*: at the original's position, with the original's
log-append time. To the intake and the correlation that is a redelivery, which they
already handle idempotently (ADR 0001), so:

* a sealed message keeps its ``jti``; the replay memory sees it at the position it was
  first read at, which is a redelivery, never a replay; an original that was itself a
  copy (dead-lettered as ENVELOPE_REPLAY) is refused again, at the same position;
* freshness is judged when the broker first accepted it, as it was the first time: a
  redrive makes nothing fresher, and an expired envelope stays refused;
* a declaration version already decided is not decided again: the intake finds its case
  opened from that very position (a redelivery), so redriving twice, or a dead letter
  whose original was acted on, changes nothing.

The hub believes nothing the header says that it cannot read back from the broker: the
claimed original must be an earlier record of the same topic and partition, still in the
log, with the same key and bytes. A claim that does not hold is a security dead letter
(``REDRIVE_UNVERIFIED``), never acted on; one that holds is chained into the audit trail.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka.errors import KafkaError

from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter, header_value
from gun_contract.effects import Effects, Headers
from gun_contract.envelope import EnvelopeRejectionKind
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.topics import TopicRegistry
from gun_hub import metrics
from gun_hub.ops.dead_letters import DeadLetterId, NotAnId
from gun_hub.pipeline.correlation import UNASKED_DOCUMENT
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.pipeline.intake import GATEWAY_DISAGREES
from gun_hub.xml.safe_parse import XmlRejectionKind

log = logging.getLogger(__name__)

HEADER_REDRIVE_OF = "gun.redrive.of"
"""``topic/partition/offset`` of the original record a redrive is a copy of."""
HEADER_REDRIVE_DEAD_LETTER = "gun.redrive.dead-letter"
"""The id (``PARTITION:OFFSET``) of the dead letter that was redriven (information)."""

COMPONENT = "hub.redrive"
REDRIVE_UNVERIFIED = "REDRIVE_UNVERIFIED"
_NUMBER = r"0|[1-9][0-9]{0,18}"
_POSITION = re.compile(rf"(.{{1,249}})/({_NUMBER})/({_NUMBER})")
_READ_ATTEMPTS = 3


# -- which dead letters can be redriven -------------------------------------------------------


# The same said at the end of the reason, by releases before stop 39 (found when the
# view did not cut it off).
_GATEWAY_DISAGREED_BEFORE = "(lodged through the gateway, whose checks should have refused it"


def hub_inputs(topics: TopicRegistry) -> dict[str, frozenset[str]]:
    """The components that honour a redrive, and the topics each reads."""
    return {
        "hub.intake": frozenset({topics.declarations}),
        "hub.correlation": frozenset(topics.all_responses()),
    }


# A declaration refused for what it holds, whatever the hub's settings: the clearance
# system had its REFUSE decision (where the reference could be read), and the same bytes
# read again are refused again (no second decision, only a new dead letter). Not
# XML_OVERSIZED: a limit of the settings (GUN_HUB_HUB__MAX_DECLARATION_BYTES) the operator
# may raise.
REFUSED_AS_IT_IS = frozenset(
    f"XML_{kind.value}" for kind in XmlRejectionKind if kind is not XmlRejectionKind.OVERSIZED
)


def not_redrivable(
    component: str,
    source_topic: str,
    topics: TopicRegistry,
    kind: str | None = None,
    reason: str = "",
) -> str | None:
    """Why a dead letter of ``kind`` written by ``component`` about a record of
    ``source_topic`` cannot be redriven; None when it can.

    Only what the hub refused while reading its own inputs: there the dead letter's
    source is the record that failed, which the hub reads again as itself. A dead letter
    of another component is no input of the hub (an adapter's request, a decision the
    clearance system could not read), and the delivery's dead letters hold a record the
    hub produced and the broker refused, not the record being read. Nor a replay: a copy
    of a message the hub acted on at another position. Redriven while its id is
    remembered it is refused again; once the memory has forgotten the id (ADR 0008), it
    would be a first sighting on its own partition, and decided a second time (found by
    review in stop 35). Nor a declaration the intake refused for what it holds (``reason``:
    the dead letter's, which says whether the gateway lodged it; review stop 39-O, O9).
    """
    if kind == EnvelopeRejectionKind.REPLAY.value:
        return (
            "a replay is a copy of a message the hub already acted on at another position: "
            "redriven, it would be acted on twice"
        )
    if kind == UNASKED_DOCUMENT:
        return (
            "the answer's documents the hub asked were acted on when it was read, only the "
            "others left out: redriven, they would be acted on twice"
        )
    if (
        component == "hub.intake"
        and kind in REFUSED_AS_IT_IS
        and GATEWAY_DISAGREES not in reason
        and _GATEWAY_DISAGREED_BEFORE not in reason
    ):
        return (
            f"as it is, the declaration is refused again ({kind}): what it holds is at "
            "fault, not the hub (the clearance system had the refusal where its reference "
            "could be read); read again it decides nothing and only writes another dead "
            "letter: its declarant sends a corrected version"
        )
    topics_read = hub_inputs(topics).get(component)
    if topics_read is None:
        return (
            f"written by {component[:60]!r}: only what the hub's intake and correlation "
            "refused can be redriven (other components do not honour a redrive)"
        )
    if source_topic not in topics_read:
        return f"{component} reads {', '.join(sorted(topics_read))}, not {source_topic[:80]!r}"
    return None


def parse_position(text: str) -> SourcePosition:
    """``topic/partition/offset``; ``ValueError`` for anything else."""
    found = _POSITION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text[:80]!r} is not a topic/partition/offset")
    partition, offset = int(found.group(2)), int(found.group(3))
    if partition >= 2**31 or offset >= 2**63:
        raise ValueError(f"{text[:80]!r}: beyond what Kafka numbers")
    return SourcePosition(found.group(1), partition, offset)


def redrive_headers(original: SourcePosition, dead_letter: DeadLetterId) -> Headers:
    return [
        (HEADER_REDRIVE_OF, original.describe().encode()),
        (HEADER_REDRIVE_DEAD_LETTER, str(dead_letter).encode()),
    ]


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
        # The hub writes what a record causes on the partition it arrived on (ADR 0005):
        # a copy on another partition would be handled where the case does not live.
        raise RedriveRefused(
            f"claims {claimed.describe()[:120]}, a record of another topic or partition"
        )
    if claimed.offset >= arrived.offset:
        raise RedriveRefused(f"claims {claimed.describe()}, which is not an earlier record")
    if original is None:
        raise RedriveRefused(
            f"{claimed.describe()} is no longer in the log (retention) or never held a record"
        )
    if original.value != value:
        raise RedriveRefused(f"its bytes differ from those of {claimed.describe()}")
    if original.key != arrived.key:
        raise RedriveRefused(f"its key differs from that of {claimed.describe()}")
    return SourcePosition(claimed.topic, claimed.partition, claimed.offset, original.key)


# -- the hub's side ---------------------------------------------------------------------------


class RecordReader(Protocol):
    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None: ...


@dataclass(slots=True)
class Arrival:
    """How the agent handles a record: as read at ``source`` and accepted by the broker at
    ``accepted_at`` (``handle``), after sending ``outbox`` (what the redrive check wrote)."""

    source: SourcePosition
    accepted_at: float | None
    handle: bool = True
    outbox: Effects = field(default_factory=Effects)


class RedriveGate:
    """Decides, for each record of the hub's inputs, whether it is a redrive, and of what."""

    def __init__(self, reader: RecordReader, context: HubContext, *, retry_s: float = 0.5) -> None:
        self._reader = reader
        self._ctx = context
        self._retry_s = retry_s

    async def arrival(
        self,
        headers: Sequence[tuple[str, bytes]],
        value: bytes,
        source: SourcePosition,
        accepted_at: float | None,
    ) -> Arrival:
        claim = header_value(headers, HEADER_REDRIVE_OF)
        if claim is None:
            return Arrival(source, accepted_at)
        outbox = Effects()
        try:
            original = await self._original(claim, source)
            position = verify_claim(claim, source, value, original)
        except RedriveRefused as refused:
            log.warning("redrive at %s refused: %s", source.describe(), refused)
            metrics.DEAD_LETTERS.labels(kind=REDRIVE_UNVERIFIED).inc()
            add_dead_letter(
                outbox,
                self._ctx.topics.dlq,
                value,
                error_class=ErrorClass.SECURITY,
                kind=REDRIVE_UNVERIFIED,
                reason=str(refused),
                source=source,
                component=COMPONENT,
            )
            return Arrival(source, accepted_at, handle=False, outbox=outbox)
        assert original is not None  # noqa: S101 - verify_claim refuses a missing original
        dead_letter = _dead_letter_named(headers, self._ctx.topics.dlq)
        self._ctx.record_audit(
            outbox,
            source.partition,
            {
                "kind": "REDRIVE",
                "origin": position.describe(),
                "redrive": source.describe(),
                # The header is the writer's word: kept only when it has an id's form.
                "dead_letter": dead_letter,
            },
        )
        log.info("redrive at %s read as %s", source.describe(), position.describe())
        return Arrival(position, original.accepted_at, outbox=outbox)

    async def _original(self, claim: str, source: SourcePosition) -> LoggedRecord | None:
        """The record at the claimed position (None for a claim that names none of this
        partition: verify_claim says why). A broker that does not answer is asked again a
        few times; then its error goes up, as any failure of the cluster does in an agent
        (not the record's fault: the worker stops and its restart reads the redrive again).
        """
        try:
            claimed = parse_position(claim)
        except ValueError:
            return None
        if (claimed.topic, claimed.partition) != (source.topic, source.partition):
            return None
        for attempt in range(_READ_ATTEMPTS):
            try:
                return await self._reader.read(claimed.topic, claimed.partition, claimed.offset)
            except (KafkaError, TimeoutError, OSError) as err:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
                log.warning(
                    "redrive at %s: %s reading %s back; asked again",
                    source.describe(),
                    type(err).__name__,
                    claimed.describe(),
                )
                await asyncio.sleep(self._retry_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


def _dead_letter_named(headers: Sequence[tuple[str, bytes]], dlq_topic: str) -> str | None:
    text = header_value(headers, HEADER_REDRIVE_DEAD_LETTER)
    if text is None:
        return None
    try:
        named = DeadLetterId.parse(text[:300], dlq_topic)
    except NotAnId:
        return None
    return f"{dlq_topic}/{named.partition}/{named.offset}"
