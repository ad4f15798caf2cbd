"""An INVALIDATED version gives back exactly what the declaration wrote off, whatever it
restates and whatever the case's age (contract section 4: "the written-off quantities
are given back at each partner"; found by review, stop 36, D2 and D3).

The case remembers, per authority, the documents its versions wrote off (with lines and
quantities), and so does the retention marker a released case becomes after
``hub.case_retention_s``; the marker keeps them sealed with the hub's state key (a
war-material licence is confidential).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef, Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.retention import RetentionEntry
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_decided_cases_leave_the_hot_table import (
    KEY,
    MARKER_S,
    REF,
    RetainingHub,
)
from tests.unit.test_versions_and_recovery import at, requests

A = "CHEDP.FR.2026.000000A"
B = "CHEDP.FR.2026.000000B"
LICENCE = "LEMG-FR-2026-0042"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    return RetainingHub(routing_table, keys_dir)


def released_with(hub: RetainingHub, authority: str = "dgal", *docs: DocumentRef) -> None:
    """Version 1 lodged quoting ``docs`` (default: CHED A, line 1, 40 KGM), answered VALID
    by ``authority``, released: its write-off sent."""
    quoted = docs or (document("N853", A, 1, "40"),)
    sent = hub.intake.handle(declaration_xml(version=1, items=(goods_item(1, quoted),)), at(0))
    decided = hub.answer(sent, authority, Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 1, Outcome.RELEASE)]
    assert [r.operation for r in requests(hub, decided, authority)] == [Operation.WRITE_OFF]


def given_back(request: AuthorityRequest) -> list[tuple[int, str, int | None, Decimal | None]]:
    return [
        (item.number, d.reference, d.line, d.quantity)
        for item in request.items
        for d in item.documents
    ]


def invalidated(hub: RetainingHub, *docs: DocumentRef) -> Effects:
    """Version 2 INVALIDATED, quoting ``docs`` on its goods item."""
    return hub.intake.handle(
        declaration_xml(version=2, stage=Stage.INVALIDATED, items=(goods_item(1, docs),)),
        at(1),
    )


def test_an_invalidation_while_the_case_is_a_retention_marker_gives_the_write_off_back(
    hub: RetainingHub,
) -> None:
    """D2 (found by review, stop 36): v1 released and written off; three days later its
    case is a marker; on day 5 v2 INVALIDATED restates CHED A. It was routed with every
    authority off (the marker knew no reservation): no GIVE_BACK, CANCELLED, the written
    off quantity lost at the partner. It is given back, then CANCELLED."""
    released_with(hub)
    hub.retire()
    hub.now += timedelta(days=2)
    out = invalidated(hub, document("N853", A, 1, "40"))
    [request] = requests(hub, out)
    assert (request.operation, request.version) == (Operation.GIVE_BACK, 2)
    assert given_back(request) == [(1, A, 1, Decimal("40"))]
    assert hub.decisions(out) == []
    decided = hub.answer(out, "dgal", Verdict.VALID)
    [decision] = hub.decision_objects(decided)
    assert decision.outcome is Outcome.CANCELLED
    assert [(d.reference, d.verdict) for d in decision.documents] == [(A, Verdict.VALID)]


def test_an_invalidation_quoting_no_document_gives_back_what_was_written_off(
    hub: RetainingHub,
) -> None:
    """D3 (found by review, stop 36): the GIVE_BACK was built from the INVALIDATED
    message's own documents; one quoting none (Document is 0..99) gave nothing back."""
    released_with(hub)
    out = invalidated(hub)
    [request] = requests(hub, out)
    assert (request.operation, request.version) == (Operation.GIVE_BACK, 2)
    assert given_back(request) == [(1, A, 1, Decimal("40"))]


def test_an_invalidation_quoting_another_document_gives_back_what_was_written_off_only(
    hub: RetainingHub,
) -> None:
    """D3 (found by review, stop 36): an invalidation quoting CHED B instead of the CHED A
    written off gave B "back" (answered 02 by the partner) and left A written off."""
    released_with(hub)
    out = invalidated(hub, document("N853", B, 1, "40"))
    [request] = requests(hub, out)
    assert given_back(request) == [(1, A, 1, Decimal("40"))]


