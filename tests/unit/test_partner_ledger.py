"""A partner system's quantity rules and its durable ledger (CERTEX codes, domain.md)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from partner_sim.documents import DocumentLine, DocumentStatus, PartnerDocument
from partner_sim.ledger import ClearanceCode, PositionRequest, RefusalCode, RequestedLine
from partner_sim.store import Answer, IdempotencyKeyReused, LedgerStore, StaleVersion

TODAY = date(2026, 11, 22)
HOLDER = "FR12345678901234"


def ched(status: DocumentStatus = DocumentStatus.VALIDATED, **changes: object) -> PartnerDocument:
    fields: dict[str, object] = {
        "reference": "CHEDP.FR.2026.0001234",
        "type": "N853",
        "status": status,
        "holder": HOLDER,
        "country_of_destination": "FR",
        "valid_from": date(2026, 1, 1),
        "valid_until": date(2026, 12, 31),
        "lines": (DocumentLine(line=1, commodity_code="0302", quantity=Decimal(1000), unit="KGM"),),
    }
    fields.update(changes)
    return PartnerDocument.model_validate(fields)


def position(
    declaration: str = "DECL-1",
    quantity: str | None = "400",
    *,
    line: int | None = 1,
    unit: str | None = "KGM",
    commodity: str = "0302130000",
    holder: str = HOLDER,
    destination: str = "FR",
    document_type: str = "N853",
) -> PositionRequest:
    return PositionRequest(
        declaration=declaration,
        document_type=document_type,
        declarant_eori=holder,
        country_of_destination=destination,
        lines=(
            RequestedLine(
                goods_item=1,
                line=line,
                quantity=Decimal(quantity) if quantity is not None else None,
                unit=unit,
                commodity_code=commodity,
            ),
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> LedgerStore:
    ledger = LedgerStore(tmp_path / "ledger.sqlite")
    ledger.load([ched()])
    return ledger


REF = "CHEDP.FR.2026.0001234"


def test_a_covered_quantity_is_reserved(store: LedgerStore) -> None:
    assert store.reserve(REF, position(quantity="400"), TODAY) is None
    [line] = store.balances(REF)
    assert (line.reserved, line.remaining) == (Decimal(400), Decimal(600))


def test_reserving_twice_restates_instead_of_adding(store: LedgerStore) -> None:
    store.reserve(REF, position(quantity="400"), TODAY)
    store.reserve(REF, position(quantity="400"), TODAY)
    store.reserve(REF, position(quantity="300"), TODAY)
    assert store.balances(REF)[0].reserved == Decimal(300)


def test_quantity_beyond_the_balance_is_refused_with_code_05(store: LedgerStore) -> None:
    store.reserve(REF, position("DECL-1", "700"), TODAY)
    refusal = store.reserve(REF, position("DECL-2", "400"), TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.QUANTITY_INSUFFICIENT
    assert store.balances(REF)[0].reserved == Decimal(700)


def test_a_fully_used_document_is_refused_with_code_02(store: LedgerStore) -> None:
    store.reserve(REF, position("DECL-1", "1000"), TODAY)
    refusal = store.reserve(REF, position("DECL-2", "1"), TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.ALREADY_USED


@pytest.mark.parametrize(
    ("request_", "document", "code"),
    [
        (position(document_type="C640"), ched(), RefusalCode.NOT_A_BASE),
        (position(commodity="0101210000"), ched(), RefusalCode.COMMODITY_MISMATCH),
        (position(), ched(DocumentStatus.CANCELLED), RefusalCode.INAPPROPRIATE_STATUS),
        (position(), ched(valid_until=date(2026, 1, 31)), RefusalCode.INAPPROPRIATE_STATUS),
        (position(line=2), ched(), RefusalCode.LINE_MISMATCH),
        (position(destination="DE"), ched(), RefusalCode.DESTINATION_MISMATCH),
        (position(holder="FR99999999999999"), ched(), RefusalCode.HOLDER_MISMATCH),
        (position(unit="NAR"), ched(), RefusalCode.UNIT_MISMATCH),
        (position(unit=None), ched(), RefusalCode.QUANTITY_NOT_VALIDATABLE),
        (position(line=None), ched(), RefusalCode.QUANTITY_NOT_VALIDATABLE),
    ],
)
def test_each_refusal_reason_has_its_code(
    tmp_path: Path, request_: PositionRequest, document: PartnerDocument, code: RefusalCode
) -> None:
    ledger = LedgerStore(tmp_path / "l.sqlite")
    ledger.load([document])
    refusal = ledger.reserve(REF, request_, TODAY)
    assert refusal is not None
    assert refusal.code is code
    assert ledger.balances(REF)[0].reserved == 0


@pytest.mark.parametrize(
    ("line", "unit"),
    [(1, "KGM"), (1, None), (None, None)],
    ids=["line-without-quantity", "line-without-quantity-or-unit", "neither-line-nor-quantity"],
)
def test_a_claim_stating_no_quantity_is_refused_with_code_11(
    store: LedgerStore, line: int | None, unit: str | None
) -> None:
    """Line and Quantity are optional in declaration.xsd, but every line of a partner
    document authorises a quantity: a claim that states none cannot be validated (CERTEX
    11, "quantities cannot be validated"), it is not a pass. Before, it was ACCEPTED and
    reserved nothing (found by review, stop 36, D7)."""
    claim = position(quantity=None, line=line, unit=unit)
    refusal = store.reserve(REF, claim, TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.QUANTITY_NOT_VALIDATABLE
    checked = store.check(REF, claim, TODAY)
    assert checked is not None
    assert checked.code is RefusalCode.QUANTITY_NOT_VALIDATABLE
    # Nothing held: there is nothing to write off (before: "01", a write-off of nothing).
    assert store.write_off(REF, "DECL-1") is ClearanceCode.NO_RECORD


def test_claims_without_a_quantity_never_get_past_a_fully_used_line(store: LedgerStore) -> None:
    """Five declarations quote the certificate with no quantity, one of them after the line
    is fully used: none is accepted, none is written off with nothing (found by review,
    stop 36, D7)."""
    assert store.reserve(REF, position("DECL-0", "1000"), TODAY) is None
    codes = [
        refusal.code
        for n in range(1, 6)
        if (refusal := store.reserve(REF, position(f"DECL-{n}", None, line=None), TODAY))
    ]
    assert codes == [RefusalCode.QUANTITY_NOT_VALIDATABLE] * 5
    written_off = [store.write_off(REF, f"DECL-{n}") for n in range(1, 6)]
    assert written_off == [ClearanceCode.NO_RECORD] * 5


def test_a_position_claiming_no_line_at_all_is_refused_with_code_11(store: LedgerStore) -> None:
    empty = PositionRequest("DECL-1", "N853", HOLDER, "FR", ())
    refusal = store.reserve(REF, empty, TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.QUANTITY_NOT_VALIDATABLE
    assert store.write_off(REF, "DECL-1") is ClearanceCode.NO_RECORD


def test_one_goods_item_stating_no_quantity_refuses_the_whole_position(
    store: LedgerStore,
) -> None:
    """Two goods items quote the certificate, the second without a quantity: the position
    cannot be validated as a whole, so nothing of it is reserved."""
    first = position(quantity="400").lines[0]
    second = RequestedLine(2, 1, None, None, "0302130000")
    claim = PositionRequest("DECL-1", "N853", HOLDER, "FR", (first, second))
    refusal = store.reserve(REF, claim, TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.QUANTITY_NOT_VALIDATABLE
    assert store.balances(REF)[0].reserved == 0


def test_a_check_never_reserves(store: LedgerStore) -> None:
    assert store.check(REF, position(quantity="900"), TODAY) is None
    assert store.balances(REF)[0].reserved == 0


def test_write_off_consumes_then_reports_already_consumed(store: LedgerStore) -> None:
    store.reserve(REF, position(quantity="250"), TODAY)
    assert store.write_off(REF, "DECL-1") is ClearanceCode.EXECUTED
    assert store.write_off(REF, "DECL-1") is ClearanceCode.ALREADY_CONSUMED
    [line] = store.balances(REF)
    assert (line.reserved, line.written_off, line.remaining) == tuple(map(Decimal, (0, 250, 750)))
    refusal = store.reserve(REF, position(quantity="250"), TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.WRITE_OFF_EXISTS


def test_delete_gives_the_quantity_back(store: LedgerStore) -> None:
    store.reserve(REF, position(quantity="1000"), TODAY)
    assert store.delete(REF, "DECL-1") is ClearanceCode.EXECUTED
    assert store.delete(REF, "DECL-1") is ClearanceCode.NO_RECORD
    assert store.balances(REF)[0].remaining == 1000


def test_the_ledger_survives_a_restart(tmp_path: Path) -> None:
    first = LedgerStore(tmp_path / "l.sqlite")
    first.load([ched()])
    first.reserve(REF, position(quantity="123.5"), TODAY)
    first.close()
    again = LedgerStore(tmp_path / "l.sqlite")
    assert again.balances(REF)[0].reserved == Decimal("123.5")


def test_an_officer_can_force_a_reservation_beyond_the_balance(store: LedgerStore) -> None:
    store.reserve(REF, position("DECL-1", "900"), TODAY)
    store.force(REF, "DECL-2", {1: Decimal(300)})
    [line] = store.balances(REF)
    assert line.reserved == Decimal(1200)
    assert line.remaining == Decimal(-200)  # visible, and every further claim is refused
    refusal = store.reserve(REF, position("DECL-3", "1"), TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.ALREADY_USED


def test_an_amended_certificate_changes_what_can_be_reserved(store: LedgerStore) -> None:
    store.amend(REF, quantities={1: Decimal(2000)})
    assert store.reserve(REF, position(quantity="1500"), TODAY) is None
    store.amend(REF, status=DocumentStatus.SUSPENDED)
    refusal = store.reserve(REF, position("DECL-2", "1"), TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.INAPPROPRIATE_STATUS


def test_a_write_off_can_be_deleted_by_hand_but_not_an_active_reservation(
    store: LedgerStore,
) -> None:
    assert store.delete_write_off(REF, "DECL-1") is ClearanceCode.NO_RECORD
    store.reserve(REF, position(quantity="100"), TODAY)
    assert store.delete_write_off(REF, "DECL-1") is ClearanceCode.ACTIVE_RESERVATION_EXISTS
    store.write_off(REF, "DECL-1")
    assert store.delete_write_off(REF, "DECL-1") is ClearanceCode.EXECUTED
    assert store.balances(REF)[0].remaining == 1000


def test_a_write_off_on_a_document_whose_status_changed_says_so(store: LedgerStore) -> None:
    store.reserve(REF, position(quantity="100"), TODAY)
    store.amend(REF, status=DocumentStatus.REPLACED)
    assert store.write_off(REF, "DECL-1") is ClearanceCode.EXECUTED_STATUS_CHANGED


# -- versions, give-back and the ledger view (defects 7 and 12) --------------------------------

OTHER = "CHEDP.FR.2026.0009999"


def versioned(declaration: str, quantity: str, version: int) -> PositionRequest:
    request = position(declaration, quantity)
    return PositionRequest(
        declaration=request.declaration,
        document_type=request.document_type,
        declarant_eori=request.declarant_eori,
        country_of_destination=request.country_of_destination,
        lines=request.lines,
        version=version,
    )


def test_an_operation_older_than_the_newest_version_seen_is_refused_as_stale(
    store: LedgerStore,
) -> None:
    assert store.reserve(REF, versioned("DECL-1", "400", 2), TODAY) is None
    for stale in (
        lambda: store.delete(REF, "DECL-1", version=1),
        lambda: store.write_off(REF, "DECL-1", version=1),
        lambda: store.reserve(REF, versioned("DECL-1", "900", 1), TODAY),
        lambda: store.give_back(REF, "DECL-1", version=1),
    ):
        with pytest.raises(StaleVersion) as refused:
            stale()
        assert (refused.value.newest, refused.value.version) == (2, 1)
    assert store.balances(REF)[0].reserved == Decimal(400)
    # The same version and newer ones go through.
    assert store.write_off(REF, "DECL-1", version=2) is ClearanceCode.EXECUTED
    assert store.give_back(REF, "DECL-1", version=3) is ClearanceCode.EXECUTED


def test_versions_are_judged_per_document_position(store: LedgerStore) -> None:
    # v2 no longer quotes the other document: v1's deletion there is not stale.
    store.load([ched(reference=OTHER)])
    store.reserve(REF, versioned("DECL-1", "100", 1), TODAY)
    store.reserve(OTHER, versioned("DECL-1", "100", 1), TODAY)
    store.reserve(REF, versioned("DECL-1", "200", 2), TODAY)
    assert store.delete(OTHER, "DECL-1", version=1) is ClearanceCode.EXECUTED
    assert store.balances(OTHER)[0].reserved == 0


def test_a_deleted_reservation_still_remembers_its_newest_version(store: LedgerStore) -> None:
    store.reserve(REF, versioned("DECL-1", "100", 1), TODAY)
    assert store.delete(REF, "DECL-1", version=2) is ClearanceCode.EXECUTED
    with pytest.raises(StaleVersion):
        store.reserve(REF, versioned("DECL-1", "100", 1), TODAY)  # a late v1 reservation
    assert store.balances(REF)[0].reserved == 0


def test_give_back_returns_a_write_off_to_the_balance_once(store: LedgerStore) -> None:
    store.reserve(REF, position("DECL-1", "600"), TODAY)
    store.write_off(REF, "DECL-1")
    refusal = store.reserve(REF, position("DECL-2", "500"), TODAY)
    assert refusal is not None
    assert refusal.code is RefusalCode.QUANTITY_INSUFFICIENT
    assert store.give_back(REF, "DECL-1") is ClearanceCode.EXECUTED
    assert store.give_back(REF, "DECL-1") is ClearanceCode.ALREADY_CONSUMED  # a redelivery
    [line] = store.balances(REF)
    assert (line.reserved, line.written_off, line.given_back, line.remaining) == tuple(
        map(Decimal, (0, 0, 600, 1000))
    )
    assert store.reserve(REF, position("DECL-2", "1000"), TODAY) is None


def test_give_back_needs_a_write_off(store: LedgerStore) -> None:
    assert store.give_back(REF, "DECL-1") is ClearanceCode.NO_RECORD
    store.reserve(REF, position("DECL-1", "10"), TODAY)
    assert store.give_back(REF, "DECL-1") is ClearanceCode.ACTIVE_RESERVATION_EXISTS
    assert store.balances(REF)[0].reserved == 10


def test_a_repeated_idempotency_key_is_applied_once_and_answers_the_same(
    store: LedgerStore,
) -> None:
    store.reserve(REF, position("DECL-1", "300"), TODAY)
    calls: list[ClearanceCode] = []

    def write_off() -> Answer:
        code = store.write_off(REF, "DECL-1")
        calls.append(code)
        return Answer(200, {"result": "DONE", "code": code.value})

    first = store.idempotent(REF, "DECL-1/1/dgal/WRITE_OFF", "fp", write_off)
    again = store.idempotent(REF, "DECL-1/1/dgal/WRITE_OFF", "fp", write_off)
    assert first == again == Answer(200, {"result": "DONE", "code": "01"})
    assert calls == [ClearanceCode.EXECUTED]  # the retry was not applied again
    assert store.balances(REF)[0].written_off == 300
    with pytest.raises(IdempotencyKeyReused):
        store.idempotent(REF, "DECL-1/1/dgal/WRITE_OFF", "another body", write_off)
    # Keys are scoped to a document: the same request on another document is its own call.
    store.load([ched(reference=OTHER)])
    assert store.idempotent(OTHER, "DECL-1/1/dgal/WRITE_OFF", "fp", write_off) is not None
    assert len(calls) == 2


def test_idempotency_survives_a_restart(tmp_path: Path) -> None:
    first = LedgerStore(tmp_path / "l.sqlite")
    first.load([ched()])
    first.idempotent(REF, "K", "fp", lambda: Answer(200, {"result": "ACCEPTED"}))
    first.close()
    again = LedgerStore(tmp_path / "l.sqlite")
    answer = again.idempotent(REF, "K", "fp", lambda: Answer(500, {"never": "called"}))
    assert answer == Answer(200, {"result": "ACCEPTED"})


def test_positions_show_each_declaration_and_version_per_line(store: LedgerStore) -> None:
    store.reserve(REF, versioned("DECL-1", "100", 2), TODAY)
    store.reserve(REF, versioned("DECL-2", "50", 1), TODAY)
    store.write_off(REF, "DECL-2", version=1)
    store.reserve(REF, versioned("DECL-3", "30", 1), TODAY)
    store.write_off(REF, "DECL-3", version=1)
    store.give_back(REF, "DECL-3", version=2)
    positions = {(p.declaration, p.line): p for p in store.positions(REF)}
    assert positions["DECL-1", 1].version == 2
    assert (positions["DECL-1", 1].reserved, positions["DECL-1", 1].state) == (
        Decimal(100),
        "ACTIVE",
    )
    assert positions["DECL-2", 1].written_off == 50
    assert positions["DECL-3", 1].given_back == 30
    assert positions["DECL-3", 1].state == "GIVEN_BACK"
    [line] = store.balances(REF)
    assert (line.authorised, line.reserved, line.written_off, line.given_back) == tuple(
        map(Decimal, (1000, 100, 50, 30))
    )
