"""What a trader may read of its declaration's history.

A trader never learns that a confidential authority (war material: DGA) took part: the
history of a declaration with such a licence reads like one whose check is pending, and
nothing more. For the trader's eyes, then:

* an event of a confidential authority (its answer, write-off, alert, follow-up) is left
  out entirely, and so is its time;
* a list of authorities is read clause by clause (``RESERVE sent to dga, dgal``, ``CHECK
  sent again to dga``, ``rollout: dga shadow``, ``no answer from dga within 30s``): each
  clause loses the confidential ones, a clause left empty goes, and the event goes if no
  clause is left. What remains must read exactly as it would had the confidential
  authority never taken part, so the clauses are put in one order (an authority's name
  decides where the hub puts its operation), a count of documents is left out (it would
  count DGA's), and a detail with a clause this module does not know is replaced as a
  whole by a fixed text, whether or not it names a confidential authority: emptied only
  when it did, the emptiness itself would tell;
* a decision's reasons keep the document verdicts and degraded-mode codes, each once (how
  many documents gave a code would count DGA's) and in one order (:func:`_in_order`: the
  order the answers came in would tell where DGA's copy of a code stood); risk-targeting
  codes (``RISK.*``, ``SAMPLING.*``) are targeting criteria and are never shown; a code
  only a confidential authority gave is left out (``DEADLINE`` and ``UNAVAILABLE`` of its
  silence; in advice mode, ``ADVISORY_ONLY`` and its refusal's code, on an outcome it does
  not make; its refusal of a cancellation's deletion or a release's write-off), kept where
  one the trader sees gave it too, the same precise code (``UNIT_MISMATCH`` beside DGA's
  ``COMMODITY_CODE_MISMATCH`` is not: :func:`_codes_only_hidden_gave`);
* any other text that names a confidential authority is emptied (the hub writes none);
* a version's decision made again after a crash (``decided_again``) is left out: the
  clearance system received the first;
* a version's decision the publisher did not publish because the reference's case on
  another partition decided it too (``not_published``) is left out, and so is the
  publisher's status saying so (``NOT_PUBLISHED_DECIDED_ELSEWHERE``, which speaks of the
  hub's partitions): the clearance system received the other decision, the one the
  trader reads;
* a version the publisher withheld for being decided for another declarant
  (``NOT_PUBLISHED_OTHER_DECLARANT``) is left out whole: nobody's (the view shows it to no
  trader either), and what it says would tell one declarant of the other;
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

from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.decide import DEGRADED_MODE
from gun_hub.domain.override import OVERRIDE_APPLIED, OVERRIDE_NOT_ACCEPTED
from gun_hub.domain.reasons import document_reason_codes
from gun_hub.domain.rollout import ADVISORY_ONLY, RolloutMode
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import DECIDED_AGAIN, NOT_PUBLISHED_HERE, current_state

# The clauses the hub writes in a list of authorities, joined by "; " (intake.py: sent,
# sent again on a redelivery, documents no longer reserved, rollout modes; hub_context.py:
# follow-ups; deadlines.py: silence).
_NAME = r"[a-z0-9_]+"
_NAMES = rf"{_NAME}(?:, {_NAME})*"
_SENT = re.compile(
    # "no longer quoted" before stop 36, "no longer reserved" since (a version that
    # quotes a document at an authority it no longer asks to reserve deletes it too);
    # a takeover's follow-ups (takeover.py: what a later version read on another
    # partition does not quote, or gives back; unknown here until stop 56, and shown as
    # "follow-up requests sent" when they went to a confidential authority alone).
    rf"(?P<operation>[A-Z_]+)(?: of \d+ document\(s\) (?P<which>no longer (?:quoted|reserved)"
    rf"|version \d+ does not quote|written off, for version \d+ \(invalidated\),))?"
    rf" (?P<sent>sent(?: again)?) to (?P<who>{_NAMES})"
)
_ROLLOUT = re.compile(rf"rollout: (?P<who>{_NAME} [a-z]+(?:, {_NAME} [a-z]+)*)")
_NO_ANSWER = re.compile(rf"no answer from (?P<who>{_NAMES}) within (?P<seconds>\d+)s")
_CLAUSES = "; "
# What a trader reads instead of a list the clauses above do not read: the same whoever
# the list names.
_UNREAD_LIST = {
    StatusKind.REQUESTS_SENT.value: "requests sent",
    StatusKind.FOLLOW_UP_SENT.value: "follow-up requests sent",
    StatusKind.DEADLINE_PASSED.value: "no answer within the deadline",
}
# Events about what authorities hold name one only when it alone holds it (the hub:
# ``lifecycle.only_authority``), so that one of a confidential authority alone is left
# out above. The trader reads the name of none: "dgal" against none would tell that a
# second authority held something too (review of stop 56).
_HOLDERS_UNNAMED = frozenset(
    {
        StatusKind.CONTROL_RESULT_OVERDUE.value,
        StatusKind.TAKEN_OVER_BY_LATER_VERSION.value,
        StatusKind.FOLLOW_UP_SENT.value,
    }
)
_CODE = re.compile(r"[A-Z][A-Z0-9_]*")
# An advisory authority's answers that give its document no reason (decide.py).
_ACCEPTED = frozenset({Verdict.VALID, Verdict.EXEMPT})
_ADVICE, _SHADOW = RolloutMode.ADVICE.value, RolloutMode.SHADOW.value
# The outcomes no refusal verdict makes: a release (after the office's control: its
# write-off's answer) and a cancellation (its deletion's or give-back's).
_REFUSING_NO_GOODS = frozenset({Outcome.RELEASE.value, Outcome.CANCELLED.value})
# A decision's codes about the whole declaration, and those noting what was made of a
# document's (decide.py: first, and after the document's code).
_DECISION_CODES = (DEGRADED_MODE, "DEADLINE")
_NOTE_CODES = frozenset({ADVISORY_ONLY, OVERRIDE_APPLIED, OVERRIDE_NOT_ACCEPTED})
_FIELDS = ("version", "kind", "at", "detail", "authority", "outcome")


HISTORY_SHOWN_AT_MOST = 500
"""Events a trader's answer holds at most: the latest (``history_left_off`` counts the
others). A declaration's versions are many only when its trader makes them so."""


