"""Tamper-evident audit trail: a hash chain per partition, with signed checkpoints.

Every record carries its partition, a sequence number, the hash of the previous record
(``prev``) and its own hash (SHA-256 over its canonical JSON without ``hash``). Every
``checkpoint_every`` records the hub appends a checkpoint whose ``signature`` is a JWS
(ES256, the hub's key) over ``{partition, seq, prev}``: rewriting history would need
the hub's private key, not only write access to the topic.

One chain per partition keeps the hub scalable: the worker that owns a partition is the
only writer of that partition's chain. At-least-once processing can, after a crash,
leave a record whose successor was never written (the head was not persisted); the
verifier reports such a record as an *orphan* when it is intact and chained, never as a
break. A changed, removed or reordered byte is a break.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from gun_hub.security.keystore import SIGNING_ALG, KeyStatus, PublicKey

GENESIS = "0" * 64
CHECKPOINT = "CHECKPOINT"


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in record.items() if k != "hash"})).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    hash: str

    def to_bytes(self) -> bytes:
        return f"{self.seq}:{self.hash}".encode()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> ChainHead:
        if not data:
            return cls(0, GENESIS)
        seq, digest = data.decode().split(":", 1)
        return cls(int(seq), digest)


class HeadStore(Protocol):
    """Where the head of each partition's chain is kept (a faust table in the hub)."""

    def get(self, key: bytes) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes) -> None: ...


class AuditTrail:
    """Appends records to the chains; one instance per hub worker."""

    def __init__(
        self,
        heads: HeadStore,
        signing_key: ECKey,
        *,
        checkpoint_every: int = 100,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._heads = heads
        self._key = signing_key
        self._every = checkpoint_every
        self._clock = clock

    def append(self, partition: int, body: dict[str, Any]) -> list[bytes]:
        """The record(s) to publish, in order, on ``partition`` of the audit topic."""
        records = [self._link(partition, body)]
        head = ChainHead.from_bytes(self._heads.get(_head_key(partition)))
        if head.seq % self._every == 0:
            records.append(self._link(partition, {"kind": CHECKPOINT}, checkpoint=True))
        return records

    def _link(self, partition: int, body: dict[str, Any], *, checkpoint: bool = False) -> bytes:
        head = ChainHead.from_bytes(self._heads.get(_head_key(partition)))
        record: dict[str, Any] = {
            **body,
            "partition": partition,
            "seq": head.seq + 1,
            "prev": head.hash,
            "at": self._clock().isoformat(timespec="milliseconds"),
        }
        if checkpoint:
            record["signature"] = jws.serialize_compact(
                {"alg": SIGNING_ALG, "kid": self._key.kid},
                canonical({"partition": partition, "seq": head.seq + 1, "prev": head.hash}),
                self._key,
                algorithms=[SIGNING_ALG],
            )
        record["hash"] = record_hash(record)
        self._heads[_head_key(partition)] = ChainHead(head.seq + 1, record["hash"]).to_bytes()
        return canonical(record)


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
        seq = f" seq {self.seq}" if self.seq is not None else ""
        return f"partition {self.partition} offset {self.offset}{seq}: {self.reason}"


@dataclass
class AuditReport:
    records: int = 0
    checkpoints: int = 0
    orphans: int = 0
    unsigned_tail: dict[int, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    broken: list[BrokenLink] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.broken


def verify_chain(logged: Iterable[LoggedRecord], signing_keys: dict[str, PublicKey]) -> AuditReport:
    """Check every partition's chain and checkpoint; the first break of each is reported."""
    report = AuditReport()
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
    for partition, entries in sorted(by_partition.items()):
        _verify_partition(partition, entries, signing_keys, report)
    return report


def _readable(entry: LoggedRecord) -> dict[str, Any] | None:
    try:
        record = json.loads(entry.value)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("partition") != entry.partition:
        return None
    if not isinstance(record.get("seq"), int):
        return None
    return record


def _verify_partition(
    partition: int,
    entries: list[tuple[LoggedRecord, dict[str, Any]]],
    signing_keys: dict[str, PublicKey],
    report: AuditReport,
) -> None:
    candidates: dict[int, list[tuple[LoggedRecord, dict[str, Any]]]] = defaultdict(list)
    for entry, record in entries:
        candidates[int(record["seq"])].append((entry, record))
    previous = GENESIS
    since_checkpoint = 0
    last = max(candidates)
    for seq in range(1, last + 1):
        options = candidates.get(seq, [])
        valid = [
            (entry, record)
            for entry, record in options
            if record.get("hash") == record_hash(record) and record.get("prev") == previous
        ]
        successors = {r.get("prev") for _, r in candidates.get(seq + 1, [])}
        chosen = [(e, r) for e, r in valid if r["hash"] in successors] or valid[-1:]
        if not chosen:
            where = options[0][0].offset if options else -1
            reason = "record missing" if not options else _why_broken(options[0][1], previous)
            report.broken.append(BrokenLink(partition, where, seq, reason))
            return
        # Exact duplicates (a redelivered send) are one record; other intact ones orphans.
        report.orphans += len({r["hash"] for _, r in valid}) - 1
        entry, record = chosen[0]
        kind = str(record.get("kind", "?"))
        report.by_kind[kind] = report.by_kind.get(kind, 0) + 1
        if kind == CHECKPOINT:
            problem = _checkpoint_problem(record, signing_keys)
            if problem:
                report.broken.append(BrokenLink(partition, entry.offset, seq, problem))
                return
            report.checkpoints += 1
            since_checkpoint = 0
        else:
            since_checkpoint += 1
        previous = record["hash"]
    if since_checkpoint:
        report.unsigned_tail[partition] = since_checkpoint


def _why_broken(record: dict[str, Any], previous: str) -> str:
    if record.get("hash") != record_hash(record):
        return "content does not match its hash (record altered)"
    return "does not chain to the previous record (record removed, inserted or reordered)"


def _checkpoint_problem(record: dict[str, Any], signing_keys: dict[str, PublicKey]) -> str | None:
    signature = str(record.get("signature", ""))
    try:
        header = json.loads(_b64decode(signature.split(".")[0]))
        public = signing_keys[str(header["kid"])]
        if public.party != "hub" or header.get("alg") != public.alg:
            return "checkpoint not signed by a hub key"
        # A key retired later still vouches for what it signed before its retirement.
        if public.status is KeyStatus.RETIRED and str(record.get("at")) > public.retired:
            return f"checkpoint signed with {public.kid} after it was retired"
        verified = jws.deserialize_compact(signature, public.key, algorithms=[public.alg])
    except (JoseError, ValueError, KeyError, IndexError):
        return "checkpoint signature does not verify"
    expected = canonical(
        {"partition": record["partition"], "seq": record["seq"], "prev": record["prev"]}
    )
    if verified.payload != expected:
        return "checkpoint signature is for another point of the chain"
    return None


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
