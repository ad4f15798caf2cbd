"""The calls a write-off of what was never reserved makes (a release after a control
decided in degraded mode: the partner answers 02, the adapter reserves, then writes off,
each call under a key derived from the write-off's) are kept like its own.

Found by the review of stop 53's change, each test failing first:

1. ``CertexHttpPartner.may_still_apply`` and ``sent_before`` knew a request's base keys
   only (``_keys``): a derived call that timed out is one the partner may still apply,
   yet the write-off was not named in the commit (``Replayer.follow_ups_unsettled``), and
   a next owner asking it as a repeat took the partner's 409 "still processing" to the
   derived write-off for a rejection (MISMATCH ``HTTP409``, FOLLOW_UP_FAILED) while the
   partner wrote the goods off: stop 39-SF's SF2, back for the derived keys.
2. A rejection (400, 409 to a first attempt, 422) of the derived reservation was mapped
   as a reservation's (UNAVAILABLE), so the write-off was queued and replayed every round
   for ever, holding its partition's commit: stop 30's defect, back through it.
3. The hub's write-off named no country of destination, so the reservation made for it
   skipped the partner's destination check (08) that the lodging's would have made: a
   licence was written off for a destination it does not cover, with no alert.

Driven without Kafka: the adapters' client and replayer against the partner simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web

from adapters.base.pending import PendingOperations
from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from gun_hub.domain.routing import RoutingTable
from tests.adapter_fixtures import Published, partner_request, replayer_publishing_to
from tests.builders import declaration, document, goods_item
from tests.partner_fixtures import (
    partner_client,
    running_partner,
    set_faults,
    slow_partner_client,
)
from tests.unit.test_a_release_after_a_degraded_control_writes_the_goods_off import (
    through_the_adapter,
)
from tests.unit.test_pipeline import SOURCE, Hub

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000791"
HELD_S = 5.0
WRITTEN = "/written-off-once-reserved"
RESERVED = "/reserved-for-release"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def write_off() -> AuthorityRequest:
    """The release's write-off (v2) of what a control decided in degraded mode kept: the
    partner holds nothing for the declaration (its reservation never reached it)."""
    return partner_request(
        Operation.WRITE_OFF, reference=DECL, version=2, document=DOC, quantity="10"
    )


class HoldsTheDerivedWriteOff:
    """A partner still processing the derived write-off: its first call held HELD_S, then
    applied; meanwhile a call with its key is answered 409 (being processed)."""

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.applied = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        if not key.endswith(WRITTEN):
            return await handler(request)
        if key in self.held:
            return web.json_response(
                {"error": "a request with this Idempotency-Key is being processed"}, status=409
            )
        if self.applied.is_set():
            return await handler(request)
        self.held.add(key)
        await request.read()  # kept: the partner goes on once its caller has gone
        await asyncio.sleep(HELD_S)
        try:
            return await handler(request)
        finally:
            self.held.discard(key)
            self.applied.set()


async def test_a_derived_write_off_that_timed_out_is_one_the_partner_may_still_apply(
    samples: Path, tmp_path: Path
) -> None:
    holding = HoldsTheDerivedWriteOff()
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [holding.middleware]
    ) as sim:
        client = slow_partner_client(sim)
        pending = PendingOperations(tmp_path / "pending.sqlite")
        replayer = replayer_publishing_to(pending, client, [])
        try:
            request = write_off()
            [answer] = await replayer.ask(request, 0, 10)
            assert answer.verdict is Verdict.UNAVAILABLE, answer.detail
            may_still_apply = client.may_still_apply(request)
            named = [r.request_id for r in replayer.follow_ups_unsettled()]
        finally:
            await client.close()
            pending.close()
        await asyncio.wait_for(holding.applied.wait(), HELD_S + 10)
        [line] = [b for b in sim.store.balances(DOC) if b.line == 1]
    assert (line.written_off, line.reserved) == (Decimal(10), Decimal(0))  # the partner did
    assert may_still_apply, "a derived call that timed out is one the partner may apply"
    assert named == [request.request_id], f"the commit names {named}"


async def test_a_derived_write_off_still_processed_is_no_rejection_for_the_next_owner(
    samples: Path, tmp_path: Path
) -> None:
    """The first owner's derived write-off held by the partner; the next owner asks the
    write-off as a repeat (``sent_before=True``, as if the commit had named it): the
    partner's 409 to the derived key must be "still in progress", not a rejection."""
    holding = HoldsTheDerivedWriteOff()
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [holding.middleware]
    ) as sim:
        first = slow_partner_client(sim)
        first_pending = PendingOperations(tmp_path / "first.sqlite")
        try:
            [answer] = await replayer_publishing_to(first_pending, first, []).ask(
                write_off(), 0, 10
            )
            assert answer.verdict is Verdict.UNAVAILABLE, answer.detail
        finally:
            await first.close()
            first_pending.close()
        assert holding.held, "the derived write-off is still held at the partner"

        second = slow_partner_client(sim)
        second_pending = PendingOperations(tmp_path / "second.sqlite")
        published: Published = []
        try:
            [again] = await replayer_publishing_to(second_pending, second, published).ask(
                write_off(), 0, 10, sent_before=True
            )
        finally:
            await second.close()
            second_pending.close()
        await asyncio.wait_for(holding.applied.wait(), HELD_S + 10)
        [line] = [b for b in sim.store.balances(DOC) if b.line == 1]
    assert (line.written_off, line.reserved) == (Decimal(10), Decimal(0))  # the partner did
    assert (again.verdict, again.partner_code) == (Verdict.UNAVAILABLE, None), (
        f"the next owner answered the write-off {again.verdict.value} {again.partner_code} "
        f"({again.detail}) while the partner was writing the goods off: its 409 'being "
        "processed' to the derived key read as a rejection (FOLLOW_UP_FAILED at the hub)"
    )


