"""Heartbeats only in one's own name (issue 11, item 7).

Every adapter may write ``gun.ops.health``. Each heartbeat is therefore signed by the
party that emits it, and operations believe one only if (:class:`HeartbeatGate`):

1. it is a compact JWS of at most :data:`MAX_HEARTBEAT_BYTES` (else *unsigned*);
2. it verifies as the envelope's inner layer does (``jose_envelope.verify_signed``): a
   registered, unretired signing key chosen by ``kid``, that key's algorithm (never the
   header's), the signature, the key's owner is ``iss``, ``typ`` gun-signed and the topic
   it was read from;
3. its content is a :class:`PartnerHealth` with a dated time;
4. the component it names sends heartbeats and belongs to the signer
   (``Entitlements.heartbeats``: an adapter beats in its authority's name, signed with
   that authority's key): the DGA adapter cannot speak for DGAL, nor anyone for the hub;
5. it is not dated ahead of the reader's clock beyond the allowed skew, and is newer than
   the last heartbeat believed for its component, the replica of the authority's adapter
   it names (``PartnerHealth.replica_key``): an old heartbeat written again (one that
   said "closed" before the partner went down) hides no outage, and replicas whose clocks
   differ by a second do not refuse each other's beats.

Why a JWS and not the sealed envelope: a heartbeat is not confidential (a circuit state, a
count) and has no single recipient (every hub worker's operations view reads it, and any
tool with the public keys may), so it is signed but not encrypted; an encrypted copy would
be readable by the hub alone. Nor does it need the envelope's replay memory: rule 5 refuses
a copy, because a heartbeat is superseded by the next one anyway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from pydantic import ValidationError

from gun_contract.envelope import ContentType, Envelope, EnvelopeRejected, EnvelopeRejectionKind
from gun_contract.health import PartnerHealth
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import SignedMessage, UnknownKeyId, verify_signed
from gun_contract.security.keystore import PublicKey

# A signed heartbeat is under 1 kB; anything much larger is no heartbeat of ours.
MAX_HEARTBEAT_BYTES = 8 * 1024
_COMPACT_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+")


class HeartbeatFault(StrEnum):
    """Why a heartbeat was not believed (the ``reason`` label of the metric)."""

    OVERSIZED = "HEARTBEAT_OVERSIZED"
    UNSIGNED = "HEARTBEAT_UNSIGNED"
    MALFORMED = "HEARTBEAT_MALFORMED"
    UNKNOWN_KEY = "HEARTBEAT_UNKNOWN_KEY"
    DISALLOWED_ALG = "HEARTBEAT_DISALLOWED_ALG"
    RETIRED_KEY = "HEARTBEAT_RETIRED_KEY"
    BAD_SIGNATURE = "HEARTBEAT_BAD_SIGNATURE"
    SENDER_MISMATCH = "HEARTBEAT_SENDER_MISMATCH"
    WRONG_TOPIC = "HEARTBEAT_WRONG_TOPIC"
    INVALID = "HEARTBEAT_INVALID"
    UNKNOWN_COMPONENT = "HEARTBEAT_UNKNOWN_COMPONENT"
    IMPERSONATION = "HEARTBEAT_IMPERSONATION"
    FROM_THE_FUTURE = "HEARTBEAT_FROM_THE_FUTURE"
    NOT_NEWER = "HEARTBEAT_NOT_NEWER"
    NO_KEYS = "HEARTBEAT_NO_KEYS"
    UNREADABLE = "HEARTBEAT_UNREADABLE"


_FROM_ENVELOPE = {
    EnvelopeRejectionKind.MALFORMED: HeartbeatFault.MALFORMED,
    EnvelopeRejectionKind.UNKNOWN_KID: HeartbeatFault.UNKNOWN_KEY,
    EnvelopeRejectionKind.DISALLOWED_ALG: HeartbeatFault.DISALLOWED_ALG,
    EnvelopeRejectionKind.RETIRED_KEY: HeartbeatFault.RETIRED_KEY,
    EnvelopeRejectionKind.BAD_SIGNATURE: HeartbeatFault.BAD_SIGNATURE,
    EnvelopeRejectionKind.HEADER_REFUSED: HeartbeatFault.MALFORMED,
    EnvelopeRejectionKind.SENDER_MISMATCH: HeartbeatFault.SENDER_MISMATCH,
    EnvelopeRejectionKind.WRONG_TOPIC: HeartbeatFault.WRONG_TOPIC,
}


class HeartbeatRefused(ValueError):
    """A heartbeat operations must not believe; ``fault`` says why.

    The message names key ids, parties and topics, never what the heartbeat says.
    """

    def __init__(self, fault: HeartbeatFault, message: str) -> None:
        super().__init__(message)
        self.fault = fault


class PublicKeys(Protocol):
    """Where the registered public keys come from (a party's ``PartyKeys``, which follows
    its keystore folder: a rotation or retirement applies without a restart)."""

    @property
    def public(self) -> Mapping[str, PublicKey]: ...

    @property
    def read_at(self) -> datetime | None: ...

    def look_again(self) -> bool:
        """Look at the key files now (a key id not known); whether anything changed."""
        ...


def signed_heartbeat(envelope: Envelope, health: PartnerHealth, topic: str) -> bytes:
    """``health`` as its adapter writes it on ``topic``: signed with its party's key."""
    return envelope.sign(health.to_bytes(), topic=topic, content_type=ContentType.JSON)


