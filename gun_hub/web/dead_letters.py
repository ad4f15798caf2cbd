"""The dead-letter desk, on the officer listener: ``gun-hub dlq`` (ADR 0010).

* ``GET /dead-letters[?since=&kind=&reference=&limit=&offset=|after=]``: the dead letters
  the operations view keeps, in the order it read them, each saying whether it can be
  redriven; paged by offset or by cursor (``next_after``, as the other officer lists);
* ``GET /dead-letters/{id}``: one dead letter's metadata and whole reason, read from the
  broker, and what its value is (size, digest, sealed or not), never the value itself;
* ``POST /dead-letters/{id}/payload``: the value, for a dead-letter operator only, and
  only when it is not sealed to a party: a JOSE envelope (or a value sealed with a state
  key) is shown as what it is, never opened; the hub does not decrypt a dead letter for
  a person;
* ``POST /dead-letters/{id}/redrive``: the original republished on its topic and
  partition (redrive.py), for a dead-letter operator only.

Any officer lists and shows (the dashboard already shows them kinds and reasons); the
operators are the officers named in ``GUN_HUB_WEB__DEAD_LETTER_OPERATORS``. A payload
shown and a redrive are audited before they happen: the action is on the broker (the
audit keeper chains it, security/operator_actions.py) or it is not done.

The two POSTs take ``application/json`` only: a page of another site cannot send that to
the listener without its consent (it gives none: no CORS), so an officer's browser signed
in to the dashboard cannot be made to redrive or read a payload.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from aiokafka.errors import KafkaError

from gun_contract.dead_letter import (
    HEADER_ERROR_REASON,
    HEADER_ORIGINAL_SHA256,
    SourcePosition,
    header_value,
)
from gun_contract.effects import OutgoingRecord
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.redrive import chained_from
from gun_contract.security.state_cipher import MAGIC as STATE_SEALED_MAGIC
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import TopicRegistry
from gun_contract.untrusted_json import parse_untrusted
from gun_hub.ops.dead_letters import (
    DeadLetterFilter,
    DeadLetterId,
    DeadLetterRow,
    NotAFilter,
    NotAnId,
    dead_letter_key,
    parse_since,
    row_of,
)
from gun_hub.pipeline.redrive import RecordReader, not_redrivable, redrive_headers
from gun_hub.security.operator_actions import ActionKind, OperatorAction, seal_action
from gun_hub.web.common import (
    REFERENCE,
    BadRequest,
    Bounds,
    after,
    answer,
    from_view,
    next_page,
    page,
    paged,
    refuse,
)
from gun_hub.web.queries import ViewReader

log = logging.getLogger(__name__)

# Where the officer listener keeps who signed in, on each request.
OFFICER: web.RequestKey[str] = web.RequestKey("officer", str)
_MAX_HEADER_CHARS = 2048


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeskReader(RecordReader, Protocol):
    """Records by position, and the partitions a topic has (gun_contract/kafka/log_reader)."""

    async def partitions(self, *topics: str) -> dict[str, frozenset[int]]: ...


@dataclass
class DeadLetterDesk:
    """What the desk reads and writes with: the broker (records by position, sends
    acknowledged with their offset) and the hub's state key (actions)."""

    topics: TopicRegistry
    reader: DeskReader
    send: Callable[[OutgoingRecord], Awaitable[int]]
    cipher: StateCipher
    operators: frozenset[str]
    clock: Callable[[], datetime] = field(default=_utc_now)

    def position(self, dead_letter: DeadLetterId) -> str:
        return f"{self.topics.dlq}/{dead_letter.partition}/{dead_letter.offset}"

    async def audit(
        self,
        kind: ActionKind,
        officer: str,
        dead_letter: DeadLetterId,
        origin: str,
        reference: str | None,
    ) -> None:
        """Publish the action and wait for the broker to have it (before it is done)."""
        key = str(dead_letter).encode()
        action = OperatorAction(
            action=kind,
            officer=officer,
            dead_letter=self.position(dead_letter),
            origin=origin,
            reference=reference,
            at=self.clock(),
        )
        await self.send(
            OutgoingRecord(
                self.topics.operator_actions,
                key,
                seal_action(self.cipher, key, action),
                partition=dead_letter.partition,
            )
        )


