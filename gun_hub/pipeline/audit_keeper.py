"""Audit keeper: security dead letters enter the audit as unauthenticated reports, what
officers did through the hub as authenticated records, and idle partitions get their
checkpoint in time.

Components dead-letter what fails verification (the hub, adapters, the clearance
reader); the hub, the only writer of the audit chains, turns those records into audit
entries. The dead-letter topic is co-partitioned with the hub's inputs, so the worker that
owns a partition's chain also reads that partition of the dead letters.

Any party may write the dead-letter topic (every hop must be able to dead-letter what it
refuses), and nothing in a dead letter says who wrote it: its headers are the writer's
word. So an entry keeps only what the keeper can check, and says it is a report nobody
vouches for (issue 11, item 3):

- ``rejection``: the error kind if it is one of the fixed list components write
  (:data:`SECURITY_REJECTION_KINDS`), else ``UNLISTED``;
- ``component``: the component if it is one of those that exist (``hub.intake``,
  ``adapter.<authority of the routing table>``, ...), else ``UNLISTED``;
- ``origin``: topic/partition/offset if the topic is one of the registry's and both
  numbers are numbers, else ``?``;
- ``reference``: if it has the form of a declaration reference, else nothing;
- ``reason``: always :data:`REPORTED_BY`, never the writer's text (that stays in the dead
  letter, for operations);
- ``dead_letter``: where the broker says the dead letter is, not what its headers say.

A flood is bounded: any party's quota allowed 23 bytes of header to make some 525 bytes
of never-deleted audit, and a sustained flood filled the broker's disks with what nothing
can prune without breaking the chain (review stop 46). At most
:data:`REPORTS_CHAINED_A_MINUTE` reports a minute of broker time (the dead-letter topic is
dated by the broker) are chained one by one on each partition; the first left out is
chained as the start of a flood (``SECURITY_REPORTS_LEFT_OUT``, from that dead letter),
and how many were left out, to which dead letter, with the next report of a later minute;
``gun_hub_security_reports_left_out_total`` counts them at once. A worker restarted
within a flood's minute counts that minute again (at most twice the bound), and a count
not yet chained when it stops is lost (the flood's start is chained). The hub's own
security dead letters are not bounded: the hub vouches for those it writes
(security/own_dead_letters.py), and each is chained, its reason saying so (bounded alike,
a flood left the hub's own rejections of its minute out: found by review of the bound).

Auditing them still matters: an adapter that refuses forged requests is evidence of an
attack on that authority. Not auditing partner-written dead letters at all would also lose
the hub's own rejections, which reach the keeper the same way. Headers can be anything
(issue 10, defect 3): missing, null, not UTF-8, megabytes long, not even pairs; the keeper
never raises on them.

Officers' actions (a dead letter's payload read, a redrive) reach the keeper on the
hub-internal operator-actions topic, sealed with the hub's state key by the officer
listener that authenticated the officer (security/operator_actions.py): each is chained
as it is, naming the officer. A record there that does not open is a forgery:
dead-lettered as a security rejection, never chained as an action. One sealed with a state
key of the hub this worker does not hold (``StateKeyMissing``: a rotation not deployed
here yet) is no forgery: it is raised, and the agent stops the worker naming the key
without committing past the record, chained once the worker restarts with the key
(ADR 0022's addendum of stop 41; until then the officer's action was lost to the audit).

The keeper also ticks the audit chains: a timer asks, for each partition this worker
owns, whether records wait for a checkpoint that is due, and if so sends a tick on the
hub's deadlines topic (keyed :data:`AUDIT_TICK_KEY`, never a declaration reference); the
tick, handled in event context like any record, appends the checkpoint (audit.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gun_contract.dead_letter import (
    HEADER_COMPONENT,
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_REFERENCE,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    ErrorClass,
    SourcePosition,
    add_dead_letter,
    header_value,
)
from gun_contract.effects import Effects, Headers
from gun_contract.envelope import EnvelopeRejectionKind
from gun_contract.security.state_cipher import StateKeyMissing, StateUnreadable
from gun_hub import metrics
from gun_hub.pipeline.correlation import KEY_MISMATCH, NOT_JSON, UNASKED_DOCUMENT, UNSOLICITED
from gun_hub.pipeline.hub_context import HubContext
from gun_hub.pipeline.intake import NOT_SEALED, NOT_XML, RECORD_KEY_NOT_REFERENCE
from gun_hub.pipeline.redrive import REDRIVE_UNVERIFIED
from gun_hub.security.operator_actions import open_action
from gun_hub.security.own_dead_letters import OwnDeadLetters

log = logging.getLogger(__name__)

COMPONENT = "hub.audit-keeper"
OPERATOR_ACTION_UNVERIFIED = "OPERATOR_ACTION_UNVERIFIED"
REPORTED_BY = "unauthenticated report: from a dead letter's headers, which any party may write"
UNLISTED = "UNLISTED"
WRITTEN_BY_THE_HUB = "the hub's own rejection: a dead letter it vouched for (its state key)"
# Every kind a component dead-letters with the security class.
SECURITY_REJECTION_KINDS = frozenset(
    {
        *(kind.value for kind in EnvelopeRejectionKind),
        NOT_SEALED,
        NOT_XML,
        RECORD_KEY_NOT_REFERENCE,
        KEY_MISMATCH,
        NOT_JSON,
        "RESPONSE_WRONG_SENDER",
        UNSOLICITED,
        UNASKED_DOCUMENT,
        "REQUEST_KEY_MISMATCH",
        "REQUEST_NOT_JSON",
        "REQUEST_MISADDRESSED",
        REDRIVE_UNVERIFIED,
        OPERATOR_ACTION_UNVERIFIED,
        # A trader lodging in another's name, or a stage only customs sets
        # (pipeline/intake.py): named, not UNLISTED.
        "DECLARANT_CHANGED",
        "REFERENCE_NOT_THE_DECLARANTS",
        "STAGE_NOT_THE_DECLARANTS",
    }
)
_HUB_COMPONENTS = frozenset(
    {
        "hub.intake",
        "hub.correlation",
        "hub.delivery",
        "hub.deadlines",
        "hub.takeover",  # the deadlines agent's notices (pipeline/takeover.py)
        "hub.audit-keeper",
        "hub.redrive",
    }
)
_OTHER_COMPONENTS = frozenset({"clearance.reader"})
# The contract's ReferenceType (schemas/common-types.xsd).
_REFERENCE = re.compile(r"[0-9A-Z][0-9A-Z._/\-]{5,34}")
_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")
_MAX_HEADER_BYTES = 256  # nothing the keeper keeps is longer

# The key of an audit tick on the deadlines topic: a NUL byte, so never a reference.
AUDIT_TICK_KEY = b"\x00audit-checkpoint"
Handler = Callable[[Any, SourcePosition, float | None], Effects]


REPORTS_CHAINED_A_MINUTE = 600
"""Security reports chained one by one per audit partition and minute of broker time."""


@dataclass(slots=True)
class _Minute:
    """One partition's security reports in one minute of broker time."""

    minute: int
    chained: int = 0
    left_out: int = 0
    first_left_out: str = ""
    last_left_out: str = ""


