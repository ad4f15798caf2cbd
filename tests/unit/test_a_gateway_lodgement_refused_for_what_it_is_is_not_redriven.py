"""A declaration the intake refused, through the gateway, for what it *is* (a stage only
the customs office sets: ``STAGE_NOT_THE_DECLARANTS``; a reference outside its declarant's
namespace: ``REFERENCE_NOT_THE_DECLARANTS``) is not offered for a redrive.

Both refusals are judged on the bytes alone (who sealed it, the stage, the reference and
the declarant it names), never on a setting or on what the hub lacked: read again, the
same bytes are refused again. The desk's rule (``pipeline/redrive.py``, ``not_redrivable``)
offers them all the same ("redrive possible", and ``dlq redrive --kind`` takes them), and
each redrive writes one more *hub-vouched* security dead letter about the same original: a
new ``SECURITY_REJECTION`` chained as "the hub's own rejection" and ``GunHubDeadLetters``
fired, for a redrive that could do nothing: the same reason review stop 39-O (O9) gave for
refusing to redrive XML refused as it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import REFERENCE_NOT_THE_DECLARANTS, STAGE_NOT_THE_DECLARANTS
from gun_hub.pipeline.redrive import not_redrivable
from tests.builders import declaration_xml
from tests.unit.test_a_trader_lodges_no_stage_only_the_customs_office_sets import (
    REFERENCE,
    TRADER,
)
from tests.unit.test_pipeline import Hub

ANOTHERS_REFERENCE = "26FR000690I0000013"  # the clearance system's namespace, not TRADER's


@pytest.mark.parametrize(
    ("kind", "reference", "stage"),
    [
        (STAGE_NOT_THE_DECLARANTS, REFERENCE, Stage.RELEASED_AFTER_CONTROL),
        (STAGE_NOT_THE_DECLARANTS, REFERENCE, Stage.INVALIDATED),
        (REFERENCE_NOT_THE_DECLARANTS, ANOTHERS_REFERENCE, Stage.LODGED),
    ],
)
def test_a_gateway_lodgement_refused_for_what_it_is_is_not_offered_for_a_redrive(
    routing_table: RoutingTable, keys_dir: Path, kind: str, reference: str, stage: Stage
) -> None:
    hub = Hub(routing_table, keys_dir)
    sealed = hub.sealed_by_gateway(
        declaration_xml(reference=reference, version=1, stage=stage, declarant=TRADER)
    )

    def read(offset_of_the_original: int) -> Effects:
        where = SourcePosition(
            hub.topics.declarations, 0, offset_of_the_original, reference.encode()
        )
        return hub.intake_as_keyed(sealed, where)

    refused = read(0)
    [dead] = refused.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == kind
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    # Read again as the original (what a redrive is), it is refused again, as it is.
    [again] = read(0).to(hub.topics.dlq)
    assert header_value(again.headers, HEADER_ERROR_KIND) == kind

    why_not = not_redrivable(
        "hub.intake",
        hub.topics.declarations,
        hub.topics,
        kind,
        header_value(dead.headers, HEADER_ERROR_REASON) or "",
    )
    assert why_not is not None, (
        f"the desk offers to redrive a declaration refused {kind} for what it is: read "
        "again it is refused again, one more hub-vouched security dead letter"
    )


@pytest.mark.parametrize(
    ("component", "kind", "adapters_twin"),
    [
        ("hub.correlation", "RESPONSE_KEY_MISMATCH", "REQUEST_KEY_MISMATCH"),
        ("hub.correlation", "RESPONSE_NOT_JSON", "REQUEST_NOT_JSON"),
        ("hub.correlation", "RESPONSE_WRONG_SENDER", "REQUEST_MISADDRESSED"),
        ("hub.intake", "RECORD_KEY_NOT_REFERENCE", "REQUEST_KEY_MISMATCH"),
        ("hub.intake", "DECLARATION_NOT_XML", "REQUEST_NOT_JSON"),
    ],
)
def test_a_hub_input_refused_as_it_is_is_not_offered_as_an_adapters_twin_is_not(
    routing_table: RoutingTable, keys_dir: Path, component: str, kind: str, adapters_twin: str
) -> None:
    """The adapters' twins of these refusals are not offered ("the same bytes are refused
    again": gun_contract/request_refusals.py); the hub's own, judged on the same kind of
    facts (the record key a redrive carries unchanged, the signed content type, the
    signing party), are: each redrive only writes one more hub-vouched security dead
    letter."""
    hub = Hub(routing_table, keys_dir)
    topic = hub.topics.declarations if component == "hub.intake" else hub.topics.responses("dgal")
    adapter = not_redrivable("adapter.dgal", hub.topics.requests("dgal"), hub.topics, adapters_twin)
    assert adapter is not None  # the twin rule, as it stands
    assert not_redrivable(component, topic, hub.topics, kind) is not None, (
        f"{component}'s {kind} is offered for a redrive that refuses the same bytes again"
    )
