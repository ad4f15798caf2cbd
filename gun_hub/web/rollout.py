"""The rollout desk, on the officer listener: ``gun-hub rollout`` (rollout.py, ADR 0012).

* ``GET /rollout``: each authority's mode, everywhere and at the offices that have their
  own, with who set it, when and why;
* ``POST /rollout`` (``application/json``: ``authority``, ``mode``, ``reason``, optionally
  ``office``): set a mode, for a rollout operator only (``GUN_HUB_WEB__ROLLOUT_OPERATORS``);
* ``GET /rollout/report[?from=&to=]``: the pilot report (ops/view.py ``rollout_report``).

A mode set is audited before it is published, as a dead-letter redrive is: the action is
on the broker (the audit keeper chains it) or nothing is set. The setting is then sealed
with the hub's state key onto the ``hub.rollout`` topic (kept whole, ADR 0023), dated
after the setting it replaces, and the answer waits until this worker applies it, so the
next ``rollout show`` shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from gun_contract.effects import OutgoingRecord
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import TopicRegistry
from gun_contract.untrusted_json import parse_untrusted
from gun_hub.domain.rollout import RolloutBoard, RolloutMode, RolloutSetting, seal_setting
from gun_hub.ops.view import DAYS_IN
from gun_hub.security.operator_actions import ActionKind, OperatorAction, seal_action
from gun_hub.web.common import BadRequest, answer, day, from_view, refuse
from gun_hub.web.dead_letters import OFFICER
from gun_hub.web.queries import ViewReader

log = logging.getLogger(__name__)
_APPLIED_WITHIN_S = 10.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RolloutDesk:
    """What the desk reads (the worker's board) and writes with (acknowledged sends, the
    hub's state key)."""

    topics: TopicRegistry
    board: RolloutBoard
    applied: Callable[[RolloutSetting, float], Awaitable[bool]]
    send: Callable[[OutgoingRecord], Awaitable[int]]
    cipher: StateCipher
    operators: frozenset[str]
    # Whether the worker's follower has read hub.rollout through since it started
    # (``RolloutFollower.caught_up``): until then the board is not the modes in force.
    settings_read: Callable[[], bool]
    clock: Callable[[], datetime] = field(default=_utc_now)

    def modes(self) -> dict[str, Any]:
        """Every routed authority's mode everywhere, and the offices with their own."""
        settings = self.board.settings()
        shown: dict[str, Any] = {}
        for authority in self.topics.authorities:
            own = [s for s in settings if s.authority == authority]
            everywhere = next((s for s in own if s.office is None), None)
            shown[authority] = {
                "mode": self.board.mode_for(authority, None).value,
                "set": _described(everywhere),
                "offices": {
                    s.office: {"mode": s.mode.value, "set": _described(s)}
                    for s in own
                    if s.office is not None
                },
            }
        return shown


def _described(setting: RolloutSetting | None) -> dict[str, str] | None:
    if setting is None:
        return None  # never set: the default, enforce
    return {"by": setting.officer, "at": setting.at.isoformat(), "reason": setting.reason}


def add_rollout_routes(
    app: web.Application, reader: ViewReader | None, desk: RolloutDesk | None
) -> None:
    async def show(request: web.Request) -> web.StreamResponse:
        if desk is None:
            return _no_desk()
        if not desk.settings_read():
            return _still_reading()
        return answer({"authorities": desk.modes()})

    async def set_mode(request: web.Request) -> web.StreamResponse:
        if desk is None:
            return _no_desk()
        if not desk.settings_read():
            # Dated after the setting in force and audited with what it replaces: both
            # read from the board, empty until then (review of stop 47).
            return _still_reading()
        if request.content_type != "application/json":
            return refuse(415, "send Content-Type: application/json")
        officer = str(request.get(OFFICER, ""))
        if officer not in desk.operators:
            log.info("officer %s may not set a rollout mode (not a rollout operator)", officer)
            return refuse(
                403, "only rollout operators may set a mode (GUN_HUB_WEB__ROLLOUT_OPERATORS)"
            )
        setting = _dated_after_the_one_it_replaces(
            await _setting(request, desk, officer), desk.board
        )
        previous = desk.board.mode_for(setting.authority, setting.office)
        action = OperatorAction(
            action=ActionKind.ROLLOUT_SET,
            officer=officer,
            setting=f"{setting.scope}: {previous.value} -> {setting.mode.value} ({setting.reason})",
            at=setting.at,
        )
        try:
            await desk.send(
                OutgoingRecord(
                    desk.topics.operator_actions,
                    setting.key,
                    seal_action(desk.cipher, setting.key, action),
                )
            )
        except (KafkaError, TimeoutError) as err:
            log.warning("rollout setting not recorded: %s", type(err).__name__)
            return refuse(
                503, f"the action could not be recorded ({type(err).__name__}): not done, ask again"
            )
        try:
            await desk.send(
                OutgoingRecord(desk.topics.rollout, setting.key, seal_setting(desk.cipher, setting))
            )
        except (KafkaError, TimeoutError) as err:
            log.warning("rollout setting recorded but not published: %s", type(err).__name__)
            return refuse(
                503, f"the broker did not take the setting ({type(err).__name__}): set it again"
            )
        applied = await desk.applied(setting, _APPLIED_WITHIN_S)
        log.info(
            "officer %s set %s from %s to %s: %s",
            officer,
            setting.scope,
            previous.value,
            setting.mode.value,
            setting.reason,
        )
        return answer(
            {
                "authority": setting.authority,
                "office": setting.office,
                "mode": setting.mode.value,
                "previous": previous.value,
                "applied": applied,
            }
        )

    async def report(request: web.Request) -> web.StreamResponse:
        since = day(request.query.get("from"), "from")
        until = day(request.query.get("to"), "to")
        found = await from_view(reader, lambda q: q.rollout_report(since, until), "rollout")
        if isinstance(found, web.Response):
            return found
        return answer(
            {
                "from": request.query.get("from"),
                "to": request.query.get("to"),
                "timezone": DAYS_IN,  # the days' (review stop 37-s, F7)
                "report": found,
            }
        )

    app.router.add_get("/rollout", show, allow_head=False)
    app.router.add_post("/rollout", set_mode)
    app.router.add_get("/rollout/report", report, allow_head=False)


async def _setting(request: web.Request, desk: RolloutDesk, officer: str) -> RolloutSetting:
    try:
        body = parse_untrusted(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    authority = body.get("authority")
    if authority not in desk.topics.authorities:
        raise BadRequest(
            f"unknown authority {str(authority)[:40]!r}: one of "
            + ", ".join(desk.topics.authorities)
        )
    if body.get("mode") not in {m.value for m in RolloutMode}:
        raise BadRequest("mode: one of " + ", ".join(m.value for m in RolloutMode))
    try:
        return RolloutSetting(
            authority=authority,
            office=body.get("office") or None,
            mode=RolloutMode(body["mode"]),
            officer=officer,
            reason=str(body.get("reason") or ""),
            at=desk.clock(),
        )
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise BadRequest(problems) from None


def _dated_after_the_one_it_replaces(
    setting: RolloutSetting, board: RolloutBoard
) -> RolloutSetting:
    """``setting``, dated after its scope's setting in force: the workers keep the newest
    by date (ADR 0023), and the one in force may have been set through a worker whose
    clock is ahead of this one's."""
    held = board.setting_for(setting.authority, setting.office)
    if held is None or setting.at > held.at:
        return setting
    return setting.model_copy(update={"at": held.at + timedelta(microseconds=1)})


def _no_desk() -> web.Response:
    return refuse(503, "the rollout desk is not available on this listener")


def _still_reading() -> web.Response:
    return refuse(
        503, "this worker is still reading the modes in force (hub.rollout): ask again shortly"
    )
