"""SIGKILL the hub in the middle of a batch: every declaration still gets exactly one
decision, and the partner's ledger is exact."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from decimal import Decimal

import aiohttp
import pytest

from gun_hub.clearance import DecisionReader, ReceivedDecision
from gun_hub.model.verdicts import Outcome
from tests.builders import declaration_xml, document, goods_item
from tests.e2e.conftest import Pipeline

# Part of ./tasks test (and of `pytest -m chaos`); the chaos suite is ./tasks chaos.
pytestmark = [pytest.mark.broker, pytest.mark.e2e, pytest.mark.chaos]

COUNT = 500
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
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{pipeline.partner_port}/admin/documents/{DOCUMENT}"
        async with http.get(url) as response:
            [line] = (await response.json())["balances"]
            return Decimal(line["reserved"]), Decimal(line["written_off"])


async def test_killing_the_hub_mid_batch_loses_and_duplicates_no_decision(
    pipeline: Pipeline,
) -> None:
    await seed_document(pipeline)
    references = [f"26FRKILL{n:010d}" for n in range(COUNT)]
    reader = DecisionReader(
        pipeline.kafka.bootstrap,
        pipeline.kafka.topics.decisions,
        pipeline.kafka.envelope("clearance"),
    )
    await reader.start(from_beginning=True)
    received: list[ReceivedDecision] = []
    try:
        await pipeline.submit(
            [
                declaration_xml(
                    reference=reference,
                    items=(goods_item(1, (document("N853", DOCUMENT, 1, str(QUANTITY)),)),),
                )
                for reference in references
            ]
        )
        async with asyncio.timeout(120):
            while len(received) < COUNT // 5:
                received += await reader.collect(expected=COUNT, timeout_s=0.2)
        pipeline.restart_hub(sig=signal.SIGKILL, wipe_local_state=False)
        try:
            async with asyncio.timeout(240):
                while len({r.decision.reference for r in received}) < COUNT:
                    pipeline.group.check_alive()
                    received += await reader.collect(expected=COUNT, timeout_s=1)
        except TimeoutError:
            decided = len({r.decision.reference for r in received})
            raise AssertionError(f"only {decided} of {COUNT} declarations decided") from None
        received += await reader.collect(expected=COUNT, timeout_s=5)  # any duplicate
    finally:
        await reader.stop()

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
