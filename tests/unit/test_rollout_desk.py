"""The rollout desk on the officer listener (ADR 0012): any officer shows the modes; only
a rollout operator sets one, audited on the broker before the setting is published, and
a setting the broker did not take is not in force.

The listener runs for real (aiohttp on a free port); the broker is the dead-letter desk
tests' list of what was sent, and the worker's follower applies what reached it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.rollout import RolloutBoard, RolloutMode, RolloutSetting, open_setting
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.security.operator_actions import ActionKind, open_action
from gun_hub.security.web_auth import add_officer, basic_authorization
from gun_hub.web import build_web
from gun_hub.web.rollout import RolloutDesk
from tests.unit.test_dead_letter_desk import SECRETS, TOPICS, Broker
from tests.unit.test_web_listeners import settings_for


@dataclass
class Listener:
    url: str
    broker: Broker
    cipher: StateCipher
    board: RolloutBoard
    # Whether the worker's follower has read hub.rollout to its end since it started.
    settings_read: list[bool]

    async def call(
        self, method: str, path: str, officer: str = "alice", body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": basic_authorization(officer, SECRETS[officer])}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.url}{path}", json=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json(content_type=None)

    def settings_published(self) -> list[RolloutSetting]:
        return [
            open_setting(self.cipher, r.key or b"", r.value) for r in self.broker.to(TOPICS.rollout)
        ]


@pytest.fixture
async def listener(tmp_path: Path, keys_dir: Path) -> AsyncIterator[Listener]:
    settings, _ = settings_for(tmp_path)
    assert settings.officers_file is not None
    add_officer(settings.officers_file, "bob", SECRETS["bob"])  # an officer, not an operator
    broker = Broker()
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    board = RolloutBoard()

    async def applied(setting: RolloutSetting, timeout_s: float) -> bool:
        """The worker's follower: applies what the broker took."""
        for published in [
            open_setting(cipher, r.key or b"", r.value) for r in broker.to(TOPICS.rollout)
        ]:
            board.apply(published)
        return setting in board.settings()

    settings_read = [True]
    desk = RolloutDesk(
        TOPICS,
        board,
        applied,
        broker.send,
        cipher,
        frozenset({"alice"}),
        settings_read=lambda: settings_read[0],
    )
    web = build_web(settings, None, OpsState(), set(), rollout=desk)
    assert web is not None
    await web.start()
    try:
        yield Listener(
            f"http://127.0.0.1:{settings.officer_port}", broker, cipher, board, settings_read
        )
    finally:
        await web.stop()


DGA_SHADOW = {"authority": "dga", "mode": "shadow", "reason": "pilot", "office": "FR000690"}


async def test_any_officer_sees_every_authority_enforced_until_set(listener: Listener) -> None:
    status, body = await listener.call("GET", "/rollout", "bob")
    assert status == 200
    assert body["authorities"] == {
        authority: {"mode": "enforce", "set": None, "offices": {}}
        for authority in ("cites", "dga", "dgal")
    }


async def test_an_operator_sets_a_mode_audited_before_it_is_published(listener: Listener) -> None:
    status, body = await listener.call("POST", "/rollout", body=DGA_SHADOW)
    assert status == 200, body
    assert body == {
        "authority": "dga",
        "office": "FR000690",
        "mode": "shadow",
        "previous": "enforce",
        "applied": True,
    }
    first, second = listener.broker.sent
    assert first.topic == TOPICS.operator_actions  # the action, before the setting
    action = open_action(listener.cipher, first.key or b"", first.value)
    assert (action.action, action.officer, action.setting) == (
        ActionKind.ROLLOUT_SET,
        "alice",
        "dga at FR000690: enforce -> shadow (pilot)",
    )
    assert second.topic == TOPICS.rollout
    [published] = listener.settings_published()
    assert (published.mode, published.officer) == (RolloutMode.SHADOW, "alice")
    _, shown = await listener.call("GET", "/rollout", "bob")
    assert shown["authorities"]["dga"]["offices"]["FR000690"]["mode"] == "shadow"
    assert shown["authorities"]["dga"]["mode"] == "enforce"


