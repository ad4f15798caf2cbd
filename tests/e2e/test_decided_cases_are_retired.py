"""A finalised case leaves the hub's cases table after the retention, through the table
(a tombstone on its changelog): a worker restarted without local state does not have it,
and a stale version of it read after the sweep still gives no second decision (issue 12,
bounded state; gun_hub/pipeline/retention.py)."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.status_events import StatusKind
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

REF = "26FRRETIRE00000001"


def exempt(version: int) -> bytes:
    """Decided by the hub alone (an exempt document): nothing reserved anywhere."""
    return declaration_xml(
        reference=REF,
        version=version,
        stage=Stage.LODGED,
        items=(goods_item(1, (document("Y900", "EXEMPT-1", None, None),)),),
    )


@pytest.fixture
def retiring_hub(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """The hub alone, retiring decided cases two seconds after their decision."""
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=(),
        hub_env={
            "GUN_HUB_HUB__CASE_RETENTION_S": "2",
            "GUN_HUB_HUB__CASE_SWEEP_S": "0.5",
            "GUN_HUB_HUB__DECIDED_MARKER_S": "3600",
        },
    )


async def retired(pipeline: Pipeline, count: int) -> None:
    """Until the hub says it retired ``count`` cases (its metric)."""
    async with asyncio.timeout(60):
        while True:
            found = re.search(r"^gun_hub_cases_retired_total (\S+)$", pipeline.metrics(), re.M)
            if found and float(found.group(1)) >= count:
                return
            await asyncio.sleep(0.2)


async def stale_version_ignored(pipeline: Pipeline) -> None:
    """Until the status topic says version 1 was ignored as stale."""
    async with asyncio.timeout(60):
        while True:
            if any(
                s.reference == REF and s.version == 1 and s.kind is StatusKind.IGNORED_STALE_VERSION
                for s in await pipeline.statuses()
            ):
                return
            await asyncio.sleep(0.2)


async def test_a_retired_case_stays_gone_after_a_restart_and_a_stale_version_decides_nothing(
    retiring_hub: Pipeline,
) -> None:
    await retiring_hub.submit([exempt(1)])
    [first] = await retiring_hub.decisions(1, settle_s=0.5)
    assert (first.decision.version, first.decision.outcome) == (1, Outcome.RELEASE)
    await retired(retiring_hub, 1)

    # Deleted through the table: the changelog's last word on the case is a tombstone.
    changelog = f"{retiring_hub.kafka.env()['GUN_HUB_HUB__APP_ID']}-cases-changelog"
    records = [r for r in await retiring_hub.records(changelog, 1) if r.key == REF.encode()]
    assert records, "the case was written to its changelog"
    assert records[-1].value is None

    retiring_hub.restart_hub(sig=signal.SIGKILL, wipe_local_state=True)
    # A stale copy of version 1, sealed afresh (a new message id: the replay memory does
    # not know it), read by a worker that rebuilt its tables from the changelogs.
    await retiring_hub.submit([exempt(1)])
    await stale_version_ignored(retiring_hub)

    # A higher version is decided as usual: exactly one decision per version in all.
    await retiring_hub.submit([exempt(2)])
    decided = await retiring_hub.decisions(2)
    assert sorted(d.decision.version for d in decided) == [1, 2]