def test_a_marker_invalidated_without_documents_gives_back_at_every_authority_written_off(
    hub: RetainingHub,
) -> None:
    """D2 and D3 together (found by review, stop 36): written off at dgal and dga, retired,
    then invalidated on day 10 by a message quoting no document: each authority gives
    back its own documents."""
    quoted = (document("N853", A, 1, "40"), document("LEMG", LICENCE, 2, "3", "NAR"))
    sent = hub.intake.handle(declaration_xml(version=1, items=(goods_item(1, quoted),)), at(0))
    hub.answer(sent, "dgal", Verdict.VALID)
    decided = hub.answer(sent, "dga", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 1, Outcome.RELEASE)]
    hub.retire()
    hub.now += timedelta(days=7)
    out = invalidated(hub)
    [dgal] = requests(hub, out, "dgal")
    [dga] = requests(hub, out, "dga")
    assert (dgal.operation, given_back(dgal)) == (Operation.GIVE_BACK, [(1, A, 1, Decimal("40"))])
    assert (dga.operation, given_back(dga)) == (
        Operation.GIVE_BACK,
        [(1, LICENCE, 2, Decimal("3"))],
    )


def test_what_a_release_after_control_wrote_off_is_given_back(hub: RetainingHub) -> None:
    """The write-off of a release after a control is the case's own request: what it wrote
    off is remembered as well (found by review, stop 36)."""
    sent = hub.intake.handle(
        declaration_xml(version=1, items=(goods_item(1, (document("N853", A, 1, "40"),)),)),
        at(0),
    )
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    assert sent.records
    after = hub.intake.handle(
        declaration_xml(
            version=2,
            stage=Stage.RELEASED_AFTER_CONTROL,
            items=(goods_item(1, (document("N853", A, 1, "40"),)),),
        ),
        at(1),
    )
    assert hub.decisions(hub.answer(after, "dgal", Verdict.VALID)) == [(REF, 2, Outcome.RELEASE)]
    hub.retire()
    out = hub.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=(goods_item(1, ()),)), at(2)
    )
    [request] = requests(hub, out)
    assert (request.operation, request.version) == (Operation.GIVE_BACK, 3)
    assert given_back(request) == [(1, A, 1, Decimal("40"))]


def test_a_redelivered_invalidation_asks_the_same_give_back_again(hub: RetainingHub) -> None:
    """The record that opened the invalidation read again before its answer (a crash):
    the same GIVE_BACK of what was written off is sent again, not the message's own
    documents (found by review, stop 36)."""
    released_with(hub)
    first = invalidated(hub)
    again = invalidated(hub)
    assert [given_back(r) for r in requests(hub, again)] == [
        given_back(r) for r in requests(hub, first)
    ]
    assert [given_back(r) for r in requests(hub, again)] == [[(1, A, 1, Decimal("40"))]]


def test_what_an_invalidation_gave_back_is_not_given_back_again(hub: RetainingHub) -> None:
    """A second invalidation (a later version) finds nothing written off any more: no
    request, CANCELLED at once (found by review, stop 36)."""
    released_with(hub)
    first = invalidated(hub)
    hub.answer(first, "dgal", Verdict.VALID)
    second = hub.intake.handle(
        declaration_xml(version=3, stage=Stage.INVALIDATED, items=(goods_item(1, ()),)), at(2)
    )
    assert requests(hub, second) == []
    assert hub.decisions(second) == [(REF, 3, Outcome.CANCELLED)]


