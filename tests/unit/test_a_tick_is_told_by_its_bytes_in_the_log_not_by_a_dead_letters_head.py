"""A dead letter about a record of the hub's deadlines topic is redriven only when the
record the broker holds there is a takeover notice: a tick is not redriven, whatever the
dead letter's own bytes say (a review of stop 58).

The desk tells a notice from a tick by the dead letter's value (pipeline/redrive.py
``not_redrivable``, ``original``). A dead letter whose original did not fit keeps only its
head, and the desk checks the original against the digest in its headers
(web/dead_letters.py ``_original``), never against that head. Any party may write
``gun.dlq`` (the clearance system and the adapters on a secured cluster): a dead letter
claiming ``hub.takeover``, its head ``{`` (a notice in clear) and the digest of a tick's
bytes, had the desk republish the tick on ``gun.hub.deadlines``, which the hub read as the
tick again: what the desk says it never does ("ticks are not redriven: the hub ticks
again").
"""

from __future__ import annotations

import hashlib

from gun_contract.dead_letter import (
    HEADER_ORIGINAL_SHA256,
    HEADER_ORIGINAL_SIZE,
    HEADER_ORIGINAL_TRUNCATED,
    ErrorClass,
    SourcePosition,
    dead_letter_headers,
)
from gun_hub.ops.view import FeedRecord
from gun_hub.runtime.app import UNHANDLED
from tests.unit.test_dead_letter_desk import TOPICS, Desk, desk

__all__ = ["desk"]  # the fixture, used by name below

KEY = b"26FRDSK00000000001"


async def test_a_tick_is_told_by_its_bytes_in_the_log_not_by_a_dead_letters_head(
    desk: Desk,
) -> None:
    tick = b"1"  # a deadline tick: its value the version
    desk.broker.put(TOPICS.deadlines, 1, 5, KEY, tick)
    claimed = dead_letter_headers(
        error_class=ErrorClass.PERMANENT,
        kind=UNHANDLED,
        reason="forged",
        source=SourcePosition(TOPICS.deadlines, 1, 5, KEY),
        component="hub.takeover",
    )
    headers = [
        *claimed,
        (HEADER_ORIGINAL_TRUNCATED, b"true"),
        (HEADER_ORIGINAL_SIZE, str(len(tick)).encode()),
        (HEADER_ORIGINAL_SHA256, hashlib.sha256(tick).hexdigest().encode()),
    ]
    head = b"{"  # what a notice in clear begins with
    desk.broker.put(TOPICS.dlq, 1, 0, KEY, head, headers)
    desk.view.apply([FeedRecord(TOPICS.dlq, 1, 0, 0, head, headers, KEY)])

    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 409, (
        "a tick was republished on the deadlines topic: the desk judged it a notice by "
        f"the dead letter's head, not by the original in the log ({body})"
    )
    assert "ticks again" in body["error"]
    assert desk.broker.to(TOPICS.deadlines) == []
