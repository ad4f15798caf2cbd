"""Examples for the AsyncAPI document, each written by the code that writes real records.

They describe one declaration of the contract's own example (shared/docs/architecture.md,
section 3) at one fixed instant, so the document is the same at every generation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_headers
from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    AuthorityResponse,
    DocumentAnswer,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.facts import DecisionFact, DocumentUse, ReceivedFact, fact_bytes
from gun_hub.ops.lag import GrowthWatch, partition_lags, snapshot
from gun_hub.pipeline.admission import Claim, ClaimVerdict
from gun_hub.security.audit import AuditTrail
from gun_hub.xml.declaration_codec import DECLARATION_NS

JsonObject = dict[str, Any]

REFERENCE = "26FR000690I0000012"
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
# The private scalar of the audit record example's key (a well-known number, no secret).
EXAMPLE_AUDIT_SCALAR = 0x0123456789ABCDEF
_AUTHORITY = "dgal"
_EORI = "FR12345678901234"
_DOCUMENT = ("N853", "CHEDP.FR.2026.0001234")


def example(name: str, summary: str, **parts: Any) -> JsonObject:
    """An AsyncAPI Message Example Object (``payload`` and/or ``headers``)."""
    return {"name": name, "summary": summary, **parts}


def _json(data: bytes) -> JsonObject:
    value: JsonObject = json.loads(data)
    return value


def _question() -> JsonObject:
    """What a request and its answer share: one question about one declaration version."""
    return {
        "request_id": request_id_for(REFERENCE, 1, _AUTHORITY, Operation.RESERVE),
        "authority": _AUTHORITY,
        "operation": Operation.RESERVE,
        "reference": REFERENCE,
        "version": 1,
    }


def authority_request() -> JsonObject:
    code, reference = _DOCUMENT
    request = AuthorityRequest(
        **_question(),
        stage=Stage.LODGED,
        direction=Direction.IMPORT,
        procedure="4000",
        declarant_eori=_EORI,
        country_of_dispatch="NO",
        country_of_destination="FR",
        items=(
            RequestedItem(
                number=1,
                commodity_code="0302130000",
                country_of_origin="NO",
                documents=(
                    RequestedDocument(
                        code=code,
                        reference=reference,
                        line=1,
                        quantity=Decimal("1200.5"),
                        unit="KGM",
                    ),
                ),
            ),
        ),
        sent_at=AT,
    )
    return _json(request.model_dump_json().encode())


def authority_response() -> JsonObject:
    code, reference = _DOCUMENT
    response = AuthorityResponse(
        **_question(),
        answers=(
            DocumentAnswer(goods_item=1, code=code, reference=reference, verdict=Verdict.VALID),
        ),
        answered_at=AT,
    )
    return _json(response.model_dump_json().encode())


def status_event() -> JsonObject:
    event = StatusEvent(
        reference=REFERENCE,
        version=1,
        kind=StatusKind.DECIDED,
        at=AT,
        outcome=Outcome.RELEASE.value,
    )
    return _json(event.to_bytes())


def audit_record() -> JsonObject:
    # An example key, fixed so that the example's MAC and hash are the same at every
    # generation: a scalar anyone can read here, the hub's own never is.
    example = ec.derive_private_key(EXAMPLE_AUDIT_SCALAR, ec.SECP256R1())
    key = ECKey.import_key(example, {"kid": "example-audit-key"})
    trail = AuditTrail({}, key, clock=lambda: AT)
    [record] = trail.append(
        0,
        {
            "kind": "DECISION",
            "reference": REFERENCE,
            "version": 1,
            "outcome": Outcome.RELEASE.value,
            "reasons": [],
            "decision_sha256": "0" * 64,
        },
    )
    return _json(record)


def dead_letter(declarations_topic: str) -> JsonObject:
    headers = dead_letter_headers(
        error_class=ErrorClass.PERMANENT,
        kind="XML_MALFORMED",
        reason="line 1: premature end of data",
        source=SourcePosition(declarations_topic, 0, 42),
        component="hub.intake",
        reference=REFERENCE,
    )
    return example(
        "unreadable-declaration",
        "A declaration that is not well-formed XML.",
        headers={name: value.decode() for name, value in headers},
        payload=f"<Declaration xmlns='{DECLARATION_NS}'><Reference>{REFERENCE}",
    )


def lag_snapshot(declarations_topic: str) -> JsonObject:
    lags = partition_lags(
        "gun-hub",
        committed={(declarations_topic, 0): 120},
        ends={(declarations_topic, 0): 125, (declarations_topic, 1): 40},
        starts={(declarations_topic, 0): 100, (declarations_topic, 1): 0},
    )
    return _json(snapshot(AT, lags, GrowthWatch()).to_bytes())


def partner_health() -> JsonObject:
    health = PartnerHealth(
        authority=_AUTHORITY,
        adapter=f"adapter.{_AUTHORITY}",
        replica="1",
        circuit=CircuitStatus.CLOSED,
        pending_operations=0,
        at=AT,
        every_s=5.0,
    )
    return _json(health.to_bytes())


def received_fact() -> JsonObject:
    fact = ReceivedFact(reference=REFERENCE, version=1, declarant_eori=_EORI, received_at=AT)
    return _json(fact_bytes(fact))


def decision_fact() -> JsonObject:
    code, reference = _DOCUMENT
    fact = DecisionFact(
        reference=REFERENCE,
        version=1,
        declarant_eori=_EORI,
        stage=Stage.LODGED.value,
        outcome=Outcome.RELEASE.value,
        decided_at=AT,
        authorities=[_AUTHORITY],
        documents=[
            DocumentUse(
                goods_item=1,
                code=code,
                reference=reference,
                authority=_AUTHORITY,
                verdict=Verdict.VALID.value,
            )
        ],
    )
    return _json(fact_bytes(fact))


# Claimed with its sender (OpenedMessage.replay_id).
_JTI = "clearance/5f0c6f2e9b1d4a7c8e3f2a1b0c9d8e7f"


def _claimed(declarations_topic: str) -> Claim:
    return Claim(
        message_id=_JTI,
        accept_until=int(AT.timestamp()) + 1200,
        source=SourcePosition(declarations_topic, 3, 1041),
        accepted_at=AT.timestamp(),
        readable_from=AT.timestamp() - 2.5,  # the record at partition 3's commit point
    )


def claim(declarations_topic: str) -> JsonObject:
    return _json(_claimed(declarations_topic).to_bytes())


def claim_verdict(declarations_topic: str) -> JsonObject:
    claimed = _claimed(declarations_topic)
    verdict = ClaimVerdict(
        message_id=claimed.message_id,
        source=claimed.source,
        first=True,
        held_at=claimed.source.describe(),
    )
    return _json(verdict.to_bytes())