async def test_an_officer_who_is_not_a_rollout_operator_sets_nothing(listener: Listener) -> None:
    status, body = await listener.call("POST", "/rollout", "bob", DGA_SHADOW)
    assert status == 403
    assert "GUN_HUB_WEB__ROLLOUT_OPERATORS" in body["error"]
    assert listener.broker.sent == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"authority": "customs"}, "unknown authority"),
        ({"mode": "pilot"}, "mode: one of off, shadow, advice, enforce"),
        ({"office": "Le Havre"}, "customs office reference"),
        ({"reason": ""}, "reason"),
    ],
)
async def test_a_bad_setting_is_refused_with_its_reason_and_nothing_is_sent(
    listener: Listener, change: dict[str, str], error: str
) -> None:
    status, body = await listener.call("POST", "/rollout", body={**DGA_SHADOW, **change})
    assert status == 400
    assert error in body["error"]
    assert listener.broker.sent == []


async def test_a_setting_whose_action_the_broker_refused_is_not_set(listener: Listener) -> None:
    listener.broker.refusing = True
    status, body = await listener.call("POST", "/rollout", body=DGA_SHADOW)
    assert status == 503
    assert "not done" in body["error"]
    assert listener.broker.sent == []
    assert listener.board.mode_for("dga", "FR000690") is RolloutMode.ENFORCE


async def test_the_dashboard_shows_each_authority_s_mode(listener: Listener) -> None:
    status, _ = await listener.call("POST", "/rollout", body=DGA_SHADOW)
    assert status == 200
    status, figures = await listener.call("GET", "/api/dashboard", "bob")
    assert status == 200
    dga = figures["rollout"]["dga"]
    assert dga["mode"] == "enforce"  # everywhere
    at_office = dga["offices"]["FR000690"]
    assert (at_office["mode"], at_office["set"]["by"], at_office["set"]["reason"]) == (
        "shadow",
        "alice",
        "pilot",
    )
    assert figures["rollout"]["dgal"] == {"mode": "enforce", "set": None, "offices": {}}


async def test_a_setting_is_dated_after_the_one_it_replaces_whatever_this_worker_s_clock(
    listener: Listener,
) -> None:
    """Workers keep the newest setting of a scope by its date (ADR 0023): one set through
    a worker whose clock is behind the one that set the previous must still be newer."""
    ahead = RolloutSetting(
        authority="dga",
        office="FR000690",
        mode=RolloutMode.OFF,
        officer="alice",
        reason="partner down",
        at=datetime.now(UTC) + timedelta(hours=1),  # set through a worker an hour ahead
    )
    listener.board.apply(ahead)
    status, body = await listener.call("POST", "/rollout", body=DGA_SHADOW)
    assert status == 200, body
    assert body["previous"] == "off"
    [published] = listener.settings_published()
    assert published.at > ahead.at
    assert listener.board.mode_for("dga", "FR000690") is RolloutMode.SHADOW


async def test_a_desk_that_has_not_read_the_settings_in_force_sets_and_shows_nothing(
    listener: Listener,
) -> None:
    """Just started, the worker's board is empty until its follower has read hub.rollout
    through: a setting made then was dated by this worker's clock alone (refused by every
    worker as older than the one in force if that was set through a clock ahead, while
    the command said it was set), audited as replacing ``enforce``, and ``rollout show``
    said every authority was enforced (review of stop 47)."""
    listener.settings_read[0] = False
    status, body = await listener.call("POST", "/rollout", body=DGA_SHADOW)
    assert status == 503
    assert "still reading" in body["error"]
    assert listener.broker.sent == []  # neither audited nor published
    status, _ = await listener.call("GET", "/rollout", "bob")
    assert status == 503
    status, figures = await listener.call("GET", "/api/dashboard", "bob")
    assert status == 200
    assert "rollout" not in figures  # not every authority shown enforced meanwhile
    listener.settings_read[0] = True
    status, _ = await listener.call("POST", "/rollout", body=DGA_SHADOW)
    assert status == 200
