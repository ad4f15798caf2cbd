"""A load that draws on one DGAL document: what the kill and scale-out tests share.

Every declaration quotes the same CHED-P line for ``QUANTITY``; once each is decided
exactly once, the partner's ledger must hold exactly the reservations of the controls
and the write-offs of the releases.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import aiohttp

from gun_contract.model.verdicts import Outcome
from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

QUANTITY = Decimal(10)
DOCUMENT = "CHEDP.KILL.2026.1"


async def seed_document(pipeline: Pipeline) -> None:
    async with aiohttp.ClientSession() as http:
        await http.put(
            f"http://127.0.0.1:{pipeline.partner_port}/admin/documents",
            json={
                "documents": [
                    {
                        "reference": DOCUMENT,
                        "type": "N853",
                        "status": "VALIDATED",
                        "holder": "FR12345678901234",
                        "country_of_destination": "FR",
                        "lines": [
                            {
                                "line": 1,
                                "commodity_code": "0302",
                                "quantity": "1000000",
                                "unit": "KGM",
                            }
                        ],
                    }
                ]
            },
        )


async def ledger(pipeline: Pipeline) -> tuple[Decimal, Decimal]:
    """(reserved, written off) on the document's line."""
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{pipeline.partner_port}/admin/documents/{DOCUMENT}"
        async with http.get(url) as response:
            [line] = (await response.json())["balances"]
            return Decimal(line["reserved"]), Decimal(line["written_off"])


async def submit_load(pipeline: Pipeline, references: list[str]) -> DecisionReader:
    """Seed the document, start a reader of the decisions, submit one declaration per
    reference; the reader is the caller's to stop."""
    await seed_document(pipeline)
    reader = DecisionReader(
        pipeline.kafka.bootstrap,
        pipeline.kafka.topics.decisions,
        pipeline.kafka.envelope("clearance"),
    )
    await reader.start(from_beginning=True)
    await pipeline.submit(declarations(references))
    return reader


def declarations(references: list[str]) -> list[bytes]:
    """One declaration per reference, each quoting ``QUANTITY`` of the document's line."""
    return [
        declaration_xml(
            reference=reference,
            items=(goods_item(1, (document("N853", DOCUMENT, 1, str(QUANTITY)),)),),
        )
        for reference in references
    ]


async def collect_until(
    reader: DecisionReader, received: list[ReceivedDecision], pipeline: Pipeline, decided: int
) -> None:
    """Read decisions until ``decided`` references have one (components checked alive)."""
    while len({r.decision.reference for r in received}) < decided:
        pipeline.group.check_alive()
        received += await reader.collect(expected=decided, timeout_s=0.5)


async def collect_all_then_duplicates(
    reader: DecisionReader, received: list[ReceivedDecision], pipeline: Pipeline, count: int
) -> None:
    """Read until ``count`` references are decided (a precise failure otherwise), then
    whatever follows within 5 s: a duplicate would be there."""
    try:
        async with asyncio.timeout(240):
            await collect_until(reader, received, pipeline, count)
    except TimeoutError:
        decided = len({r.decision.reference for r in received})
        raise AssertionError(f"only {decided} of {count} declarations decided") from None
    received += await reader.collect(expected=count, timeout_s=5)


async def assert_each_decided_once_and_ledger_exact(
    pipeline: Pipeline, received: list[ReceivedDecision], references: list[str]
) -> None:
    counts = Counter(r.decision.reference for r in received)
    assert set(counts) == set(references), "every declaration decided"
    duplicates = {ref: n for ref, n in counts.items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} declarations decided more than once"
    outcomes = Counter(r.decision.outcome for r in received)
    assert set(outcomes) <= {Outcome.RELEASE, Outcome.CONTROL_DOCUMENTARY}
    # Releases are written off, controls keep their reservation: the ledger says exactly so.
    expected = (
        QUANTITY * outcomes[Outcome.CONTROL_DOCUMENTARY],
        QUANTITY * outcomes[Outcome.RELEASE],
    )
    async with asyncio.timeout(120):
        while await ledger(pipeline) != expected:  # noqa: ASYNC110 - polling a partner over HTTP
            await asyncio.sleep(0.5)
