"""The hub's cases at rest hold no war-material licence in clear (issue 11, item 2).

A declaration quoting a DGA licence (document code ``LEMG``, config/routing.toml) opens a
case that names the licence; the case is written to the ``cases`` table, so to RocksDB and
to the compacted ``<app_id>-cases-changelog`` topic, which anyone with read access to the
hub's internal topics (and every backup of the broker) can read. The values there are
sealed with the hub's state key (AES-256-GCM): the licence is in no record and in no
local file, and a hub restarted with its local state wiped recovers the sealed cases from
the changelog, opens them and decides.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REFERENCE = "26FRSTATE000000001"
LICENCE = "LEMG.FR.2026.SECRET-7731"


def changelog(pipeline: Pipeline) -> str:
    """The cases table's changelog topic: ``<app_id>-cases-changelog``."""
    return f"{pipeline.kafka.env()['GUN_HUB_HUB__APP_ID']}-cases-changelog"


def files_holding(folder: Path, needle: bytes) -> list[str]:
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    ]


async def answer(pipeline: Pipeline, request: AuthorityRequest) -> None:
    """Stand in for the DGA adapter: VALID for every requested document."""
    topic = pipeline.kafka.topics.responses("dga")
    sealed = pipeline.kafka.envelope("dga").seal(
        answer_to(request).model_dump_json().encode(),
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


@pytest.fixture
def patient_hub(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """The hub alone, with a request deadline far longer than a restart: what is tested is
    the recovery of the sealed case, not how long a restart on a busy machine takes (on
    CI's 2 cores, under load, it took longer than the default deadline)."""
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=(),
        hub_env={"GUN_HUB_HUB__REQUEST_DEADLINE_S": "900"},
    )


async def test_the_case_changelog_holds_no_licence_and_a_wiped_hub_still_decides(
    patient_hub: Pipeline,
) -> None:
    hub_only = patient_hub
    licence = LICENCE.encode()
    await hub_only.submit(
        [
            declaration_xml(
                reference=REFERENCE,
                items=(goods_item(1, (document("LEMG", LICENCE, 1, "12", "NAR"),)),),
            )
        ]
    )
    [record] = await hub_only.records(hub_only.kafka.topics.requests("dga"), expected=1)
    request = AuthorityRequest.model_validate_json(
        hub_only.kafka.envelope("dga").open(record.value or b"", topic=record.topic).payload
    )
    assert request.items[0].documents[0].reference == LICENCE  # the case does name it

    opened = await hub_only.records(changelog(hub_only), expected=1)
    cases = [r for r in opened if r.key == REFERENCE.encode() and r.value]
    assert cases, "the case was not written to its changelog"
    assert [r.offset for r in opened if licence in (r.value or b"")] == []
    data_dir = Path(hub_only.hub_env["GUN_HUB_HUB__DATA_DIR"])
    assert files_holding(data_dir, licence) == []  # RocksDB, the operations view

    hub_only.restart_hub(sig=signal.SIGKILL, wipe_local_state=True)
    await answer(hub_only, request)

    [received] = await hub_only.decisions(1)
    assert received.decision.reference == REFERENCE
    # The answer was matched with the case recovered from the changelog: the licence is
    # VALID, and the war-material risk rule (config/risk-rules.toml) sends it to control.
    [result] = received.decision.documents
    assert (result.reference, result.verdict) == (LICENCE, Verdict.VALID)
    assert received.decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert any("WAR-MATERIAL" in reason.code for reason in received.decision.reasons)
    log = hub_only.hub_log()
    assert "Error in recovery" not in log
    assert "does not decrypt" not in log
    everything = await hub_only.records(changelog(hub_only), expected=len(opened) + 1)
    assert [r.offset for r in everything if licence in (r.value or b"")] == []

    # Stopped cleanly, RocksDB has flushed its tables to files: the case is there (its
    # key, the reference, is in clear), its licence is not.
    hub_only.group.stop("hub", sig=signal.SIGTERM)
    stored = files_holding(data_dir, REFERENCE.encode())
    assert any(name.startswith("v1/tables/cases-") for name in stored), stored
    assert files_holding(data_dir, licence) == []