def trader_status(
    reference: str, history: Sequence[dict[str, Any]], confidential: Collection[str]
) -> dict[str, Any]:
    """The trader's answer for one declaration: state and history, redacted; the history
    its latest :data:`HISTORY_SHOWN_AT_MOST` events (review stop 46: a trader's thousands
    of versions were one answer of megabytes)."""
    shown = trader_history(history, confidential)
    if not shown:  # cannot happen (RECEIVED is never an authority's), but never leak
        return {"reference": reference, "state": "CHECKING", "history": []}
    status = {"reference": reference, **current_state(shown)}
    left_off = len(shown) - HISTORY_SHOWN_AT_MOST
    if left_off > 0:
        return {**status, "history": shown[left_off:], "history_left_off": left_off}
    return {**status, "history": shown}


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
    withheld = {
        event.get("version")
        for event in history
        if event.get("kind") == StatusKind.NOT_PUBLISHED_OTHER_DECLARANT.value
    }
    # The events of a case whose decision was not published are not the trader's: what
    # only a hidden authority gave is judged on the published case's alone.
    hidden_codes = _codes_only_hidden_gave(
        [e for e in history if not e.get(NOT_PUBLISHED_HERE)], hidden
    )
    shown: list[dict[str, Any]] = []
    for event in history:
        if event.get(DECIDED_AGAIN) or event.get(NOT_PUBLISHED_HERE):
            # A decision made again after a crash, or another partition's case's decision
            # of the version not published: the trader has the published one.
            continue
        if event.get("kind") == StatusKind.NOT_PUBLISHED_DECIDED_ELSEWHERE.value:
            continue  # the hub's partitions are none of the trader's business
        if event.get("version") in withheld:
            continue
        authority = str(event.get("authority") or "")
        if authority.lower() in hidden:
            continue
        kind = str(event.get("kind"))
        detail = _detail(kind, str(event.get("detail") or ""), hidden)
        if detail is None:
            continue
        if kind == StatusKind.DECIDED.value and (left := hidden_codes.get(event.get("version"))):
            detail = "; ".join(c for c in detail.split("; ") if c not in left)
        if mentions is not None and mentions.search(detail):
            detail = _UNREAD_LIST.get(kind, "")
        kept = {name: event[name] for name in _FIELDS if name in event}
        kept["detail"] = detail
        if kind in _HOLDERS_UNNAMED:
            # Left out, not null: the view leaves out the member of an event naming
            # none, so null against absent would tell the same (review of stop 56).
            kept.pop("authority", None)
        shown.append(kept)
    return shown


