"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.conformance.harness import Harness
from gun_contract.kafka.client import from_settings
from tests.conftest import KafkaEnv
from tests.partner_fixtures import RunningPartner, running_partner


@pytest.fixture
async def partner(samples: Path, tmp_path: Path) -> AsyncIterator[RunningPartner]:
    """The simulated TRACES with the sample DGAL documents, over real HTTP."""
    async with running_partner(
        samples / "partners" / "dgal-documents.json", tmp_path / "l.db"
    ) as p:
        yield p


@pytest.fixture
async def hub(kafka_env: KafkaEnv, partner: RunningPartner) -> AsyncIterator[Harness]:
    """The conformance harness playing the hub towards the DGAL adapter (its requests,
    the answers it reads, the partner simulator's ledger)."""
    harness = Harness(
        authority="dgal",
        document_type="N853",
        connect=from_settings(kafka_env.settings().kafka),
        topics=kafka_env.topics,
        hub_envelope=kafka_env.envelope("hub"),
        partner_url=partner.url,
        answer_timeout_s=60,
        partner_timeout_s=1,
    )
    await harness.start()
    try:
        yield harness
    finally:
        await harness.stop()