@pytest.mark.parametrize("status", [400, 409, 422])
async def test_a_rejected_reservation_for_a_release_ends_the_write_off(
    samples: Path, tmp_path: Path, status: int
) -> None:
    """The partner read the reservation the write-off makes and will not apply it (a
    malformed call for it, a conflict with its ledger, a key reused for another body):
    sent again it is rejected again. The write-off must end (a refusal naming the
    rejection, FOLLOW_UP_FAILED at the hub), not stay queued and replayed for ever."""
    rejected: list[str] = []

    @web.middleware
    async def rejecting(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key", "")
        if request.method == "PUT" and key.endswith(RESERVED):
            rejected.append(key)
            return web.json_response({"error": "reservation refused as sent"}, status=status)
        return await handler(request)

    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db", [rejecting]
    ) as sim:
        client = partner_client(sim.url, retry_attempts=1)
        pending = PendingOperations(tmp_path / "pending.sqlite")
        published: Published = []
        replayer = replayer_publishing_to(pending, client, published)
        try:
            [answer] = await replayer.ask(write_off(), 0, 10)
            for _ in range(3):
                await replayer.replay_all()
            queued = len(pending)
        finally:
            await client.close()
            pending.close()
    assert (answer.verdict, answer.partner_code) == (Verdict.MISMATCH, f"HTTP{status}"), (
        answer.detail
    )
    assert queued == 0, f"{queued} operation(s) stay queued, replayed every round for ever"


# -- 3. the reservation made for a release checks less than the lodging's would --------

LICENCE = "LEMG.FR.2026.0042"  # samples/partners/dga-documents.json: for FR, 50 NAR


def _licence_xml(version: int, stage: Stage, destination: str) -> bytes:
    from gun_hub.xml.declaration_codec import encode_declaration

    declared = declaration(
        reference=DECL,
        version=version,
        stage=stage,
        items=(
            goods_item(1, (document("LEMG", LICENCE, 1, "5", "NAR"),), commodity_code="9301100000"),
        ),
    ).model_copy(update={"direction": Direction.EXPORT, "country_of_destination": destination})
    return encode_declaration(declared)


async def test_a_licence_written_off_for_a_release_is_checked_for_its_destination(
    routing_table: RoutingTable, keys_dir: Path, samples: Path, tmp_path: Path
) -> None:
    """A war-material licence for FR quoted by an export to US, lodged while SIGALE is
    down (degraded mode), released after the office's control. The hub's write-off
    request carries no country of destination (``requests_for``), so the reservation the
    adapter makes for it (``_write_off_what_was_never_reserved``) skips the partner's
    destination check (08) that the lodging's reservation would have made: the licence is
    written off for a destination it does not cover, with no alert."""
    hub = Hub(routing_table, keys_dir)
    async with running_partner(
        samples / "partners" / "dga-documents.json", tmp_path / "ledger.db"
    ) as sim:
        # The check the lodging's reservation makes (the partner up): refused, 08.
        probe = partner_client(sim.url, retry_attempts=1)
        try:
            lodged_up = Hub(routing_table, keys_dir)
            sent_up = lodged_up.intake.handle(_licence_xml(1, Stage.LODGED, "US"), SOURCE)
            [record] = sent_up.to(lodged_up.topics.requests("dga"))
            request = AuthorityRequest.model_validate_json(
                lodged_up.envelope("dga").open(record.value, topic=record.topic).payload
            )
            [refused] = await probe.answer(
                request.model_copy(update={"reference": "26FR000690I0000792"})
            )
        finally:
            await probe.close()
        assert refused.partner_code == "08", refused

        await set_faults(sim.url, outage=True)
        sent = hub.intake.handle(_licence_xml(1, Stage.LODGED, "US"), SOURCE)
        await through_the_adapter(hub, sim.url, sent, "dga")
        await set_faults(sim.url, outage=False)
        release = hub.intake.handle(
            _licence_xml(2, Stage.RELEASED_AFTER_CONTROL, "US"),
            dataclasses.replace(SOURCE, offset=1),
        )
        handled = await through_the_adapter(hub, sim.url, release, "dga")
        [balance] = [b for b in sim.store.balances(LICENCE) if b.line == 1]
    answers = [(e.kind.value, e.detail) for out in handled for e in hub.statuses(out)]
    assert balance.written_off == 0, (
        f"{balance.written_off} NAR of a licence for FR written off for an export to US "
        f"without the destination check the lodging's reservation refuses (08); the hub "
        f"recorded {answers}"
    )
