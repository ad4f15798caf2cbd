"""A trader never learns that a confidential authority (war material: DGA) took part.

The attack: a trader (or anyone holding its token) reads the status of a declaration
with a war-material licence, looking for the authority, its answers, the follow-up
write-off, the post-release alert or the targeting rule. The history it gets must read
exactly like that of the same declaration without the licence: a pending check while
DGA has not answered, then the decision, nothing more.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gun_hub.domain.status_events import StatusEvent, StatusKind
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from gun_hub.web.redaction import trader_history, trader_status

CONFIDENTIAL = frozenset({"dga"})
REFERENCE = "26FRREDACT00000001"


def event(
    minute: int,
    kind: StatusKind,
    detail: str = "",
    authority: str | None = None,
    outcome: str | None = None,
    version: int = 1,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "version": version,
        "kind": kind.value,
        "at": f"2026-11-22T10:{minute:02d}:00+00:00",
        "detail": detail,
    }
    if authority:
        found["authority"] = authority
    if outcome:
        found["outcome"] = outcome
    return found


def with_licence() -> list[dict[str, Any]]:
    """CHED-P (DGAL) and a war-material licence (DGA), released then written off; the
    licence's write-off raised a post-release alert."""
    return [
        event(0, StatusKind.RECEIVED),
        event(0, StatusKind.REQUESTS_SENT, "RESERVE sent to dgal, dga"),
        event(1, StatusKind.ANSWER_RECEIVED, "VALID", "dgal"),
        event(3, StatusKind.ANSWER_RECEIVED, "VALID", "dga"),
        event(3, StatusKind.DECIDED, "", outcome="RELEASE"),
        event(3, StatusKind.FOLLOW_UP_SENT, "WRITE_OFF sent to dgal, dga"),
        event(4, StatusKind.WRITTEN_OFF, "WRITE_OFF: N853 CHEDP.FR.2026.1: VALID", "dgal"),
        event(5, StatusKind.POST_RELEASE_ALERT, "WRITE_OFF: QUANTITY_INSUFFICIENT", "dga"),
        event(6, StatusKind.FOLLOW_UP_FAILED, "DELETE: NOT_FOUND", "dga"),
        event(7, StatusKind.LATE_ANSWER_IGNORED, "verdicts: VALID", "dga"),
    ]


def without_licence() -> list[dict[str, Any]]:
    """The same declaration with the CHED-P alone."""
    return [
        event(0, StatusKind.RECEIVED),
        event(0, StatusKind.REQUESTS_SENT, "RESERVE sent to dgal"),
        event(1, StatusKind.ANSWER_RECEIVED, "VALID", "dgal"),
        event(3, StatusKind.DECIDED, "", outcome="RELEASE"),
        event(3, StatusKind.FOLLOW_UP_SENT, "WRITE_OFF sent to dgal"),
        event(4, StatusKind.WRITTEN_OFF, "WRITE_OFF: N853 CHEDP.FR.2026.1: VALID", "dgal"),
    ]


def leaks(answer: dict[str, Any]) -> list[str]:
    """Words that would tell (``dga`` as a word: ``dgal`` is DGAL, not DGA)."""
    text = json.dumps(answer).lower()
    words = (r"\bdga\b", r"risk\.", r"sampling\.", "post_release_alert", r"\bwar\b", "licen")
    return [word for word in words if re.search(word, text)]


def test_a_licence_leaves_no_trace_in_what_the_trader_reads() -> None:
    seen = trader_status(REFERENCE, with_licence(), CONFIDENTIAL)
    assert seen == trader_status(REFERENCE, without_licence(), CONFIDENTIAL)
    assert leaks(seen) == []
    assert seen["answered_by"] == ["dgal"]
    assert seen["quantities"] == ["WRITTEN_OFF"]
    assert seen["updated_at"] == "2026-11-22T10:04:00+00:00"  # not the alert's time


def test_while_dga_has_not_answered_the_trader_sees_a_pending_check_and_nothing_more() -> None:
    pending = [
        event(0, StatusKind.RECEIVED),
        event(0, StatusKind.REQUESTS_SENT, "RESERVE sent to dga"),
    ]
    seen = trader_status(REFERENCE, pending, CONFIDENTIAL)
    assert seen["state"] == "CHECKING"
    assert [e["kind"] for e in seen["history"]] == ["RECEIVED"]
    assert seen == trader_status(REFERENCE, [event(0, StatusKind.RECEIVED)], CONFIDENTIAL)
    # DGAL answered, DGA not yet: still a pending check, with no name on it.
    both = [
        event(0, StatusKind.RECEIVED),
        event(0, StatusKind.REQUESTS_SENT, "RESERVE sent to dgal, dga"),
        event(1, StatusKind.ANSWER_RECEIVED, "VALID", "dgal"),
    ]
    seen = trader_status(REFERENCE, both, CONFIDENTIAL)
    assert (seen["state"], seen["answered_by"], leaks(seen)) == ("CHECKING", ["dgal"], [])


def test_targeting_and_silence_are_not_told_either() -> None:
    history = [
        event(0, StatusKind.RECEIVED),
        event(0, StatusKind.REQUESTS_SENT, "RESERVE sent to cites, dga"),
        event(1, StatusKind.DEADLINE_PASSED, "no answer from cites, dga within 30s"),
        event(
            1,
            StatusKind.DECIDED,
            "DEADLINE; DEGRADED_MODE; UNAVAILABLE; RISK.WAR-MATERIAL-DOCUMENTARY; SAMPLING.dga",
            outcome="CONTROL_DOCUMENTARY",
        ),
        event(2, StatusKind.SUPERSEDED, "held by DGA (SIGALE) for licence check"),
    ]
    seen = trader_status(REFERENCE, history, CONFIDENTIAL)
    details = {e["kind"]: e["detail"] for e in seen["history"]}
    assert details["REQUESTS_SENT"] == "RESERVE sent to cites"
    assert details["DEADLINE_PASSED"] == "no answer from cites within 30s"
    assert details["DECIDED"] == "DEADLINE; DEGRADED_MODE; UNAVAILABLE"
    assert details["SUPERSEDED"] == ""  # any other text naming the authority is emptied
    assert seen["outcome"] == "CONTROL_DOCUMENTARY"
    assert leaks(seen) == []
    alone = [
        event(0, StatusKind.RECEIVED),
        event(1, StatusKind.DEADLINE_PASSED, "no answer from dga within 30s"),
    ]
    assert [e["kind"] for e in trader_history(alone, CONFIDENTIAL)] == ["RECEIVED"]


def test_only_known_fields_reach_the_trader() -> None:
    history = [{**event(0, StatusKind.RECEIVED), "internal": "x", "declarant": "FR1"}]
    assert set(trader_history(history, CONFIDENTIAL)[0]) == {"version", "kind", "at", "detail"}


def test_officers_read_the_history_as_recorded(tmp_path: Path) -> None:
    topics = FeedTopics(status="s", facts="f", dlq="d", health="h")
    view = OpsView(tmp_path / "v.sqlite3", topics)

    records = [
        FeedRecord(
            "s", 0, n, 0, StatusEvent.model_validate({**e, "reference": REFERENCE}).to_bytes()
        )
        for n, e in enumerate(with_licence())
    ]
    view.apply(records)
    full = view.declaration(REFERENCE)
    assert full is not None
    assert full["post_release_alert"] is True
    assert "dga" in full["answered_by"]
