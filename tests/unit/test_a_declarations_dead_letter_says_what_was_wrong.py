"""A declaration's dead letter says what was wrong with it, in words an operator can act
on (contract section 5: a rejected message "goes to gun.dlq with its reason").

Found by the outside acceptance test of stop 38 (D5): a tombstone or an empty value was
told "plain declarations are accepted in local development only"; a declaration sealed
and signed as application/json was dead-lettered as DECLARATION_NOT_SEALED; an ``iat``
two hours ahead was "issued -7199s before it was accepted by the broker".
"""

from __future__ import annotations

import time
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
from gun_contract.envelope import ContentType
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import SECURITY_REJECTION_KINDS
from gun_hub.pipeline.intake import NOT_SEALED, NOT_XML
from tests.builders import declaration_xml
from tests.forgery import claims, encrypt, encryption_key, sign, signing_key
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"
AT = SourcePosition("gun.declarations", 0, 0, REF.encode())


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The pipeline with a production intake: sealed declarations only."""
    return Hub(routing_table, keys_dir).sealed_only()


def _letter(out: Effects, dlq: str) -> tuple[str | None, str, str | None]:
    [dead] = out.to(dlq)
    return (
        header_value(dead.headers, HEADER_ERROR_KIND),
        header_value(dead.headers, HEADER_ERROR_REASON) or "",
        header_value(dead.headers, HEADER_ERROR_CLASS),
    )


# The runtime reads a null value (a tombstone) as empty bytes (runtime/app.py, _value).
@pytest.mark.parametrize(
    ("value", "said"),
    [(b"", "no value (null, as a tombstone, or empty)"), (b" \n\t", "only whitespace")],
    ids=["null or empty", "whitespace"],
)
def test_a_declaration_with_no_value_is_said_to_be_empty(hub: Hub, value: bytes, said: str) -> None:
    kind, reason, _ = _letter(hub.intake.handle(value, AT), hub.topics.dlq)
    assert kind == NOT_SEALED
    assert said in reason
    assert "plain declarations" not in reason  # it was not a plain declaration either


def test_a_plain_declaration_is_still_told_it_must_be_sealed(hub: Hub) -> None:
    kind, reason, _ = _letter(hub.intake.handle(declaration_xml(), AT), hub.topics.dlq)
    assert kind == NOT_SEALED
    assert "plain declarations are accepted in local development only" in reason


def test_a_declaration_sealed_as_json_is_said_to_be_json_not_unsealed(hub: Hub) -> None:
    sealed = hub.envelope(CLEARANCE_PARTY).seal(
        b'{"Reference": "26FR000690I0000012"}',
        recipient=HUB_PARTY,
        topic=hub.topics.declarations,
        content_type=ContentType.JSON,
    )
    out = hub.intake.handle(sealed, AT)
    kind, reason, error_class = _letter(out, hub.topics.dlq)
    assert kind == NOT_XML
    assert error_class == "security"
    assert NOT_XML in SECURITY_REJECTION_KINDS  # audited as before, under its own name
    assert "content type is application/json where a declaration must be application/xml" in (
        reason
    )
    assert hub.decisions(out) == []


def _issued(hub: Hub, keys: Path, iat: int) -> bytes:
    header = claims(
        iss=CLEARANCE_PARTY,
        aud=HUB_PARTY,
        topic=hub.topics.declarations,
        cty="application/xml",
        iat=iat,
        exp=iat + 1800,
    )
    signed = sign(header, declaration_xml(reference=REF), signing_key(keys, CLEARANCE_PARTY))
    return encrypt(signed, encryption_key(keys, HUB_PARTY))


def test_an_iat_ahead_is_said_to_be_in_the_future(hub: Hub, keys_dir: Path) -> None:
    now = float(int(time.time()))
    out = hub.intake.handle(_issued(hub, keys_dir, int(now) + 7200), AT, now)
    kind, reason, _ = _letter(out, hub.topics.dlq)
    assert kind == "ENVELOPE_IAT_SKEW"
    assert reason.startswith("issued 7200s in the future of when it was accepted by the broker")
    assert "-" not in reason


def test_an_iat_behind_is_said_to_be_before(hub: Hub, keys_dir: Path) -> None:
    now = float(int(time.time()))
    out = hub.intake.handle(_issued(hub, keys_dir, int(now) - 1200), AT, now)
    kind, reason, _ = _letter(out, hub.topics.dlq)
    assert kind == "ENVELOPE_IAT_SKEW"
    assert reason.startswith("issued 1200s before it was accepted by the broker")