def _codes_only_hidden_gave(
    history: Sequence[dict[str, Any]], hidden: set[str]
) -> dict[Any, set[str]]:
    """Per version, the codes of its decision that only a hidden authority gave, as its
    events show them (``history`` without the events of a case whose decision was not
    published: ``trader_history``). A refusal decided at the deadline while DGA alone
    stayed silent read "DEADLINE; QUANTITY_INSUFFICIENT; UNAVAILABLE" where the same
    declaration without the licence reads "QUANTITY_INSUFFICIENT" (a review of degraded
    mode, stop 57):

    * ``DEADLINE`` when every authority its deadline found silent whose answers count
      (not one in advice mode: deadlines.py names those in the history, not in the
      reason) is hidden;
    * ``UNAVAILABLE`` when a hidden one was silent or answered it, and none the trader
      sees was or did;
    * ``ADVISORY_ONLY`` when a hidden one in advice mode was silent or answered anything
      but VALID or EXEMPT, and no one the trader sees in advice mode can have given it;
    * the codes of a hidden one's refusal in advice mode (a warning on the outcome the
      others make), or on a release or a cancellation (what it answered a follow-up
      stage's write-off or deletion refuses no goods), that no answer the trader sees
      gave: per answer, the precise code its partner's made of its verdict
      (``MISMATCH`` read as ``UNIT_MISMATCH``), as the decision's documents of its mode
      show it where no hidden one answered in that mode (:func:`_document_codes`), else
      every code its verdict may read.

    An authority the trader sees in shadow mode gives none of them: its documents read
    AUTHORITY_NOT_CONNECTED whatever it answers.

    DGA in advice mode silent or refusing beside releases read ``ADVISORY_ONLY`` (and its
    refusal's code) on a release that reads nothing without the licence (a review of
    degraded mode, advice). A hidden authority's enforced refusal is kept where it refuses
    the goods (or holds them, under the override; or warns a pre-lodged version). Kept
    when in doubt of the hidden one: only what a hidden authority's events show is left
    out."""
    if not hidden:
        return {}
    modes = _modes(history)
    silent: dict[Any, set[str]] = {}  # version: the authorities its deadline named
    answered: dict[Any, dict[str, set[Verdict]]] = {}  # version: authority: verdicts
    outcomes: dict[Any, Any] = {}  # version: its decision's outcome
    # version: its decision's document codes, those noted ADVISORY_ONLY and the others
    explained: dict[Any, tuple[set[str], set[str]]] = {}
    written_off: set[Any] = set()  # versions whose own operation is a write-off
    for event in history:
        version, kind = event.get("version"), event.get("kind")
        detail = str(event.get("detail") or "")
        if kind == StatusKind.REQUESTS_SENT.value and any(
            (found := _SENT.fullmatch(clause))
            and found.group("operation") == Operation.WRITE_OFF.value
            and not found.group("which")
            for clause in detail.split(_CLAUSES)
        ):
            written_off.add(version)
        if kind == StatusKind.DECIDED.value and not event.get(DECIDED_AGAIN):
            outcomes.setdefault(version, event.get("outcome"))
            for kept, read in zip(
                explained.setdefault(version, (set(), set())), _document_codes(detail), strict=True
            ):
                kept.update(read)
        elif kind == StatusKind.DEADLINE_PASSED.value:
            for clause in detail.split(_CLAUSES):
                if found := _NO_ANSWER.fullmatch(clause):
                    names = {n.lower() for n in found.group("who").split(", ")}
                    silent.setdefault(version, set()).update(names)
        elif kind == StatusKind.ANSWER_RECEIVED.value:
            authority = str(event.get("authority") or "").lower()
            # "VALID, NOT_FOUND", then perhaps "; partner codes ..." (correlation.py).
            said = {word.strip() for word in detail.split(_CLAUSES)[0].split(",")}
            verdicts = answered.setdefault(version, {}).setdefault(authority, set())
            verdicts.update(v for v in Verdict if v.value in said)
    codes: dict[Any, set[str]] = {}
    for version in silent.keys() | answered.keys():
        quiet = silent.get(version, set())
        advice = {a for a, mode in modes.get(version, {}).items() if mode == _ADVICE}
        # One in shadow mode answers, but its documents read AUTHORITY_NOT_CONNECTED
        # whatever it says: its answers give the decision no code (a review of stop 58,
        # third round: DGAL's in shadow kept DGA's advisory refusal and UNAVAILABLE).
        # At a follow-up stage (a cancellation, a release after control) the decision
        # explains the enforced documents alone (decide.py): one in advice mode gives it
        # no code either (a review of stop 58, fourth round: DGAL's advisory refusal of a
        # deletion kept DGA's enforced one).
        outcome = outcomes.get(version)
        follow_up = outcome == Outcome.CANCELLED.value or (
            outcome == Outcome.RELEASE.value and version in written_off
        )
        uncounted = {_SHADOW, _ADVICE} if follow_up else {_SHADOW}
        answers = {
            a: said
            for a, said in answered.get(version, {}).items()
            if modes.get(version, {}).get(a) not in uncounted
        }
        named = quiet - advice
        left: set[str] = set()
        if named & hidden and not named - hidden:
            left.add("DEADLINE")
        counted_quiet = quiet - advice if follow_up else quiet
        unavailable = counted_quiet | {
            a for a, said in answers.items() if Verdict.UNAVAILABLE in said
        }
        if unavailable & hidden and not unavailable - hidden:
            left.add(Verdict.UNAVAILABLE.value)
        warned = {a for a in advice & hidden if a in quiet or answers.get(a, set()) - _ACCEPTED}
        # One the trader sees in advice mode gave it unless it is seen to accept all (an
        # answer whose verdicts do not read, or none, may have given it).
        seen_warned = {
            a for a in advice - hidden if a in quiet or not answers.get(a) or answers[a] - _ACCEPTED
        }
        if warned and not seen_warned:
            left.add(ADVISORY_ONLY)
        # The codes the answers the trader sees read: each verdict's own, or one its
        # partner's code made precise (reasons.py), as the decision shows them where it
        # can. Its documents' codes are noted ADVISORY_ONLY in advice mode, not enforced:
        # where no hidden authority answered in the same mode, those codes are the
        # visible answers' own (a review of stop 58: DGA's COMMODITY_CODE_MISMATCH was
        # kept beside DGAL's MISMATCH read as UNIT_MISMATCH, as a code it "may read").
        # Otherwise every code the verdict may read (kept when in doubt of the hidden one).
        advised: set[str] | None = None  # no decision read: every code a verdict may read
        enforced: set[str] | None = None
        if version in explained:
            advised, enforced = explained[version]
        # In shadow mode its documents read AUTHORITY_NOT_CONNECTED, no verdict's code.
        hidden_answered = {
            a in advice
            for a in answered.get(version, {})
            if a in hidden and modes.get(version, {}).get(a) != _SHADOW
        }
        seen_codes = {
            code
            for authority, said in answers.items()
            if authority not in hidden
            for verdict in said
            for code in _read_codes(
                verdict,
                advised if authority in advice else enforced,
                in_doubt=(authority in advice) in hidden_answered,
            )
        }
        # Its refusals in advice mode warn; enforced, on a release or a cancellation, they
        # refuse no goods: a deletion or a write-off refused at a follow-up stage (a
        # review of stop 58, third round: they read to the trader on the decision).
        refusing = advice & hidden
        if outcome in _REFUSING_NO_GOODS:
            refusing = hidden
        left.update(
            code
            for authority in refusing
            for verdict in answers.get(authority, set())
            if verdict.is_refusal
            for code in document_reason_codes(verdict) - seen_codes
        )
        if left:
            codes[version] = left
    return codes