def is_audit_tick(key: object) -> bool:
    return isinstance(key, bytes | bytearray) and bytes(key) == AUDIT_TICK_KEY


class AuditKeeper:
    def __init__(self, context: HubContext) -> None:
        self._ctx = context
        self._own = OwnDeadLetters(context.outbox_cipher)
        topics = context.topics
        self._components = _HUB_COMPONENTS | _OTHER_COMPONENTS
        self._components |= {f"adapter.{a}" for a in topics.authorities}
        self._topics = {spec.name for spec in topics.specs()}
        self._minutes: dict[int, _Minute] = {}  # per audit partition, the current one

    # -- dead letters ------------------------------------------------------------------

    def handle(
        self,
        headers: Headers | Any,
        source: SourcePosition,
        at: float | None = None,
        value: bytes = b"",
    ) -> Effects:
        """The audit entry of the dead letter at ``source`` (``value``) if it reports a
        security rejection; ``at``: its broker time (None: unknown, chained whatever the
        flood)."""
        outbox = Effects()
        pairs = _pairs(headers)
        if header_value(pairs, HEADER_ERROR_CLASS) != ErrorClass.SECURITY.value:
            return outbox
        the_hubs = self._own.the_hubs(value, pairs, at, source.describe())
        if not the_hubs and not self._within_the_bound(outbox, source, at):
            return outbox

        def field(name: str) -> str | None:
            return _bounded(header_value(pairs, name))

        kind = field(HEADER_ERROR_KIND)
        component = field(HEADER_COMPONENT)
        reference = field(HEADER_REFERENCE)
        self._ctx.record_audit(
            outbox,
            source.partition,
            {
                "kind": "SECURITY_REJECTION",
                "rejection": kind if kind in SECURITY_REJECTION_KINDS else UNLISTED,
                "reason": WRITTEN_BY_THE_HUB if the_hubs else REPORTED_BY,
                "component": component if component in self._components else UNLISTED,
                "origin": self._origin(field),
                "reference": reference if reference and _REFERENCE.fullmatch(reference) else None,
                "dead_letter": source.describe(),
            },
        )
        return outbox

    def _within_the_bound(self, outbox: Effects, source: SourcePosition, at: float | None) -> bool:
        """Whether the report at ``source`` is chained one by one; the flood's start and,
        at a later minute's first report, its count are chained here."""
        if at is None:
            return True
        minute = int(at // 60)
        current = self._minutes.get(source.partition)
        if current is None or current.minute != minute:
            if current is not None and current.left_out:
                self._chain_flood(outbox, source.partition, current)
            current = self._minutes[source.partition] = _Minute(minute)
        if current.chained < REPORTS_CHAINED_A_MINUTE:
            current.chained += 1
            return True
        metrics.SECURITY_REPORTS_LEFT_OUT.inc()
        current.left_out += 1
        current.last_left_out = source.describe()
        if current.left_out == 1:
            current.first_left_out = source.describe()
            self._ctx.record_audit(
                outbox,
                source.partition,
                {
                    "kind": "SECURITY_REPORTS_LEFT_OUT",
                    "reason": REPORTED_BY,
                    "minute": _iso_minute(minute),
                    "from_dead_letter": current.first_left_out,
                    "chained_a_minute": REPORTS_CHAINED_A_MINUTE,
                },
            )
        return False

    def _chain_flood(self, outbox: Effects, partition: int, ended: _Minute) -> None:
        """How many reports of a minute were left out, and the last of them."""
        self._ctx.record_audit(
            outbox,
            partition,
            {
                "kind": "SECURITY_REPORTS_LEFT_OUT",
                "reason": REPORTED_BY,
                "minute": _iso_minute(ended.minute),
                "from_dead_letter": ended.first_left_out,
                "to_dead_letter": ended.last_left_out,
                "count": ended.left_out,
            },
        )

    def _origin(self, field: Callable[[str], str | None]) -> str:
        topic = field(HEADER_SOURCE_TOPIC)
        partition = field(HEADER_SOURCE_PARTITION)
        offset = field(HEADER_SOURCE_OFFSET)
        return "/".join(
            (
                topic if topic in self._topics else "?",
                partition if partition and _NUMBER.fullmatch(partition) else "?",
                offset if offset and _NUMBER.fullmatch(offset) else "?",
            )
        )

    # -- what officers did -----------------------------------------------------------------

    def operator_action(self, key: bytes | None, value: bytes, source: SourcePosition) -> Effects:
        """Chain the action read at ``source``, naming the officer the listener
        authenticated; anything that does not open as a hub-sealed action is refused.
        Raises :class:`StateKeyMissing` for one sealed with a state key this worker lacks:
        the worker's deployment, not the record (the agent stops the worker, ADR 0022)."""
        outbox = Effects()
        try:
            action = open_action(self._ctx.outbox_cipher, key or b"", value)
        except StateKeyMissing:
            raise
        except (StateUnreadable, ValueError) as refused:
            log.warning("operator action at %s refused: %s", source.describe(), refused)
            metrics.DEAD_LETTERS.labels(kind=OPERATOR_ACTION_UNVERIFIED).inc()
            add_dead_letter(
                outbox,
                self._ctx.topics.dlq,
                value,
                error_class=ErrorClass.SECURITY,
                kind=OPERATOR_ACTION_UNVERIFIED,
                reason=str(refused),
                source=source,
                component=COMPONENT,
            )
            return outbox
        self._ctx.record_audit(outbox, source.partition, action.audit_body(source.describe()))
        return outbox

    # -- checkpoints of idle partitions ------------------------------------------------------

    def tick(self, source: SourcePosition) -> Effects:
        """An audit tick read from ``source``: the checkpoint of that partition, if due."""
        outbox = Effects()
        for record in self._ctx.audit.tick(source.partition):
            outbox.add(self._ctx.topics.audit, None, record, partition=source.partition)
        return outbox

    def ticks_or(self, handler: Handler) -> Handler:
        """``handler`` of the deadlines agent, with audit ticks taken out for :meth:`tick`."""

        def handle(event: Any, source: SourcePosition, accepted_at: float | None) -> Effects:
            if is_audit_tick(getattr(event, "key", None)):
                return self.tick(source)
            return handler(event, source, accepted_at)

        return handle

    def schedule_checkpoints(self, app: Any, interval_s: float) -> None:
        """Register the timer that ticks every partition of this worker whose records wait
        for a checkpoint that is due; ``interval_s``: a quarter of the bound is right."""
        deadlines = self._ctx.topics.deadlines
        audit = self._ctx.audit
        before: set[int] = set()

        async def tick_due_partitions() -> None:
            try:
                owned = {
                    tp.partition for tp in app.assignor.assigned_actives() if tp.topic == deadlines
                }
            except Exception:  # a rebalance under way: next time
                log.debug("partition assignment unknown; audit ticks wait", exc_info=True)
                return
            for partition in before - owned:
                audit.release(partition)  # signed again at once if it comes back
            before.clear()
            before.update(owned)
            for partition in sorted(owned):
                try:
                    if audit.checkpoint_due(partition):
                        await app.producer.send(
                            deadlines, AUDIT_TICK_KEY, b"", partition, None, None
                        )
                except Exception:  # the timer outlives a failed tick: the next one retries
                    log.warning("audit tick of partition %d not sent", partition, exc_info=True)

        app.timer(interval=interval_s)(tick_due_partitions)


def _pairs(headers: object) -> list[tuple[str, bytes]]:
    """The (name, value) pairs of whatever a record's headers turned out to be: a list of
    pairs, a mapping, nothing; anything that is no pair is ignored."""
    if not headers:
        return []
    items: Any = headers.items() if isinstance(headers, Mapping) else headers
    pairs: list[tuple[str, bytes]] = []
    try:
        for item in items:
            if isinstance(item, tuple | list) and len(item) == 2:
                pairs.append((item[0], item[1]))
    except TypeError:  # not iterable at all
        log.warning("dead letter with unreadable headers (%s)", type(headers).__name__)
    return pairs


def _bounded(text: str | None) -> str | None:
    """``text`` if it is short enough to be one of the values the keeper keeps."""
    if text is None or len(text.encode("utf-8", "replace")) > _MAX_HEADER_BYTES:
        return None
    return text


def _iso_minute(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).isoformat(timespec="minutes")
