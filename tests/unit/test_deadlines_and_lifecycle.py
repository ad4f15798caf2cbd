"""Deadlines, degraded mode, and the quantity life cycle after a decision."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline.hub_context import OpenCaseEntry
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.unit.test_pipeline import SOURCE, Hub

REF = "26FR000690I0000012"
TWO_AUTHORITIES = declaration_xml(
    items=(
        goods_item(1, (document("N853", "CHEDP-1"),)),
        goods_item(2, (document("C638", "CITES-1", 1, "2", "NAR"),)),
    )
)


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: object) -> Hub:
    return Hub(routing_table, keys_dir)  # type: ignore[arg-type]


def tick(hub: Hub) -> Effects:
    return hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))


def requests(hub: Hub, outbox: Effects, authority: str) -> list[AuthorityRequest]:
    envelope = hub.envelope(authority)
    return [
        AuthorityRequest.model_validate_json(envelope.open(r.value, topic=r.topic).payload)
        for r in outbox.to(hub.topics.requests(authority))
    ]


def test_a_silent_partner_gives_documentary_control_naming_it(hub: Hub) -> None:
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    assert REF.encode() in hub.open_cases
    hub.now += timedelta(seconds=31)
    out = tick(hub)
    [(reference, version, outcome)] = hub.decisions(out)
    assert (reference, version, outcome) == (REF, 1, Outcome.CONTROL_DOCUMENTARY)
    decision = hub.decision_objects(out)[0]
    assert [r.code for r in decision.reasons][:2] == ["DEGRADED_MODE", "DEADLINE"]
    assert "no answer from cites" in decision.reasons[1].text
    # The control keeps the reservations; the case now waits for the control's result.
    assert OpenCaseEntry.from_bytes(hub.open_cases[REF.encode()]).waits_for_control
    assert {(d.authority, d.verdict) for d in decision.documents} == {
        ("dgal", Verdict.VALID),
        ("cites", Verdict.UNAVAILABLE),
    }
    assert StatusKind.DEADLINE_PASSED in hub.status_kinds(out)
    # Controls keep the reservations: nothing is written off or deleted.
    assert requests(hub, out, "dgal") == []


class WritesSeen(dict[bytes, bytes]):
    """A table that remembers each write and deletion: each is a changelog record."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes.append("set")
        super().__setitem__(key, value)

    def pop(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        if key in self:
            self.writes.append("delete")
        return super().pop(key, default)


def test_a_case_kept_for_a_control_replaces_its_deadline_in_one_write(
    routing_table: RoutingTable, keys_dir: object
) -> None:
    """Its entry changes from "waits for answers" to "waits for the control's result":
    one changelog record, not a deletion and then a write."""
    open_cases = WritesSeen()
    hub = Hub(routing_table, keys_dir, open_cases)  # type: ignore[arg-type]
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    assert open_cases.writes == ["set"]
    hub.now += timedelta(seconds=31)
    [(_, _, outcome)] = hub.decisions(tick(hub))
    assert outcome == Outcome.CONTROL_DOCUMENTARY
    assert open_cases.writes == ["set", "set"]
    assert OpenCaseEntry.from_bytes(open_cases[REF.encode()]).waits_for_control


def test_a_released_case_no_longer_waits(routing_table: RoutingTable, keys_dir: object) -> None:
    open_cases = WritesSeen()
    hub = Hub(routing_table, keys_dir, open_cases)  # type: ignore[arg-type]
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    [(_, _, outcome)] = hub.decisions(hub.answer(sent, "cites", Verdict.VALID))
    assert outcome == Outcome.RELEASE
    assert open_cases.writes == ["set", "delete"]
    assert open_cases == {}


def test_an_early_or_stale_tick_changes_nothing(hub: Hub) -> None:
    hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    assert tick(hub).records == []  # not due yet
    hub.intake.handle(declaration_xml(version=2), SOURCE)
    hub.now += timedelta(seconds=31)
    assert tick(hub).records == []  # version 1 was superseded


def test_a_refusal_stays_a_refusal_when_another_partner_is_silent(hub: Hub) -> None:
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    hub.now += timedelta(seconds=31)
    out = tick(hub)
    assert hub.decisions(out) == [(REF, 1, Outcome.REFUSE)]
    # Every reservation goes back, the silent partner's too (its adapter replays it).
    deletes = requests(hub, out, "dgal") + requests(hub, out, "cites")
    assert [(d.authority, d.operation) for d in deletes] == [
        ("dgal", Operation.DELETE),
        ("cites", Operation.DELETE),
    ]


def test_an_answer_after_the_deadline_decision_is_recorded_not_acted_on(hub: Hub) -> None:
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.now += timedelta(seconds=31)
    tick(hub)
    late = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(late) == []
    [status] = hub.statuses(late)
    assert status.kind is StatusKind.LATE_ANSWER_IGNORED
    assert "VALID" in status.detail


def test_a_release_writes_off_at_each_authority(hub: Hub) -> None:
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)
    out = hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(out) == [(REF, 1, Outcome.RELEASE)]
    for authority, item in (("dgal", 1), ("cites", 2)):
        [write_off] = requests(hub, out, authority)
        assert write_off.operation is Operation.WRITE_OFF
        assert [i.number for i in write_off.items] == [item]
    assert StatusKind.FOLLOW_UP_SENT in hub.status_kinds(out)
    confirmed = hub.answer(out, "dgal", Verdict.VALID)
    assert [s.kind for s in hub.statuses(confirmed)] == [StatusKind.WRITTEN_OFF]


