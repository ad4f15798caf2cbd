"""The hub's cases survive a restart: tables are rebuilt from their changelog topic."""

from __future__ import annotations

import signal

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import HUB_PARTY
from tests.builders import answer_to, declaration_xml
from tests.e2e.conftest import Pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]


async def answer_valid(pipeline: Pipeline, request: AuthorityRequest) -> None:
    """Stand in for the DGAL adapter: one VALID answer per requested document."""
    topic = pipeline.kafka.topics.responses("dgal")
    response = answer_to(request)
    sealed = pipeline.kafka.envelope("dgal").seal(
        response.model_dump_json().encode(),
        recipient=HUB_PARTY,
        topic=topic,
        content_type=ContentType.JSON,
    )
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, sealed, key=request.reference.encode())
    finally:
        await producer.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["clean", "killed"])
async def test_an_answer_after_a_restart_without_local_state_still_decides(
    hub_only: Pipeline, sig: int
) -> None:
    await hub_only.submit([declaration_xml(reference="26FRRESTART0000001")])
    [record] = await hub_only.records(hub_only.kafka.topics.requests("dgal"), expected=1)
    request = AuthorityRequest.model_validate_json(
        hub_only.kafka.envelope("dgal").open(record.value or b"", topic=record.topic).payload
    )

    hub_only.restart_hub(sig=sig, wipe_local_state=True)
    await answer_valid(hub_only, request)

    [received] = await hub_only.decisions(1)
    assert received.decision.reference == "26FRRESTART0000001"
    assert received.decision.outcome is Outcome.RELEASE
    assert "Error in recovery" not in hub_only.hub_log()


async def test_a_deadline_after_a_restart_without_local_state_still_fires(
    silent_hub: Pipeline,
) -> None:
    """The open case comes back through the changelog only (a clean stop committed the
    declaration, the local state is gone): the deadline timer must read the recovered
    table, not only the cases this worker wrote since it started. (The restart takes
    less than the fixture's 20-s deadline: the deadline passes after it.)"""
    await silent_hub.submit([declaration_xml(reference="26FRRESTART0000002")])
    await silent_hub.records(silent_hub.kafka.topics.requests("dgal"), expected=1)

    silent_hub.restart_hub(sig=signal.SIGTERM, wipe_local_state=True)

    [received] = await silent_hub.decisions(1)
    assert received.decision.reference == "26FRRESTART0000002"
    assert received.decision.outcome is Outcome.CONTROL_DOCUMENTARY
    [deadline] = [r for r in received.decision.reasons if r.code == "DEADLINE"]
    assert "no answer from dgal" in deadline.text
    assert "Error in recovery" not in silent_hub.hub_log()
