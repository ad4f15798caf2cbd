"""Every request the hub sends a partner authority is built here, from a declaration
version (what its stage asks) or from a case (the follow-ups of a decision).

A request holds only that authority's goods items and documents (data minimisation), and
its id is deterministic per reference, version, authority and operation, so a request
built again after a crash or a redelivery is the same operation for the partner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from gun_contract.model.declaration import Declaration, Direction, Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_hub.domain.case import Case, ExpectedAnswer
from gun_hub.domain.routing import RoutingTable


def _request(
    *,
    reference: str,
    version: int,
    stage: Stage,
    direction: Direction,
    procedure: str,
    declarant_eori: str,
    authority: str,
    operation: Operation,
    items: tuple[RequestedItem, ...],
    now: datetime,
    country_of_dispatch: str | None = None,
    country_of_destination: str | None = None,
) -> AuthorityRequest:
    return AuthorityRequest(
        request_id=request_id_for(reference, version, authority, operation),
        authority=authority,
        operation=operation,
        reference=reference,
        version=version,
        stage=stage,
        direction=direction,
        procedure=procedure,
        declarant_eori=declarant_eori,
        country_of_dispatch=country_of_dispatch,
        country_of_destination=country_of_destination,
        items=items,
        sent_at=now,
    )


def build_requests(
    declaration: Declaration,
    table: RoutingTable,
    authorities: tuple[str, ...],
    operation: Operation,
    now: datetime,
) -> list[AuthorityRequest]:
    """One request per authority, holding only the items and documents it checks."""
    requests = []
    for authority in authorities:
        items = []
        for item in declaration.goods_items:
            documents = tuple(
                RequestedDocument(
                    code=d.code,
                    reference=d.reference,
                    line=d.line,
                    quantity=d.quantity.value if d.quantity else None,
                    unit=d.quantity.unit if d.quantity else None,
                )
                for d in item.documents
                if table.authority_for(d.code) == authority
            )
            if documents:
                items.append(
                    RequestedItem(
                        number=item.number,
                        commodity_code=item.commodity_code,
                        country_of_origin=item.country_of_origin,
                        documents=documents,
                    )
                )
        requests.append(
            _request(
                reference=declaration.reference,
                version=declaration.version,
                stage=declaration.stage,
                direction=declaration.direction,
                procedure=declaration.procedure,
                declarant_eori=declaration.declarant.eori,
                authority=authority,
                operation=operation,
                items=tuple(items),
                now=now,
                country_of_dispatch=declaration.country_of_dispatch,
                country_of_destination=declaration.country_of_destination,
            )
        )
    return requests


def requests_for(
    case: Case,
    documents: Iterable[ExpectedAnswer],
    operation: Operation,
    version: int,
    now: datetime,
    *,
    quantities: bool = False,
) -> list[AuthorityRequest]:
    """One request per authority for ``documents`` of ``case``. ``quantities``: each
    document with the line and quantity its version declared (a give-back of what was
    written off says what it gives back)."""
    by_authority: dict[str, dict[int, list[ExpectedAnswer]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for document in documents:
        by_authority[document.authority][document.goods_item].append(document)
    return [
        _request(
            reference=case.reference,
            version=version,
            stage=case.stage,
            direction=case.direction,
            procedure=case.procedure,
            declarant_eori=case.declarant_eori,
            authority=authority,
            operation=operation,
            country_of_dispatch=case.country_of_dispatch,
            country_of_destination=case.country_of_destination,
            items=tuple(
                RequestedItem(
                    number=number,
                    commodity_code=quoted[0].commodity_code,
                    documents=tuple(
                        RequestedDocument(
                            code=d.code,
                            reference=d.reference,
                            line=d.line if quantities else None,
                            quantity=d.quantity if quantities else None,
                            unit=d.unit if quantities else None,
                        )
                        for d in quoted
                    ),
                )
                for number, quoted in sorted(items.items())
            ),
            now=now,
        )
        for authority, items in sorted(by_authority.items())
    ]
