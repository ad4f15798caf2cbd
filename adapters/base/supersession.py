"""Whether a redriven request still stands: a later operation of its declaration, sent
between the original and the redrive, supersedes it (ADR 0010, addendum 2).

A redrive is the original read again, but later: the hub went on deciding meanwhile.
A reservation dead-lettered and never applied, then its declaration refused or
cancelled, its deletion answered "nothing to delete": redriven and applied, the partner
would hold the quantity for ever (its version guard lets a same-version reservation
through after its deletion). So before asking the partner, the adapter reads what the
hub sent the declaration between the two: the records of the partition between the
original and the redrive with the same key (the reference: every request of one
declaration is on one partition, ADR 0005), opened only as far as their operation and
version. The first that supersedes the redriven request (:func:`supersedes`) is named
in a ``REDRIVE_SUPERSEDED`` dead letter, and nothing is asked.

Whatever the hub sent counts, answered or itself dead-lettered: it sent it because it
had moved on. A redrive between does not: its original counts where it lies (a redrive
of an earlier original was sent before this one; one the log did not bear out, by no
one). What cannot be told is not guessed: a redrive further from its original
than ``adapter.redrive_read_limit`` records, a read longer than
``adapter.redrive_read_within_s``, a log no longer holding every record between, a
record of the declaration that does not open: ``REDRIVE_SUPERSESSION_UNKNOWN``, never
asked (redrivable once the cause is fixed: a key imported, the limit raised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from gun_contract.dead_letter import SourcePosition
from gun_contract.envelope import ContentType, Envelope, EnvelopeRejected
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.model.exchange import Operation
from gun_contract.redrive import RecordReader, redrive_claim

__all__ = [
    "LogRecords",
    "LogUnread",
    "Sent",
    "SupersessionUnknown",
    "supersedes",
    "superseding",
]

# Where each operation leaves a version at the partner: only read, held, settled (written
# off or deleted), given back. A version's later stage supersedes an earlier one.
_STAGE = {
    Operation.CHECK: 0,
    Operation.RESERVE: 1,
    Operation.WRITE_OFF: 2,
    Operation.DELETE: 2,
    Operation.GIVE_BACK: 3,
}


# The follow-ups: they release or settle what a reservation held.
_FOLLOW_UPS = frozenset({Operation.WRITE_OFF, Operation.DELETE, Operation.GIVE_BACK})

Document = tuple[str, str]  # code, reference


@dataclass(frozen=True, slots=True)
class Sent:
    """An operation the hub sent a declaration, where it lies in the log, and the
    documents it concerns (empty: not known, as good as all)."""

    operation: Operation
    version: int
    position: SourcePosition | None = None
    documents: frozenset[Document] = frozenset()

    def describe(self) -> str:
        where = "" if self.position is None else f" at {self.position.describe()}"
        return f"{self.operation.value} of version {self.version}{where}"


def supersedes(later: Sent, redriven: Sent) -> bool:
    """Whether ``later``, sent after ``redriven``'s original, supersedes it.

    Any operation of a later version: the hub replaced the version the redriven request
    is about. Of the same version, another operation at the same stage or a later one: a
    deletion, write-off or give-back after a reservation; a give-back after a write-off;
    a deletion and a write-off each other (the hub settled the version the other way).
    Not the same operation again (a repeat, another redrive of the same original), nor an
    earlier stage of the same version (a reservation sent again before its follow-up is
    redriven), nor an older version's operation (the partner's version guard refuses it),
    nor a check after a follow-up: it reads, and releases nothing the follow-up would
    (review stop 40-S, S1). A follow-up is superseded document by document
    (:func:`superseding`).
    """
    if redriven.operation in _FOLLOW_UPS and later.operation is Operation.CHECK:
        return False
    if later.version != redriven.version:
        return later.version > redriven.version
    if later.operation is redriven.operation:
        return False
    return _STAGE[later.operation] >= _STAGE[redriven.operation]


class SupersessionUnknown(ValueError):
    """Whether a later operation superseded the redriven request cannot be told; the
    message says why."""


class LogUnread(RuntimeError):
    """The broker did not give back the records between: not the redrive's fault, so
    no dead letter; its reader stops and reads the redrive again when it starts over."""


class LogRecords(RecordReader, Protocol):
    """What a redrive's reader reads back: its original, and what lies between the two
    (gun_contract/kafka/log_reader.py)."""

    async def read_between(
        self,
        topic: str,
        partition: int,
        first: int,
        end: int,
        *,
        key: bytes | None,
        within_s: float | None = None,
    ) -> list[LoggedRecord] | None: ...


class _Document(BaseModel):
    code: str
    reference: str


class _Item(BaseModel):
    documents: tuple[_Document, ...] = ()


class _Operation(BaseModel):
    """As much of a request as supersession needs (every other field ignored: a request
    of a newer contract still tells its operation, version and documents)."""

    authority: str
    operation: Operation
    reference: str
    version: int
    items: tuple[_Item, ...] = ()

    def documents(self) -> frozenset[Document]:
        return frozenset((d.code, d.reference) for i in self.items for d in i.documents)


async def superseding(
    records: LogRecords,
    envelope: Envelope,
    redriven: Sent,
    *,
    authority: str,
    reference: str,
    original: SourcePosition,
    redrive: SourcePosition,
    limit: int,
    within_s: float,
) -> Sent | None:
    """The first operation of ``reference`` between ``original`` and ``redrive`` (on one
    partition, both keyed by the reference) that supersedes ``redriven``; None when none
    does. Raises :class:`SupersessionUnknown` when that cannot be told, and
    :class:`LogUnread` when the broker fails (a read longer than ``within_s`` is
    unknown: a broker that answers, however slowly, must not stop the replica for good)."""
    between = redrive.offset - original.offset - 1
    if between > limit:
        raise SupersessionUnknown(
            f"the redrive at {redrive.describe()} lies {between} records after its original "
            f"at {original.describe()}, beyond the {limit} the adapter reads to find a later "
            "operation of its declaration (GUN_HUB_ADAPTER__REDRIVE_READ_LIMIT)"
        )
    try:
        logged = await records.read_between(
            original.topic,
            original.partition,
            original.offset + 1,
            redrive.offset,
            key=redrive.key,
            within_s=within_s,
        )
    except TimeoutError:  # an OSError: caught first
        raise SupersessionUnknown(
            f"the {between} records between the original at {original.describe()} and the "
            f"redrive at {redrive.describe()} were not read within {within_s:g}s "
            "(GUN_HUB_ADAPTER__REDRIVE_READ_WITHIN_S)"
        ) from None
    except (KafkaError, OSError) as err:
        # aiokafka's own timeout is a KafkaError, not a TimeoutError: the broker failed.
        raise LogUnread(
            f"{type(err).__name__} reading the records between {original.describe()} and "
            f"{redrive.describe()}"
        ) from err
    if logged is None:
        raise SupersessionUnknown(
            f"the log no longer holds every record between the original at "
            f"{original.describe()} and the redrive at {redrive.describe()}"
        )
    unknown: SupersessionUnknown | None = None
    # A follow-up (deletion, write-off, give-back) is superseded only once later
    # operations concern every one of its documents: a later version that drops a
    # document neither restates nor deletes it (the hub took the deletion sent for done),
    # so the deletion of that one must still be asked; what a later version does concern,
    # the partner's version guard answers STALE (review stop 40-S, S1).
    per_document = redriven.operation in _FOLLOW_UPS and bool(redriven.documents)
    covered: set[Document] = set()
    for record in logged:
        if redrive_claim(record.headers) is not None:
            # A redrive between: its original, if between too, counts where it lies; one
            # of an earlier original was sent before this one; a copy whose claim the log
            # did not bear out (REDRIVE_UNVERIFIED) was never sent by anyone.
            continue
        try:
            operation = _operation_of(envelope, record)
        except SupersessionUnknown as unreadable:
            # One that supersedes further on settles it; none: this is why it is unknown.
            unknown = unknown or unreadable
            continue
        if (operation.authority, operation.reference) != (authority, reference):
            # Keyed by the reference but about another declaration or authority: refused
            # when it was read (REQUEST_KEY_MISMATCH, _MISADDRESSED), nothing of this one.
            continue
        sent = Sent(
            operation.operation,
            operation.version,
            SourcePosition(record.topic, record.partition, record.offset, record.key),
            operation.documents(),
        )
        if not supersedes(sent, redriven):
            continue
        if not per_document or not sent.documents:  # not known: as good as all
            return sent
        covered |= sent.documents & redriven.documents
        if covered >= redriven.documents:
            return sent
    if unknown is not None:
        raise unknown
    return None


def _operation_of(envelope: Envelope, record: LoggedRecord) -> _Operation:
    """The operation a record between holds: opened as it was read (its broker time and
    position; the replay memory neither asked nor told: this is no reading of it), its
    JSON read for operation and version only."""
    try:
        opened = envelope.open(
            record.value,
            topic=record.topic,
            position=record.describe(),
            accepted_at=record.accepted_at,
            check_replay=False,
        )
    except EnvelopeRejected as rejection:
        raise SupersessionUnknown(
            f"{record.describe()}, a record of the same declaration between the original "
            f"and the redrive, does not open ({rejection.kind.value}): what it asked is not "
            "known"
        ) from None
    if opened.content_type is not ContentType.JSON:
        raise SupersessionUnknown(
            f"{record.describe()}, a record of the same declaration between the original "
            f"and the redrive, is no request ({opened.content_type})"
        )
    try:
        return _Operation.model_validate_json(opened.payload)
    except ValidationError:
        raise SupersessionUnknown(
            f"{record.describe()}, a record of the same declaration between the original "
            "and the redrive, does not say its operation and version"
        ) from None
