"""The quantity life cycle after a decision, as pure functions over a decided case.

* RELEASE: written off at each authority (the goods leave).
* REFUSE: deleted at each authority (the quantity goes back to the document).
* CONTROL_DOCUMENTARY, CONTROL_PHYSICAL: kept. The control ends in a new declaration
  version (which restates them) or a cancellation (which deletes them).
* ADVICE (pre-lodged): nothing was reserved.
* CANCELLED: the deletions were the case's own requests.

A new version restates every document it quotes; a document the new version no longer
quotes gets its reservation deleted (:func:`dropped_documents`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from gun_hub.case import Case, ExpectedAnswer
from gun_hub.model.declaration import Stage
from gun_hub.model.exchange import (
    AuthorityRequest,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_hub.model.verdicts import Outcome

FOLLOW_UP = {Outcome.RELEASE: Operation.WRITE_OFF, Outcome.REFUSE: Operation.DELETE}


def follow_up_requests(case: Case, now: datetime) -> list[AuthorityRequest]:
    """Write-offs after a release, deletions after a refusal; nothing otherwise."""
    if case.stage is not Stage.LODGED or case.outcome not in FOLLOW_UP:
        return []
    return requests_for(case, case.expected, FOLLOW_UP[case.outcome], case.version, now)


def dropped_documents(previous: Case, kept: set[tuple[str, str]]) -> list[ExpectedAnswer]:
    """Documents ``previous`` reserved that a new version no longer quotes.

    ``kept`` holds the (authority, document reference) pairs the new version quotes.
    """
    if previous.stage is not Stage.LODGED or previous.outcome is Outcome.REFUSE:
        return []  # nothing reserved, or already deleted
    return [e for e in previous.expected if (e.authority, e.reference) not in kept]


def requests_for(
    case: Case,
    documents: Iterable[ExpectedAnswer],
    operation: Operation,
    version: int,
    now: datetime,
) -> list[AuthorityRequest]:
    """One request per authority for ``documents`` of ``case``."""
    by_authority: dict[str, dict[int, list[ExpectedAnswer]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for document in documents:
        by_authority[document.authority][document.goods_item].append(document)
    return [
        AuthorityRequest(
            request_id=request_id_for(case.reference, version, authority, operation),
            authority=authority,
            operation=operation,
            reference=case.reference,
            version=version,
            stage=case.stage,
            direction=case.direction,
            procedure=case.procedure,
            declarant_eori=case.declarant_eori,
            items=tuple(
                RequestedItem(
                    number=number,
                    commodity_code=quoted[0].commodity_code,
                    documents=tuple(
                        RequestedDocument(code=d.code, reference=d.reference) for d in quoted
                    ),
                )
                for number, quoted in sorted(items.items())
            ),
            sent_at=now,
        )
        for authority, items in sorted(by_authority.items())
    ]
