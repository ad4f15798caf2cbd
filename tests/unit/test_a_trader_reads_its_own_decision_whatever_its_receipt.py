"""A trader reads its own decision whatever receipt its events name (the review of
stop 53's change, each test failing first).

Status events name the receipt of the version they are about, which the intake's
ReceivedFact ties to the declarant (ADR 0007's addendum). Derived from the case's
``opened_from`` alone, that id was named where no ReceivedFact named it: a version
refused unread (its DECIDED and follow-ups), a case opened before the upgrade (every event
after it), a declaration decided within its own reading whose fact the crash lost (never
named again once decided): the trader read CHECKING for ever, or a 404, for its own
declaration. The case now keeps the receipt its fact named (``Case.receipt``), none
otherwise, and a redelivery names it again, decided or not. And a version the publisher
withheld for being another declarant's stays nobody's, its events tagged or not.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

from gun_contract.effects import OutgoingRecord
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_reference_two_declarants_use_is_read_by_each_alone import (
    fed_from,
    kinds,
    lookup,
)
from tests.unit.test_decided_cases_leave_the_hot_table import REF
from tests.unit.test_operations_view import EORI, TOPICS, Feed, use
from tests.unit.test_pipeline import Hub
from tests.unit.test_the_view_counts_only_the_decisions_the_publisher_published import (
    REF as SHARED,
)
from tests.unit.test_the_view_counts_only_the_decisions_the_publisher_published import A, B
from tests.unit.test_versions_and_recovery import at, unreadable


def test_a_later_version_refused_unread_shows_its_declarant_its_refusal(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Version 1 released, version 2 refused unread (schema): the refused case is
    opened with ``opened_from`` set, so its DECIDED (and FOLLOW_UP_SENT) events carry a
    ``lodging`` that no ReceivedFact ever names (none is emitted for a refused
    version): the trader sees version 2 REJECTED and CHECKING for ever, never its
    refusal. Before f592524 the DECIDED REFUSE was shown (version 2 named by the
    decision fact)."""
    hub = Hub(routing_table, keys_dir)
    view, feed = fed_from(hub, tmp_path)
    try:
        first = hub.intake.handle(declaration_xml(), at(0))
        feed(first.records)
        feed(hub.answer(first, "dgal", Verdict.VALID).records)
        refused = hub.intake.handle(unreadable(2), at(1))
        assert (REF, 2, Outcome.REFUSE) in hub.decisions(refused)
        statuses = hub.statuses(refused)
        assert StatusKind.DECIDED in [s.kind for s in statuses]
        feed(refused.records)

        mine = lookup(view, REF, EORI)
        assert mine is not None
        v2 = [e["kind"] for e in mine["history"] if e["version"] == 2]
        assert "DECIDED" in v2, (
            f"the trader's own refusal of version 2 is hidden: {v2}; current state "
            f"{mine['state']} {mine.get('outcome')}; lodgings on gun.status "
            f"{[(s.kind.value, s.lodging) for s in statuses]}"
        )
        assert mine["state"] == "DECIDED"
        assert mine["outcome"] == "REFUSE"
    finally:
        view.close()


