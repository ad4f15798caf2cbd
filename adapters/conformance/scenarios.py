"""The conformance scenarios: what every authority's adapter must do, checked end to end.

Each scenario loads its own documents (references unique to the run), asks the adapter
through Kafka as the hub would, and checks both the answer and the partner's ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from adapters.conformance.harness import Harness, Quote, ScenarioFailed, today
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse, Operation
from gun_contract.model.partner_codes import PARTNER_CODE, STALE_VERSION
from gun_contract.model.verdicts import Verdict

Run = Callable[[Harness], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    run: Run


def expect(
    response: AuthorityResponse, *verdicts: Verdict, codes: tuple[str | None, ...] = ()
) -> None:
    seen = [a.verdict for a in response.answers]
    if seen != list(verdicts):
        details = "; ".join(
            f"{a.verdict.value} {a.partner_code or ''} {a.detail or ''}".strip()
            for a in response.answers
        )
        raise ScenarioFailed(f"expected {[v.value for v in verdicts]}, got: {details}")
    outside = [a.partner_code for a in response.answers if not _decision_code(a.partner_code)]
    if outside:
        # The hub would leave it out of its decision (found by review, stop 36).
        raise ScenarioFailed(
            f"partner codes {outside} do not fit decision.xsd's PartnerCodeType "
            f"{PARTNER_CODE.pattern}"
        )
    if codes and [a.partner_code for a in response.answers] != list(codes):
        seen_codes = [a.partner_code for a in response.answers]
        raise ScenarioFailed(f"expected partner codes {list(codes)}, got {seen_codes}")


def _decision_code(code: str | None) -> bool:
    return code is None or PARTNER_CODE.fullmatch(code) is not None


async def expect_ledger(h: Harness, reference: str, reserved: str, written_off: str = "0") -> None:
    seen = await h.ledger(reference)
    if seen != (Decimal(reserved), Decimal(written_off)):
        raise ScenarioFailed(
            f"ledger of {reference}: reserved {seen[0]}, written off {seen[1]}; "
            f"expected {reserved} and {written_off}"
        )


async def reserve(
    h: Harness, reference: str, quantity: str = "10", **quote: Any
) -> AuthorityResponse:
    return await h.ask(h.request(Operation.RESERVE, [Quote(reference, quantity, **quote)]))


# -- the scenarios ---------------------------------------------------------------------------


async def valid_reservation(h: Harness) -> None:
    doc = await h.seed("valid")
    expect(await reserve(h, doc, "40"), Verdict.VALID)
    await expect_ledger(h, doc, "40")


async def unknown_document(h: Harness) -> None:
    expect(await reserve(h, h.document_reference("never-issued"), "1"), Verdict.NOT_FOUND)


def refusal(
    label: str, verdict: Verdict, code: str, seed: dict[str, Any], quote: dict[str, Any]
) -> Run:
    async def run(h: Harness) -> None:
        doc = await h.seed(label, **seed)
        claim = {"quantity": "10", **quote}
        expect(await reserve(h, doc, **claim), verdict, codes=(code,))
        await expect_ledger(h, doc, "0")

    return run


async def already_used_02(h: Harness) -> None:
    doc = await h.seed(
        "used", lines=[{"line": 1, "commodity_code": "0302", "quantity": "10", "unit": "KGM"}]
    )
    expect(await reserve(h, doc, "10"), Verdict.VALID)
    expect(await reserve(h, doc, "1"), Verdict.ALREADY_USED, codes=("02",))
    await expect_ledger(h, doc, "10")


async def write_off_exists_06(h: Harness) -> None:
    doc = await h.seed("written")
    request = h.request(Operation.RESERVE, [Quote(doc, "10")])
    expect(await h.ask(request), Verdict.VALID)
    write_off = h.request(Operation.WRITE_OFF, [Quote(doc, "10")], reference=request.reference)
    expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    again = h.request(Operation.RESERVE, [Quote(doc, "20")], reference=request.reference, version=2)
    expect(await h.ask(again, copies=1), Verdict.ALREADY_USED, codes=("06",))
    await expect_ledger(h, doc, "0", "10")


async def check_never_reserves(h: Harness) -> None:
    doc = await h.seed("check")
    expect(await h.ask(h.request(Operation.CHECK, [Quote(doc, "90")])), Verdict.VALID)
    expect(
        await h.ask(h.request(Operation.CHECK, [Quote(doc, "900")])),
        Verdict.QUANTITY_INSUFFICIENT,
        codes=("05",),
    )
    await expect_ledger(h, doc, "0")


async def partial_quantities(h: Harness) -> None:
    doc = await h.seed("partial")
    expect(await reserve(h, doc, "40"), Verdict.VALID)
    expect(await reserve(h, doc, "40"), Verdict.VALID)
    expect(await reserve(h, doc, "30"), Verdict.QUANTITY_INSUFFICIENT, codes=("05",))
    expect(await reserve(h, doc, "20"), Verdict.VALID)
    await expect_ledger(h, doc, "100")


async def restated_not_added(h: Harness) -> None:
    doc = await h.seed("restate")
    reference = h.declaration_reference()
    for version, quantity in enumerate(("40", "60", "25"), start=1):
        request = h.request(
            Operation.RESERVE, [Quote(doc, quantity)], reference=reference, version=version
        )
        expect(await h.ask(request), Verdict.VALID)
    await expect_ledger(h, doc, "25")


async def cancellation_gives_back(h: Harness) -> None:
    doc = await h.seed("cancel")
    request = h.request(Operation.RESERVE, [Quote(doc, "100")])
    expect(await h.ask(request), Verdict.VALID)
    delete = h.request(
        Operation.DELETE, [Quote(doc, None, line=None, unit=None)], reference=request.reference
    )
    expect(await h.ask(delete), Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0")
    expect(await reserve(h, doc, "100"), Verdict.VALID)


async def write_off_consumes(h: Harness) -> None:
    doc = await h.seed("writeoff")
    request = h.request(Operation.RESERVE, [Quote(doc, "35")])
    expect(await h.ask(request), Verdict.VALID)
    write_off = h.request(Operation.WRITE_OFF, [Quote(doc, "35")], reference=request.reference)
    expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "35")
    # Redelivered: the same idempotency key, so the same answer, and nothing written twice.
    expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "35")


async def write_off_without_reservation(h: Harness) -> None:
    """Goods released with nothing reserved for them at the partner (the reservation
    never reached it: decided in degraded mode, then released after the office's own
    check): reserved, then written off, under the release's version (review of stop 52:
    answered 02 and nothing written off, the certificate kept the quantity that left)."""
    doc = await h.seed("nowriteoff")
    write_off = h.request(Operation.WRITE_OFF, [Quote(doc, "5")])
    expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "5")
    # Redelivered: each of its calls carries its own key, so nothing is written twice.
    expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "5")


async def write_off_without_reservation_beyond_the_balance(h: Harness) -> None:
    """The same, the balance taken by others meanwhile: the reservation's refusal is the
    write-off's answer (the goods left without cover: the hub reports it), nothing
    written off."""
    doc = await h.seed("nocover")
    expect(
        await h.ask(h.request(Operation.WRITE_OFF, [Quote(doc, "150")])),
        Verdict.QUANTITY_INSUFFICIENT,
        codes=("05",),
    )
    await expect_ledger(h, doc, "0")


async def redelivery_reserves_once(h: Harness) -> None:
    doc = await h.seed("redelivery")
    request = h.request(Operation.RESERVE, [Quote(doc, "70")])
    expect(await h.ask(request, copies=2), Verdict.VALID)
    await expect_ledger(h, doc, "70")


async def two_documents_answered_each(h: Harness) -> None:
    doc = await h.seed("pair")
    response = await h.ask(
        h.request(
            Operation.RESERVE,
            [
                Quote(doc, "10", goods_item=1),
                Quote(h.document_reference("pair-missing"), "10", goods_item=2),
            ],
        )
    )
    expect(response, Verdict.VALID, Verdict.NOT_FOUND)
    await expect_ledger(h, doc, "10")


async def goods_items_summed_on_one_line(h: Harness) -> None:
    doc = await h.seed("summed")
    response = await h.ask(
        h.request(
            Operation.RESERVE, [Quote(doc, "30", goods_item=1), Quote(doc, "45", goods_item=2)]
        )
    )
    expect(response, Verdict.VALID, Verdict.VALID)
    await expect_ledger(h, doc, "75")


async def partner_down(h: Harness) -> None:
    doc = await h.seed("down")
    await h.faults(outage=True)
    try:
        began = time.monotonic()
        expect(await reserve(h, doc, "1"), Verdict.UNAVAILABLE)
        # Once the circuit is open the answer comes without waiting for any timeout.
        began = time.monotonic()
        expect(await reserve(h, doc, "1"), Verdict.UNAVAILABLE)
        if time.monotonic() - began > h.answer_timeout_s / 2:
            raise ScenarioFailed("UNAVAILABLE took too long: the circuit did not open")
    finally:
        await h.faults()
    await h.until_partner_answers(doc)
    await expect_ledger(h, doc, "0")


async def partner_slower_than_deadline(h: Harness) -> None:
    doc = await h.seed("slow")
    await h.faults(latency_ms=h.slow_ms)
    try:
        expect(await reserve(h, doc, "1"), Verdict.UNAVAILABLE)
    finally:
        await h.faults()
    await h.until_partner_answers(doc)


async def transient_error_retried(h: Harness) -> None:
    doc = await h.seed("transient")
    await h.faults(fail_next=1)
    expect(await reserve(h, doc, "5"), Verdict.VALID)
    await expect_ledger(h, doc, "5")


async def nonsense_is_never_a_pass(h: Harness) -> None:
    doc = await h.seed("nonsense")
    await h.faults(garbage=True)
    try:
        expect(await reserve(h, doc, "5"), Verdict.UNAVAILABLE)
    finally:
        await h.faults()
    await h.until_partner_answers(doc)


async def write_off_replayed_after_outage(h: Harness) -> None:
    doc = await h.seed("replay")
    request = h.request(Operation.RESERVE, [Quote(doc, "15")])
    expect(await h.ask(request), Verdict.VALID)
    write_off = h.request(Operation.WRITE_OFF, [Quote(doc, "15")], reference=request.reference)
    await h.faults(outage=True)
    try:
        expect(await h.ask(write_off), Verdict.UNAVAILABLE)
    finally:
        await h.faults()
    # The adapter replays it by itself and answers again, VALID this time.
    *_, replayed = await h.answers(write_off.request_id, 2, h.answer_timeout_s * 3)
    expect(replayed, Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "15")


async def write_off_answered_nonsense_is_replayed(h: Harness) -> None:
    """An answer the adapter cannot read is an outage for a follow-up too: queued and
    replayed, never dead-lettered unanswered (found by review, stop 37: a refusal whose
    code was an object raised out of the client, and the write-off was lost)."""
    doc = await h.seed("nonsense-writeoff")
    request = h.request(Operation.RESERVE, [Quote(doc, "12")])
    expect(await h.ask(request), Verdict.VALID)
    write_off = follow_up(h, Operation.WRITE_OFF, doc, request.reference)
    await h.faults(garbage=True)
    try:
        expect(await h.ask(write_off), Verdict.UNAVAILABLE)
    finally:
        await h.faults()
    *_, replayed = await h.answers(write_off.request_id, 2, h.answer_timeout_s * 3)
    expect(replayed, Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "12")


def follow_up(
    h: Harness, operation: Operation, doc: str, reference: str, version: int = 1
) -> AuthorityRequest:
    """A write-off, deletion or give-back as the hub sends it: the document, no quantity."""
    return h.request(
        operation,
        [Quote(doc, None, line=None, unit=None)],
        reference=reference,
        version=version,
    )


async def lost_answer_retried_once(h: Harness) -> None:
    doc = await h.seed("lost")
    request = h.request(Operation.RESERVE, [Quote(doc, "25")])
    expect(await h.ask(request), Verdict.VALID)
    # The partner writes off, then its answer is lost: the adapter times out and retries
    # with the same idempotency key, and gets the first answer, not a second write-off.
    await h.faults(lose_next=1, hang_s=h.slow_ms / 1000)
    try:
        write_off = follow_up(h, Operation.WRITE_OFF, doc, request.reference)
        expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    finally:
        await h.faults()
    await expect_ledger(h, doc, "0", "25")


async def two_documents_written_off_with_keys_per_client(h: Harness) -> None:
    """Each document's call carries its own idempotency key: a partner that remembers keys
    per client, not per document (the IETF draft, Stripe-like APIs), writes off both.
    With one key for the whole request it answered the second document from the first
    one's memory, never writing it off (found by review, stop 37, J1)."""
    first, second = await h.seed("perclient-a"), await h.seed("perclient-b")
    request = h.request(
        Operation.RESERVE,
        [Quote(first, "10", goods_item=1), Quote(second, "20", goods_item=2)],
    )
    expect(await h.ask(request), Verdict.VALID, Verdict.VALID)
    write_off = h.request(
        Operation.WRITE_OFF,
        [
            Quote(first, None, line=None, unit=None, goods_item=1),
            Quote(second, None, line=None, unit=None, goods_item=2),
        ],
        reference=request.reference,
    )
    await h.faults(keys_per_client=True)
    try:
        expect(await h.ask(write_off), Verdict.VALID, Verdict.VALID, codes=("01", "01"))
        # Redelivered: each call's key again, each answered from its own memory.
        expect(await h.ask(write_off), Verdict.VALID, Verdict.VALID, codes=("01", "01"))
    finally:
        await h.faults()
    await expect_ledger(h, first, "0", "10")
    await expect_ledger(h, second, "0", "20")


