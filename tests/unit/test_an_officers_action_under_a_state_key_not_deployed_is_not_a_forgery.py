"""An officer's action or a rollout mode sealed with a state key this worker lacks is held
for the key, never refused as forged nor ignored (review stop 41, R3; ADR 0022's addendum
of stop 41).

The officer listener of one process (a worker, or ``gun-hub view``) seals what an officer
does with the hub's state key; the audit keeper of the worker owning the operator-actions
partition chains it, and every worker's rollout follower applies a mode set. A worker that
had not been given a rotated state key yet wrote a security dead letter
OPERATOR_ACTION_UNVERIFIED for the action (never chained: the audit lost who redrove a
record) and ignored the mode set (it decided in the old mode until its own restart). Now
both fail naming the key, as the agents and the decision publisher do: the agent that
reads the operator actions stops the worker after retrying, without committing past the
record, which is chained once the worker restarts with the key; the rollout follower
waits for the key as long, then stops the worker (or ``gun-hub view``). A value that does
not open for another reason (random bytes, tampered, another party's key) is what it was.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.kafka.client import ClientConfig
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.security.state_cipher import StateCipher, StateKeyMissing
from gun_hub.domain.rollout import RolloutBoard, RolloutMode, RolloutSetting, seal_setting
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.audit_keeper import OPERATOR_ACTION_UNVERIFIED
from gun_hub.runtime import app as runtime
from gun_hub.runtime import rollout_follower
from gun_hub.runtime.app import _handled
from gun_hub.runtime.rollout_follower import RolloutFollower
from gun_hub.security.operator_actions import seal_action
from tests.conftest import PARTIES
from tests.unit.test_officer_actions_are_audited import KEY, redrive_by
from tests.unit.test_pipeline import Hub

SHADOW = RolloutSetting(
    authority="dga",
    office="FR000690",
    mode=RolloutMode.SHADOW,
    officer="amelie",
    reason="pilot",
    at=datetime(2026, 12, 5, tzinfo=UTC),
)


class Rollout:
    """The operator's folder, a worker's copy made before ``keys rotate hub --state
    --use-now`` (not restarted yet) and the cipher of a process given the new key."""

    def __init__(self, tmp_path: Path) -> None:
        self.operator = tmp_path / "operator"
        KeystoreFolder(self.operator).init(PARTIES, force=True)
        self.late = tmp_path / "worker-b"
        shutil.copytree(self.operator, self.late)
        # In use at once: what a rotation's use time reached before the rollout ended
        # comes to (the default use time keeps this from happening: the other test file).
        [self.kid] = KeystoreFolder(self.operator).rotate(
            HUB_PARTY, state=True, use_from=datetime.now(UTC)
        )
        self.restarted = StateCipher.load(self.operator, HUB_PARTY)

    def deploy(self) -> None:
        """The late worker is given the rotated key file (before its restart)."""
        shutil.copy(self.operator / "hub.jwk", self.late / "hub.jwk")


@pytest.fixture
def rollout(tmp_path: Path) -> Rollout:
    return Rollout(tmp_path)


def letters(hub: Hub, outbox: Effects) -> list[str | None]:
    return [header_value(r.headers, HEADER_ERROR_KIND) for r in outbox.to(hub.topics.dlq)]


def chained(hub: Hub, outbox: Effects) -> list[str]:
    return [json.loads(r.value)["officer"] for r in outbox.to(hub.topics.audit)]


async def test_an_action_under_a_key_the_worker_lacks_is_held_then_chained_once_it_has_it(
    rollout: Rollout, routing_table: RoutingTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "_CLUSTER_RETRIES", 2)  # the backoff is not under test
    worker_b = Hub(routing_table, rollout.late)  # its audit keeper owns partition 2
    source = SourcePosition(worker_b.topics.operator_actions, 2, 40, KEY)
    sealed = seal_action(rollout.restarted, KEY, redrive_by("alice"))

    def keep(value: bytes) -> Effects:
        return worker_b.audit_keeper.operator_action(KEY, value, source)

    # As the operator-actions agent runs it: no dead letter, no chain, nothing sent; the
    # agent then stops the worker (handled_agent: test_a_case_that_does_not_open_...),
    # and the record, never marked handled, is read again.
    with pytest.raises(StateKeyMissing) as missing:
        await _handled(lambda: keep(sealed), sealed, source, worker_b.topics.dlq, "x")
    assert missing.value.kid == rollout.kid

    rollout.deploy()  # restarted with the key: the same record
    outbox = await _handled(lambda: keep(sealed), sealed, source, worker_b.topics.dlq, "x")
    assert chained(worker_b, outbox) == ["alice"]
    assert letters(worker_b, outbox) == []


@pytest.mark.parametrize("form", ["random bytes", "tampered", "another party's state key"])
def test_a_value_that_does_not_open_otherwise_is_still_refused_as_unverified(
    rollout: Rollout, routing_table: RoutingTable, form: str
) -> None:
    worker = Hub(routing_table, rollout.operator)
    source = SourcePosition(worker.topics.operator_actions, 2, 41, KEY)
    sealed = seal_action(worker.outbox_cipher, KEY, redrive_by("mallory"))
    value = {
        "random bytes": bytes(range(256)),
        "tampered": sealed[:-1] + bytes([sealed[-1] ^ 1]),
        "another party's state key": seal_action(
            StateCipher.load(rollout.operator, "dgal"), KEY, redrive_by("mallory")
        ),
    }[form]
    outbox = worker.audit_keeper.operator_action(KEY, value, source)
    assert chained(worker, outbox) == []
    assert letters(worker, outbox) == [OPERATOR_ACTION_UNVERIFIED]


def record(value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    key = SHADOW.key
    return ConsumerRecord(
        "gun.hub.rollout", 0, offset, 0, 1, key, value, None, len(key), len(value), []
    )


def follower_of(folder: Path, patience_s: float) -> RolloutFollower:
    return RolloutFollower(
        ClientConfig("127.0.0.1:9"),
        "gun.hub.rollout",
        StateCipher.load(folder, HUB_PARTY),
        RolloutBoard(),
        key_missing_patience_s=patience_s,
    )


async def test_a_mode_set_under_a_key_the_worker_lacks_is_ignored_naming_the_key(
    rollout: Rollout, caplog: pytest.LogCaptureFixture
) -> None:
    """Waited for, then ignored with a critical line naming the key: the process keeps the
    modes it holds and goes on. Restarted with the key, it reads the topic (kept whole)
    from its start and applies the setting. It does not stop: a key id nobody holds, on a
    record anyone allowed to write the topic can send, stopped every worker and the view
    at every start (review stop 41, G1)."""
    follower = follower_of(rollout.late, patience_s=0.0)
    sealed = seal_setting(rollout.restarted, SHADOW)
    assert await follower.apply_waiting_for_the_key(record(sealed)) is None
    assert follower.board.settings() == []
    [ignored] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert rollout.kid in ignored.getMessage()
    assert "deploy the state key" in ignored.getMessage()

    rollout.deploy()  # restarted with the key
    restarted = follower_of(rollout.late, patience_s=0.0)
    await restarted.apply_waiting_for_the_key(record(sealed))
    assert restarted.board.mode_for("dga", "FR000690") is RolloutMode.SHADOW


async def test_the_wait_for_missing_keys_is_spent_once_not_per_record(
    rollout: Rollout, caplog: pytest.LogCaptureFixture
) -> None:
    """Twenty records under key ids nobody holds: the follower waits once, then ignores
    the rest at once (a thousand such records would otherwise hold a starting worker
    unready for hours)."""
    follower = follower_of(rollout.late, patience_s=0.2)
    sealed = seal_setting(rollout.restarted, SHADOW)
    for _ in range(20):
        assert await follower.apply_waiting_for_the_key(record(sealed)) is None
    waits = [r for r in caplog.records if "read again for up to" in r.getMessage()]
    assert len(waits) == 1
    assert len([r for r in caplog.records if r.levelno == logging.CRITICAL]) == 20


class DeployOnWarning(logging.Handler):
    """The operator, deploying the key file when the follower says it waits for it."""

    def __init__(self, rollout: Rollout) -> None:
        super().__init__(logging.WARNING)
        self.rollout = rollout
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.said.append(record.getMessage())
        self.rollout.deploy()


async def test_a_mode_set_under_a_key_deployed_while_the_follower_waits_applies(
    rollout: Rollout,
) -> None:
    """The key file arrives during the wait (read again at each try): applied, nothing
    stops."""
    follower = follower_of(rollout.late, patience_s=60.0)
    sealed = seal_setting(rollout.restarted, SHADOW)
    operator = DeployOnWarning(rollout)
    logger = logging.getLogger(rollout_follower.__name__)
    logger.addHandler(operator)
    try:
        await asyncio.wait_for(follower.apply_waiting_for_the_key(record(sealed)), 30)
    finally:
        logger.removeHandler(operator)
    [waiting] = operator.said
    assert rollout.kid in waiting
    assert follower.board.mode_for("dga", "FR000690") is RolloutMode.SHADOW


async def test_garbage_on_the_rollout_topic_is_still_ignored(rollout: Rollout) -> None:
    follower = follower_of(rollout.late, patience_s=60.0)
    assert await follower.apply_waiting_for_the_key(record(bytes(range(256)))) is None
    assert follower.board.settings() == []
