"""Tamper-evident audit trail: a hash chain per partition, anchored by signed checkpoints.

Every record carries its partition, a sequence number, the hash of the previous record
(``prev``) and its own hash (SHA-256 over its canonical JSON without ``hash``). The hub
appends a ``CHECKPOINT`` record after at most ``checkpoint_every`` records, and within
``checkpoint_within_s`` seconds of the oldest record not yet signed (a timer ticks idle
partitions). Its ``signature`` is a compact JWS (ES256) made with the hub's *audit* key
(``purpose: audit`` in the JWKS, a key of its own, never the envelope's) over
``{partition, seq, prev, count, at}``: the partition, the checkpoint's place in the chain,
the head it seals (the hash of the record before it), the number of records it seals, and
when it was made, which the key's validity must cover.

Verification (:func:`verify_chain`) needs public keys only and breaks on:

- a record whose content does not match its hash, a missing record, a record chaining to
  nothing, garbage;
- a checkpoint not signed by a hub audit key, signed for another point of the chain, or
  made outside its key's validity (or after its retirement);
- an unsigned tail longer than the bound (a checkpoint that should exist does not), or
  whose oldest record has waited longer than the bound in time: the hub signs every record
  within ``checkpoint_within_s`` while it runs, so a tail cut past a checkpoint, or records
  appended without the audit key, turn into a break;
- two different records after the last checkpoint at the same place (the unsigned tail
  forks: which one is genuine only the hub's next checkpoint can say);
- a record off the signed chain written *after* the signed record at its place: a crash
  can leave a record behind (written, its head never persisted, then written again), but
  always before its replacement, never after;
- with a witness (what an auditor kept from a previous verification), a checkpoint it saw
  that is no longer in the trail: the tail was cut, even exactly at a checkpoint.

One chain per partition keeps the hub scalable: the worker that owns a partition is the
only writer of that partition's chain. Records left by a crash before the hub's next
checkpoint are reported as *orphans*, never followed.

Every link also carries a ``mac``: ``<kid>.<HMAC-SHA-256>`` over the link without its
hash, keyed by a secret derived from that audit key (:func:`link_mac_key`), inside what
the hash covers. Only hub workers can make or check one; an auditor needs none of it. A
worker taking a partition over goes on from the highest link of the tail whose MAC
holds (:meth:`AuditTrail.resync`): records anybody else appended at the head (with a
correct hash, which anyone can compute) are never gone on from, so no checkpoint of the
hub's ever signs them (stop 34; before, the next owner's checkpoint did).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gun_contract.security.keystore import AUDIT_PURPOSE, AUDITING_PARTY, SIGNING_ALG, PublicKey
from gun_contract.untrusted_json import parse_untrusted

log = logging.getLogger(__name__)

GENESIS = "0" * 64
CHECKPOINT = "CHECKPOINT"
# A link's MAC: which audit key, and the HMAC made with the key derived from it.
LINK_MAC = "mac"
# The entry a resync chains when it left records not the hub's behind, naming at most
# FOREIGN_HASHES_NAMED of their hashes.
FOREIGN_RECORDS = "FOREIGN_RECORDS"
FOREIGN_HASHES_NAMED = 10
_MAC_KEY_INFO = b"gun-hub audit link MAC v1"
CHECKPOINT_TYP = "gun-audit-checkpoint"
# While the hub runs, no audit record waits longer than this for a checkpoint.
DEFAULT_CHECKPOINT_WITHIN_S = 60.0
# Entries each partition's chain remembers, not to chain one again (``AuditTrail``), for
# about 0.5 MiB per partition: more than the offset watchdog reads again. After a resync
# the chain knows the entries of the tail it read (runtime/audit_resync.py, 800 records).
REMEMBERED_ENTRIES = 5_000
# What verification allows beyond that: restarts, rebalances, clocks a little apart.
UNSIGNED_GRACE_S = 300.0
# A resync that reads further back (``AuditTrail.look_back_from``) starts this long before
# the time a link of the hub's says it was made: the broker's index finds records by the
# time their producer stamped, the worker's clock a moment after it built the link; the
# margin covers a clock stepped back meanwhile.
LOOK_BACK_MARGIN_S = 60.0
# Where a look back starts when the time a link names cannot be trusted.
FROM_THE_START = datetime(1970, 1, 1, tzinfo=UTC)


# One encoder for every record: json.dumps builds a new one per call when given options
# (four per audit record), and its output is exactly this encoder's.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(data: dict[str, Any]) -> bytes:
    return _CANONICAL.encode(data).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    """Where a partition's chain stands: its last record, and what waits for a checkpoint.

    ``unsigned`` counts the records after the last checkpoint (-1: not known, as in heads
    written before checkpoints were bounded; the next append signs at once) and
    ``oldest_unsigned`` is when the first of them was written (POSIX seconds).
    """

    seq: int
    hash: str
    unsigned: int = 0
    oldest_unsigned: float = 0.0
    # The first place of the chain whose link carries a MAC (``v3``): links from there on
    # are the hub's only if theirs holds. None: the former version's head (``v2``).
    macs_from: int | None = None

    def to_bytes(self) -> bytes:
        # Milliseconds, rounded down: the age of the tail is never under-estimated.
        oldest_ms = math.floor(self.oldest_unsigned * 1000)
        fields = f"{self.seq}|{self.hash}|{self.unsigned}|{oldest_ms}"
        if self.macs_from is None:
            return f"v2|{fields}".encode()
        return f"v3|{fields}|{self.macs_from}".encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> ChainHead:
        if not data:
            return cls(0, GENESIS)
        text = data.decode()
        if text.startswith("v3|"):
            _, seq, digest, unsigned, oldest_ms, macs_from = text.split("|")
            return cls(int(seq), digest, int(unsigned), int(oldest_ms) / 1000, int(macs_from))
        if text.startswith("v2|"):
            _, seq, digest, unsigned, oldest_ms = text.split("|")
            return cls(int(seq), digest, int(unsigned), int(oldest_ms) / 1000)
        seq, digest = text.split(":", 1)
        return cls(int(seq), digest, 0 if int(seq) == 0 else -1)


class HeadStore(Protocol):
    """Where the head of each partition's chain is kept (a faust table in the hub)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...

    def __delitem__(self, key: bytes) -> None: ...


