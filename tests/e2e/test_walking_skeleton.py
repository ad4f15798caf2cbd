"""End to end on the real broker: partner system, adapter and hub as real processes.

Declarations go in on the declarations topic as a clearance system would send them; the
decisions are read back from the decisions topic and checked against the contract.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, HEADER_REFERENCE, header_value
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.status_events import StatusKind
from gun_tools.demo import with_reference
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

# The samples the DGAL side and the hub decide alone (the demo's test runs every sample,
# tests/e2e/test_the_demo_shows_the_three_administrations.py).
# Sample file -> (outcome, verdict of its document; None when it has no document result)
EXPECTED = {
    "01-release-salmon.xml": (Outcome.RELEASE, Verdict.VALID),
    "02-refuse-unknown-ched.xml": (Outcome.REFUSE, Verdict.NOT_FOUND),
    "03-refuse-quantity.xml": (Outcome.REFUSE, Verdict.QUANTITY_INSUFFICIENT),
    "04-refuse-cancelled-ched.xml": (Outcome.REFUSE, Verdict.INVALID_STATUS),
    "05-advice-prelodged.xml": (Outcome.ADVICE, Verdict.VALID),
    "06-release-exempt.xml": (Outcome.RELEASE, Verdict.EXEMPT),
    "07-control-unrouted.xml": (Outcome.CONTROL_DOCUMENTARY, Verdict.UNROUTED),
    "08-refuse-negative-quantity.xml": (Outcome.REFUSE, None),
}


async def test_sample_declarations_get_exactly_one_decision_each(
    pipeline: Pipeline, samples: Path
) -> None:
    files = [samples / "declarations" / name for name in sorted(EXPECTED)]
    by_reference = {f"26FRE2E{index:011d}": f.name for index, f in enumerate(files, start=1)}
    await pipeline.submit(
        [
            with_reference(f.read_bytes(), reference)
            for reference, f in zip(by_reference, files, strict=True)
        ]
    )

    received = await pipeline.decisions(len(files))

    decided = [r.decision for r in received]
    assert sorted(d.reference for d in decided) == sorted(by_reference), "one decision each"
    for decision in decided:
        outcome, verdict = EXPECTED[by_reference[decision.reference]]
        assert decision.outcome is outcome, by_reference[decision.reference]
        assert decision.version == 1
        if verdict is None:
            assert decision.documents == ()
        else:
            assert [d.verdict for d in decision.documents] == [verdict]
    assert {r.envelope.sender for r in received} == {"hub"}

    [dead] = await pipeline.records(pipeline.kafka.topics.dlq, expected=1)
    assert header_value(list(dead.headers), HEADER_ERROR_KIND) == "XML_SCHEMA"
    # The dead letter keeps the declaration as received: sealed, so encrypted at rest.
    assert b"<Quantity" not in (dead.value or b"")
    opened = pipeline.kafka.envelope("hub").open(
        dead.value or b"", topic=pipeline.kafka.topics.declarations
    )
    assert b'<Quantity unit="KGM">-10</Quantity>' in opened.payload
    assert header_value(list(dead.headers), HEADER_REFERENCE) in by_reference

    statuses = await pipeline.statuses()
    decided_events = [s for s in statuses if s.kind is StatusKind.DECIDED]
    assert sorted(s.reference for s in decided_events) == sorted(by_reference)
