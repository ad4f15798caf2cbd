"""The facts of a confirmed write-off or give-back name each goods item and carry the lines
and quantities the hub knows (review stop 37-s, F1 F3 F6).

* F1: the write-off fact names the goods item of each document, and a certificate quoted
  on two lines of one goods item is written off line by line.
* F3: a confirmed give-back (an invalidation after a release) emits a ``GivenBackFact``;
  the statistics no longer report the quantity written off.
* F6: a write-off confirmed after the case was retired to a marker, or after a newer
  version was read, carries the quantities the case or marker remembers written off
  (``Case.written_off``), not none.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.facts import FACT, GivenBackFact, WriteOffFact
from gun_hub.ops.view import FeedTopics, OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_stage_whose_own_operation_is_a_follow_up_reports_it import Feeder
from tests.unit.test_decided_cases_leave_the_hot_table import REF, RetainingHub
from tests.unit.test_versions_and_recovery import at, requests

CHED = "CHEDP.FR.2026.0001234"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    return RetainingHub(routing_table, keys_dir)


@pytest.fixture
def view(hub: RetainingHub, tmp_path: Path) -> OpsView:
    return OpsView(
        tmp_path / "view.sqlite3",
        FeedTopics(
            status=hub.topics.status,
            facts=hub.topics.facts,
            dlq=hub.topics.dlq,
            health=hub.topics.ops_health,
        ),
    )


def facts_of(hub: RetainingHub, outbox: Effects) -> list[WriteOffFact | GivenBackFact]:
    facts = [FACT.validate_json(r.value) for r in outbox.to(hub.topics.facts)]
    return [f for f in facts if isinstance(f, WriteOffFact | GivenBackFact)]


def documents_of(
    fact: WriteOffFact | GivenBackFact,
) -> list[tuple[int | None, str, int | None, Decimal | None]]:
    return [(d.goods_item, d.reference, d.line, d.quantity) for d in fact.documents]


def two_items_on_line_1() -> bytes:
    """Goods items 1 and 2 both draw on line 1 of one CHED-P: 500 and 700 KGM."""
    return declaration_xml(
        version=1,
        items=(
            goods_item(1, (document("N853", CHED, 1, "500", "KGM"),)),
            goods_item(2, (document("N853", CHED, 1, "700", "KGM"),)),
        ),
    )


def released(hub: RetainingHub, xml: bytes | None = None) -> Effects:
    """Version 1 lodged (two goods items on line 1 by default), answered VALID, released:
    the outbox with its write-off request."""
    sent = hub.intake.handle(xml or two_items_on_line_1(), at(0))
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 1, Outcome.RELEASE)]
    [request] = requests(hub, decided)
    assert request.operation is Operation.WRITE_OFF
    return decided


def invalidated(hub: RetainingHub) -> Effects:
    out = hub.intake.handle(
        declaration_xml(version=2, stage=Stage.INVALIDATED, items=(goods_item(1, ()),)), at(1)
    )
    [request] = requests(hub, out)
    assert request.operation is Operation.GIVE_BACK
    return out


def test_each_goods_item_drawing_on_a_line_is_in_the_write_off_fact(
    hub: RetainingHub, view: OpsView
) -> None:
    feed = Feeder(hub, view)
    decided = released(hub)
    confirmed = hub.answer(decided, "dgal", Verdict.VALID)
    [fact] = facts_of(hub, confirmed)
    assert isinstance(fact, WriteOffFact)
    assert documents_of(fact) == [(1, CHED, 1, Decimal(500)), (2, CHED, 1, Decimal(700))]
    feed(decided, confirmed)
    [line] = view.written_off(CHED)
    assert (line["line"], line["quantity"], line["declarations"]) == (1, "1200", 1)


def test_a_certificate_quoted_on_two_lines_of_one_item_is_written_off_line_by_line(
    hub: RetainingHub, view: OpsView
) -> None:
    """The adapter answers each quoted line; the fact took the last line's quantity for
    both (and the view kept 700 on line 2 only)."""
    feed = Feeder(hub, view)
    quoted = (document("N853", CHED, 1, "500", "KGM"), document("N853", CHED, 2, "700", "KGM"))
    decided = released(hub, declaration_xml(version=1, items=(goods_item(1, quoted),)))
    confirmed = hub.answer(decided, "dgal", Verdict.VALID)
    [fact] = facts_of(hub, confirmed)
    assert documents_of(fact) == [(1, CHED, 1, Decimal(500)), (1, CHED, 2, Decimal(700))]
    feed(decided, confirmed)
    assert [(w["line"], w["quantity"]) for w in view.written_off(CHED)] == [
        (1, "500"),
        (2, "700"),
    ]


def test_what_an_invalidation_gave_back_is_no_longer_reported_written_off(
    hub: RetainingHub, view: OpsView
) -> None:
    """Released and written off (1200 KGM on line 1), then INVALIDATED: the give-back is
    confirmed; the fact says what was given back, and the line nets to nothing."""
    feed = Feeder(hub, view)
    decided = released(hub)
    confirmed = hub.answer(decided, "dgal", Verdict.VALID)
    out = invalidated(hub)
    given = hub.answer(out, "dgal", Verdict.VALID)
    assert StatusKind.GIVEN_BACK in hub.status_kinds(given)
    [fact] = facts_of(hub, given)
    assert isinstance(fact, GivenBackFact)
    assert (fact.version, fact.authority) == (2, "dgal")
    assert documents_of(fact) == [(1, CHED, 1, Decimal(500)), (2, CHED, 1, Decimal(700))]
    feed(decided, confirmed, out, given)
    [line] = view.written_off(CHED)
    assert (line["quantity"], line["given_back"]) == ("0", "1200")


def test_a_give_back_the_partner_could_not_do_counts_nothing_given_back(
    hub: RetainingHub,
) -> None:
    """Refused (the partner had nothing written off: 02), it gives nothing back."""
    decided = released(hub)
    hub.answer(decided, "dgal", Verdict.VALID)
    refused = hub.answer(invalidated(hub), "dgal", Verdict.NOT_FOUND)
    assert StatusKind.FOLLOW_UP_FAILED in hub.status_kinds(refused)
    assert facts_of(hub, refused) == []


def test_a_write_off_replayed_after_retirement_keeps_its_quantity(
    hub: RetainingHub, view: OpsView
) -> None:
    """The partner was down for days: the write-off is confirmed once the case is a
    marker. The marker remembers what was written off: the fact carries it (it carried
    no quantity, and the line was counted ``without_quantity``)."""
    feed = Feeder(hub, view)
    decided = released(hub)
    pending = hub.answer(decided, "dgal", Verdict.UNAVAILABLE)
    assert hub.status_kinds(pending) == [StatusKind.FOLLOW_UP_PENDING]
    hub.retire()
    replayed = hub.answer(decided, "dgal", Verdict.VALID)
    [fact] = facts_of(hub, replayed)
    assert documents_of(fact) == [(1, CHED, 1, Decimal(500)), (2, CHED, 1, Decimal(700))]
    feed(decided, pending, replayed)
    [line] = view.written_off(CHED)
    assert (line["quantity"], line["without_quantity"]) == ("1200", 0)


def test_a_write_off_confirmed_after_an_invalidation_was_read_keeps_its_quantity_and_nets(
    hub: RetainingHub, view: OpsView
) -> None:
    """The write-off is confirmed after v2 INVALIDATED was read (whose give-back quotes
    what was written off): the write-off fact has its quantities, the give-back nets them."""
    feed = Feeder(hub, view)
    decided = released(hub)
    pending = hub.answer(decided, "dgal", Verdict.UNAVAILABLE)
    hub.now += timedelta(hours=1)
    out = invalidated(hub)
    replayed = hub.answer(decided, "dgal", Verdict.VALID)
    [written] = facts_of(hub, replayed)
    assert isinstance(written, WriteOffFact)
    assert documents_of(written) == [(1, CHED, 1, Decimal(500)), (2, CHED, 1, Decimal(700))]
    given = hub.answer(out, "dgal", Verdict.VALID)
    feed(decided, pending, out, replayed, given)
    [line] = view.written_off(CHED)
    assert (line["quantity"], line["given_back"], line["without_quantity"]) == ("0", "1200", 0)


# -- one certificate on two lines of one goods item, late (found by review of the merged
# change, stop 37, G1): the case kept one write-off per document, so after retirement both
# answers took the last line, and an invalidation gave back one line of two.

TWO_LINES = (document("N853", CHED, 1, "500", "KGM"), document("N853", CHED, 2, "700", "KGM"))


def test_two_lines_of_one_item_written_off_after_retirement_keep_both(
    hub: RetainingHub, view: OpsView
) -> None:
    feed = Feeder(hub, view)
    decided = released(hub, declaration_xml(version=1, items=(goods_item(1, TWO_LINES),)))
    pending = hub.answer(decided, "dgal", Verdict.UNAVAILABLE)
    hub.retire()
    replayed = hub.answer(decided, "dgal", Verdict.VALID)
    [fact] = facts_of(hub, replayed)
    feed(decided, pending, replayed)
    assert documents_of(fact) == [(1, CHED, 1, Decimal(500)), (1, CHED, 2, Decimal(700))]
    lines = sorted((w["line"], w["quantity"]) for w in view.written_off(CHED))
    assert lines == [(1, "500"), (2, "700")]


def test_two_lines_of_one_item_are_both_given_back_by_an_invalidation(
    hub: RetainingHub, view: OpsView
) -> None:
    feed = Feeder(hub, view)
    decided = released(hub, declaration_xml(version=1, items=(goods_item(1, TWO_LINES),)))
    confirmed = hub.answer(decided, "dgal", Verdict.VALID)
    out = invalidated(hub)
    given = hub.answer(out, "dgal", Verdict.VALID)
    feed(decided, confirmed, out, given)
    assert [w["quantity"] for w in view.written_off(CHED)] == ["0", "0"]
