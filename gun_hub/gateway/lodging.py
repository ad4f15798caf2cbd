"""The one path every gateway channel takes: check, seal, publish.

A declaration is checked exactly as the hub's intake checks it (the same codec with the
same :class:`~gun_hub.xml.safe_parse.XmlLimits` from ``GUN_HUB_HUB__MAX_DECLARATION_BYTES``,
and the same "would its decision fit" rule), so that whoever lodged it hears the precise
reason at once, instead of a REFUSE decision they may never read. The hub stays the
authority: it opens and checks every record again.

Then the declaration is checked against who lodged it (a trader lodges for its own EORI
only), sealed with the gateway party's keys (signed by the gateway, encrypted to the hub:
ADR 0011) and published keyed by its reference, acknowledged by every in-sync replica.

Parsing and sealing are CPU work (a 1 MiB declaration takes tens of milliseconds): they
run in one thread of their own, so the HTTP listener's loop stays responsive. One
thread, because the codec's lxml parser must not be shared between threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from prometheus_client import Counter

from gun_contract.limits import max_sealed_payload_bytes
from gun_contract.model.declaration import Declaration
from gun_hub.domain.reference_namespace import (
    is_declarants_reference,
    the_declarants_references,
)
from gun_hub.domain.trader_stages import not_the_traders_stage, set_by_customs
from gun_hub.pipeline.intake import (
    REFERENCE_NOT_THE_DECLARANTS,
    STAGE_NOT_THE_DECLARANTS,
    TOO_LARGE_TO_DECIDE,
    too_large_to_decide,
)
from gun_hub.xml.declaration_codec import DeclarationCodec
from gun_hub.xml.safe_parse import XmlLimits, XmlRejected, XmlRejectionKind

log = logging.getLogger(__name__)

DECLARANT_MISMATCH = "DECLARANT_MISMATCH"
# Sealed, the declaration is more than the producer sends in one record: with
# GUN_HUB_HUB__MAX_DECLARATION_BYTES raised past what travels sealed, a declaration can
# pass every check and still never be published.
TOO_LARGE_TO_TRAVEL = "DECLARATION_TOO_LARGE_TO_TRAVEL"
OVERSIZED = f"XML_{XmlRejectionKind.OVERSIZED.value}"

LODGEMENTS = Counter(
    "gun_hub_gateway_lodgements_total",
    "Declarations offered to the intake gateway, by channel (http, file) and result "
    "(lodged, unpublished, or the refusal kind: XML_*, DECLARATION_TOO_LARGE_TO_DECIDE, "
    "DECLARATION_TOO_LARGE_TO_TRAVEL, "
    "DECLARANT_MISMATCH, REFERENCE_NOT_THE_DECLARANTS, STAGE_NOT_THE_DECLARANTS; over HTTP "
    "also busy: every lodgement in flight taken, 503; trader_busy: the trader's share taken, 429; "
    "body_timeout: the body too slow, 408; body_malformed: its chunked framing wrong, 400; "
    "body_cut_short: its client gone mid-body).",
    ["channel", "result"],
)


class Sender(Protocol):
    """What publishes on the declarations topic
    (:class:`gun_hub.gateway.sender.DeclarationSender`)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def seal(self, data: bytes) -> bytes: ...
    async def publish(self, value: bytes, reference: str) -> asyncio.Future[Any]: ...


class LodgementRefused(Exception):
    """A declaration the hub would not accept as it is, or not from this sender.

    ``kind`` is the hub's own dead-letter kind for the same fault (``XML_SCHEMA``, ...)
    or ``DECLARANT_MISMATCH``; ``status`` the HTTP answer that says it (400, 403, 413).
    """

    def __init__(self, kind: str, reason: str, status: int) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.status = status


class PublishFailed(Exception):
    """The broker did not confirm the lodgement in time (or refused it). The record may
    still reach the topic: lodging the same version again is safe, the hub decides a
    version once and ignores an equal one as stale."""


@dataclass(frozen=True, slots=True)
class Lodger:
    """Who is lodging, as the channel authenticated it.

    ``eoris``: the declarants it may lodge for (None: any; a drop folder trusted as a
    whole). ``described``: how a refusal names it ("the portal token's trader").
    """

    described: str
    eoris: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class Lodged:
    """A declaration on the declarations topic, where the broker put it."""

    reference: str
    version: int
    declarant: str
    partition: int
    offset: int


