"""The hub's own security dead letters, told from anybody's.

Any party may write ``gun.dlq``, and nothing in a dead letter says who wrote it: the audit
keeper chains each security dead letter as a report nobody vouches for, and bounds a
flood of them (pipeline/audit_keeper.py). Bounded alike, a flood also left the hub's own
rejections of that minute out of the audit (found by review, stop 46). So the hub vouches
for the security dead letters it writes: a header sealed with its state key
(AES-GCM, as its outbox and operator actions are), bound to the dead letter's bytes and
headers, holding the time it was sealed. The keeper believes it when it opens, when the
dead letter reached the broker within :data:`WITHIN_S` of that time (the topic is dated by
the broker), and when no other dead letter carried the same seal (a copy of a genuine one
is anybody's again).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable

from gun_contract.dead_letter import HEADER_ERROR_CLASS, ErrorClass, header_value
from gun_contract.effects import OutgoingRecord
from gun_contract.security.state_cipher import StateCipher, StateUnreadable

HEADER_VOUCHED = "gun.hub.vouched"
_STATE = "hub-own-dead-letter"
WITHIN_S = 300.0
"""How far apart the seal's time and the dead letter's broker time may be."""
SEALS_REMEMBERED = 100_000
"""Seals seen, remembered to tell a copy (far more than the hub writes in twice WITHIN_S)."""

_Headers = Iterable[tuple[str, bytes | None]]


def _fingerprint(value: bytes, headers: _Headers) -> str:
    """What the seal is bound to: the dead letter's bytes and headers, its own left out."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(value).digest())
    for name, content in headers:
        if name == HEADER_VOUCHED:
            continue
        for part in (name.encode("utf-8", "replace"), content or b""):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()


def vouched(cipher: StateCipher, record: OutgoingRecord, now: float) -> OutgoingRecord:
    """``record``, a dead letter the hub writes, with the header that vouches for it if
    it reports a security rejection (others are not chained: left as they are)."""
    headers = list(record.headers or [])
    if header_value(headers, HEADER_ERROR_CLASS) != ErrorClass.SECURITY.value:
        return record
    seal = cipher.seal(_STATE, _fingerprint(record.value, headers), f"{now:.3f}".encode())
    return OutgoingRecord(
        record.topic, record.key, record.value, [*headers, (HEADER_VOUCHED, seal)], record.partition
    )


class OwnDeadLetters:
    """Tells the hub's own security dead letters from the others, as the keeper reads
    them (one instance per worker: the seals it has seen)."""

    def __init__(self, cipher: StateCipher) -> None:
        self._cipher = cipher
        # Each seal seen, with the dead letter that carried it first (read again after a
        # rebalance, that one is still the hub's; a copy elsewhere is not).
        self._seen: OrderedDict[bytes, str] = OrderedDict()

    def the_hubs(self, value: bytes, headers: _Headers, at: float | None, where: str) -> bool:
        """Whether the dead letter at ``where`` (``value``, ``headers``, broker time
        ``at``) is one the hub wrote."""
        pairs = list(headers)
        seal = next((content for name, content in pairs if name == HEADER_VOUCHED), None)
        if not seal or at is None:
            return False
        try:
            sealed_at = float(self._cipher.open(_STATE, _fingerprint(value, pairs), seal))
        except (StateUnreadable, ValueError, UnicodeDecodeError):
            return False  # not the hub's seal, or one made with a key this worker lacks
        if not math.isfinite(sealed_at) or abs(at - sealed_at) > WITHIN_S:
            return False
        first = self._seen.setdefault(hashlib.sha256(seal).digest(), where)
        while len(self._seen) > SEALS_REMEMBERED:
            self._seen.popitem(last=False)
        return first == where