def test_a_declaration_decided_at_once_whose_receipt_was_lost_is_still_its_declarants(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A declaration with nothing to ask is decided in the intake's own handling. The
    worker dies before the broker has its records (the case stored, as in
    test_pipeline's dying-worker tests): read again, it is a redelivery of a decided
    case, announced again (DECIDED tagged with its lodging, the decision fact) but its
    ReceivedFact is not named again (``_name_declarant`` only for an undecided one). No
    fact ever ties the lodging to the declarant: its DECIDED is nobody's and the trader
    gets a 404 for its own declaration. Before f592524 the decision fact named it."""
    hub = Hub(routing_table, keys_dir)
    view, feed = fed_from(hub, tmp_path)
    try:
        nothing_to_ask = declaration_xml(items=(goods_item(1, (document(code="Y900"),)),))
        hub.broker_up = False  # the worker dies before the broker has anything
        lost = hub.intake.handle(nothing_to_ask, at(0))
        assert hub.decisions(lost), "decided in the intake's handling"
        hub.broker_up = True  # restarted: the declaration is read again
        again = hub.intake.handle(nothing_to_ask, at(0))
        assert hub.decisions(again) == hub.decisions(lost), "announced again"
        feed(again.records)
        statuses = [(s.kind.value, getattr(s, "lodging", None)) for s in hub.statuses(again)]
        answer = lookup(view, REF, EORI)
        assert answer is not None, f"404 for the trader's own declaration; gun.status: {statuses}"
        assert "DECIDED" in kinds(answer)
    finally:
        view.close()


def _as_before_stop_53(records: Iterable[OutgoingRecord]) -> list[OutgoingRecord]:
    """``records`` as a hub of before f592524 wrote them: no ``lodging`` anywhere."""
    old = []
    for record in records:
        if record.value.startswith(b"{"):
            value = json.loads(record.value)
            value.pop("lodging", None)
            record = dataclasses.replace(record, value=json.dumps(value).encode())
        old.append(record)
    return old


def test_a_declaration_in_flight_across_the_upgrade_shows_its_decision(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Received by a hub of before stop 53 (its ReceivedFact names no receipt), decided
    after the upgrade: the case keeps ``opened_from``, so the DECIDED (and every later
    event: answers, follow-ups, a control's overdue report days later) names a receipt no
    ReceivedFact will ever name. The trader reads RECEIVED, REQUESTS_SENT and then
    nothing: CHECKING for ever. Before f592524 it read its decision."""
    hub = Hub(routing_table, keys_dir)
    view, feed = fed_from(hub, tmp_path)
    try:
        sent = hub.intake.handle(declaration_xml(), at(0))
        feed(_as_before_stop_53(sent.records))  # the old hub's records
        [(key, stored)] = hub.cases.items()  # and its case, which kept no receipt
        case = json.loads(stored)
        del case["receipt"]
        hub.cases[key] = json.dumps(case).encode()
        decided = hub.answer(sent, "dgal", Verdict.VALID)  # the upgraded hub's
        assert hub.decisions(decided) == [(REF, 1, Outcome.RELEASE)]
        feed(decided.records)
        answer = lookup(view, REF, EORI)
        assert answer is not None
        assert answer["state"] == "DECIDED", (
            f"the trader reads {kinds(answer)}: {answer['state']}; gun.status after the "
            f"upgrade: {[(s.kind.value, s.lodging) for s in hub.statuses(decided)]}"
        )
    finally:
        view.close()


def test_a_version_withheld_for_another_declarant_is_still_nobodys_when_its_events_are_tagged(
    tmp_path: Path,
) -> None:
    """test_the_view_counts_only_the_decisions_the_publisher_published's scenario (A's
    version 1 published, B's version 2 withheld by the publisher: never reached the
    clearance system) with the status events as the hub now writes them, each naming its
    receipt. ``_received`` keeps B's receipt "withheld or not" and ``theirs`` shows a
    tagged event to its receipt's declarant whatever ``unpublished`` says: B reads a
    DECIDED REFUSE the clearance system never received (and the publisher's
    NOT_PUBLISHED_OTHER_DECLARANT, untagged, is hidden, so web/redaction.py cannot leave
    the version out either). That test, untagged, asserts B reads nothing."""
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    a_receipt, b_receipt = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
    try:
        view.apply(
            [
                feed.received(SHARED, declarant=A, version=1, lodging=a_receipt),
                feed.status(SHARED, StatusKind.RECEIVED, version=1, lodging=a_receipt),
                feed.decided(SHARED, "RELEASE", [use("N853", "D1", "dgal")], declarant=A),
                feed.status(SHARED, StatusKind.DECIDED, 1, outcome="RELEASE", lodging=a_receipt),
                feed.received(SHARED, declarant=B, version=2, lodging=b_receipt),
                feed.status(SHARED, StatusKind.RECEIVED, 2, version=2, lodging=b_receipt),
                feed.decided(
                    SHARED,
                    "REFUSE",
                    [use("C085", "B-DOC", "dgddi", "NOT_FOUND")],
                    declarant=B,
                    version=2,
                ),
                feed.status(
                    SHARED,
                    StatusKind.DECIDED,
                    3,
                    version=2,
                    outcome="REFUSE",
                    detail="C085",
                    lodging=b_receipt,
                ),
                # The publisher's, naming no receipt (runtime/publisher.py).
                feed.status(
                    SHARED,
                    StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
                    4,
                    version=2,
                    detail="decided but not published",
                ),
            ]
        )
        assert view.history_of_declarant(SHARED, A) is not None
        b_reads = view.history_of_declarant(SHARED, B)
        assert b_reads is None, (
            "B reads the decision the publisher withheld: "
            f"{[(e['version'], e['kind'], e.get('outcome')) for e in b_reads]}; "
            f"its answer: {lookup(view, SHARED, B)}"
        )
    finally:
        view.close()


class _Unopenable(dict):  # type: ignore[type-arg]
    """A case store whose value of ``broken`` does not open when next read (ADR 0022)."""

    broken: bytes | None = None

    def get(self, key: bytes, default: object = None) -> object:
        if key == self.broken:
            self.broken = None
            from gun_contract.security.state_cipher import StateUnreadable

            raise StateUnreadable("does not open", table="cases", key=key)
        return super().get(key, default)


def test_a_version_refused_over_an_unreadable_case_shows_its_declarant_its_refusal(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The same root cause as the refusal unread, on ``_refuse_over_unreadable``: the
    version's declarant is read (its decision fact names it) but no ReceivedFact is
    emitted, while ``opened_from`` is set: its DECIDED REFUSE names a receipt nobody
    owns, and the trader reads REJECTED and CHECKING."""
    store = _Unopenable()
    hub = Hub(routing_table, keys_dir, cases=store)
    view, feed = fed_from(hub, tmp_path)
    try:
        first = hub.intake.handle(declaration_xml(), at(0))
        feed(first.records)
        feed(hub.answer(first, "dgal", Verdict.VALID).records)
        store.broken = REF.encode()
        refused = hub.intake.handle(declaration_xml(version=2), at(1))
        assert (REF, 2, Outcome.REFUSE) in hub.decisions(refused)
        feed(refused.records)
        mine = lookup(view, REF, EORI)
        assert mine is not None
        v2 = [e["kind"] for e in mine["history"] if e["version"] == 2]
        assert "DECIDED" in v2, f"the trader reads version 2 as {v2}: {mine['state']}"
    finally:
        view.close()