def test_a_refusal_deletes_the_reservations(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    out = hub.answer(sent, "dgal", Verdict.QUANTITY_INSUFFICIENT)
    [delete] = requests(hub, out, "dgal")
    assert delete.operation is Operation.DELETE
    deleted = hub.answer(out, "dgal", Verdict.VALID)
    assert [s.kind for s in hub.statuses(deleted)] == [StatusKind.RESERVATION_DELETED]


def test_advice_reserves_nothing_and_follows_up_nothing(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(stage=Stage.PRELODGED), SOURCE)
    out = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(out) == [(REF, 1, Outcome.ADVICE)]
    assert requests(hub, out, "dgal") == []


def test_a_new_version_deletes_the_documents_it_no_longer_quotes(hub: Hub) -> None:
    sent = hub.intake.handle(TWO_AUTHORITIES, SOURCE)
    hub.answer(sent, "dgal", Verdict.VALID)  # CITES has not answered: both still reserved
    only_dgal = declaration_xml(version=2, items=(goods_item(1, (document("N853", "CHEDP-1"),)),))
    out = hub.intake.handle(only_dgal, SourcePosition("gun.declarations", 0, 1))
    [delete] = requests(hub, out, "cites")
    # Under the new version: an operation of an older version is stale at the partner.
    assert (delete.operation, delete.version) == (Operation.DELETE, 2)
    assert [d.reference for i in delete.items for d in i.documents] == ["CITES-1"]
    [restate] = requests(hub, out, "dgal")
    assert restate.operation is Operation.RESERVE


def test_a_refused_war_material_write_off_raises_a_post_release_alert(hub: Hub) -> None:
    licence = declaration_xml(items=(goods_item(1, (document("LEMG", "LEMG-42", 1, "5", "NAR"),)),))
    sent = hub.intake.handle(licence, SOURCE)
    out = hub.answer(sent, "dga", Verdict.VALID)
    assert hub.decisions(out) == [(REF, 1, Outcome.RELEASE)]
    before = (
        REGISTRY.get_sample_value("gun_hub_post_release_alerts_total", {"authority": "dga"}) or 0
    )
    alert = hub.answer(out, "dga", Verdict.MISMATCH)
    [status] = hub.statuses(alert)
    assert status.kind is StatusKind.POST_RELEASE_ALERT
    assert "LEMG-42" not in status.detail  # confidential: the verdict, not the licence
    assert hub.decisions(alert) == []  # an alert, not a block
    after = REGISTRY.get_sample_value("gun_hub_post_release_alerts_total", {"authority": "dga"})
    assert after == before + 1


def test_a_war_material_write_off_the_partner_rejected_is_a_failed_follow_up_not_an_alert(
    hub: Hub,
) -> None:
    """SIGALE rejecting the write-off call itself (HTTP 4xx, adapters/base/certex.py)
    says nothing of what left: no post-release alert, a follow-up operations must look at."""
    licence = declaration_xml(items=(goods_item(1, (document("LEMG", "LEMG-42", 1, "5", "NAR"),)),))
    out = hub.answer(hub.intake.handle(licence, SOURCE), "dga", Verdict.VALID)
    [write_off] = requests(hub, out, "dga")
    refused = answer_to(write_off, Verdict.MISMATCH)
    rejected = refused.model_copy(
        update={
            "answers": tuple(
                a.model_copy(update={"partner_code": "HTTP422", "detail": "rejected"})
                for a in refused.answers
            )
        }
    )
    [status] = hub.statuses(hub.respond(rejected))
    assert status.kind is StatusKind.FOLLOW_UP_FAILED
    assert "LEMG-42" not in status.detail  # confidential all the same


def test_a_rejected_licence_does_not_hide_another_licence_s_post_release_alert(hub: Hub) -> None:
    """One write-off quoting two licences: SIGALE rejects the call for one, and answers
    the other is over-used. The real mismatch still raises its alert (found by review in
    stop 31)."""
    licences = declaration_xml(
        items=(
            goods_item(1, (document("LEMG", "LEMG-42", 1, "5", "NAR"),)),
            goods_item(2, (document("LEMG", "LEMG-43", 1, "5", "NAR"),)),
        )
    )
    out = hub.answer(hub.intake.handle(licences, SOURCE), "dga", Verdict.VALID)
    [write_off] = requests(hub, out, "dga")
    refused = answer_to(write_off, Verdict.MISMATCH)
    answers = tuple(
        a.model_copy(update={"partner_code": "HTTP400"}) if a.reference == "LEMG-43" else a
        for a in refused.answers
    )
    [status] = hub.statuses(hub.respond(refused.model_copy(update={"answers": answers})))
    assert status.kind is StatusKind.POST_RELEASE_ALERT
