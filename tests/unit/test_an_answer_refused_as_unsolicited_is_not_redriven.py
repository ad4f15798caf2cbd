"""An authority's answer the hub refused as unsolicited (``RESPONSE_UNSOLICITED``, a
security dead letter: "an answer nobody asked for ... changes nothing", issue 11, item 7)
is not offered for a redrive.

The desk's rule (``pipeline/redrive.py``, ``not_redrivable``) offers every dead letter the
correlation wrote about a response topic but a replay, a refused redrive, an envelope
refused as it is and ``UNASKED_DOCUMENT``. Whether an answer was solicited is judged
against the case *as it is when it is read*: redriven once the hub has since asked that
request (the declaration read after the answer), the answer refused for security reasons is
read again at its original position and acted on as if it had been asked: here it refuses
the declaration, on a word the hub refused when it came.
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    SourcePosition,
    header_value,
)
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.correlation import UNSOLICITED
from gun_hub.pipeline.redrive import not_redrivable
from tests.builders import answer_to, declaration_xml
from tests.conftest import envelope_of
from tests.unit.test_pipeline import SOURCE, Hub

REFERENCE = "26FRUNS00000000001"


def test_an_answer_refused_as_never_asked_is_not_offered_for_a_redrive(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    # What DGAL's adapter would answer to the request the hub has not sent yet.
    elsewhere = Hub(routing_table, keys_dir)
    request_record = elsewhere.intake.handle(
        declaration_xml(reference=REFERENCE, version=1), SOURCE
    ).to(hub.topics.requests("dgal"))[-1]
    adapter = envelope_of("dgal", hub.topics, keys_dir)
    request = AuthorityRequest.model_validate_json(
        adapter.open(request_record.value, topic=hub.topics.requests("dgal")).payload
    )
    answer = adapter.seal(
        answer_to(request, Verdict.NOT_FOUND).model_dump_json().encode(),
        recipient=HUB_PARTY,
        topic=hub.topics.responses("dgal"),
        content_type=ContentType.JSON,
    )
    at = SourcePosition(hub.topics.responses("dgal"), 0, 7, REFERENCE.encode())

    refused = hub.correlation.handle(answer, at)
    [dead] = refused.to(hub.topics.dlq)
    kind = header_value(dead.headers, HEADER_ERROR_KIND)
    assert (kind, header_value(dead.headers, HEADER_ERROR_CLASS)) == (UNSOLICITED, "security")
    assert hub.decisions(refused) == []

    why_not = not_redrivable(
        "hub.correlation",
        at.topic,
        hub.topics,
        kind,
        header_value(dead.headers, HEADER_ERROR_REASON) or "",
    )
    # Offered, it is acted on once the hub has asked: the declaration read now, the
    # redrive (the answer read again at its original position) refuses it.
    hub.intake.handle(declaration_xml(reference=REFERENCE, version=1), SOURCE)
    redriven = hub.correlation.handle(answer, at)
    assert why_not is not None, (
        f"an answer refused as unsolicited is offered for a redrive ({why_not=}) and, "
        f"redriven, decides {hub.decisions(redriven)}"
    )
