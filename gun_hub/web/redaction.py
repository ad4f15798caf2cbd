"""What a trader may read of its declaration's history.

A trader never learns that a confidential authority (war material: DGA) took part: the
history of a declaration with such a licence reads like one whose check is pending, and
nothing more. For the trader's eyes, then:

* an event of a confidential authority (its answer, write-off, alert, follow-up) is left
  out entirely, and so is its time;
* a list of authorities (``RESERVE sent to dgal, dga``, ``no answer from dga within 30s``)
  loses the confidential ones, and the event goes if none is left;
* a decision's reasons keep the document verdicts and degraded-mode codes; risk-targeting
  codes (``RISK.*``, ``SAMPLING.*``) are targeting criteria and are never shown;
* any other text that names a confidential authority is emptied;
* the state (``answered_by``, ``quantities``, ``post_release_alert``, ``updated_at``,
  ``last_event``) is computed again from what is left.

This is a second line behind the hub writing no confidential content on ``gun.status``
at all: whatever the status records say, these rules apply to the trader's answer.
Officers read the history as recorded.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import current_state

_SENT = re.compile(r"(?P<what>[A-Z_]+ sent to )(?P<who>[a-z0-9_]+(?:, [a-z0-9_]+)*)")
_NO_ANSWER = re.compile(
    r"(?P<what>no answer from )(?P<who>[a-z0-9_]+(?:, [a-z0-9_]+)*)(?P<rest> within \d+s)"
)
_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
_LISTS = {
    StatusKind.REQUESTS_SENT.value: _SENT,
    StatusKind.FOLLOW_UP_SENT.value: _SENT,
    StatusKind.DEADLINE_PASSED.value: _NO_ANSWER,
}
_FIELDS = ("version", "kind", "at", "detail", "authority", "outcome")


def trader_status(
    reference: str, history: Sequence[dict[str, Any]], confidential: Collection[str]
) -> dict[str, Any]:
    """The trader's answer for one declaration: state and history, redacted."""
    shown = trader_history(history, confidential)
    if not shown:  # cannot happen (RECEIVED is never an authority's), but never leak
        return {"reference": reference, "state": "CHECKING", "history": []}
    return {"reference": reference, **current_state(shown), "history": shown}


def trader_history(
    history: Sequence[dict[str, Any]], confidential: Collection[str]
) -> list[dict[str, Any]]:
    """The events a trader may see, each with only the fields a trader may see."""
    hidden = {authority.lower() for authority in confidential}
    mentions = (
        re.compile(
            r"(?<![A-Za-z0-9])(?:"
            + "|".join(re.escape(a) for a in sorted(hidden))
            + r")(?![A-Za-z0-9])",
            re.IGNORECASE,
        )
        if hidden
        else None
    )
    shown: list[dict[str, Any]] = []
    for event in history:
        authority = str(event.get("authority") or "")
        if authority.lower() in hidden:
            continue
        detail = _detail(str(event.get("kind")), str(event.get("detail") or ""), hidden)
        if detail is None:
            continue
        if mentions is not None and mentions.search(detail):
            detail = ""
        kept = {name: event[name] for name in _FIELDS if name in event}
        kept["detail"] = detail
        shown.append(kept)
    return shown


def _detail(kind: str, detail: str, hidden: set[str]) -> str | None:
    """The detail a trader may read; None when the whole event must go."""
    if kind == StatusKind.DECIDED.value:
        codes = [code.strip() for code in detail.split(";")]
        return "; ".join(c for c in codes if _CODE.fullmatch(c) and c.lower() not in hidden)
    pattern = _LISTS.get(kind)
    if pattern is None:
        return detail
    found = pattern.fullmatch(detail)
    if found is None:
        return detail  # another wording: still emptied below if it names one of them
    named = found.group("who").split(", ")
    left = [authority for authority in named if authority.lower() not in hidden]
    if not left:
        return None
    rest = found.groupdict().get("rest") or ""
    return f"{found.group('what')}{', '.join(left)}{rest}"