def _document_codes(detail: str) -> tuple[set[str], set[str]]:
    """The documents' codes of a decision's detail as the hub writes it (decide.py: its
    own codes first, then each document's code, followed by ``ADVISORY_ONLY`` where its
    authority is in advice mode, then the targeting codes): those noted advisory, and the
    others."""
    codes = [code.strip() for code in detail.split(";")]
    advised: set[str] = set()
    enforced: set[str] = set()
    for code, after in zip(codes, [*codes[1:], ""], strict=True):
        if not _CODE.fullmatch(code) or code in _DECISION_CODES or code in _NOTE_CODES:
            continue  # RISK.*, SAMPLING.* and a cut detail's last words do not match
        (advised if after == ADVISORY_ONLY else enforced).add(code)
    return advised, enforced


def _read_codes(verdict: Verdict, shown: set[str] | None, *, in_doubt: bool) -> frozenset[str]:
    """The codes an answer of ``verdict`` the trader sees gave the decision: those it may
    read that its mode's documents show there (``shown``), or all it may read when the
    decision is not read or a hidden authority answered in the same mode (``in_doubt``)."""
    codes = document_reason_codes(verdict)
    if shown is None or in_doubt:
        return codes
    return codes & shown


def _modes(history: Sequence[dict[str, Any]]) -> dict[Any, dict[str, str]]:
    """Per version, the authorities not enforced for it and their modes, as its
    REQUESTS_SENT says (``rollout: cites advice, dgal shadow``: the modes are fixed on the
    version)."""
    modes: dict[Any, dict[str, str]] = {}
    for event in history:
        if event.get("kind") != StatusKind.REQUESTS_SENT.value:
            continue
        for clause in str(event.get("detail") or "").split(_CLAUSES):
            if found := _ROLLOUT.fullmatch(clause):
                modes.setdefault(event.get("version"), {}).update(
                    (name.lower(), mode)
                    for name, mode in (m.split(" ") for m in found.group("who").split(", "))
                )
    return modes