class DeclarationCheck:
    """The hub's intake checks, run before anything is published."""

    def __init__(self, max_declaration_bytes: int) -> None:
        self.max_bytes = max_declaration_bytes
        self._codec = DeclarationCodec(XmlLimits(max_bytes=max_declaration_bytes))

    def too_large(self, size: int | None = None) -> LodgementRefused:
        """The refusal of a body over the limit (``size``: its length, when known)."""
        what = f"document is {size} bytes, over" if size is not None else "document is over"
        return LodgementRefused(
            OVERSIZED,
            f"{what} the limit of {self.max_bytes} (the hub's GUN_HUB_HUB__MAX_DECLARATION_BYTES)",
            413,
        )

    def check(self, data: bytes, lodger: Lodger) -> Declaration:
        """The declaration in ``data``, or :class:`LodgementRefused` with the reason."""
        if len(data) > self.max_bytes:
            raise self.too_large(len(data))
        try:
            declaration = self._codec.decode(data)
        except XmlRejected as rejection:
            kind = f"XML_{rejection.kind.value}"
            raise LodgementRefused(
                kind, str(rejection), 413 if kind == OVERSIZED else 400
            ) from None
        beyond = too_large_to_decide(declaration)
        if beyond is not None:
            raise LodgementRefused(TOO_LARGE_TO_DECIDE, beyond, 413)
        eori = declaration.declarant.eori
        if lodger.eoris is not None and eori not in lodger.eoris:
            raise LodgementRefused(
                DECLARANT_MISMATCH,
                f"the declaration's declarant is {eori}, but {lodger.described} lodges for "
                f"{', '.join(sorted(lodger.eoris)) or 'nobody'} only: a trader lodges its "
                "own declarations",
                403,
            )
        if not is_declarants_reference(declaration.reference, eori):
            raise LodgementRefused(
                REFERENCE_NOT_THE_DECLARANTS,
                f"reference {declaration.reference} is not {eori}'s: a declaration lodged "
                f"here takes {the_declarants_references(eori)}",
                403,
            )
        if set_by_customs(declaration.stage):
            raise LodgementRefused(
                STAGE_NOT_THE_DECLARANTS, not_the_traders_stage(declaration.stage), 403
            )
        return declaration