async def stale_version_refused(h: Harness) -> None:
    doc = await h.seed("stale")
    v2 = h.request(Operation.RESERVE, [Quote(doc, "20")], version=2)
    expect(await h.ask(v2), Verdict.VALID)
    late = follow_up(h, Operation.DELETE, doc, v2.reference, version=1)  # v1's, arriving late
    # The hub contract's code, in the form decision.xsd carries (partner_codes.py).
    expect(await h.ask(late), Verdict.MISMATCH, codes=(STALE_VERSION,))
    await expect_ledger(h, doc, "20")
    [position] = (await h.balance(doc))["positions"]
    if position["version"] != 2:
        raise ScenarioFailed(f"the partner shows version {position['version']}, expected 2")


async def give_back_after_invalidation(h: Harness) -> None:
    doc = await h.seed("giveback")
    request = h.request(Operation.RESERVE, [Quote(doc, "100")])
    expect(await h.ask(request), Verdict.VALID)
    expect(await h.ask(follow_up(h, Operation.WRITE_OFF, doc, request.reference)), Verdict.VALID)
    give_back = follow_up(h, Operation.GIVE_BACK, doc, request.reference, version=2)
    expect(await h.ask(give_back, copies=2), Verdict.VALID, codes=("01",))  # applied once
    await expect_ledger(h, doc, "0", "0")
    given_back = (await h.balance(doc))["given_back"]
    if Decimal(given_back) != 100:
        raise ScenarioFailed(f"given back {given_back}, expected 100")
    expect(await reserve(h, doc, "100"), Verdict.VALID)  # the certificate is usable again


