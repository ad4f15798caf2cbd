"""Small builders for test data: a valid declaration by default, changed where a test says."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gun_contract.model.declaration import (
    AdditionalInformation,
    Declarant,
    Declaration,
    Direction,
    DocumentRef,
    GoodsItem,
    Quantity,
    Stage,
)
from gun_contract.model.exchange import AuthorityRequest, AuthorityResponse, DocumentAnswer
from gun_contract.model.verdicts import Verdict
from gun_hub.xml.declaration_codec import encode_declaration

EORI = "FR12345678901234"


def document(
    code: str = "N853",
    reference: str = "CHEDP.FR.2026.0001234",
    line: int | None = 1,
    quantity: str | None = "1200.5",
    unit: str = "KGM",
) -> DocumentRef:
    return DocumentRef(
        code=code,
        reference=reference,
        line=line,
        quantity=Quantity(value=Decimal(quantity), unit=unit) if quantity is not None else None,
    )


def goods_item(
    number: int = 1,
    documents: tuple[DocumentRef, ...] | None = None,
    commodity_code: str = "0302130000",
    mentions: tuple[str, ...] = (),
) -> GoodsItem:
    """``mentions``: additional information codes on the item (73000: the override)."""
    return GoodsItem(
        number=number,
        commodity_code=commodity_code,
        description="Fresh Atlantic salmon",
        country_of_origin="NO",
        net_mass=Quantity(value=Decimal("1200.5"), unit="KGM"),
        documents=documents if documents is not None else (document(),),
        additional_information=tuple(
            AdditionalInformation(code=code, text="Certificate presented at the office")
            for code in mentions
        ),
    )


def declaration(
    reference: str = "26FR000690I0000012",
    version: int = 1,
    stage: Stage = Stage.LODGED,
    items: tuple[GoodsItem, ...] | None = None,
    declarant: str = EORI,
) -> Declaration:
    return Declaration(
        reference=reference,
        version=version,
        stage=stage,
        direction=Direction.IMPORT,
        procedure="4000",
        lodged_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        customs_office="FR000690",
        declarant=Declarant(eori=declarant, name="Example SARL"),
        country_of_dispatch="NO",
        country_of_destination="FR",
        goods_items=items if items is not None else (goods_item(),),
    )


def declaration_xml(**kwargs: object) -> bytes:
    return encode_declaration(declaration(**kwargs))  # type: ignore[arg-type]


def answer_to(
    request: AuthorityRequest, verdict: Verdict = Verdict.VALID, authority: str | None = None
) -> AuthorityResponse:
    """An authority's answer giving ``verdict`` to every document of ``request``."""
    return AuthorityResponse(
        request_id=request.request_id,
        authority=authority or request.authority,
        operation=request.operation,
        reference=request.reference,
        version=request.version,
        answers=tuple(
            DocumentAnswer(
                goods_item=item.number, code=d.code, reference=d.reference, verdict=verdict
            )
            for item in request.items
            for d in item.documents
        ),
        answered_at=datetime.now(UTC),
    )