class HeartbeatGate:
    """Decides which heartbeats operations believe (module docstring)."""

    def __init__(
        self,
        keys: PublicKeys,
        entitlements: Entitlements,
        *,
        max_clock_skew_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        broken: str | None = None,
    ) -> None:
        self._keys = keys
        self._entitlements = entitlements
        self._skew = timedelta(seconds=max_clock_skew_s)
        self._clock = clock
        self._broken = broken

    @classmethod
    def refusing_all(cls, why: str) -> HeartbeatGate:
        """A gate for a reader without keys: it believes nothing (``why`` is said each time)."""
        return cls(_NoKeys(), Entitlements({}, {}), broken=why)

    def check(
        self,
        value: bytes,
        *,
        topic: str,
        latest: Mapping[tuple[str, str], datetime] | None = None,
    ) -> PartnerHealth:
        """The heartbeat ``value`` read from ``topic`` carries, if it is to be believed;
        ``latest``: the time of the last heartbeat believed per component, (authority,
        replica).

        Raises :class:`HeartbeatRefused`, and nothing else, whatever the bytes.
        """
        try:
            return self._check(value, topic, latest or {})
        except HeartbeatRefused:
            raise
        except Exception as unforeseen:  # noqa: BLE001 - whatever a library makes of the bytes
            raise HeartbeatRefused(
                HeartbeatFault.UNREADABLE, f"could not be read ({type(unforeseen).__name__})"
            ) from None

    def _verified(self, value: bytes, topic: str) -> SignedMessage:
        """``value`` verified; a key id not known makes the keys be looked at again once
        (published a moment ago: a rotation used at once), as the envelope does."""
        try:
            return verify_signed(value, topic=topic, public=self._keys.public)
        except UnknownKeyId as unknown:
            if not self._keys.look_again():
                raise unknown.dated(self._keys.read_at) from None
        try:
            return verify_signed(value, topic=topic, public=self._keys.public)
        except UnknownKeyId as unknown:
            raise unknown.dated(self._keys.read_at) from None

    def _check(
        self, value: bytes, topic: str, latest: Mapping[tuple[str, str], datetime]
    ) -> PartnerHealth:
        if self._broken is not None:
            raise HeartbeatRefused(HeartbeatFault.NO_KEYS, self._broken)
        if len(value) > MAX_HEARTBEAT_BYTES:
            raise HeartbeatRefused(
                HeartbeatFault.OVERSIZED,
                f"{len(value)} bytes, over the {MAX_HEARTBEAT_BYTES} of a signed heartbeat",
            )
        if not _COMPACT_JWS.fullmatch(value):
            raise HeartbeatRefused(
                HeartbeatFault.UNSIGNED, "not a compact JWS: unsigned, or no heartbeat at all"
            )
        try:
            message = self._verified(value, topic)
        except EnvelopeRejected as rejected:
            fault = _FROM_ENVELOPE.get(rejected.kind, HeartbeatFault.MALFORMED)
            raise HeartbeatRefused(fault, str(rejected)) from None
        signer = f"signed by {message.sender!r} with {message.signing_kid!r}"
        if message.content_type is not ContentType.JSON:
            raise HeartbeatRefused(HeartbeatFault.INVALID, f"{signer}, but its content is not JSON")
        try:
            health = PartnerHealth.model_validate_json(message.payload)
        except ValidationError as invalid:
            fields = sorted(
                {str(e["loc"][0]) for e in invalid.errors() if e["loc"]} & _HEALTH_FIELDS
            )
            what = f" (invalid: {', '.join(fields)})" if fields else ""
            raise HeartbeatRefused(
                HeartbeatFault.INVALID, f"{signer}, but its content is not a heartbeat{what}"
            ) from None
        if health.at.tzinfo is None:
            raise HeartbeatRefused(
                HeartbeatFault.INVALID, f"{signer}, but its time has no time zone"
            )
        owner = self._entitlements.heartbeat_sender_of(health.authority)
        if owner is None:
            raise HeartbeatRefused(
                HeartbeatFault.UNKNOWN_COMPONENT,
                f"{signer}, names no component that sends heartbeats",
            )
        if owner != message.sender:
            raise HeartbeatRefused(
                HeartbeatFault.IMPERSONATION,
                f"{signer}, names a component whose heartbeats another party signs",
            )
        now = datetime.fromtimestamp(self._clock(), UTC)
        if health.at > now + self._skew:
            raise HeartbeatRefused(
                HeartbeatFault.FROM_THE_FUTURE,
                f"{signer}, dated beyond {self._skew.total_seconds():.0f}s ahead of this "
                "reader's clock",
            )
        previous = latest.get(health.replica_key)
        if previous is not None:
            previous = previous if previous.tzinfo else previous.replace(tzinfo=UTC)
            # A belief from the future (kept from before heartbeats were signed) blocks
            # nothing: it is no heartbeat this gate would believe.
            if previous <= now + self._skew and health.at <= previous:
                raise HeartbeatRefused(
                    HeartbeatFault.NOT_NEWER,
                    f"{signer}, not newer than the last heartbeat believed for its component "
                    "(written again, or out of order)",
                )
        if health.at > now or health.heard_at is not None:
            # Dated ahead of this reader (a clock ahead, within the skew): as fresh as it is
            # heard, no fresher (PartnerHealth.fresh_at). What a sender wrote there is not
            # the reader's.
            return health.model_copy(update={"heard_at": now if health.at > now else None})
        return health


_HEALTH_FIELDS = frozenset(PartnerHealth.model_fields)


class _NoKeys:
    @property
    def public(self) -> Mapping[str, PublicKey]:
        return {}

    @property
    def read_at(self) -> datetime | None:
        return None

    def look_again(self) -> bool:
        return False
