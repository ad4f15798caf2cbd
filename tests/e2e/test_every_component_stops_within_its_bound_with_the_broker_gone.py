"""A component asked to stop with its broker gone ends within its bound, on its own.

Outside audit of stop 51 (a helper, on a broker of its own): the broker stopped and not
coming back, SIGTERM left a hub worker (faust's stop flushing its producer, or committing
through its consumer thread) and an adapter (its final commit waiting for a coordinator)
up for as long as anyone waited: past the supervisor's grace period, a SIGKILL saying
nothing. Each now ends at its stop deadline (``GUN_HUB_STOP_WITHIN_S``,
gun_contract/stop_deadline.py), saying where it waited: records not committed are read
again at the next start (ADR 0001).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from gun_contract.stop_deadline import STOPPED_SHORT
from gun_tools.local_broker import LocalBroker
from tests.builders import declaration_xml
from tests.conftest import KafkaEnv, fresh_kafka_env, started_test_broker
from tests.e2e.conftest import Pipeline, start_pipeline

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

STOP_WITHIN_S = 8.0
# Longer than the bound by far: a component still up by then was SIGKILLed (-9).
PATIENCE_S = STOP_WITHIN_S + 30


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker this test alone uses, and stops under its components."""
    broker = started_test_broker(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def pipeline_on_it(
    own_broker: LocalBroker, keys_dir: Path, samples: Path, tmp_path: Path
) -> Iterator[Pipeline]:
    env: KafkaEnv = fresh_kafka_env(own_broker.bootstrap_servers, keys_dir, tmp_path / "state")
    bound = {"GUN_HUB_STOP_WITHIN_S": str(STOP_WITHIN_S)}
    yield from start_pipeline(env, tmp_path, samples, partners=("dgal",), env=bound)


async def test_the_hub_and_an_adapter_end_within_their_bound_when_the_broker_is_gone(
    pipeline_on_it: Pipeline, own_broker: LocalBroker
) -> None:
    pipeline = pipeline_on_it
    await pipeline.submit([declaration_xml(reference="26FRSTOPPED0000001")])
    [decided] = await pipeline.decisions(1, settle_s=0.0)  # it works before the broker goes
    assert decided.decision.reference == "26FRSTOPPED0000001"
    own_broker.stop()

    for name in ("hub", "adapter-dgal"):
        code = pipeline.group.stop(name, sig=signal.SIGTERM, timeout_s=PATIENCE_S)
        log = (pipeline.group.log_dir / f"{name}.log").read_text(errors="replace")
        assert code in (0, STOPPED_SHORT), f"{name} ended {code}:\n{log[-3000:]}"
        if code == STOPPED_SHORT:  # cut short: it says so, and where it waited (a hub
            # worker shuts its loop down at two thirds of the deadline: hub_worker.py)
            assert re.search(r"did not stop within [0-9.]+ s; (ended|its loop is shut down)", log)