async def queued_deletion_never_overtakes_next_version(h: Harness) -> None:
    doc = await h.seed("order")
    v1 = h.request(Operation.RESERVE, [Quote(doc, "60")])
    expect(await h.ask(v1), Verdict.VALID)
    await h.faults(outage=True)
    try:
        delete_v1 = follow_up(h, Operation.DELETE, doc, v1.reference)
        expect(await h.ask(delete_v1), Verdict.UNAVAILABLE)  # queued for replay
    finally:
        await h.faults()
    await h.until_partner_answers(doc)
    v2 = h.request(Operation.RESERVE, [Quote(doc, "40")], reference=v1.reference, version=2)
    expect(await h.ask(v2), Verdict.VALID)
    await asyncio.sleep(2)  # replay rounds run: v1's deletion must not wipe v2's position
    await expect_ledger(h, doc, "40")
    write_off = follow_up(h, Operation.WRITE_OFF, doc, v1.reference, version=2)
    expect(await h.ask(write_off), Verdict.VALID, codes=("01",))
    await expect_ledger(h, doc, "0", "40")


async def tampered_request_not_acted_on(h: Harness) -> None:
    doc = await h.seed("tampered")
    request = h.request(Operation.RESERVE, [Quote(doc, "50")])
    sealed = bytearray(h.seal(request))
    sealed[len(sealed) // 2] ^= 0x01
    await h.publish(request.reference, bytes(sealed))
    await h.no_answer(request.request_id, 3)
    await expect_ledger(h, doc, "0")


async def reference_with_a_slash(h: Harness) -> None:
    doc = await h.seed("slash/2026.1")
    expect(await reserve(h, doc, "3"), Verdict.VALID)
    await expect_ledger(h, doc, "3")


async def expired_document(h: Harness) -> None:
    doc = await h.seed("expired", valid_until=(today() - timedelta(days=1)).isoformat())
    expect(await reserve(h, doc, "1"), Verdict.INVALID_STATUS, codes=("04",))


def scenarios() -> list[Scenario]:
    line = {"lines": [{"line": 1, "commodity_code": "0302", "quantity": "100", "unit": "KGM"}]}
    refusals: list[tuple[str, Verdict, str, dict[str, Any], dict[str, Any]]] = [
        ("refusal 01: not a base for this operation", Verdict.MISMATCH, "01", {}, {"code": "X999"}),
        (
            "refusal 03: commodity code mismatch",
            Verdict.MISMATCH,
            "03",
            {},
            {"commodity_code": "0101210000"},
        ),
        (
            "refusal 04: inappropriate status",
            Verdict.INVALID_STATUS,
            "04",
            {"status": "CANCELLED"},
            {},
        ),
        (
            "refusal 05: quantities insufficient",
            Verdict.QUANTITY_INSUFFICIENT,
            "05",
            line,
            {"quantity": "101"},
        ),
        ("refusal 07: line mismatch", Verdict.MISMATCH, "07", {}, {"line": 9}),
        (
            "refusal 08: destination mismatch",
            Verdict.MISMATCH,
            "08",
            {"country_of_destination": "DE"},
            {},
        ),
        ("refusal 09: holder mismatch", Verdict.MISMATCH, "09", {"holder": "FR99999999999999"}, {}),
        ("refusal 10: unit mismatch", Verdict.MISMATCH, "10", {}, {"unit": "NAR"}),
        ("refusal 11: quantity cannot be validated", Verdict.MISMATCH, "11", {}, {"line": None}),
    ]
    found: list[Scenario] = [
        Scenario("valid document covering the quantity", valid_reservation),
        Scenario("unknown document", unknown_document),
        Scenario("refusal 02: document already used", already_used_02),
        Scenario("refusal 06: a write-off already exists", write_off_exists_06),
        *(
            Scenario(name, refusal(f"refusal-{code}", verdict, code, seed, quote))
            for name, verdict, code, seed, quote in refusals
        ),
        Scenario("expired document", expired_document),
        Scenario("a document reference holding a slash", reference_with_a_slash),
        Scenario("check reads and never reserves", check_never_reserves),
        Scenario("partial quantities across declarations", partial_quantities),
        Scenario("a reservation restates, never adds", restated_not_added),
        Scenario("cancellation gives the quantity back", cancellation_gives_back),
        Scenario("write-off consumes the reservation, once", write_off_consumes),
        Scenario("write-off without reservation", write_off_without_reservation),
        Scenario(
            "write-off without reservation beyond the balance",
            write_off_without_reservation_beyond_the_balance,
        ),
        Scenario("redelivered request reserves once", redelivery_reserves_once),
        Scenario("each document of a request answered", two_documents_answered_each),
        Scenario("goods items on one line are summed", goods_items_summed_on_one_line),
        Scenario("transient partner error is retried", transient_error_retried),
        Scenario("tampered request is not acted on", tampered_request_not_acted_on),
        Scenario("partner down: UNAVAILABLE promptly", partner_down),
        Scenario("partner slower than the deadline", partner_slower_than_deadline),
        Scenario("unknown partner answer is never a pass", nonsense_is_never_a_pass),
        Scenario("write-off during an outage is replayed", write_off_replayed_after_outage),
        Scenario(
            "write-off answered with nonsense is replayed",
            write_off_answered_nonsense_is_replayed,
        ),
        Scenario("write-off whose answer was lost is applied once", lost_answer_retried_once),
        Scenario(
            "two documents written off, the partner keeping keys per client",
            two_documents_written_off_with_keys_per_client,
        ),
        Scenario("an older version's operation is refused as stale", stale_version_refused),
        Scenario("give-back returns a written-off quantity", give_back_after_invalidation),
        Scenario(
            "a queued deletion never overtakes the next version",
            queued_deletion_never_overtakes_next_version,
        ),
    ]
    return found
