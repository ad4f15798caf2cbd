"""A declaration belongs to its declarant: a later version naming another declarant is
refused and changes nothing (gun_hub/pipeline/intake.py), and a trader reads only the
versions it lodged (gun_hub/ops/view.py).

Found by review in stop 30 (a test written before each fix): the intake gateway checks
that a trader lodges in its own name, not whose reference it lodges under, and the hub took
any higher version as the next one. Trader B, lodging trader A's reference (sequential,
so guessable) as version 99 in its own name, superseded A's case: A's reservations were
deleted at the partners, a decision for version 99 went to the clearance system, A's real
later versions were ignored as stale, and B read A's whole history in the status lookup
(the declarant of the latest version owns the reference) while A got 404.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    HEADER_REFERENCE,
    SourcePosition,
    header_value,
)
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from tests.builders import EORI, declaration_xml, document, goods_item
from tests.unit.test_decided_cases_leave_the_hot_table import RetainingHub
from tests.unit.test_operations_view import TOPICS, Feed
from tests.unit.test_pipeline import SOURCE, Hub
from tests.unit.test_versions_and_recovery import at, requests

REF = "26FR000690I0000012"
OTHER = "DE999999999999999"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


@pytest.fixture
def view(tmp_path: Path) -> OpsView:
    return OpsView(tmp_path / "view.sqlite3", TOPICS)


def test_a_later_version_naming_another_declarant_is_refused_and_changes_nothing(
    hub: Hub,
) -> None:
    first = hub.intake.handle(declaration_xml(version=1), SOURCE)
    forged = hub.intake.handle(
        declaration_xml(version=99, declarant=OTHER),
        SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 1),
    )
    assert forged.to(hub.topics.requests("dgal")) == [], "asked the partner for it"
    assert hub.decisions(forged) == []
    assert hub.status_kinds(forged) == [], "its history is A's: nothing of B's in it"
    [letter] = forged.to(hub.topics.dlq)
    assert header_value(letter.headers, HEADER_ERROR_KIND) == "DECLARANT_CHANGED"
    assert header_value(letter.headers, HEADER_ERROR_CLASS) == "security"
    assert header_value(letter.headers, HEADER_REFERENCE) == REF
    case = Case.from_bytes(hub.cases[REF.encode()])
    assert (case.version, case.declarant_eori) == (1, EORI)
    # Version 1 goes on, and its declarant's next version is taken as before.
    assert hub.decisions(hub.answer(first, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    second = hub.intake.handle(
        declaration_xml(version=2),
        SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 2),
    )
    assert len(second.to(hub.topics.requests("dgal"))) == 1


def test_a_trader_reads_only_the_versions_it_lodged(view: OpsView) -> None:
    """Should a later version by another declarant be taken (a marker of before stop 52
    names no declarant), its declarant still reads only its own version, not the history
    of the one before it."""
    feed = Feed()
    view.apply(
        [
            feed.received(REF),
            feed.status(REF, StatusKind.RECEIVED),
            feed.decided(REF, "RELEASE", []),
            feed.received(REF, declarant=OTHER, version=2),
            feed.status(REF, StatusKind.RECEIVED, version=2),
        ]
    )
    theirs = view.history_of_declarant(REF, OTHER)
    assert theirs is not None
    assert {event["version"] for event in theirs} == {2}
    assert view.history_of_declarant(REF, EORI) is None  # the latest version is not A's


def test_a_later_version_of_another_declarant_too_large_to_decide_changes_nothing(
    hub: Hub,
) -> None:
    """Refused as too large to decide, a version went through ``_reject``, which
    superseded the case without the declarant check (review stop 38-s, the older paths
    beside S1): it is refused as another declarant's, as a readable one is."""
    first = hub.intake.handle(declaration_xml(version=1), SOURCE)
    too_large = declaration_xml(
        version=99,
        declarant=OTHER,
        items=tuple(
            goods_item(
                n, tuple(document("N853", f"C{k}", line=None, quantity=None) for k in range(99))
            )
            for n in range(1, 159)
        ),
    )
    forged = hub.intake.handle(
        too_large, SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 1)
    )

    [letter] = forged.to(hub.topics.dlq)
    assert header_value(letter.headers, HEADER_ERROR_KIND) == "DECLARANT_CHANGED"
    assert hub.decisions(forged) == []
    assert hub.status_kinds(forged) == []
    assert forged.to(hub.topics.requests("dgal")) == []  # no deletion of A's reservations
    case = Case.from_bytes(hub.cases[REF.encode()])
    assert (case.version, case.declarant_eori) == (1, EORI)
    assert hub.decisions(hub.answer(first, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


def test_a_refusal_for_another_declarant_is_audited_under_its_own_name(hub: Hub) -> None:
    """A security dead letter is chained in the audit trail as a SECURITY_REJECTION naming
    its kind; a kind outside the keeper's vocabulary reads UNLISTED there, and this one
    did (noticed in stop 38): the evidence of a trader lodging in another's name."""
    hub.intake.handle(declaration_xml(version=1), SOURCE)
    forged = hub.intake.handle(
        declaration_xml(version=99, declarant=OTHER),
        SourcePosition(SOURCE.topic, SOURCE.partition, SOURCE.offset + 1),
    )
    [letter] = forged.to(hub.topics.dlq)

    audited = hub.audit_keeper.handle(letter.headers, SourcePosition(hub.topics.dlq, 0, 7))

    [entry] = [
        json.loads(record.value)
        for record in audited.records
        if json.loads(record.value)["kind"] == "SECURITY_REJECTION"
    ]
    assert entry["rejection"] == "DECLARANT_CHANGED"
    assert entry["reference"] == REF


def test_a_later_version_naming_another_declarant_is_refused_after_the_case_retired(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The marker a retired case leaves named no declarant, so another trader's later
    version was taken as the next one days after the release: an invalidation in its
    name gave back what the real declarant's release wrote off. The marker keeps the
    declarant's tag (decision_outbox.declarant_tag, not the EORI) since stop 52."""
    hub = RetainingHub(routing_table, keys_dir)
    sent = hub.intake.handle(declaration_xml(version=1), at(0))
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]
    hub.retire()
    forged = hub.intake.handle(
        declaration_xml(version=2, stage=Stage.INVALIDATED, declarant=OTHER), at(1)
    )
    assert forged.to(hub.topics.requests("dgal")) == [], "gave back for another trader"
    assert hub.decisions(forged) == []
    [letter] = forged.to(hub.topics.dlq)
    assert header_value(letter.headers, HEADER_ERROR_KIND) == "DECLARANT_CHANGED"
    # Its own declarant's invalidation is taken, and gives back what was written off.
    own = hub.intake.handle(declaration_xml(version=2, stage=Stage.INVALIDATED), at(2))
    assert [r.operation for r in requests(hub, own)] == [Operation.GIVE_BACK]
