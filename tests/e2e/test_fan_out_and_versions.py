"""Fan-out to the authorities on the real topics, and declaration versions at intake."""

from __future__ import annotations

import pytest

from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

THREE_AUTHORITIES = declaration_xml(
    reference="26FRFAN00000000001",
    items=(
        goods_item(1, (document("N853", "CHEDP.FR.2026.0001234"),)),
        goods_item(2, (document("C638", "CITES.FR.2026.555", 1, "3", "NAR"),)),
        goods_item(3, (document("LEMG", "LEMG.FR.2026.0042", 1, "12", "NAR"),)),
        goods_item(
            4, (document("N851", "PHYTO.NO.2026.0000101"), document("Y900", "EX-9", None, None))
        ),
    ),
)


async def test_three_authorities_get_exactly_one_request_each_with_only_their_items(
    hub_only: Pipeline,
) -> None:
    await hub_only.submit([THREE_AUTHORITIES])
    topics = hub_only.kafka.topics
    expected_items = {"dgal": [1, 4], "cites": [2], "dga": [3]}
    for authority, items in expected_items.items():
        [record] = await hub_only.records(topics.requests(authority), expected=1)
        assert record.key == b"26FRFAN00000000001"
        opened = hub_only.kafka.envelope(authority).open(record.value or b"", topic=record.topic)
        request = AuthorityRequest.model_validate_json(opened.payload)
        assert request.operation is Operation.RESERVE
        assert [item.number for item in request.items] == items
        codes = {d.code for item in request.items for d in item.documents}
        assert all(hub_only.kafka.routing.authority_for(c) == authority for c in codes)
        assert b"Y900" not in opened.payload  # exemptions are never sent anywhere
        assert b"Example SARL" not in opened.payload  # only the fields checks need
        assert request.declarant_eori == "FR12345678901234"


def exempt(version: int, stage: Stage = Stage.LODGED) -> bytes:
    return declaration_xml(
        reference="26FRVER00000000001",
        version=version,
        stage=stage,
        items=(goods_item(1, (document("Y900", "EXEMPT-1", None, None),)),),
    )


async def test_equal_or_lower_versions_are_ignored_and_recorded(hub_only: Pipeline) -> None:
    await hub_only.submit([exempt(2), exempt(1), exempt(2), exempt(3)])
    received = await hub_only.decisions(2)
    assert [(r.decision.version, r.decision.outcome) for r in received] == [
        (2, Outcome.RELEASE),
        (3, Outcome.RELEASE),
    ]
    statuses = await hub_only.statuses()
    ignored = [s.version for s in statuses if s.kind is StatusKind.IGNORED_STALE_VERSION]
    assert ignored == [1, 2]
    assert "gun_hub_stale_versions_total 2.0" in hub_only.metrics()


async def test_a_cancellation_asks_each_authority_to_delete(hub_only: Pipeline) -> None:
    """Each authority the version reserved at, not only the first (tests' review of stop
    48: the test quoted one DGAL document, so a cancellation deleting at one authority
    only passed)."""
    items = (
        goods_item(
            1,
            (
                document("N853", "CHEDP.FR.2026.0009001", 1, "40"),
                document("C400", "FR26CITES009001", 1, "2", "NAR"),
            ),
        ),
    )
    reference = "26FRCAN00000000001"
    lodged = declaration_xml(reference=reference, version=1, items=items)
    cancelled = declaration_xml(reference=reference, version=2, stage=Stage.CANCELLED, items=items)
    await hub_only.submit([lodged, cancelled])
    for authority in ("dgal", "cites"):
        records = await hub_only.records(hub_only.kafka.topics.requests(authority), expected=2)
        operations = [
            AuthorityRequest.model_validate_json(
                hub_only.kafka.envelope(authority).open(r.value or b"", topic=r.topic).payload
            ).operation
            for r in records
        ]
        assert operations == [Operation.RESERVE, Operation.DELETE], authority
    kinds = [s.kind for s in await hub_only.statuses() if s.version == 1]
    assert StatusKind.SUPERSEDED in kinds
