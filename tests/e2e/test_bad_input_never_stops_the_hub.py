"""Every hostile declaration is refused with its reason and dead-lettered; the hub goes on.

The whole hostile corpus goes through the real broker to a real hub worker, followed by a
valid declaration, which must still be decided.
"""

from __future__ import annotations

import hashlib

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_ERROR_REASON,
    HEADER_ORIGINAL_SHA256,
    HEADER_REFERENCE,
    HEADER_SOURCE_TOPIC,
    header_value,
)
from gun_contract.model.verdicts import Outcome
from gun_hub.xml.declaration_codec import sniff_identity
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline
from tests.hostile_corpus import hostile_cases

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


async def test_the_hostile_corpus_is_refused_and_a_valid_declaration_still_decided(
    hub_only: Pipeline,
) -> None:
    cases = hostile_cases("26FRBAD")
    valid = declaration_xml(
        reference="26FRGOOD0000000001",
        items=(goods_item(1, (document("Y900", "EXEMPT-1", None, None),)),),
    )
    # Sealed by the clearance system: the threat here is a genuine sender's broken document.
    sealed = [hub_only.seal(case.data) for case in cases]
    keys = [
        identity.reference.encode() if (identity := sniff_identity(c.data)) else None for c in cases
    ]
    await hub_only.send_sealed(
        [*zip(keys, sealed, strict=True), (b"26FRGOOD0000000001", hub_only.seal(valid))]
    )

    references = {
        identity.reference: case
        for case in cases
        if (identity := sniff_identity(case.data)) is not None
    }
    assert len(references) == sum(case.identifiable for case in cases)
    received = await hub_only.decisions(len(references) + 1)

    decisions = {r.decision.reference: r.decision for r in received}
    assert len(decisions) == len(received), "no reference decided twice"
    assert decisions.pop("26FRGOOD0000000001").outcome is Outcome.RELEASE
    assert sorted(decisions) == sorted(references)
    for reference, decision in decisions.items():
        case = references[reference]
        assert decision.outcome is Outcome.REFUSE, case.name
        [reason] = decision.reasons
        assert reason.code == f"XML_{case.kind.value}", case.name
        assert case.reason in reason.text, case.name
        if case.path:
            assert case.path in reason.text, case.name

    dead = await hub_only.records(hub_only.kafka.topics.dlq, expected=len(cases))
    assert len(dead) == len(cases)
    # A dead letter keeps the record as received (sealed: encrypted at rest), or, when it
    # is too large to keep, its head and digest.
    by_digest = {
        header_value(list(r.headers), HEADER_ORIGINAL_SHA256)
        or hashlib.sha256(r.value or b"").hexdigest(): list(r.headers)
        for r in dead
    }
    for case, value in zip(cases, sealed, strict=True):
        headers = by_digest[hashlib.sha256(value).hexdigest()]
        assert header_value(headers, HEADER_ERROR_KIND) == f"XML_{case.kind.value}", case.name
        assert case.reason in (header_value(headers, HEADER_ERROR_REASON) or ""), case.name
        assert header_value(headers, HEADER_SOURCE_TOPIC) == hub_only.kafka.topics.declarations
        assert (header_value(headers, HEADER_REFERENCE) is not None) is case.identifiable

    metrics = hub_only.metrics()
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("gun_hub_declarations_rejected_total{")
    )
    assert counted == len(cases)


async def test_a_declaration_not_keyed_by_its_reference_is_dead_lettered_and_the_next_decided(
    hub_only: Pipeline,
) -> None:
    """Review stop 38, D2: a genuine declaration sealed by the clearance system, sent under
    another reference's key, a null key or a key that is not UTF-8, as a producer with a
    keying bug would (the key as the broker hands it to the hub's worker: a null stays
    null). Each gets a security dead letter with the code of the fault and nothing else,
    no decision (review stop 38-s, S1: it may be a copy of another's declaration); a
    declaration keyed by its reference is decided as ever."""
    keys = {
        "26FRKEY00000000001": b"26FRSOMEBODYELSE01",
        "26FRKEY00000000002": None,
        "26FRKEY00000000003": b"\xff\xfe\x00",
    }

    def exempt(reference: str) -> bytes:
        return declaration_xml(
            reference=reference,
            items=(goods_item(1, (document("Y900", "EXEMPT-1", None, None),)),),
        )

    await hub_only.send_sealed(
        [
            *((key, hub_only.seal(exempt(reference))) for reference, key in keys.items()),
            (b"26FRGOOD0000000002", hub_only.seal(exempt("26FRGOOD0000000002"))),
        ]
    )

    dead = await hub_only.records(hub_only.kafka.topics.dlq, expected=len(keys))
    assert sorted(header_value(list(r.headers), HEADER_REFERENCE) or "" for r in dead) == sorted(
        keys
    )
    assert {header_value(list(r.headers), HEADER_ERROR_KIND) for r in dead} == {
        "RECORD_KEY_NOT_REFERENCE"
    }
    assert {header_value(list(r.headers), HEADER_ERROR_CLASS) for r in dead} == {"security"}
    null_key = next(
        r for r in dead if header_value(list(r.headers), HEADER_REFERENCE) == "26FRKEY00000000002"
    )
    assert "no record key (null)" in (
        header_value(list(null_key.headers), HEADER_ERROR_REASON) or ""
    )
    # Read once every dead letter is out: only the declaration keyed by its reference is
    # decided (``decisions`` waits a while for any other).
    received = await hub_only.decisions(1)
    assert [(r.decision.reference, r.decision.outcome) for r in received] == [
        ("26FRGOOD0000000002", Outcome.RELEASE)
    ]
