"""A redriven deletion is superseded only by later operations that concern every one of
its documents: a later version that reads (a pre-lodged CHECK) or drops a document does
not release it, and nothing else ever would.

Found by review stop 40-S (S1): supersession was judged per request, any operation of a
later version overtaking the redriven one. A version-1 DELETE (after a refusal) the
adapter dead-lettered for a cause outside it, redriven after a CHECK of a pre-lodged
version 2 or a RESERVE of version 2 quoting one of its two licences, was refused
REDRIVE_SUPERSEDED (not redrivable); the hub took the deletion sent for done, so the
partner held the quantity for ever. Now the deletion is asked: what a later version does
concern, the partner's version guard answers STALE.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gun_contract.effects import Effects
from gun_contract.envelope import ContentType
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    Operation,
    RequestedDocument,
    request_id_for,
)
from tests.unit.test_a_redriven_request_a_later_operation_superseded_is_not_asked import (
    dead_letter,
)
from tests.unit.test_a_sealed_message_is_read_only_as_the_type_it_was_sealed_as import (
    sealed_by_the_hub,
)
from tests.unit.test_an_adapter_judges_a_redrive_as_its_original import Log, adapter, record_at
from tests.unit.test_state_pending_queue import R1, TOPICS, dga

OTHER_LICENCE = "LIC-DGA-2026-000777"


def request(
    operation: Operation, version: int, *, two_documents: bool, stage: Stage = Stage.LODGED
) -> AuthorityRequest:
    base = dga(operation, R1, version)
    item = base.items[0]
    documents = item.documents
    if two_documents:
        documents = (*documents, RequestedDocument(code="LEMG", reference=OTHER_LICENCE))
    return base.model_copy(
        update={
            "items": (item.model_copy(update={"documents": documents}),),
            "stage": stage,
            "request_id": request_id_for(R1, version, "dga", operation),
        }
    )


@pytest.mark.parametrize(
    "later",
    ["CHECK of a pre-lodged version 2", "RESERVE of version 2 quoting one of the two licences"],
)
async def test_a_deletion_is_not_superseded_by_a_later_request_that_does_not_release(
    tmp_path: Path, later: str
) -> None:
    log = Log()
    runner, partner, keys = adapter(tmp_path, log)
    now = time.time()
    key = R1.encode()
    # Version 1 reserved both licences (answered), was refused: its deletion of both was
    # dead-lettered by the adapter (a cause outside the request, redrivable).
    deletion_v1 = request(Operation.DELETE, 1, two_documents=True)
    deletion = sealed_by_the_hub(deletion_v1, keys, ContentType.JSON)
    log.put(3, key, deletion, now)
    if later.startswith("CHECK"):
        v2 = request(Operation.CHECK, 2, two_documents=True, stage=Stage.PRELODGED)
    else:
        v2 = request(Operation.RESERVE, 2, two_documents=False)
    log.put(5, key, sealed_by_the_hub(v2, keys, ContentType.JSON), now)
    outbox = Effects()
    await runner._handle_survivably(record_at(9, key, deletion, now, redrive_of=3), outbox)
    dead = outbox.to(TOPICS.dlq)
    if dead:
        kind, source, reason = dead_letter(outbox)
        pytest.fail(f"the deletion was not asked: {kind} about offset {source}: {reason}")
    assert partner.asked, "the deletion reaches the partner"
