"""Issue 13, item 3: pilot, then generalise. Each authority's rollout mode (off, shadow,
advice, enforce), everywhere or per customs office, through the hub's processing steps
(no broker): what is asked, what is decided, what is reserved and followed up, and what
the pilot report is made of."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import StateCipher, StateUnreadable
from gun_hub.domain.rollout import (
    ADVISORY_ONLY,
    AUTHORITY_NOT_CONNECTED,
    RolloutBoard,
    RolloutMode,
    RolloutSetting,
    open_setting,
    seal_setting,
)
from gun_hub.domain.routing import RoutingTable
from gun_hub.ops.facts import FACT, DecisionFact
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_pipeline import Hub

OFFICE = "FR000690"  # the builders' office
OTHER_OFFICE = "FR000750"
REF = "26FR000690I0000012"
AT = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def setting(
    authority: str, mode: RolloutMode, office: str | None = None, reason: str = "pilot"
) -> RolloutSetting:
    return RolloutSetting(
        authority=authority, office=office, mode=mode, officer="amelie", reason=reason, at=AT
    )


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    return Hub(routing_table, keys_dir)


def source(offset: int = 0) -> SourcePosition:
    return SourcePosition("gun.declarations", 0, offset)


def requests_in(hub: Hub, outbox: Effects, authority: str) -> list[AuthorityRequest]:
    opened = hub.envelope(authority)
    topic = hub.topics.requests(authority)
    return [
        AuthorityRequest.model_validate_json(opened.open(r.value, topic=topic).payload)
        for r in outbox.to(topic)
    ]


def facts(hub: Hub, outbox: Effects) -> list[DecisionFact]:
    parsed = [FACT.validate_json(r.value) for r in outbox.to(hub.topics.facts)]
    return [f for f in parsed if isinstance(f, DecisionFact)]


def two_authorities() -> bytes:
    """A sanitary certificate (dgal) and a CITES permit (cites) on one declaration."""
    return declaration_xml(
        items=(goods_item(1, (document("N853", "CHEDP-1"), document("C638", "CITES-1"))),)
    )


# -- the board: which mode applies where ---------------------------------------------


def test_an_authority_never_set_is_enforced() -> None:
    assert RolloutBoard().mode_for("dgal", OFFICE) is RolloutMode.ENFORCE


def test_an_office_setting_wins_over_the_authority_wide_one() -> None:
    board = RolloutBoard(
        [setting("dgal", RolloutMode.SHADOW), setting("dgal", RolloutMode.ENFORCE, OFFICE)]
    )
    assert board.mode_for("dgal", OFFICE) is RolloutMode.ENFORCE
    assert board.mode_for("dgal", OTHER_OFFICE) is RolloutMode.SHADOW
    assert board.mode_for("cites", OFFICE) is RolloutMode.ENFORCE


def test_the_latest_setting_of_a_scope_replaces_the_earlier_one() -> None:
    board = RolloutBoard([setting("dga", RolloutMode.SHADOW), setting("dga", RolloutMode.ADVICE)])
    assert board.mode_for("dga", None) is RolloutMode.ADVICE
    assert len(board.settings()) == 1


def test_an_office_must_be_a_customs_office_reference() -> None:
    with pytest.raises(ValueError, match="customs office reference"):
        setting("dgal", RolloutMode.OFF, office="Paris")


def test_a_setting_opens_only_under_its_own_key_and_the_hub_state_key(keys_dir: Path) -> None:
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    shadow = setting("dga", RolloutMode.SHADOW, OFFICE)
    sealed = seal_setting(cipher, shadow)
    assert open_setting(cipher, shadow.key, sealed) == shadow
    with pytest.raises(StateUnreadable):
        # Moved to another scope's key (dga everywhere): refused.
        open_setting(cipher, setting("dga", RolloutMode.OFF).key, sealed)
    with pytest.raises(StateUnreadable):
        open_setting(cipher, shadow.key, sealed[:-1] + bytes([sealed[-1] ^ 1]))


# -- enforce: the contract's rules, unchanged ------------------------------------------


def test_with_no_setting_a_refusal_refuses_as_the_contract_says(hub: Hub) -> None:
    sent = hub.intake.handle(two_authorities(), source())
    hub.answer(sent, "dgal", Verdict.VALID)
    decided = hub.answer(sent, "cites", Verdict.NOT_FOUND)
    assert hub.decisions(decided) == [(REF, 1, Outcome.REFUSE)]
    [fact] = facts(hub, decided)
    assert [(u.authority, u.mode) for u in fact.rollout] == [
        ("cites", "enforce"),
        ("dgal", "enforce"),
    ]
    assert fact.office == OFFICE


# -- off --------------------------------------------------------------------------------


def test_an_authority_off_is_not_asked_and_its_documents_go_to_the_office(hub: Hub) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.OFF))
    sent = hub.intake.handle(two_authorities(), source())
    assert requests_in(hub, sent, "cites") == []
    [dgal] = requests_in(hub, sent, "dgal")
    assert dgal.operation is Operation.RESERVE
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    [decision] = hub.decision_objects(decided)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert [r.code for r in decision.reasons] == [AUTHORITY_NOT_CONNECTED]
    [cites] = [d for d in decision.documents if d.authority == "cites"]
    assert cites.verdict is Verdict.UNROUTED


def test_a_declaration_whose_only_authority_is_off_is_decided_at_once(hub: Hub) -> None:
    hub.rollout.apply(setting("dgal", RolloutMode.OFF, OFFICE))
    sent = hub.intake.handle(declaration_xml(), source())
    assert requests_in(hub, sent, "dgal") == []
    assert hub.decisions(sent) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    # It reserved nothing: no control result is awaited, nothing becomes overdue.
    assert hub.open_cases == {}


def test_off_at_another_office_changes_nothing_here(hub: Hub) -> None:
    hub.rollout.apply(setting("dgal", RolloutMode.OFF, OTHER_OFFICE))
    sent = hub.intake.handle(declaration_xml(), source())
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


# -- shadow -----------------------------------------------------------------------------


def test_a_shadow_authority_is_asked_to_check_only_and_decided_as_if_off(hub: Hub) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.SHADOW))
    sent = hub.intake.handle(two_authorities(), source())
    [cites] = requests_in(hub, sent, "cites")
    assert cites.operation is Operation.CHECK  # reserves nothing
    assert requests_in(hub, sent, "dgal")[0].operation is Operation.RESERVE
    hub.answer(sent, "dgal", Verdict.VALID)
    decided = hub.answer(sent, "cites", Verdict.QUANTITY_INSUFFICIENT)
    [decision] = hub.decision_objects(decided)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    assert [r.code for r in decision.reasons] == [AUTHORITY_NOT_CONNECTED]
    # What it would have decided, kept for the pilot report.
    [fact] = facts(hub, decided)
    [shadow] = [u for u in fact.rollout if u.authority == "cites"]
    assert (shadow.mode, shadow.would_decide, shadow.agrees) == ("shadow", "REFUSE", False)
    assert shadow.reasons == ["QUANTITY_INSUFFICIENT"]


def test_a_shadow_authority_that_agrees_is_counted_as_agreeing(hub: Hub) -> None:
    hub.rollout.apply(setting("dgal", RolloutMode.SHADOW))
    xml = declaration_xml(
        items=(goods_item(1, (document("N853", "CHEDP-1"), document("X999", "UNKNOWN-1"))),)
    )
    sent = hub.intake.handle(xml, source())
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    # The unrouted X999 sends it to control anyway: enforcing dgal changes nothing.
    assert hub.decisions(decided) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    [fact] = facts(hub, decided)
    [shadow] = fact.rollout
    assert (shadow.would_decide, shadow.agrees, shadow.reasons) == (
        "CONTROL_DOCUMENTARY",
        True,
        [],
    )


def test_a_silent_shadow_authority_is_recorded_unavailable_at_the_deadline(hub: Hub) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.SHADOW))
    sent = hub.intake.handle(two_authorities(), source())
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.now = hub.now.replace(year=hub.now.year + 1)  # far past the request deadline
    timed_out = hub.deadlines.handle(REF, 1, SourcePosition("gun.hub.deadlines", 0, 0))
    [decision] = hub.decision_objects(timed_out)
    assert decision.outcome is Outcome.CONTROL_DOCUMENTARY
    [shadow] = [u for u in facts(hub, timed_out)[0].rollout if u.authority == "cites"]
    assert shadow.would_decide == "CONTROL_DOCUMENTARY"
    assert shadow.reasons == ["UNAVAILABLE"]


def test_nothing_reserved_in_shadow_is_written_off_or_deleted(hub: Hub) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.SHADOW))
    sent = hub.intake.handle(two_authorities(), source())
    hub.answer(sent, "cites", Verdict.VALID)
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    # A documentary control: dgal's reservation is kept for it, cites has none.
    assert hub.decisions(decided) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    released = hub.intake.handle(
        declaration_xml(
            version=2,
            stage=Stage.RELEASED_AFTER_CONTROL,
            items=(goods_item(1, (document("N853", "CHEDP-1"), document("C638", "CITES-1"))),),
        ),
        source(1),
    )
    assert [r.operation for r in requests_in(hub, released, "dgal")] == [Operation.WRITE_OFF]
    assert requests_in(hub, released, "cites") == []


# -- advice -----------------------------------------------------------------------------


def test_an_advisory_refusal_only_warns(hub: Hub) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.ADVICE, OFFICE))
    sent = hub.intake.handle(two_authorities(), source())
    # Asked as when enforced: a lodged declaration reserves.
    assert requests_in(hub, sent, "cites")[0].operation is Operation.RESERVE
    hub.answer(sent, "dgal", Verdict.VALID)
    decided = hub.answer(sent, "cites", Verdict.NOT_FOUND)
    [decision] = hub.decision_objects(decided)
    assert decision.outcome is Outcome.RELEASE
    assert [r.code for r in decision.reasons] == ["NOT_FOUND", ADVISORY_ONLY]
    # Written off where the partner reserved (dgal), not where it refused (cites).
    assert [r.operation for r in requests_in(hub, decided, "dgal")] == [Operation.WRITE_OFF]
    assert requests_in(hub, decided, "cites") == []


def test_an_advisory_authority_does_not_soften_an_enforced_refusal(hub: Hub) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.ADVICE))
    sent = hub.intake.handle(two_authorities(), source())
    hub.answer(sent, "cites", Verdict.VALID)
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.INVALID_STATUS)) == [
        (REF, 1, Outcome.REFUSE)
    ]


# -- changes while declarations flow -----------------------------------------------------


def test_a_change_applies_to_versions_received_after_it(hub: Hub) -> None:
    hub.rollout.apply(setting("dgal", RolloutMode.SHADOW))
    sent = hub.intake.handle(declaration_xml(), source())
    hub.rollout.apply(setting("dgal", RolloutMode.ENFORCE))
    # Decided as it was opened: in shadow (its request was a CHECK).
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(decided) == [(REF, 1, Outcome.CONTROL_DOCUMENTARY)]
    second = hub.intake.handle(declaration_xml(reference="26FR000690I0000013"), source(1))
    assert requests_in(hub, second, "dgal")[0].operation is Operation.RESERVE


def test_switching_an_authority_off_never_strands_a_reservation(hub: Hub) -> None:
    sent = hub.intake.handle(declaration_xml(), source())
    hub.answer(sent, "dgal", Verdict.UNAVAILABLE)  # documentary control: reservation kept
    hub.rollout.apply(setting("dgal", RolloutMode.OFF))
    cancelled = hub.intake.handle(declaration_xml(version=2, stage=Stage.CANCELLED), source(1))
    assert [r.operation for r in requests_in(hub, cancelled, "dgal")] == [Operation.DELETE]


def test_a_cancellation_asks_nothing_of_an_authority_that_reserved_nothing(hub: Hub) -> None:
    hub.rollout.apply(setting("dgal", RolloutMode.SHADOW))
    sent = hub.intake.handle(declaration_xml(), source())
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.rollout.apply(setting("dgal", RolloutMode.ENFORCE))
    cancelled = hub.intake.handle(declaration_xml(version=2, stage=Stage.CANCELLED), source(1))
    assert requests_in(hub, cancelled, "dgal") == []
    [decision] = hub.decision_objects(cancelled)
    assert (decision.outcome, decision.reasons) == (Outcome.CANCELLED, ())


def test_a_redelivered_version_is_asked_again_as_it_was_first_asked(hub: Hub) -> None:
    hub.rollout.apply(setting("dgal", RolloutMode.SHADOW))
    hub.intake.handle(declaration_xml(), source())
    hub.rollout.apply(setting("dgal", RolloutMode.ENFORCE))
    again = hub.intake.handle(declaration_xml(), source())  # the same record, read again
    assert [r.operation for r in requests_in(hub, again, "dgal")] == [Operation.CHECK]


# -- the pilot report ---------------------------------------------------------------------


def test_the_report_counts_declarations_agreements_and_reasons(hub: Hub, tmp_path: Path) -> None:
    hub.rollout.apply(setting("cites", RolloutMode.SHADOW))
    verdicts = [Verdict.VALID, Verdict.NOT_FOUND, Verdict.NOT_FOUND]
    outboxes = []
    for number, verdict in enumerate(verdicts):
        sent = hub.intake.handle(
            declaration_xml(
                reference=f"26FR000690I000010{number}",
                items=(goods_item(1, (document("C638", f"CITES-{number}"),)),),
            ),
            source(number),
        )
        outboxes.append(hub.answer(sent, "cites", verdict))
    view = OpsView(tmp_path / "view.sqlite3", FeedTopics("s", hub.topics.facts, "d", "h"))
    view.apply(
        FeedRecord(hub.topics.facts, 0, offset, 0, record.value)
        for offset, record in enumerate(r for o in outboxes for r in o.to(hub.topics.facts))
    )
    [row] = view.rollout_report()
    assert (row["authority"], row["office"], row["mode"], row["declarations"]) == (
        "cites",
        OFFICE,
        "shadow",
        3,
    )
    # Decided as if off: a documentary control each time. It would have released the
    # first (disagreeing with the control) and refused the other two.
    assert row["decided"] == {"CONTROL_DOCUMENTARY": 3}
    assert row["would_decide"] == {"RELEASE": 1, "REFUSE": 2}
    assert (row["agreements"], row["disagreements"]) == (0, 3)
    assert row["reasons"] == {"NOT_FOUND": 2}


def test_what_a_shadow_authority_would_decide_is_what_enforcing_it_decides_under_an_override(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The pilot's evidence (review of stop 47): with the declarant's override (mention
    73000) on the item, the shadow re-decision let another authority's *advisory*
    refusal through the override, where the real decision leaves advice out of it: the
    report said CONTROL_DOCUMENTARY, agreeing with the decision taken, where enforcing
    the authority releases (a control the connection would save, hidden)."""
    xml = declaration_xml(
        items=(
            goods_item(
                1, (document("N853", "CHEDP-1"), document("C638", "CITES-1")), mentions=("73000",)
            ),
        )
    )

    def decided_by(hub: Hub) -> Effects:
        hub.rollout.apply(setting("cites", RolloutMode.ADVICE, OFFICE))
        sent = hub.intake.handle(xml, source())
        hub.answer(sent, "dgal", Verdict.VALID)
        return hub.answer(sent, "cites", Verdict.NOT_FOUND)  # advisory only

    enforced = Hub(routing_table, keys_dir)
    [really] = enforced.decision_objects(decided_by(enforced))

    piloted = Hub(routing_table, keys_dir)
    piloted.rollout.apply(setting("dgal", RolloutMode.SHADOW, OFFICE))
    [fact] = facts(piloted, decided_by(piloted))
    [dgal] = [use for use in fact.rollout if use.authority == "dgal"]
    assert dgal.would_decide == really.outcome.value