def describe_value(value: bytes) -> dict[str, Any]:
    """What a dead letter's value is, without showing it: size, digest, and its form:
    ``sealed`` (a JOSE envelope, encrypted to ``sealed_to``), ``state-sealed`` (encrypted
    with a component's state key), ``signed`` (a JWS any reader of its topic may read),
    ``plain`` or ``empty``."""
    described: dict[str, Any] = {
        "bytes": len(value),
        "sha256": hashlib.sha256(value).hexdigest(),
    }
    if not value:
        return {**described, "form": "empty"}
    if value.startswith(STATE_SEALED_MAGIC):
        return {**described, "form": "state-sealed"}
    if value.startswith(b"eyJ") and value.count(b".") == 4:
        header = _protected_header(value)
        return {
            **described,
            "form": "sealed",
            "sealed_to": str(header.get("kid", "?"))[:120],
            "encryption": f"{header.get('alg', '?')}/{header.get('enc', '?')}"[:120],
        }
    if value.startswith(b"eyJ") and value.count(b".") == 2:
        return {**described, "form": "signed"}
    return {**described, "form": "plain"}


def _protected_header(compact: bytes) -> dict[str, Any]:
    encoded = compact.split(b".", 1)[0][:2048]
    try:
        header = parse_untrusted(base64.urlsafe_b64decode(encoded + b"=" * (-len(encoded) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        return {}
    return header if isinstance(header, dict) else {}


def add_dead_letter_routes(
    app: web.Application,
    reader: ViewReader | None,
    desk: DeadLetterDesk | None,
    bounds: Bounds,
) -> None:
    """The desk's routes on the officer listener's application (``desk`` None: each
    answers 503, as on a hub built without one)."""

    async def dead_letters(request: web.Request) -> web.StreamResponse:
        if desk is None:
            return _no_desk()
        chosen = _filter(request.query, desk.clock())
        limit, offset = page(request.query, bounds)
        start = after(request.query, (int,))
        found = await from_view(
            reader,
            lambda q: q.dead_letters(chosen, limit=limit + 1, offset=offset, after=start),
            "dead_letters",
        )
        if isinstance(found, web.Response):
            return found
        rows, following = paged(found, limit, offset)
        existing = await _partitions_if_said(desk, rows)
        return answer(
            {"dead_letters": [_listed(row, desk.topics, existing) for row in rows]}
            | next_page(rows, following, start, dead_letter_key)
        )

    async def show(request: web.Request) -> web.StreamResponse:
        if desk is None:
            return _no_desk()
        dead_letter = _id(request, desk)
        record = await _read_dead_letter(desk, dead_letter)
        if isinstance(record, web.Response):
            return record
        row = _row(record)
        headers = {
            name: value.decode("utf-8", "replace")[:_MAX_HEADER_CHARS]
            for name, value in record.headers
        }
        existing = await _partitions_if_said(desk, [row])
        return answer(
            {
                # Its value read: a takeover notice is told from a tick (redrive.py).
                **_listed(row, desk.topics, existing, record.value),
                "dead_letter": desk.position(dead_letter),
                "reason": (header_value(record.headers, HEADER_ERROR_REASON) or "")[
                    :_MAX_HEADER_CHARS
                ],
                "value": describe_value(record.value),
                "headers": headers,
            }
        )

    async def payload(request: web.Request) -> web.StreamResponse:
        asked = await _operator_asks(request, desk, "read a dead letter's payload")
        if isinstance(asked, web.Response):
            return asked
        officer, dead_letter, record = asked
        assert desk is not None  # noqa: S101 - refused above otherwise
        described = describe_value(record.value)
        if described["form"] in ("sealed", "state-sealed"):
            # Shown as what it is: the hub does not open a dead letter for a person.
            return refuse(
                409,
                "the payload is sealed to a party: it is not opened for display",
                value=described,
            )
        row = _row(record)
        # What the dead letter says it is about (its writer's word: nothing is redriven).
        unrecorded = await _audited(
            desk, ActionKind.DLQ_PAYLOAD_READ, officer, dead_letter, row.source, row.reference
        )
        if unrecorded is not None:
            return unrecorded
        log.info("officer %s read the payload of dead letter %s", officer, dead_letter)
        try:
            text, encoding = record.value.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(record.value).decode(), "base64"
        return answer(
            {
                "id": str(dead_letter),
                "value": described,
                "truncated": row.truncated,
                "encoding": encoding,
                "payload": text,
            }
        )

    async def redrive(request: web.Request) -> web.StreamResponse:
        asked = await _operator_asks(request, desk, "redrive a dead letter")
        if isinstance(asked, web.Response):
            return asked
        officer, dead_letter, record = asked
        assert desk is not None  # noqa: S101 - refused above otherwise
        row = _row(record)
        original = await _original(desk, row, record, reader)
        if isinstance(original, web.Response):
            return original
        # What is redriven, as the log has it: the dead letter's headers are its writer's
        # word (an action named the reference they claimed; review stop 46).
        redriven_reference = _reference_of(original.key)
        unrecorded = await _audited(
            desk,
            ActionKind.DLQ_REDRIVE,
            officer,
            dead_letter,
            original.describe(),
            redriven_reference,
        )
        if unrecorded is not None:
            return unrecorded
        try:
            landed = await desk.send(
                OutgoingRecord(
                    original.topic,
                    original.key,
                    original.value,
                    # The hub reads it as the original, at its position (redrive.py).
                    redrive_headers(
                        SourcePosition(original.topic, original.partition, original.offset),
                        dead_letter,
                    ),
                    partition=original.partition,
                )
            )
        except (KafkaError, TimeoutError) as err:
            log.warning("redrive of %s not published: %s", dead_letter, type(err).__name__)
            return refuse(
                503, f"the broker did not take the redrive ({type(err).__name__}): redrive again"
            )
        redriven = f"{original.topic}/{original.partition}/{landed}"
        log.info("officer %s redrove dead letter %s as %s", officer, dead_letter, redriven)
        return answer(
            {
                "id": str(dead_letter),
                "origin": original.describe(),
                "redrive": redriven,
                "reference": redriven_reference,
                "kind": row.kind,
            }
        )

    app.router.add_get("/dead-letters", dead_letters, allow_head=False)
    app.router.add_get("/dead-letters/{id}", show, allow_head=False)
    app.router.add_post("/dead-letters/{id}/payload", payload)
    app.router.add_post("/dead-letters/{id}/redrive", redrive)


async def _audited(
    desk: DeadLetterDesk,
    kind: ActionKind,
    officer: str,
    dead_letter: DeadLetterId,
    origin: str,
    reference: str,
) -> web.Response | None:
    """None once the broker has the action; else the refusal (an action that could not be
    recorded is not done). ``reference``: "" when none is known."""
    try:
        await desk.audit(kind, officer, dead_letter, origin, reference or None)
    except (KafkaError, TimeoutError) as err:
        log.warning("%s of %s not recorded: %s", kind.value, dead_letter, type(err).__name__)
        return refuse(
            503, f"the action could not be recorded ({type(err).__name__}): not done, ask again"
        )
    return None


async def _others_about(
    desk: DeadLetterDesk,
    row: DeadLetterRow,
    view: ViewReader | None,
    partition: int,
    offset: int,
    original: bytes,
) -> str | web.Response | None:
    """Why another dead letter about the same original forbids its redrive (None: none
    does). Every party may write ``gun.dlq``: a dead letter's kind is its writer's word,
    and one forged beside a refused replay, claiming a kind that may be redriven, got the
    replay redriven (review stop 46). The view is asked; without it, nothing is redriven.
    ``original``: the bytes of the original they are all about, as the dead letter being
    redriven holds them (checked against the log before anything is sent)."""
    if view is None:
        return refuse(
            503,
            "the operations view is off on this worker: the other dead letters about this "
            "original cannot be checked, so nothing is redriven here",
        )

    def forbids(other: DeadLetterRow) -> str | None:
        return not_redrivable(
            other.component, other.source_topic, desk.topics, other.kind, other.reason, original
        )

    found = await from_view(
        view,
        lambda q: q.first_dead_letter_about(
            row.source_topic, partition, offset, lambda other: forbids(other) is not None
        ),
        "dead_letters_about",
    )
    if isinstance(found, web.Response):
        return found
    if found is None:
        return None
    return f"dead letter {found.id}, about the same original, says so: {forbids(found)}"


def _reference_of(key: bytes | None) -> str:
    """The declaration reference a record's key names ("" for none that is one)."""
    text = (key or b"").decode("utf-8", "replace")
    return text if REFERENCE.fullmatch(text) else ""


def _no_desk() -> web.Response:
    return refuse(503, "the dead-letter desk is not available on this listener")


def _filter(query: Any, now: datetime) -> DeadLetterFilter:
    since = query.get("since")
    try:
        return DeadLetterFilter(
            since=parse_since(since, now) if since is not None else None,
            kind=query.get("kind"),
            reference=query.get("reference"),
        )
    except NotAFilter as err:
        raise BadRequest(str(err)) from None


def _id(request: web.Request, desk: DeadLetterDesk) -> DeadLetterId:
    try:
        return DeadLetterId.parse(request.match_info["id"], desk.topics.dlq)
    except NotAnId as err:
        raise BadRequest(str(err)) from None


def _operator(request: web.Request, desk: DeadLetterDesk, what: str) -> str | web.Response:
    """The signed-in officer if a dead-letter operator, else the refusal. POSTs take JSON
    only (see the module docstring)."""
    if request.content_type != "application/json":
        return refuse(415, "send Content-Type: application/json")
    officer = str(request.get(OFFICER, ""))
    if officer not in desk.operators:
        log.info("officer %s may not %s (not a dead-letter operator)", officer, what)
        return refuse(
            403,
            f"only dead-letter operators may {what} (GUN_HUB_WEB__DEAD_LETTER_OPERATORS)",
        )
    return officer


async def _operator_asks(
    request: web.Request, desk: DeadLetterDesk | None, what: str
) -> tuple[str, DeadLetterId, LoggedRecord] | web.Response:
    """An operator's request about one dead letter: who asks, which one, its record; or
    the refusal (no desk here, not an operator, no such record)."""
    if desk is None:
        return _no_desk()
    officer = _operator(request, desk, what)
    if isinstance(officer, web.Response):
        return officer
    dead_letter = _id(request, desk)
    record = await _read_dead_letter(desk, dead_letter)
    if isinstance(record, web.Response):
        return record
    return officer, dead_letter, record


async def _read_dead_letter(
    desk: DeadLetterDesk, dead_letter: DeadLetterId
) -> LoggedRecord | web.Response:
    try:
        record = await desk.reader.read(desk.topics.dlq, dead_letter.partition, dead_letter.offset)
    except (KafkaError, TimeoutError):
        return refuse(503, "the broker did not answer in time: ask again", {"Retry-After": "1"})
    if record is None:
        return refuse(404, await _not_found(desk, dead_letter), id=str(dead_letter))
    return record


async def _not_found(desk: DeadLetterDesk, dead_letter: DeadLetterId) -> str:
    """Why the dead-letter topic does not hold ``dead_letter``, as far as the broker says."""
    topic = desk.topics.dlq
    try:
        existing = await desk.reader.partitions(topic)
    except (KafkaError, TimeoutError):
        existing = {}
    if topic in existing and dead_letter.partition not in existing[topic]:
        return (
            f"no such dead letter: {topic} has no partition {dead_letter.partition} "
            f"(it has {len(existing[topic])})"
        )
    return "no such dead letter (or no longer retained)"


async def _partitions_if_said(
    desk: DeadLetterDesk, rows: Iterable[DeadLetterRow]
) -> Mapping[str, frozenset[int]]:
    """The partitions of the topics ``rows`` name as their originals', in one question;
    nothing when the broker does not say (a list is the view's: the redrive asks again)."""
    topics = {row.source_topic for row in rows if row.source_topic}
    if not topics:
        return {}
    try:
        return await desk.reader.partitions(*topics)
    except (KafkaError, TimeoutError) as err:
        log.info("dead letters listed without their originals' partitions: %s", err)
        return {}


def _row(record: LoggedRecord) -> DeadLetterRow:
    return row_of(
        record.partition,
        record.offset,
        record.timestamp_ms / 1000,
        record.headers,
        record.key,
    )


async def _original(
    desk: DeadLetterDesk, row: DeadLetterRow, dead_letter: LoggedRecord, view: ViewReader | None
) -> LoggedRecord | web.Response:
    """The record the dead letter is about, as the broker still holds it, once it is known
    to be the one the dead letter kept (its bytes, or their digest when they did not fit)
    and no dead letter about it says it may not be redriven."""
    why_not = not_redrivable(
        row.component, row.source_topic, desk.topics, row.kind, row.reason, dead_letter.value
    )
    if why_not is None and (row.source_partition is None or row.source_offset is None):
        why_not = "its headers do not say where the original is"
    if why_not is None:
        assert row.source_partition is not None  # noqa: S101 - checked just above
        assert row.source_offset is not None  # noqa: S101
        others = await _others_about(
            desk, row, view, row.source_partition, row.source_offset, dead_letter.value
        )
        if isinstance(others, web.Response):
            return others
        why_not = others
    if why_not is None:
        try:
            existing = await desk.reader.partitions(row.source_topic)
        except (KafkaError, TimeoutError):
            return refuse(503, "the broker did not answer in time: ask again", {"Retry-After": "1"})
        why_not = _why_not(row, desk.topics, existing, dead_letter.value)
    if why_not is not None:
        return refuse(409, f"this dead letter cannot be redriven: {why_not}", id=str(row.id))
    assert row.source_partition is not None  # noqa: S101 - checked just above
    assert row.source_offset is not None  # noqa: S101
    try:
        original = await desk.reader.read(row.source_topic, row.source_partition, row.source_offset)
    except (KafkaError, TimeoutError):
        return refuse(503, "the broker did not answer in time: ask again", {"Retry-After": "1"})
    if original is None:
        return refuse(
            409,
            f"the original, {row.source}, is no longer in the log (retention): it cannot be "
            "redriven",
            id=str(row.id),
        )
    kept = (
        header_value(dead_letter.headers, HEADER_ORIGINAL_SHA256)
        == hashlib.sha256(original.value).hexdigest()
        if row.truncated
        else dead_letter.value == original.value
    )
    if not kept:
        return refuse(
            409,
            f"the dead letter's bytes are not those of {row.source}: not redriven",
            id=str(row.id),
        )
    chained = chained_from(original)
    if chained is not None:  # every reader would refuse it (REDRIVE_UNVERIFIED)
        return refuse(409, f"this dead letter cannot be redriven: {chained}", id=str(row.id))
    # Judged again by the original's own bytes: a dead letter that kept only their head
    # was checked by their digest, never by that head, which told a notice from a tick
    # (any party may write gun.dlq: a review of stop 58).
    why_not = not_redrivable(
        row.component, row.source_topic, desk.topics, row.kind, row.reason, original.value
    )
    if why_not is not None:
        return refuse(409, f"this dead letter cannot be redriven: {why_not}", id=str(row.id))
    return original


def _listed(
    row: DeadLetterRow,
    topics: TopicRegistry,
    existing: Mapping[str, frozenset[int]],
    original: bytes | None = None,
) -> dict[str, Any]:
    why_not = _why_not(row, topics, existing, original)
    return {**row.to_json(), "redrivable": why_not is None, "not_redrivable": why_not}


def _why_not(
    row: DeadLetterRow,
    topics: TopicRegistry,
    existing: Mapping[str, frozenset[int]],
    original: bytes | None = None,
) -> str | None:
    """Why ``row`` cannot be redriven (None: it can, as far as is known): the rules of
    redrive.py (``original``: the dead letter's value, where it was read), then the
    partitions ``existing`` says its original's topic has (a foreign producer's header, a
    topic recreated with fewer partitions): a redrive there would wait on a partition
    that will never answer."""
    why_not = not_redrivable(
        row.component, row.source_topic, topics, row.kind, row.reason, original
    )
    partitions = existing.get(row.source_topic)
    if why_not is not None or partitions is None or row.source_partition is None:
        return why_not
    if row.source_partition in partitions:
        return None
    has = f"has {len(partitions)}" if partitions else "does not exist"
    return (
        f"its original's partition, {row.source_topic}/{row.source_partition}, does not "
        f"exist ({row.source_topic} {has})"
    )
