"""``gun-hub rollout set`` fails when the worker that took the setting has not applied it
(review of stop 47): it printed the change, said on stderr that it was "published, not
applied yet" and exited 0, so a script took a setting every worker refused (dated before
the one in force) for a mode in force. It now exits 6, saying what to check; a setting
applied exits 0 as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gun_contract.effects import OutgoingRecord
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.settings import WebSettings
from gun_hub.cli import app
from gun_hub.domain.rollout import RolloutBoard, RolloutSetting
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.web import build_web
from gun_hub.web.rollout import RolloutDesk
from gun_tools.processes import free_port
from tests.unit.test_dead_letter_desk import TOPICS


async def gun_hub(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


@pytest.fixture
async def officer_listener(
    tmp_path: Path, keys_dir: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, Path]]:
    """An officer listener whose worker applies what it is sent when ``applies`` (the
    test's parameter), and never otherwise; alice a rollout operator."""
    applies: bool = request.param
    officers, credentials = tmp_path / "officers", tmp_path / "alice.credentials"
    added = await gun_hub(
        "officers", "add", "alice", "--file", str(officers), "--credentials-out", str(credentials)
    )
    assert added.exit_code == 0, added.output
    board = RolloutBoard()

    async def applied(setting: RolloutSetting, _timeout_s: float) -> bool:
        if applies:
            board.apply(setting)
        return setting in board.settings()

    async def send(_record: OutgoingRecord) -> int:
        return 0  # the broker took it

    desk = RolloutDesk(
        TOPICS,
        board,
        applied,
        send,
        StateCipher.load(keys_dir, HUB_PARTY),
        frozenset({"alice"}),
        settings_read=lambda: True,
    )
    settings = WebSettings(officer_port=free_port(), officers_file=officers)
    web = build_web(settings, None, OpsState(), set(), rollout=desk)
    assert web is not None
    await web.start()
    try:
        yield f"http://127.0.0.1:{settings.officer_port}", credentials
    finally:
        await web.stop()


def set_dga_shadow(url: str, credentials: Path) -> tuple[str, ...]:
    return (
        "rollout", "set", "dga", "shadow", "--reason", "pilot",
        "--credentials-file", str(credentials), "--hub-url", url,
    )  # fmt: skip


@pytest.mark.parametrize("officer_listener", [False], indirect=True)
async def test_a_setting_the_worker_has_not_applied_fails_the_command(
    officer_listener: tuple[str, Path],
) -> None:
    done = await gun_hub(*set_dga_shadow(*officer_listener))
    assert done.exit_code == 6, done.output
    assert "not applied" in done.output
    assert "rollout show" in done.output


@pytest.mark.parametrize("officer_listener", [True], indirect=True)
async def test_a_setting_applied_is_done(officer_listener: tuple[str, Path]) -> None:
    done = await gun_hub(*set_dga_shadow(*officer_listener))
    assert done.exit_code == 0, done.output
    assert "dga everywhere: enforce -> shadow" in done.output