def share_of(max_in_flight: int) -> int:
    """A trader's share of the lodgements in flight when none is set: a quarter, so that
    one trader never holds them all (at least 1)."""
    return max(1, max_in_flight // 4)


class Gateway:
    """Checks, seals and publishes declarations for every channel.

    ``busy`` says when ``max_in_flight`` lodgements are already under way (the HTTP
    channel then answers 503 rather than queueing without bound). Each trader may hold
    ``trader_share`` of them (``max_in_flight_per_trader``, by default a quarter):
    :meth:`holds_its_share` says when it does, and the HTTP channel then answers it 429,
    so that one trader's uploads cannot shut every other trader out.
    """

    def __init__(
        self,
        sender: Sender,
        check: DeclarationCheck,
        *,
        max_in_flight: int = 32,
        max_in_flight_per_trader: int | None = None,
        publish_timeout_s: float = 15.0,
    ) -> None:
        self._sender = sender
        self._check = check
        self._max_in_flight = max_in_flight
        self.trader_share = min(max_in_flight, max_in_flight_per_trader or share_of(max_in_flight))
        self._publish_timeout_s = publish_timeout_s
        self._in_flight = 0
        # Only traders with a lodgement under way have an entry: at most max_in_flight.
        self._in_flight_of: dict[str, int] = {}
        self._worker: ThreadPoolExecutor | None = None
        self.ready = False

    @property
    def max_bytes(self) -> int:
        return self._check.max_bytes

    @property
    def busy(self) -> bool:
        return self._in_flight >= self._max_in_flight

    @property
    def under_way(self) -> int:
        """How many lodgements are under way (counted from a body's first byte)."""
        return self._in_flight

    def holds_its_share(self, trader: str) -> bool:
        """Whether ``trader`` (an EORI) has ``trader_share`` lodgements under way."""
        return self._in_flight_of.get(trader, 0) >= self.trader_share

    def too_large(self, channel: str, size: int | None = None) -> LodgementRefused:
        """The refusal of a body over the limit that the check never sees, refused before
        it is read whole (``size``: its length, when known), counted under ``channel`` as
        the check's refusals are (review of the intake gateway: HTTP's 413s were not)."""
        refusal = self._check.too_large(size)
        LODGEMENTS.labels(channel=channel, result=refusal.kind).inc()
        return refusal

    async def start(self) -> None:
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-check")
        try:
            await self._sender.start()
        except BaseException:
            self._worker.shutdown()
            raise
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self._sender.stop()
        if self._worker is not None:
            self._worker.shutdown(wait=True)

    def _check_and_seal(self, data: bytes, lodger: Lodger) -> tuple[Declaration, bytes]:
        declaration = self._check.check(data, lodger)
        return declaration, self._sender.seal(data)

    @contextmanager
    def in_flight(self, trader: str | None = None) -> Iterator[None]:
        """One lodgement under way, counted toward ``busy`` and, when it is ``trader``'s,
        toward its share (the HTTP channel counts its bodies from their first byte, before
        :meth:`lodge`, with ``counted=True``; the file drop's are nobody's share)."""
        self._in_flight += 1
        if trader is not None:
            self._in_flight_of[trader] = self._in_flight_of.get(trader, 0) + 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if trader is not None:
                left = self._in_flight_of.pop(trader) - 1
                if left:
                    self._in_flight_of[trader] = left

    async def lodge(
        self, data: bytes, lodger: Lodger, *, channel: str, counted: bool = False
    ) -> Lodged:
        """Check ``data``, seal it and publish it; where the broker put it. ``counted``:
        the caller holds :meth:`in_flight` for it already.

        Raises :class:`LodgementRefused` (nothing was published; also when the producer
        refuses the sealed declaration as too large for a record) or
        :class:`PublishFailed` (the broker did not confirm in time)."""
        if self._worker is None:
            raise RuntimeError("Gateway.start() was not called")
        with nullcontext() if counted else self.in_flight():
            return await self._lodge(data, lodger, channel)

    async def _lodge(self, data: bytes, lodger: Lodger, channel: str) -> Lodged:
        loop = asyncio.get_running_loop()
        try:
            declaration, value = await loop.run_in_executor(
                self._worker, self._check_and_seal, data, lodger
            )
        except LodgementRefused as refused:
            LODGEMENTS.labels(channel=channel, result=refused.kind).inc()
            raise
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                delivery = await self._sender.publish(value, declaration.reference)
                metadata = await delivery
        except MessageSizeTooLargeError:
            # The producer's refusal before sending: the same at every try, so a refusal
            # to say, not a broker to wait for (review of the intake gateway: the file
            # drop sealed it again at every pass, for ever; HTTP answered 503 for ever).
            LODGEMENTS.labels(channel=channel, result=TOO_LARGE_TO_TRAVEL).inc()
            raise LodgementRefused(
                TOO_LARGE_TO_TRAVEL,
                f"sealed, the declaration is {len(value)} bytes, more than one record on the "
                f"declarations topic carries: a declaration of at most "
                f"{max_sealed_payload_bytes()} bytes travels sealed (the hub's "
                "GUN_HUB_HUB__MAX_DECLARATION_BYTES is set above that)",
                413,
            ) from None
        except (KafkaError, TimeoutError) as err:
            LODGEMENTS.labels(channel=channel, result="unpublished").inc()
            raise PublishFailed(
                f"the broker did not confirm {declaration.reference} v{declaration.version} "
                f"({type(err).__name__})"
            ) from None
        LODGEMENTS.labels(channel=channel, result="lodged").inc()
        lodged = Lodged(
            reference=declaration.reference,
            version=declaration.version,
            declarant=declaration.declarant.eori,
            partition=metadata.partition,
            offset=metadata.offset,
        )
        log.info(
            "lodged %s v%d through %s on partition %d at offset %d",
            lodged.reference,
            lodged.version,
            channel,
            lodged.partition,
            lodged.offset,
        )
        return lodged


def lodger_for(eoris: Collection[str], described: str) -> Lodger:
    """A lodger allowed ``eoris`` (an empty collection: any declarant)."""
    return Lodger(described, frozenset(eoris) if eoris else None)
