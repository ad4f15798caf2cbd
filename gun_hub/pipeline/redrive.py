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
That check is shared with the adapters, which honour a redrive of their own dead letters
the same way (gun_contract/redrive.py, adapters/base/runner.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from gun_contract.dead_letter import ErrorClass, SourcePosition, add_dead_letter, header_value
from gun_contract.effects import Effects, Headers
from gun_contract.envelope import EnvelopeRejectionKind
from gun_contract.redrive import (
    HEADER_REDRIVE_DEAD_LETTER,
    HEADER_REDRIVE_OF,
    REDRIVE_UNVERIFIED,
    RecordReader,
    RedriveRefused,
    parse_position,
    read_as_original,
    redrive_claim,
    verify_claim,
)
from gun_contract.request_refusals import ENVELOPES_REFUSED_AS_THEY_ARE
from gun_contract.request_refusals import REFUSED_AS_IT_IS as REQUEST_REFUSED_AS_IT_IS
from gun_contract.topics import TopicRegistry
from gun_hub import metrics
from gun_hub.ops.dead_letters import DeadLetterId, NotAnId
from gun_hub.pipeline.correlation import (
    KEY_MISMATCH,
    NOT_JSON,
    UNASKED_DOCUMENT,
    UNSOLICITED,
    WRONG_SENDER,
)
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.pipeline.intake import (
    AMENDMENT_NOT_PERMITTED,
    GATEWAY_DISAGREES,
    NOT_XML,
    NOTHING_DECIDED,
    RECORD_KEY_NOT_REFERENCE,
    REFERENCE_NOT_THE_DECLARANTS,
    STAGE_NOT_THE_DECLARANTS,
)
from gun_hub.pipeline.takeover import COMPONENT as TAKEOVER
from gun_hub.pipeline.takeover import is_notice
from gun_hub.xml.safe_parse import XmlRejectionKind

log = logging.getLogger(__name__)

# Shared with the adapters (gun_contract/redrive.py), named here as before.
__all__ = [
    "HEADER_REDRIVE_DEAD_LETTER",
    "HEADER_REDRIVE_OF",
    "REDRIVE_UNVERIFIED",
    "Arrival",
    "RecordReader",
    "RedriveGate",
    "RedriveRefused",
    "not_redrivable",
    "parse_position",
    "redrive_headers",
    "redrive_readers",
    "verify_claim",
]

COMPONENT = "hub.redrive"


# -- which dead letters can be redriven -------------------------------------------------------


# The same said at the end of the reason, by releases before stop 39 (found when the
# view did not cut it off).
_GATEWAY_DISAGREED_BEFORE = "(lodged through the gateway, whose checks should have refused it"


def redrive_readers(topics: TopicRegistry) -> dict[str, frozenset[str]]:
    """The components that honour a redrive, and the topics each reads: the hub's intake
    and correlation, its takeover of what a later version read on another partition
    supersedes (the notices of its deadlines topic: takeover.py), and each authority's
    adapter its request topic (adapters/base/runner.py)."""
    return {
        "hub.intake": frozenset({topics.declarations}),
        "hub.correlation": frozenset(topics.all_responses()),
        TAKEOVER: frozenset({topics.deadlines}),
        **{f"adapter.{a}": frozenset({topics.requests(a)}) for a in topics.authorities},
    }


# The deadlines agent reads takeover notices and ticks; it names its dead letters after
# what it was handling (takeover.py ``agent_name``), and named them all ``hub.deadlines``
# before notices could be redriven.
DEADLINES_AGENT = "hub.deadlines"
A_TICK = (
    "a deadline, retention or audit tick is not redriven: the hub ticks again for as long "
    "as a case waits for one"
)
MAYBE_AN_EARLIER_NOTICE = (
    "; a takeover notice an earlier release dead-lettered is listed under hub.deadlines "
    "too: `gun-hub dlq show ID` tells whether this one is, and a notice is redriven by its id"
)


# A declaration refused for what it holds: the clearance system had its REFUSE decision
# (where the reference could be read), and the same bytes read again are refused again
# (no second decision, only a new dead letter). XML_OVERSIZED too, a limit of the settings
# the operator may raise, once decided: its REFUSE stands, and the redrive, read as a
# redelivery of a decided case, did nothing while the desk said "redriven" (review of
# stop 56); the clearance system sends it again as a new version. One refused before its
# reference could be read (NOTHING_DECIDED) stays redrivable: decided once the limit is
# raised.
REFUSED_AS_IT_IS = frozenset(f"XML_{kind.value}" for kind in XmlRejectionKind)
OVERSIZED = f"XML_{XmlRejectionKind.OVERSIZED.value}"

# What the hub refused for what a record is, judged on its bytes, its key or its sender:
# read again it is refused again, one more hub-vouched security dead letter chained into
# the audit (the adapters' twins were refused a redrive already: request_refusals.py).
# And what it refused for the state of things when it was read, which a redrive would
# judge again later: an answer never asked (asked since, it was acted on as if trusted),
# a trader's version after customs acted (the case retired since, it was decided).
# Review of stop 56.
HUB_REFUSED = {
    "hub.intake": {
        NOT_XML: "the record is no declaration XML, and is refused again",
        RECORD_KEY_NOT_REFERENCE: "its record key is not its reference, refused again",
        REFERENCE_NOT_THE_DECLARANTS: "the gateway lodged a reference not the declarant's",
        STAGE_NOT_THE_DECLARANTS: "the gateway lodged a stage only the office sets",
        AMENDMENT_NOT_PERMITTED: (
            "a trader's version after customs acted: refused when it was read; redriven "
            "after the case retired, it would be decided"
        ),
    },
    "hub.correlation": {
        KEY_MISMATCH: "the answer's record key is not its reference, refused again",
        NOT_JSON: "the answer is no JSON, refused again",
        WRONG_SENDER: "the answer came from another party than its topic's, refused again",
        UNSOLICITED: (
            "an answer the hub never asked when it was read: redriven once it is asked, it "
            "would be acted on as if the hub had asked it"
        ),
    },
}


def not_redrivable(
    component: str,
    source_topic: str,
    topics: TopicRegistry,
    kind: str | None = None,
    reason: str = "",
    original: bytes | None = None,
) -> str | None:
    """Why a dead letter of ``kind`` written by ``component`` about a record of
    ``source_topic`` cannot be redriven; None when it can. ``original``: the bytes the
    dead letter holds of its original, where known (``dlq show`` and a redrive read the
    dead letter; the list has its headers only), which tell a takeover notice from a tick.

    Only what a reader that honours a redrive refused while reading its own inputs
    (:func:`redrive_readers`): the hub's intake and correlation, its takeover of a notice
    (the hub reads a notice again as after a crash: the case taken over once, its follow-ups
    asked again under the same request ids, which partners apply once), an adapter's
    requests. Not a tick of the deadlines topic: ticked again for as long as a case waits.
    There the dead letter's source is the record that failed, which the reader reads again
    as itself. The clearance reader's dead letters are no input of anyone who honours one,
    and the delivery's hold a record the hub produced and the broker refused, not the record
    being read. Nor a redrive refused (``REDRIVE_UNVERIFIED``): its source is the refused
    copy, which a redrive would have read as itself, at its own broker time. Nor a replay: a
    copy of a message acted on at another position. Redriven while its id is remembered it
    is refused again; once the memory has forgotten the id (ADR 0008), it would be a first
    sighting on its own partition, and acted on a second time (found by review in stop 35).
    Nor a declaration the intake refused for what it holds (``reason``: the dead letter's,
    which says whether the gateway lodged it; review stop 39-O, O9), nor a request an
    adapter refused for what it holds, nor, for every reader, an envelope refused for what
    it is rather than for what the reader lacked: forged, damaged, another party's
    (gun_contract/request_refusals.py; the hub's own inputs offered those until stop 40).
    """
    if kind == EnvelopeRejectionKind.REPLAY.value:
        return (
            "a replay is a copy of a message already acted on at another position: "
            "redriven, it would be acted on twice"
        )
    if kind == REDRIVE_UNVERIFIED:
        return (
            "a redrive whose claim the log did not bear out: redriven, the refused copy "
            "would be read as an original of its own"
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
        and not (kind == OVERSIZED and reason.endswith(NOTHING_DECIDED))
    ):
        return (
            f"as it is, the declaration is refused again ({kind}): what it holds is at "
            "fault, not the hub (the clearance system had the refusal where its reference "
            "could be read); read again it decides nothing and only writes another dead "
            "letter: its declarant sends a corrected version"
        )
    refused_by_the_hub = HUB_REFUSED.get(component, {}).get(kind or "")
    if refused_by_the_hub is not None:
        return f"not redriven ({kind}): {refused_by_the_hub}"
    envelope_at_fault = ENVELOPES_REFUSED_AS_THEY_ARE.get(kind or "")
    if envelope_at_fault is not None:
        return f"as it is, the envelope is refused again ({kind}): {envelope_at_fault}"
    refused_request = REQUEST_REFUSED_AS_IT_IS.get(kind or "")
    if component.startswith("adapter.") and refused_request is not None:
        return f"as it is, the request is refused again ({kind}): {refused_request}"
    if source_topic == topics.deadlines and component in (DEADLINES_AGENT, TAKEOVER):
        if original is not None and not is_notice(original):
            return A_TICK
        if original is None and component == DEADLINES_AGENT:
            return A_TICK + MAYBE_AN_EARLIER_NOTICE
        component = TAKEOVER  # a notice: by its bytes, or named so by the hub
    topics_read = redrive_readers(topics).get(component)
    if topics_read is None:
        return (
            f"written by {component[:60]!r}: only what the hub's intake and correlation "
            "and the adapters refused can be redriven (other components do not honour a "
            "redrive)"
        )
    if source_topic not in topics_read:
        return f"{component} reads {', '.join(sorted(topics_read))}, not {source_topic[:80]!r}"
    return None


def redrive_headers(original: SourcePosition, dead_letter: DeadLetterId) -> Headers:
    return [
        (HEADER_REDRIVE_OF, original.describe().encode()),
        (HEADER_REDRIVE_DEAD_LETTER, str(dead_letter).encode()),
    ]


# -- the hub's side ---------------------------------------------------------------------------


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
        claim = redrive_claim(headers)
        if claim is None:
            return Arrival(source, accepted_at)
        outbox = Effects()
        try:
            original = await read_as_original(
                self._reader, claim, source, value, retry_s=self._retry_s
            )
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
        dead_letter = _dead_letter_named(headers, self._ctx.topics.dlq)
        self._ctx.record_audit(
            outbox,
            source.partition,
            {
                "kind": "REDRIVE",
                "origin": original.position.describe(),
                "redrive": source.describe(),
                # The header is the writer's word: kept only when it has an id's form.
                "dead_letter": dead_letter,
            },
        )
        log.info("redrive at %s read as %s", source.describe(), original.position.describe())
        return Arrival(original.position, original.accepted_at, outbox=outbox)


def _dead_letter_named(headers: Sequence[tuple[str, bytes]], dlq_topic: str) -> str | None:
    text = header_value(headers, HEADER_REDRIVE_DEAD_LETTER)
    if text is None:
        return None
    try:
        named = DeadLetterId.parse(text[:300], dlq_topic)
    except NotAnId:
        return None
    return f"{dlq_topic}/{named.partition}/{named.offset}"