class CheckpointSigner(Protocol):
    """Which key signs a checkpoint made at ``at``, and every audit key the hub holds,
    whose links' MACs a resync checks (keystore.AuditSigner)."""

    def key_for(self, at: datetime) -> ECKey: ...

    def mac_key_for(self, at: datetime) -> ECKey: ...

    def every_key(self) -> Sequence[ECKey]: ...


@dataclass(frozen=True, slots=True)
class _OneKey:
    key: ECKey

    def key_for(self, at: datetime) -> ECKey:
        return self.key

    def mac_key_for(self, at: datetime) -> ECKey:
        return self.key

    def every_key(self) -> Sequence[ECKey]:
        return (self.key,)


def link_mac_key(key: ECKey) -> bytes:
    """The secret a link's MAC is made with: HKDF-SHA-256 over the audit key's private
    scalar. Every hub worker holds the audit key, so every worker can make and check
    the MACs; the public JWKS tells nothing of it."""
    private = key.private_key
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise TypeError(f"audit key {key.kid!r} holds no private EC key")
    scalar = private.private_numbers().private_value
    secret = scalar.to_bytes((private.curve.key_size + 7) // 8, "big")
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_MAC_KEY_INFO).derive(secret)


def _mac(secret: bytes, record: dict[str, Any]) -> str:
    digest = hmac.new(secret, canonical(record), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class AuditTrail:
    """Appends records to the chains; one instance per hub worker.

    ``signer`` is the hub's :class:`~gun_contract.security.keystore.AuditSigner` (a bare key is
    accepted, for examples and tests: checkpoints verify only if it is an audit key).

    ``checkpoint_on_start``: a worker signs each partition's head as soon as it writes to it
    or ticks it for the first time, and again after it lost the partition (:meth:`release`).
    A record a crashed worker left behind then stops being an undecided fork at once: the
    checkpoint seals the branch the new owner goes on with.

    ``remembered``: entries each partition's chain remembers (those of the tail read at a
    resync, those appended since): one among them is not chained again (its record read
    again by the next owner after a rebalance, or by the offset watchdog; left open by stop
    32, done in stop 33). An entry forgotten is chained again: a duplicate, never a gap.
    """

    def __init__(
        self,
        heads: HeadStore,
        signer: ECKey | CheckpointSigner,
        *,
        checkpoint_every: int = 100,
        checkpoint_within_s: float | None = None,
        checkpoint_on_start: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        remembered: int = REMEMBERED_ENTRIES,
    ) -> None:
        self._heads = heads
        self._signer: CheckpointSigner = _OneKey(signer) if isinstance(signer, ECKey) else signer
        self._every = checkpoint_every
        self._within_s = checkpoint_within_s
        self._on_start = checkpoint_on_start
        self._signed_here: set[int] = set()  # partitions this worker has signed since it got them
        # Heads read from the audit topic itself when this worker got a partition: they
        # win over the table until the next append (see :meth:`resync`).
        self._resynced: dict[int, ChainHead] = {}
        self._clock = clock
        # What each link built since the last ``mark`` replaced, to undo it: (partition,
        # the head table's value, the resynced head, whether signed here, the entry it
        # chained), oldest first.
        self._journal: list[tuple[int, bytes | None, ChainHead | None, bool, bytes | None]] = []
        # Each partition's entries (their identities), oldest first, at most ``remembered``.
        self._entries: defaultdict[int, OrderedDict[bytes, None]] = defaultdict(OrderedDict)
        self._remembered = remembered
        self._mac_keys: dict[str, bytes] = {}  # kid -> the secret of its links' MACs
        # What each partition's resync found that is not the hub's, to be chained next,
        # and the reports chained since the last ``mark`` (put back by ``undo``).
        self._foreign: dict[int, dict[str, Any]] = {}
        self._reported: list[tuple[int, dict[str, Any]]] = []

    def mark(self) -> int:
        """Start recording the links built from now on, to be undone if the handler that
        builds them fails (``undo``): its outbox is discarded, and the next link must not
        name one never sent (found by review in stop 32). Handlers build their links
        without yielding, so nothing else is built in between."""
        self._journal.clear()
        self._reported.clear()
        return 0

    def kept(self) -> None:
        """The handler completed: its links stand (sent with its outbox); nothing is
        recorded for it any more."""
        self._journal.clear()
        self._reported.clear()

    def undo(self, mark: int) -> None:
        """Put every chain back where it stood at ``mark``; a report of foreign records
        chained since waits for the next link again."""
        while self._reported:
            partition, report = self._reported.pop()
            self._foreign[partition] = report
        while len(self._journal) > mark:
            partition, table_head, resynced, signed, entry = self._journal.pop()
            if entry is not None:
                self._entries[partition].pop(entry, None)
            key = _head_key(partition)
            # Written only where it changed: the failure undone may be this table's own.
            if table_head is None:
                if self._heads.get(key) is not None:
                    del self._heads[key]
            elif self._heads.get(key) != table_head:
                self._heads[key] = table_head
            if resynced is None:
                self._resynced.pop(partition, None)
            else:
                self._resynced[partition] = resynced
            if not signed:
                self._signed_here.discard(partition)

    def append(self, partition: int, body: dict[str, Any]) -> list[bytes]:
        """The record(s) to publish, in order, on ``partition`` of the audit topic; none
        when ``body`` is an entry the chain already holds (its record read again)."""
        entry = entry_identity(body)
        chained = self._entries[partition]
        if entry in chained:
            return []
        records = [*self._report_foreign(partition), self._link(partition, body, entry=entry)]
        chained[entry] = None
        if len(chained) > self._remembered:
            chained.popitem(last=False)
        if self.checkpoint_due(partition):
            records.append(self._link(partition, {"kind": CHECKPOINT}, checkpoint=True))
        return records

    def checkpoint_due(self, partition: int) -> bool:
        """Whether records of ``partition`` wait for a checkpoint that is due (it only
        reads the head: a timer may ask, then tick the partition)."""
        head = self._head(partition)
        if self._on_start and head.seq > 0 and partition not in self._signed_here:
            return True
        if head.unsigned == 0:
            return False
        if head.unsigned < 0 or head.unsigned >= self._every:
            return True
        if self._within_s is None:
            return False
        # Signed at half the bound: a tick every quarter of it keeps every record within.
        return self._clock().timestamp() - head.oldest_unsigned >= self._within_s / 2

    def tick(self, partition: int) -> list[bytes]:
        """A checkpoint for ``partition`` if one is due (an idle partition's timer tick),
        else nothing. Called in event context, like :meth:`append`."""
        records = self._report_foreign(partition)
        if self.checkpoint_due(partition):
            records.append(self._link(partition, {"kind": CHECKPOINT}, checkpoint=True))
        return records

    def _report_foreign(self, partition: int) -> list[bytes]:
        """The entry saying what records not the hub's its resync left behind, once."""
        body = self._foreign.pop(partition, None)
        if body is None:
            return []
        self._reported.append((partition, body))
        entry = entry_identity(body)
        self._entries[partition][entry] = None
        return [self._link(partition, body, entry=entry)]

    def release(self, partition: int) -> None:
        """This worker no longer owns ``partition``: sign its head again if it comes back."""
        self._signed_here.discard(partition)
        self._resynced.pop(partition, None)
        self._entries.pop(partition, None)
        self._foreign.pop(partition, None)

    def look_back_from(self, partition: int, tail: Sequence[bytes]) -> datetime | None:
        """From when the records before ``tail`` (``partition``'s last records, oldest
        first) must be read too, and given to :meth:`resync` with it; None: the tail is
        enough.

        The tail is not enough when the highest of the hub's links in it is below the head
        the worker's table holds. Either the links above it never landed (a worker killed
        before its lane's transaction committed: the chain goes on from that link), or
        someone able to write the topic pushed the real head out of the tail with copies
        of an older link of the hub's (MAC and all): going on from it would fork the chain,
        and the auditor would call the genuine links above it orphans (found by review).
        The real head lies after the original of that link, so the read starts
        from the original's time (``at``, which its MAC covers), ``LOOK_BACK_MARGIN_S``
        earlier; as far back as the runtime's read goes (``FROM_THE_START``) when the link
        has no MAC holding (a former version's, whose time anybody could have written)."""
        if not tail:
            return None
        found = self._hubs_links(partition, _links(tail, partition))
        if found.highest is None or int(found.highest["seq"]) >= found.table.seq:
            return None
        at = _time(found.highest.get("at"))
        if at is None or not self._mac_holds(found.highest):
            return FROM_THE_START
        return max(FROM_THE_START, at - timedelta(seconds=LOOK_BACK_MARGIN_S))

    def resync(self, partition: int, tail: Sequence[bytes]) -> None:
        """Take ``partition``'s head from the last records actually on the audit topic
        (``tail``, oldest first; empty: the partition holds none; with the records before
        it that :meth:`look_back_from` asked for).

        The head table and the records reach the broker separately: a worker killed in
        between leaves a head with no record (the next link would leave a hole: "record
        missing") or a record with an older head (the next link would fork). The log is
        the truth; the table follows it at the next append. The head is the highest link
        of the tail, not the last record: within a batch, a link sent again may land after
        the links that follow it (runtime/audit_lanes.py). The count since the last
        checkpoint is not known from the tail: the next append signs at once.

        Only the hub's own links count: from the place where links began to carry MACs,
        those whose MAC holds under one of its active audit keys. Records above them that
        anybody else appended are left behind, logged, and named in the next entry the hub
        chains (``FOREIGN_RECORDS``), which its next checkpoint signs. With none of the
        hub's in the tail (a flood longer than the tail read), the chain goes on from the
        table's head; with its first link with a MAC lost in a crash, from the former
        version's links before it. A tail and a table that know no MAC (the chain of the
        version before, until the first link of this one) are taken as they are.
        """
        self._entries[partition] = OrderedDict()
        self._foreign.pop(partition, None)
        if not tail:
            self._resynced[partition] = ChainHead(0, GENESIS)
            return
        links = _links(tail, partition)
        found = self._hubs_links(partition, links)
        # The chain holds what it read (the entries of its last ``remembered`` links).
        ordered = sorted(found.ours, key=lambda r: int(r["seq"]))
        self._entries[partition] = OrderedDict(
            (entry_identity(_entry_of(record)), None)
            for record in ordered[-self._remembered :]
            if record.get("kind") != CHECKPOINT
        )
        highest = found.highest
        # Strangers are what lies above where the chain goes on: the highest of the hub's
        # links, else the table's head.
        top = found.table.seq if highest is None else int(highest["seq"])
        strangers = sorted((r for r in links if int(r["seq"]) > top), key=lambda r: int(r["seq"]))
        if strangers:
            self._leave_behind(partition, strangers, highest)
        if highest is not None:  # else keep the table's head
            self._resynced[partition] = ChainHead(
                top,
                str(highest["hash"]),
                0 if highest.get("kind") == CHECKPOINT else -1,
                0.0,
                found.macs_from,
            )

    def _hubs_links(self, partition: int, links: list[dict[str, Any]]) -> _HubsLinks:
        """Which of ``links`` (``partition``'s, read from the topic) are the hub's own
        (see :meth:`resync`), and where the worker's table says the chain stands."""
        table = ChainHead.from_bytes(self._heads.get(_head_key(partition)))
        macked = [r for r in links if self._mac_holds(r)]
        macs_from = table.macs_from
        if macs_from is None and macked:
            macs_from = min(int(r["seq"]) for r in macked)
        if macs_from is None:
            ours = links  # the former version's chain: nothing says which links are whose
        elif macked:
            ours = macked
        elif all(int(r["seq"]) < macs_from for r in links):
            # None of the links with a MAC reached the topic (the first worker of this
            # version killed before its first batch landed): the former version's links.
            # (Or copies of such a link pushed the others out of the tail:
            # ``look_back_from`` then reads further back, where the links with a MAC are.)
            ours = [r for r in links if LINK_MAC not in r]
        else:
            ours = []  # none of the hub's in the tail: the table's head
        # The link the worker's own table names is the hub's whatever its MAC (made with
        # a key retired since: an idle partition's tail after a rotation, stop 34).
        taken = {str(r["hash"]) for r in ours}
        ours = (
            ours
            + [
                r
                for r in links
                if int(r["seq"]) == table.seq and r["hash"] == table.hash and r["hash"] not in taken
            ][:1]
        )
        highest = max(ours, key=lambda r: int(r["seq"]), default=None)
        return _HubsLinks(table, ours, highest, macs_from)

    def _leave_behind(
        self, partition: int, strangers: list[dict[str, Any]], highest: dict[str, Any] | None
    ) -> None:
        first, last = int(strangers[0]["seq"]), int(strangers[-1]["seq"])
        log.error(
            "audit partition %d: %d record(s) at the head of the trail (seq %d to %d) not "
            "written by the hub (no MAC of its audit keys): the chain goes on from %s; "
            "someone wrote to the audit topic without the hub's audit key",
            partition,
            len(strangers),
            first,
            last,
            f"seq {highest['seq']}" if highest else "the head the worker's table holds",
        )
        self._foreign[partition] = {
            "kind": FOREIGN_RECORDS,
            "count": len(strangers),
            "first_seq": first,
            "last_seq": last,
            "hashes": [str(r["hash"]) for r in strangers[:FOREIGN_HASHES_NAMED]],
        }

    def _mac_holds(self, record: Mapping[str, Any]) -> bool:
        mac = record.get(LINK_MAC)
        if not isinstance(mac, str):
            return False
        kid, _, value = mac.rpartition(".")
        key = next((k for k in self._signer.every_key() if str(k.kid) == kid), None)
        if key is None:
            return False
        unmacked = {k: v for k, v in record.items() if k not in ("hash", LINK_MAC)}
        expected = _mac(self._mac_key(key), unmacked)
        return hmac.compare_digest(value.encode("utf-8", "surrogatepass"), expected.encode())

    def _mac_key(self, key: ECKey) -> bytes:
        kid = str(key.kid)
        secret = self._mac_keys.get(kid)
        if secret is None:
            secret = self._mac_keys[kid] = link_mac_key(key)
        return secret

    def _head(self, partition: int) -> ChainHead:
        resynced = self._resynced.get(partition)
        if resynced is not None:
            return resynced
        return ChainHead.from_bytes(self._heads.get(_head_key(partition)))

    def _link(
        self,
        partition: int,
        body: dict[str, Any],
        *,
        checkpoint: bool = False,
        entry: bytes | None = None,
    ) -> bytes:
        if len(self._journal) >= _JOURNAL_MOST:
            self._journal.clear()  # no handler builds this many: nobody will undo them
        self._journal.append(
            (
                partition,
                self._heads.get(_head_key(partition)),
                self._resynced.get(partition),
                partition in self._signed_here,
                entry,
            )
        )
        head = self._head(partition)
        now = self._clock()
        record: dict[str, Any] = {
            **body,
            "partition": partition,
            "seq": head.seq + 1,
            "prev": head.hash,
            "at": now.isoformat(timespec="milliseconds"),
        }
        if checkpoint:
            key = self._signer.key_for(now)
            record["signature"] = jws.serialize_compact(
                {"alg": SIGNING_ALG, "kid": key.kid, "typ": CHECKPOINT_TYP},
                canonical(_signed_part(record)),
                key,
                algorithms=[SIGNING_ALG],
            )
            unsigned, oldest = 0, 0.0
            self._signed_here.add(partition)
        elif head.unsigned == 0:
            unsigned, oldest = 1, now.timestamp()
        else:
            unsigned = head.unsigned + 1 if head.unsigned > 0 else -1
            oldest = head.oldest_unsigned
        mac_key = self._signer.mac_key_for(now)
        record[LINK_MAC] = f"{mac_key.kid}.{_mac(self._mac_key(mac_key), record)}"
        record["hash"] = record_hash(record)  # over the MAC too
        macs_from = head.seq + 1 if head.macs_from is None else head.macs_from
        self._heads[_head_key(partition)] = ChainHead(
            head.seq + 1, record["hash"], unsigned, oldest, macs_from
        ).to_bytes()
        self._resynced.pop(partition, None)
        return canonical(record)


def _signed_part(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint's signature covers: partition, place, head, count, time."""
    return {
        "partition": record["partition"],
        "seq": record["seq"],
        "prev": record["prev"],
        "count": record["seq"] - 1,
        "at": record["at"],
    }


_JOURNAL_MOST = 1024
# The fields a link adds to its entry (see ``AuditTrail._link``).
_LINK_FIELDS = frozenset({"partition", "seq", "prev", "at", "hash", "signature", LINK_MAC})


def _parsed_link(value: bytes, partition: int) -> dict[str, Any] | None:
    """A record of the tail that is a link of ``partition`` whose hash holds, else None
    (verify reports it), judged as verification judges it: whatever anybody wrote there,
    never an exception, which would stop every worker that takes the partition, for good
    (found by review in stop 34)."""
    record = _readable(LoggedRecord(partition, -1, value))
    return record if record is not None and _is_intact(record) else None


def _links(tail: Sequence[bytes], partition: int) -> list[dict[str, Any]]:
    return [r for r in (_parsed_link(value, partition) for value in tail) if r is not None]


@dataclass(frozen=True, slots=True)
class _HubsLinks:
    table: ChainHead  # the head the worker's table holds
    ours: list[dict[str, Any]]  # the hub's own links among those read
    highest: dict[str, Any] | None  # the highest of them
    macs_from: int | None


def held_links_landed(partition: int, tail: Sequence[bytes], held: Sequence[bytes]) -> int | None:
    """How many of ``held`` the committed ``tail`` of ``partition`` already holds, when
    the tail leads to them; None when the chain went on without them.

    ``held``: links this worker built in chain order whose fate it does not know (a lane's
    batch whose producer was fenced before it learned of its commit), every link before
    them committed (a lane sends a batch once the one before it is in), all of them in one
    transaction (committed whole or not at all). Read after the partition's producer was
    taken again (any open transaction ended), the tail's highest link is then the one
    ``held[0]`` names (0: none of them landed, all are sent again) or one of ``held``
    (those up to it landed). Anything else (another worker's links, records not the hub's
    on top, a tail that lost the link they name) means another writer went on from the
    tail: sent, they would fork the chain (review stop 39-Z, Z1)."""
    parsed = [_parsed_link(value, partition) for value in held]
    chain = [link for link in parsed if link is not None]
    if not chain or len(chain) != len(parsed):
        return None  # not links of this worker's (never the case)
    links = [r for r in (_parsed_link(value, partition) for value in tail) if r is not None]
    top = max(links, key=lambda r: int(r["seq"]), default=None)
    top_seq, top_hash = (0, GENESIS) if top is None else (int(top["seq"]), str(top["hash"]))
    first = chain[0]
    if int(first["seq"]) == top_seq + 1 and first["prev"] == top_hash:
        return 0
    for landed, link in enumerate(chain, start=1):
        if int(link["seq"]) == top_seq and link["hash"] == top_hash:
            return landed
    return None


def entry_identity(body: Mapping[str, Any]) -> bytes:
    """What identifies an entry: the hash of its canonical body (a decision's reference,
    version, outcome and document hash; a dead letter's or an officer action's position),
    its first 16 bytes."""
    return hashlib.sha256(canonical(dict(body))).digest()[:16]


def _entry_of(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _LINK_FIELDS}


def _head_key(partition: int) -> bytes:
    return f"audit-head/{partition}".encode()


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """An audit record as read from the topic."""

    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True, slots=True)
class BrokenLink:
    partition: int
    offset: int
    seq: int | None
    reason: str

    def describe(self) -> str:
        where = f" offset {self.offset}" if self.offset >= 0 else ""
        seq = f" seq {self.seq}" if self.seq is not None else ""
        return f"partition {self.partition}{where}{seq}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Anchor:
    """A verified checkpoint: what an auditor's witness keeps to catch a later cut."""

    seq: int
    hash: str
    at: str


@dataclass(frozen=True, slots=True)
class TailPolicy:
    """How far the unsigned tail after a partition's last checkpoint may reach."""

    max_unsigned: int = 100
    max_unsigned_age_s: float = DEFAULT_CHECKPOINT_WITHIN_S + UNSIGNED_GRACE_S
    clock_skew_s: float = 300.0


@dataclass
class AuditReport:
    records: int = 0
    checkpoints: int = 0
    orphans: int = 0
    unsigned_tail: dict[int, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    broken: list[BrokenLink] = field(default_factory=list)
    anchors: dict[int, Anchor] = field(default_factory=dict)
    orphan_positions: list[str] = field(default_factory=list)
    # What the hub itself reported, in its signed chain, as records not its own.
    foreign: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.broken


def verify_chain(
    logged: Iterable[LoggedRecord],
    keys: Mapping[str, PublicKey],
    *,
    policy: TailPolicy | None = None,
    now: datetime | None = None,
    witness: Mapping[int, Anchor] | None = None,
) -> AuditReport:
    """Check every partition's chain, checkpoints and unsigned tail; the first break of
    each partition is reported.

    ``keys`` are public keys (``read_public_keys`` of the JWKS): only the hub's audit keys
    among them vouch for a checkpoint. ``witness``: the anchors of an earlier
    verification, which must all still be in the trail.
    """
    report = AuditReport()
    audit_keys = {
        kid: key
        for kid, key in keys.items()
        if key.purpose == AUDIT_PURPOSE and key.party == AUDITING_PARTY
    }
    by_partition: dict[int, list[tuple[LoggedRecord, dict[str, Any]]]] = defaultdict(list)
    for entry in logged:
        report.records += 1
        record = _readable(entry)
        if record is None:
            report.broken.append(
                BrokenLink(entry.partition, entry.offset, None, "not a readable audit record")
            )
            continue
        by_partition[entry.partition].append((entry, record))
    context = _Context(
        keys, audit_keys, policy or TailPolicy(), now or datetime.now(UTC), report, witness or {}
    )
    # A partition with a record it cannot read is still verified, the rest of its records
    # as they stand: one junk record written there switched its verification off, and any
    # forged branch after it went unreported (found by review).
    for partition in sorted(set(by_partition) | set(witness or {})):
        problem = _Partition(partition, by_partition.get(partition, []), context).verify()
        if problem is not None:
            report.broken.append(problem)
    return report


def _readable(entry: LoggedRecord) -> dict[str, Any] | None:
    try:
        record = parse_untrusted(entry.value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("partition") != entry.partition:
        return None
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return None
    return record


@dataclass(frozen=True, slots=True)
class _Context:
    keys: Mapping[str, PublicKey]
    audit_keys: Mapping[str, PublicKey]
    policy: TailPolicy
    now: datetime
    report: AuditReport
    witness: Mapping[int, Anchor]


Entry = tuple[LoggedRecord, dict[str, Any]]


class _Partition:
    """The verification of one partition's chain."""

    def __init__(self, partition: int, entries: list[Entry], context: _Context) -> None:
        self.partition = partition
        self.ctx = context
        self.entries = entries
        self.by_seq: dict[int, list[Entry]] = defaultdict(list)
        # Intact records by hash; exact copies (a redelivered send) are one record.
        self.intact: dict[str, Entry] = {}
        for entry, record in entries:
            self.by_seq[int(record["seq"])].append((entry, record))
            if _is_intact(record):
                self.intact.setdefault(record["hash"], (entry, record))
        self.problems: dict[str, str | None] = {}  # checkpoint hash -> why it is refused

    def broken(self, entry: LoggedRecord | None, seq: int | None, reason: str) -> BrokenLink:
        return BrokenLink(self.partition, entry.offset if entry else -1, seq, reason)

    def verify(self) -> BrokenLink | None:
        signed = self._signed_path()
        path, problem = self._walk(signed)
        if problem is not None:
            return problem
        checkpoints = [(e, r) for e, r in path if r.get("kind") == CHECKPOINT]
        signed_end = int(checkpoints[-1][1]["seq"]) if checkpoints else 0
        report = self.ctx.report
        for _, record in path:
            kind = str(record.get("kind", "?"))
            report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
            if kind == FOREIGN_RECORDS:
                report.foreign.append(
                    f"partition {self.partition}: {record.get('count')} record(s) from seq "
                    f"{record.get('first_seq')} to {record.get('last_seq')}"
                )
        report.checkpoints += len(checkpoints)
        if checkpoints:
            record = checkpoints[-1][1]
            report.anchors[self.partition] = Anchor(
                int(record["seq"]), str(record["hash"]), str(record["at"])
            )
        tail = [(e, r) for e, r in path if int(r["seq"]) > signed_end]
        if tail:
            report.unsigned_tail[self.partition] = len(tail)
        found = [
            *self._altered(),
            *self._tail_problems(tail, signed_end),
            *self._off_path(path),
            *self._witness_problems(path),
        ]
        if not found:
            return None
        return min(found, key=lambda b: (b.seq is None, b.seq or 0))

    # -- which branch the signatures vouch for -------------------------------------------

    def _checkpoint_problem(self, record: dict[str, Any]) -> str | None:
        digest = str(record.get("hash"))
        if digest not in self.problems:
            self.problems[digest] = _checkpoint_problem(record, self.ctx)
        return self.problems[digest]

    def _signed_path(self) -> dict[int, str]:
        """seq -> hash of the records the latest valid checkpoint seals (as far back as
        its predecessors can be found)."""
        valid = [
            (entry, record)
            for entry, record in self.intact.values()
            if record.get("kind") == CHECKPOINT and self._checkpoint_problem(record) is None
        ]
        if not valid:
            return {}
        _, head = max(valid, key=lambda er: (int(er[1]["seq"]), er[0].offset))
        signed: dict[int, str] = {}
        digest, seq = str(head["hash"]), int(head["seq"])
        while seq >= 1 and digest in self.intact:
            record = self.intact[digest][1]
            if int(record["seq"]) != seq:
                break
            signed[seq] = digest
            digest, seq = str(record["prev"]), seq - 1
        return signed

    # -- the chain, from its first record --------------------------------------------------

    def _walk(self, signed: dict[int, str]) -> tuple[list[Entry], BrokenLink | None]:
        path: list[Entry] = []
        previous, seq = GENESIS, 1
        last_seq = max(self.by_seq, default=0)
        signed_end = max(signed, default=0)
        last_checkpoint_at: datetime | None = None
        while True:
            options = self.by_seq.get(seq, [])
            candidates: dict[str, Entry] = {}
            for _, record in options:
                digest = str(record.get("hash"))
                if digest in self.intact and record.get("prev") == previous:
                    candidates.setdefault(digest, self.intact[digest])
            if not candidates:
                altered = [e for e, r in options if not _is_intact(r)]
                if altered:
                    return path, self.broken(altered[0], seq, _ALTERED)
                if not options and seq <= last_seq:
                    return path, self.broken(None, seq, "record missing")
                if seq <= signed_end:
                    return path, self.broken(
                        options[0][0],
                        seq,
                        "does not chain to the previous record "
                        "(record removed, inserted or reordered)",
                    )
                return path, None  # the end of the chain; other records are off it
            if signed.get(seq) in candidates:
                chosen = candidates[signed[seq]]
            elif len(candidates) == 1 or seq <= signed_end:
                chosen = next(iter(candidates.values()))
            else:
                return path, self._fork(seq, list(candidates.values()))
            entry, record = chosen
            at = _time(record.get("at"))
            if at is None:
                return path, self.broken(entry, seq, "its time ('at') is unreadable")
            skew = timedelta(seconds=self.ctx.policy.clock_skew_s)
            if at > self.ctx.now + skew:
                return path, self.broken(
                    entry, seq, f"dated {record['at']}, in the future of this verification"
                )
            if record.get("kind") == CHECKPOINT:
                problem = self._checkpoint_problem(record)
                if problem is not None:
                    return path, self.broken(entry, seq, problem)
                if last_checkpoint_at is not None and at < last_checkpoint_at - skew:
                    return path, self.broken(
                        entry, seq, "checkpoint dated before the checkpoint that precedes it"
                    )
                last_checkpoint_at = at
            path.append(chosen)
            previous = str(record["hash"])
            seq += 1

    def _fork(self, seq: int, candidates: list[Entry]) -> BrokenLink:
        offsets = sorted(entry.offset for entry, _ in candidates)
        return self.broken(
            max(candidates, key=lambda er: er[0].offset)[0],
            seq,
            f"the unsigned tail forks: {len(candidates)} different records follow seq "
            f"{seq - 1} (offsets {', '.join(map(str, offsets))}); one branch was written "
            "without the hub's audit key, or the hub crashed and its next checkpoint "
            "(due within the bound) will show which is genuine",
        )

    # -- what lies off the chain, after it, and what was seen before ---------------------

    def _altered(self) -> list[BrokenLink]:
        return [
            self.broken(entry, int(record["seq"]), _ALTERED)
            for entry, record in self.entries
            if not _is_intact(record)
        ]

    def _tail_problems(self, tail: list[Entry], signed_end: int) -> list[BrokenLink]:
        policy = self.ctx.policy
        after = f"after the checkpoint at seq {signed_end}" if signed_end else "and no checkpoint"
        problems: list[BrokenLink] = []
        if len(tail) > policy.max_unsigned:
            entry, record = tail[policy.max_unsigned]
            problems.append(
                self.broken(
                    entry,
                    int(record["seq"]),
                    f"{len(tail)} records {after}, where the hub signs a checkpoint after "
                    f"at most {policy.max_unsigned}: a checkpoint that should exist does not "
                    "(records appended without the hub's audit key, or the checkpoint cut off)",
                )
            )
        if tail:
            entry, record = tail[0]
            at = _time(record.get("at"))
            waited = (self.ctx.now - at).total_seconds() if at else 0.0
            if waited > policy.max_unsigned_age_s:
                problems.append(
                    self.broken(
                        entry,
                        int(record["seq"]),
                        f"unsigned since {record['at']} ({int(waited)} s, {after}), beyond the "
                        f"{int(policy.max_unsigned_age_s)} s within which the hub signs every "
                        "record: written without the hub's audit key, the checkpoint after it "
                        "cut off, or the hub stopped before signing it",
                    )
                )
        return problems

    def _off_path(self, path: list[Entry]) -> list[BrokenLink]:
        """Intact records not on the chain: left by a crash (written before the record
        that replaced them), or forged (written after it, or chained to nothing)."""
        on_path = {str(record["hash"]): (entry, record) for entry, record in path}
        at_seq = {int(record["seq"]): entry for entry, record in path}
        roots: dict[str, int | None] = {}  # off-path hash -> seq where its branch forks

        def fork_of(digest: str) -> int | None:
            chain: list[str] = []
            while digest not in roots:
                record = self.intact[digest][1]
                prev = str(record["prev"])
                chain.append(digest)
                if prev in on_path or prev == GENESIS:
                    roots[digest] = int(record["seq"])
                    break
                if prev not in self.intact:
                    roots[digest] = None
                    break
                digest = prev
            root = roots[digest]
            for step in chain:
                roots[step] = root
            return root

        problems: list[BrokenLink] = []
        report = self.ctx.report
        for digest, (entry, record) in sorted(
            self.intact.items(), key=lambda item: item[1][0].offset
        ):
            if digest in on_path:
                continue
            seq = int(record["seq"])
            fork = fork_of(digest)
            if fork is None:
                problems.append(
                    self.broken(
                        entry,
                        seq,
                        "chains to no record of the partition "
                        "(inserted, or the record before it removed)",
                    )
                )
                continue
            genuine = at_seq.get(fork)
            if genuine is not None and entry.offset > genuine.offset:
                problems.append(
                    self.broken(
                        entry,
                        seq,
                        f"off the signed chain, and written after the signed record at its "
                        f"fork (seq {fork}, offset {genuine.offset}): not left by a crash, "
                        "but a forged branch",
                    )
                )
                continue
            report.orphans += 1
            if len(report.orphan_positions) < 10:
                report.orphan_positions.append(
                    f"partition {self.partition} offset {entry.offset} seq {seq}"
                )
        return problems

    def _witness_problems(self, path: list[Entry]) -> list[BrokenLink]:
        anchor = self.ctx.witness.get(self.partition)
        if anchor is None:
            return []
        found = {int(record["seq"]): str(record["hash"]) for _, record in path}
        if found.get(anchor.seq) == anchor.hash:
            return []
        last = max(found, default=0)
        how = (
            f"the trail was cut after seq {last}"
            if anchor.seq > last
            else "the trail was rewritten (cut and extended) from there"
        )
        return [
            self.broken(
                None,
                anchor.seq,
                f"the checkpoint at seq {anchor.seq} (made {anchor.at}) that the witness "
                f"verified before is not in the trail any more: {how}",
            )
        ]


_ALTERED = "content does not match its hash (record altered)"


def _is_intact(record: dict[str, Any]) -> bool:
    if not (isinstance(record.get("prev"), str) and isinstance(record.get("hash"), str)):
        return False
    try:
        return record.get("hash") == record_hash(record)
    except (UnicodeError, RecursionError, ValueError):
        return False  # a lone surrogate, nesting past the serializer: not the hub's


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _checkpoint_problem(record: dict[str, Any], ctx: _Context) -> str | None:
    signature = record.get("signature")
    if not isinstance(signature, str) or signature.count(".") != 2:
        return "checkpoint without a compact JWS signature"
    try:
        header = parse_untrusted(_b64decode(signature.split(".", 1)[0]))
    except (ValueError, binascii.Error, RecursionError):
        return "checkpoint signature is not a JWS"
    if not isinstance(header, dict):
        return "checkpoint signature is not a JWS"
    kid = str(header.get("kid"))[:128]
    public = ctx.audit_keys.get(kid)
    if public is None:
        other = ctx.keys.get(kid)
        what = f"a {other.party} key of use {other.use.value}" if other else "an unknown key"
        return (
            f"checkpoint signed with {kid!r}, {what}: not an audit key of {AUDITING_PARTY} "
            "in the JWKS"
        )
    if header.get("alg") != public.alg:
        return f"checkpoint signature algorithm is not {public.alg}, the one of {kid!r}"
    try:
        verified = jws.deserialize_compact(signature, public.key, algorithms=[public.alg])
        signed = parse_untrusted(verified.payload)
    except (JoseError, ValueError, RecursionError, TypeError, LookupError, AttributeError):
        # joserfc checks a header it parsed as it would its own: a ``crit`` that is no list
        # of names raises a TypeError (found by review), and a header anybody wrote may
        # trip its other checks the same way. A record the verifier cannot read is a break,
        # never a traceback.
        return f"checkpoint signature does not verify with {kid!r}"
    at = _time(record.get("at"))
    if at is None or not {"partition", "seq", "prev"} <= record.keys():
        return "checkpoint time or place unreadable"
    if signed != _signed_part(record):
        return (
            "checkpoint signature is for another point of the chain "
            "(its partition, place, head, count or time differ)"
        )
    why = public.invalid_at(at)
    if why is not None:
        return f"checkpoint made {record['at']}, {why}"
    return None


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


# -- the auditor's witness -----------------------------------------------------------------


class WitnessError(ValueError):
    """The witness file cannot be read; the message names it."""


def read_witness(path: Path, topic: str) -> dict[int, Anchor]:
    """The anchors a witness file keeps for ``topic`` (none if the file does not exist)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            int(partition): Anchor(int(a["seq"]), str(a["hash"]), str(a["at"]))
            for partition, a in data.get(topic, {}).items()
        }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        raise WitnessError(f"{path} is not a witness file of gun-hub audit verify") from None


def write_witness(path: Path, topic: str, anchors: Mapping[int, Anchor]) -> None:
    """Keep ``anchors`` for ``topic``; an anchor never moves back to an earlier checkpoint."""
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    kept = read_witness(path, topic)
    for partition, anchor in anchors.items():
        if partition not in kept or anchor.seq >= kept[partition].seq:
            kept[partition] = anchor
    data[topic] = {
        str(p): {"seq": a.seq, "hash": a.hash, "at": a.at} for p, a in sorted(kept.items())
    }
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)
