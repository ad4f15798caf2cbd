"""A lag record holding NaN or Infinity makes ``/api/dashboard`` answer a body that is not
JSON.

Any party may write ``gun.ops.lag`` (lag_follower.py says so). ``LagSnapshot``'s floats
(``GroupLag.oldest_unread_age_s``, ``retention_headroom_s``, ``UnreadAge.age_s`` ...)
are plain ``float``: pydantic reads ``NaN``, ``Infinity`` and ``1e999`` (inf) from the
record. ``LagFollower.apply`` keeps the snapshot (dated now, it is the newest), the
dashboard (ops/dashboard.py ``live_figures``) dumps its groups as they are, and
``web.common.answer`` serialises with ``json.dumps`` (``allow_nan`` left True): the body
holds ``NaN``/``Infinity``, which no JSON parser takes (the page's ``response.json()``
rejects it). Every officer's dashboard stops updating for as long as the forged snapshot
is the newest (re-sent every few minutes, for ever), a 200 with a broken body rather than
a skipped record.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

from gun_contract.kafka.client import ClientConfig
from gun_hub.ops.dashboard import live_figures
from gun_hub.ops.lag_follower import LagFollower
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.web.common import answer

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FORGED = (
    b'{"at":"2026-11-22T12:00:00Z","partitions":[],"groups":[{"group":"gun-hub","lag":1,'
    b'"growing":false,"oldest_unread_age_s":NaN,"retention_headroom_s":1e999}]}'
)


def _refuse(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_the_dashboard_answers_json_whatever_a_lag_record_holds() -> None:
    state = OpsState()
    follower = LagFollower(ClientConfig("localhost:9092"), "gun.ops.lag", state, clock=lambda: NOW)
    record = SimpleNamespace(topic="gun.ops.lag", partition=0, offset=0, value=FORGED)
    follower.apply(record)
    body = answer(live_figures(state, NOW.timestamp())).body
    assert isinstance(body, bytes)
    # Failed before: json.loads(..., parse_constant) met NaN in the body.
    json.loads(body, parse_constant=_refuse)
