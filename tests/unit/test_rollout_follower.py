"""What a worker's rollout follower does with each record of ``hub.rollout``
(rollout_follower.py): a setting sealed by the hub applies and wakes whoever waits for it;
anything else is ignored, counted, and changes no mode."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from gun_contract.kafka.client import ClientConfig
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.rollout import RolloutBoard, RolloutMode, RolloutSetting, seal_setting
from gun_hub.runtime.rollout_follower import RolloutFollower

TOPIC = "gun.hub.rollout"
SHADOW = RolloutSetting(
    authority="dga",
    office="FR000690",
    mode=RolloutMode.SHADOW,
    officer="amelie",
    reason="pilot",
    at=datetime(2026, 12, 2, tzinfo=UTC),
)


def record(key: bytes, value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, 0, offset, 0, 1, key, value, None, len(key), len(value), [])


@pytest.fixture
def follower(keys_dir: Path) -> RolloutFollower:
    return RolloutFollower(
        ClientConfig("127.0.0.1:9"),
        TOPIC,
        StateCipher.load(keys_dir, HUB_PARTY),
        RolloutBoard(),
    )


def refused() -> float:
    value = REGISTRY.get_sample_value("gun_hub_rollout_settings_refused_total")
    return value or 0.0


async def test_a_hub_sealed_setting_applies_and_wakes_its_waiter(
    follower: RolloutFollower, keys_dir: Path
) -> None:
    sealed = seal_setting(StateCipher.load(keys_dir, HUB_PARTY), SHADOW)
    assert not await follower.applied(SHADOW, 0.01)  # not read yet
    assert follower.apply(record(SHADOW.key, sealed)) == SHADOW
    assert follower.board.mode_for("dga", "FR000690") is RolloutMode.SHADOW
    assert await follower.applied(SHADOW, 0.01)


@pytest.mark.parametrize(
    "value",
    [b"", b'{"authority": "dga", "mode": "off"}', b"\x00" * 5000],
    ids=["empty", "plain-json", "oversized"],
)
async def test_anything_not_sealed_by_the_hub_is_ignored_and_counted(
    follower: RolloutFollower, value: bytes
) -> None:
    before = refused()
    assert follower.apply(record(b"dga|*", value)) is None
    assert refused() == before + 1
    assert follower.board.mode_for("dga", None) is RolloutMode.ENFORCE


async def test_a_setting_moved_under_another_scope_is_refused(
    follower: RolloutFollower, keys_dir: Path
) -> None:
    sealed = seal_setting(StateCipher.load(keys_dir, HUB_PARTY), SHADOW)
    assert follower.apply(record(b"dga|*", sealed)) is None  # FR000690's, not everywhere's
    assert follower.board.settings() == []


# Review stop 40-F (suspected, shown by tests/integration/
# test_an_officers_rollout_mode_outlives_what_is_written_after_it.py): a record written
# after an officer's setting under its scope's key must not take the mode away, neither
# from a worker that reads it as it comes nor from one that starts later (ADR 0023).
ENFORCE = SHADOW.model_copy(
    update={"mode": RolloutMode.ENFORCE, "at": datetime(2026, 12, 3, tzinfo=UTC)}
)


async def test_a_fresh_worker_keeps_the_mode_set_before_garbage_or_a_tombstone(
    follower: RolloutFollower, keys_dir: Path
) -> None:
    sealed = seal_setting(StateCipher.load(keys_dir, HUB_PARTY), SHADOW)
    before = refused()
    follower.apply(record(SHADOW.key, sealed, 0))
    assert follower.apply(record(SHADOW.key, b"\x8f" * 40, 1)) is None
    assert follower.apply(record(SHADOW.key, b"", 2)) is None  # a tombstone reads as b""
    assert refused() == before + 2
    assert follower.board.mode_for("dga", "FR000690") is RolloutMode.SHADOW


async def test_an_older_setting_written_again_does_not_replace_the_newer(
    follower: RolloutFollower, keys_dir: Path
) -> None:
    """A hub-sealed record copied back onto the topic (any party that may write it and
    read it) opens: it must not bring an officer's earlier mode back."""
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    shadow = seal_setting(cipher, SHADOW)
    follower.apply(record(SHADOW.key, shadow, 0))
    assert follower.apply(record(ENFORCE.key, seal_setting(cipher, ENFORCE), 1)) == ENFORCE
    before = refused()
    assert follower.apply(record(SHADOW.key, shadow, 2)) is None
    assert refused() == before + 1
    assert follower.board.mode_for("dga", "FR000690") is RolloutMode.ENFORCE
    assert follower.board.settings() == [ENFORCE]