def _detail(kind: str, detail: str, hidden: set[str]) -> str | None:
    """The detail a trader may read; None when the whole event must go."""
    if kind == StatusKind.DECIDED.value:
        codes = [code.strip() for code in detail.split(";")]
        # Each code once: how many documents gave one would count DGA's beside the others'.
        # In one order: the hub lists them as the answers came, and the one copy kept of
        # a code DGA gave too stood where DGA's first did (a review of stop 58, third
        # round: "QUANTITY_INSUFFICIENT; NOT_FOUND" against "NOT_FOUND; ...").
        shown = {c for c in codes if _CODE.fullmatch(c) and c.lower() not in hidden}
        return "; ".join(sorted(shown, key=_in_order))
    if kind not in _UNREAD_LIST:
        return detail
    kept: list[str] = []
    for clause in detail.split(_CLAUSES):
        redacted = _clause(clause, hidden)
        if redacted is None:
            return _UNREAD_LIST[kind]
        if redacted:
            kept.append(redacted)
    if not kept:
        return None
    # The hub orders operations by their first authority's name, so DGA's could put one
    # before another: one order whoever took part (rollout modes last, as written).
    kept.sort(key=lambda clause: (clause.startswith("rollout: "), clause))
    return _CLAUSES.join(kept)


def _in_order(code: str) -> tuple[int, str]:
    """Where a decision's code stands for the trader: the decision's own first (degraded
    mode, then a deadline), then the documents', then what was made of them (advice only,
    the override), these alphabetically: the hub's order, but for the order the answers
    came in."""
    if code in _DECISION_CODES:
        return (0, str(_DECISION_CODES.index(code)))
    return (2 if code in _NOTE_CODES else 1, code)


def _clause(clause: str, hidden: set[str]) -> str | None:
    """One clause of a list of authorities without the hidden ones ("" if none is left);
    None if it is not a clause the hub writes."""
    if found := _SENT.fullmatch(clause):
        left = _left(found.group("who").split(", "), hidden)
        # How many documents were dropped would count the confidential authority's.
        which = found.group("which")
        if which is not None and which.startswith("no longer"):
            which = "no longer reserved"
        of = f" of documents {which}" if which else ""
        what = f"{found.group('operation')}{of} {found.group('sent')} to"
        return f"{what} {', '.join(left)}" if left else ""
    if found := _ROLLOUT.fullmatch(clause):
        modes = found.group("who").split(", ")
        left = [m for m in modes if m.split(" ")[0] not in hidden]
        return f"rollout: {', '.join(sorted(left))}" if left else ""
    if found := _NO_ANSWER.fullmatch(clause):
        left = _left(found.group("who").split(", "), hidden)
        seconds = found.group("seconds")
        return f"no answer from {', '.join(left)} within {seconds}s" if left else ""
    return None


def _left(names: list[str], hidden: set[str]) -> list[str]:
    return sorted(name for name in names if name.lower() not in hidden)