def test_a_marker_stored_before_it_kept_the_write_offs_still_loads_and_gives_back_what_is_quoted(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """Backward compatibility (found by review, stop 36): a marker already in the
    changelog is unsealed and has no written-off documents. It loads; the hub does not
    know what was written off, so an invalidation is handled as for a case it never saw:
    a GIVE_BACK of what it quotes, at each authority that reserves now."""
    hub = RetainingHub(routing_table, keys_dir, StateCipher.load(keys_dir, HUB_PARTY))
    released_with(hub)
    hub.retire()
    entry = RetentionEntry.from_bytes(hub.retained[KEY])
    old = Case.from_bytes(hub.store.get(KEY) or b"")
    legacy = old.model_dump_json(exclude_defaults=True, exclude={"written_off"}).encode()
    assert b"written_off" not in legacy
    hub.retained[KEY] = RetentionEntry(entry.due, entry.partition, legacy).to_bytes()
    out = invalidated(hub, document("N853", A, 1, "40"))
    [request] = requests(hub, out)
    assert (request.operation, given_back(request)) == (
        Operation.GIVE_BACK,
        [(1, A, 1, Decimal("40"))],
    )


def test_after_the_marker_is_forgotten_an_invalidation_gives_back_what_it_quotes(
    hub: RetainingHub,
) -> None:
    """The limit (docs/bounded-state.md): ``hub.decided_marker_s`` after the sweep the hub
    knows nothing of the declaration; an invalidation is then handled as for a
    declaration it never saw (found by review, stop 36)."""
    released_with(hub)
    hub.retire()
    hub.now += timedelta(seconds=MARKER_S + 1)
    hub.retention_tick()
    assert KEY not in hub.retained
    out = invalidated(hub, document("N853", A, 1, "40"))
    [request] = requests(hub, out)
    assert (request.operation, given_back(request)) == (
        Operation.GIVE_BACK,
        [(1, A, 1, Decimal("40"))],
    )


def test_the_marker_keeps_what_was_written_off_sealed_and_small(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """A war-material licence written off is confidential: the worker seals the marker
    with the hub's state key (the changelog holds no licence in clear); the marker stays
    small (found by review, stop 36)."""
    hub = RetainingHub(routing_table, keys_dir, StateCipher.load(keys_dir, HUB_PARTY))
    quoted = (document("LEMG", LICENCE, 2, "3", "NAR"),)
    released_with(hub, "dga", *quoted)
    hub.retire()
    stored = hub.retained[KEY]
    assert LICENCE.encode() not in stored
    assert len(stored) < 1024
    marker = Case.from_bytes(hub.store.get(KEY) or b"")
    assert (marker.expected, marker.results, marker.declarant_eori) == ([], [], "")
    assert [(w.authority, w.reference, w.line) for w in marker.written_off or []] == [
        ("dga", LICENCE, 2)
    ]
    hub.now += timedelta(days=2)
    out = invalidated(hub)
    [request] = requests(hub, out, "dga")
    assert (request.operation, given_back(request)) == (
        Operation.GIVE_BACK,
        [(1, LICENCE, 2, Decimal("3"))],
    )


def test_an_invalidation_of_a_declaration_held_for_a_control_deletes_what_it_holds(
    hub: RetainingHub,
) -> None:
    """Nothing was written off (the goods never left): nothing is given back, and what
    the control kept reserved is deleted, under the invalidation's version. Before, the
    quoted document got a GIVE_BACK the partner answers 05 (still reserved), and the
    reservation stayed (found by review, stop 36)."""
    hub.intake.handle(
        declaration_xml(version=1, items=(goods_item(1, (document("N853", A, 1, "40"),)),)),
        at(0),
    )
    hub.now += timedelta(seconds=31)
    ticked = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    assert hub.decisions(ticked) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    out = invalidated(hub, document("N853", A, 1, "40"))
    assert [(r.operation, r.version, given_back(r)) for r in requests(hub, out)] == [
        (Operation.DELETE, 2, [(1, A, None, None)])
    ]
    assert hub.decisions(out) == [(REF, 2, Outcome.CANCELLED)]


def test_a_live_case_stored_before_it_kept_the_write_offs_gives_back_what_is_quoted(
    hub: RetainingHub,
) -> None:
    """Backward compatibility (found by the review of stop 36's change, G2): v1 was
    released and written off, then v2 (an amendment, still undecided) was stored by a
    worker of before stop 36, without the written-off documents. The hub does not know
    what v1 wrote off: an invalidation gives back what it quotes, as before stop 36
    (before this fix: nothing, the past read as "nothing written off")."""
    released_with(hub)
    hub.intake.handle(
        declaration_xml(version=2, items=(goods_item(1, (document("N853", A, 1, "40"),)),)),
        at(1),
    )
    stored = Case.from_bytes(hub.store.get(KEY) or b"")
    hub.store[KEY] = stored.model_dump_json(exclude={"written_off"}).encode()

    out = hub.intake.handle(
        declaration_xml(
            version=3,
            stage=Stage.INVALIDATED,
            items=(goods_item(1, (document("N853", A, 1, "40"),)),),
        ),
        at(2),
    )

    give_backs = [r for r in requests(hub, out) if r.operation is Operation.GIVE_BACK]
    assert [given_back(r) for r in give_backs] == [[(1, A, 1, Decimal("40"))]]


def test_a_case_that_does_not_know_what_was_written_off_is_retired_still_not_knowing(
    hub: RetainingHub,
) -> None:
    """The same past retired to a marker: the marker does not read the unknown as
    "nothing written off" (the invalidation then gives back what it quotes)."""
    released_with(hub)
    stored = Case.from_bytes(hub.store.get(KEY) or b"")
    hub.store[KEY] = (
        stored.model_copy(update={"version": 2}).model_dump_json(exclude={"written_off"}).encode()
    )
    hub.retire()

    out = invalidated_as(hub, 3, document("N853", A, 1, "40"))

    give_backs = [r for r in requests(hub, out) if r.operation is Operation.GIVE_BACK]
    assert [given_back(r) for r in give_backs] == [[(1, A, 1, Decimal("40"))]]


def invalidated_as(hub: RetainingHub, version: int, *docs: DocumentRef) -> Effects:
    return hub.intake.handle(
        declaration_xml(version=version, stage=Stage.INVALIDATED, items=(goods_item(1, docs),)),
        at(version),
    )
