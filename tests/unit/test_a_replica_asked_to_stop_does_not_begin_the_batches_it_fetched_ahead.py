"""A replica asked to stop does not begin the records of the batches it fetched ahead: its
hand-over commit comes once the calls under way end (adapters/base/runner.py ``run``;
docs/adapters.md, "No declaration waits for another's batch"; a third review of the
batches under way, its test first).

Before 4fe7230 the poll stopped between batches: a stop waited for the one batch under
way, and nothing was fetched past it. Now up to four batches (500 records each) are
fetched and admitted while the first is handled, and on a clean stop ``run`` waits for
every one of them to be handled whole (``self._batches.drain()`` in its ``try``; the
batches' ``stopping`` is set only in its ``finally``, after that drain). The stop
deadline started at the signal (``stopping(deadline, runner.stop)``): with a slow partner
four polls' worth of calls, queued behind ``adapter.max_in_flight``, outlast it, and the
process is ended (``os._exit``) before its last commit, the hand-over: the stop becomes a
crash (the next owner asks again what was answered, a reservation answered UNAVAILABLE
applied after its deletion; calls under way unnamed). The batch docstring says a batch
leaves its records when "the replica stopping": on a clean stop, it does not.

Here one call at a time is made (``max_in_flight=1``); A's reservation is held at the
partner; B's, fetched in the next poll while A's batch is under way, waits for the slot.
The replica is asked to stop, then A is answered: B's call is made all the same, after
the stop, and the hand-over commit goes past it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from adapters.base import load_adapter
from adapters.base import runner as runner_module
from adapters.base.runner import AdapterRunner
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import AdapterSettings, SecuritySettings, Settings
from tests.conftest import envelope_of
from tests.unit.test_a_declaration_read_after_a_slow_one_is_not_held_behind_its_partner_call import (  # noqa: E501
    request_record,
)
from tests.unit.test_a_replica_whose_batch_failed_starts_its_stop_deadline_before_waiting_on_the_broker import (  # noqa: E501
    Polled,
)
from tests.unit.test_adapter_pending_operations_outlive_the_request_log import FakeProducer
from tests.unit.test_batches_handled_side_by_side_keep_each_declarations_order_and_commit_behind_the_slowest import (  # noqa: E501
    A,
    B,
    HeldForA,
)
from tests.unit.test_state_pending_queue import TOPICS


class Producer(FakeProducer):
    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[None]:
        self.sent.append({"topic": topic, "value": value, **kwargs})
        settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        settled.set_result(None)
        return settled


async def test_a_stop_leaves_the_records_of_batches_fetched_ahead_to_the_next_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    settings = Settings(
        security=SecuritySettings(keys_dir=keys, state_dir=tmp_path / "state"),
        adapter=AdapterSettings(max_in_flight=1),
    )
    partner = HeldForA()
    runner = AdapterRunner(
        load_adapter("dga"), settings, TOPICS, envelope_of("dga", TOPICS, keys), partner
    )
    consumer = Polled(
        [
            [request_record(0, A, keys)],
            [request_record(1, B, keys, licence="FR-LEMG-2026-B-ONLY")],
        ]
    )
    producer = Producer()
    monkeypatch.setattr(runner_module, "AIOKafkaConsumer", lambda **_: consumer)
    monkeypatch.setattr(runner_module, "AIOKafkaProducer", lambda **_: producer)
    running = asyncio.create_task(runner.run())
    try:
        await asyncio.wait_for(partner.a_reserving.wait(), 10)
        consumer.next_ready.set()  # B's batch fetched while A's is under way
        await asyncio.sleep(0.3)  # fetched and admitted: it waits for A's slot
        assert runner._batches.under_way == 2
        runner.stop()  # SIGTERM: a clean stop
        await asyncio.sleep(0.3)
        partner.let_a_go.set()  # the call under way ends
        await asyncio.wait_for(running, 10)
        offset, metadata = consumer.commits[0]
        assert ("begins", B, 1) not in partner.events, (
            "asked to stop while A's call was under way, the replica went on to ask B's "
            "reservation (fetched ahead, not begun at the stop), and its hand-over commit "
            f"waited for it ({offset}, {metadata!r}): a clean stop waits for every batch "
            "fetched ahead, four polls' worth of partner calls, past its stop deadline"
        )
        assert offset <= 1, "the hand-over commit does not pass B's record"
    finally:
        partner.let_a_go.set()
        if not running.done():
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
