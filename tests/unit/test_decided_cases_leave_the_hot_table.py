"""A decided, announced case that holds nothing leaves the cases table after the
retention; a small marker keeps the versions rule (issue 12, bounded state;
gun_hub/pipeline/retention.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.effects import Effects
from gun_contract.model.declaration import Stage
from gun_contract.model.exchange import (
    AuthorityResponse,
    DocumentAnswer,
    Operation,
    request_id_for,
)
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.state_cipher import StateCipher
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.pipeline import retention
from gun_hub.pipeline.correlation import UNASKED_DOCUMENT, Correlation
from gun_hub.pipeline.deadlines import Deadlines
from gun_hub.pipeline.intake import Intake
from gun_hub.pipeline.retention import (
    CaseRetention,
    RetainedCases,
    RetentionEntry,
    RetentionIndex,
)
from gun_hub.pipeline.takeover import Notice, Takeover
from gun_hub.xml.declaration_codec import DeclarationCodec
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub, keyed_by_reference

REF = "26FR000690I0000012"
KEY = REF.encode()
RETENTION_S = 3 * 24 * 3600.0
MARKER_S = 14 * 24 * 3600.0
TICKS = SourcePosition("gun.hub.deadlines", 0, 7)


class RetainingHub(Hub):
    """The unit hub with the retention wired as the worker wires it (app.py)."""

    def __init__(
        self, routing: RoutingTable, keys_dir: Path, marker_cipher: StateCipher | None = None
    ) -> None:
        """``marker_cipher``: what seals the markers (the worker's state cipher)."""
        super().__init__(routing, keys_dir)
        self.retained: dict[bytes, bytes] = {}  # the case-retention table
        self.index = RetentionIndex()
        self.marker_cipher = marker_cipher
        self.retention = CaseRetention(
            cases=self.cases,
            entries=self.retained,
            open_cases=self.open_cases,
            index=self.index,
            clock=lambda: self.now,
            retention_s=RETENTION_S,
            marker_s=MARKER_S,
            cipher=marker_cipher,
        )
        self.store = store = RetainedCases(self.cases, self.retained, marker_cipher)
        context = dataclasses.replace(
            self.intake._ctx,  # the context Hub built, with the retention added
            cases=store,
            retention=self.retention,
        )
        self.context = context
        self.intake = Intake(context, DeclarationCodec(), store, accept_plain=True)
        self.correlation = Correlation(context, store)
        self.deadlines = Deadlines(context, store)
        self.intake.handle = keyed_by_reference(self._delivered(self.intake.handle))  # type: ignore[method-assign]
        self.correlation.handle = self._delivered(self.correlation.handle)  # type: ignore[method-assign]
        self.deadlines.handle = self._delivered(self.deadlines.handle)  # type: ignore[method-assign]

    def retention_tick(self, reference: str = REF) -> Effects:
        """What the retention sweep's tick does on the case's partition."""

        def announce_again(outbox: Effects, case: Case) -> bool:
            return self.context.announce_again_if_lost(outbox, case, TICKS.partition)

        handle = self._delivered(
            lambda: self.retention.handle(reference, TICKS.partition, announce_again)
        )
        return handle()

    def released(self) -> None:
        sent = self.intake.handle(declaration_xml(), SOURCE)
        [(_, _, outcome)] = self.decisions(self.answer(sent, "dgal", Verdict.VALID))
        assert outcome is Outcome.RELEASE

    def retire(self) -> None:
        """The case is retired: past the retention, ticked, gone from the table."""
        self.now += timedelta(seconds=RETENTION_S + 1)
        assert self.retention_tick().records == []
        assert KEY not in self.cases


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> RetainingHub:
    return RetainingHub(routing_table, keys_dir)


def test_a_released_case_leaves_the_table_after_the_retention_and_a_marker_stays(
    hub: RetainingHub,
) -> None:
    hub.released()
    hub.now += timedelta(seconds=RETENTION_S - 60)
    hub.retention_tick()
    assert KEY in hub.cases  # not yet: decided less than the retention ago
    hub.now += timedelta(seconds=61)
    hub.retention_tick()
    assert KEY not in hub.cases
    marker = RetentionEntry.from_bytes(hub.retained[KEY]).marker
    assert marker is not None
    kept = Case.from_bytes(marker)
    assert (kept.reference, kept.version, kept.outcome) == (REF, 1, Outcome.RELEASE)
    # What the versions rule needs, and nothing confidential: no documents, no declarant.
    assert kept.expected == []
    assert kept.results == []
    assert kept.declarant_eori == ""
    assert len(marker) < 1024


def test_a_stale_version_after_the_sweep_gets_no_second_decision(hub: RetainingHub) -> None:
    hub.released()
    hub.retire()
    copy = hub.intake.handle(declaration_xml(), SourcePosition("gun.declarations", 0, 9))
    assert hub.decisions(copy) == []
    assert copy.to(hub.topics.requests("dgal")) == []
    assert hub.status_kinds(copy) == [StatusKind.IGNORED_STALE_VERSION]
    assert KEY not in hub.cases


def test_the_record_that_opened_the_case_read_again_after_the_sweep_sends_nothing(
    hub: RetainingHub,
) -> None:
    hub.released()
    hub.retire()
    again = hub.intake.handle(declaration_xml(), SOURCE)  # a lost commit, a redrive
    assert again.records == []
    assert KEY not in hub.cases


def test_a_higher_version_after_the_sweep_is_decided_as_usual(hub: RetainingHub) -> None:
    hub.released()
    hub.retire()
    sent = hub.intake.handle(declaration_xml(version=2), SourcePosition("gun.declarations", 0, 9))
    assert StatusKind.RECEIVED in hub.status_kinds(sent)
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 2, Outcome.RELEASE)]


def test_a_late_answer_to_a_follow_up_is_still_solicited_after_the_sweep(
    hub: RetainingHub,
) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    decided = hub.answer(sent, "dgal", Verdict.VALID)  # released: a write-off goes out
    hub.retire()
    late = hub.answer(decided, "dgal", Verdict.VALID)  # the partner was down for days
    assert hub.status_kinds(late) == [StatusKind.WRITTEN_OFF]
    assert late.to(hub.topics.dlq) == []


def test_a_late_deletion_after_the_sweep_speaks_of_what_it_was_asked_and_nothing_else(
    hub: RetainingHub,
) -> None:
    """The marker keeps what the case's requests asked each authority (review stop 37,
    i3): a refusal's deletion answered days later is reported with its document, and a
    document it was never asked about is still left out."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    refused = hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE)]
    hub.retire()
    late = hub.answer(refused, "dgal", Verdict.VALID)
    assert hub.status_kinds(late) == [StatusKind.RESERVATION_DELETED]
    assert "CHEDP.FR.2026.0001234" in hub.statuses(late)[0].detail
    assert late.to(hub.topics.dlq) == []
    forged = AuthorityResponse(
        request_id=request_id_for(REF, 1, "dgal", Operation.DELETE),
        authority="dgal",
        operation=Operation.DELETE,
        reference=REF,
        version=1,
        answers=(
            DocumentAnswer(goods_item=3, code="C640", reference="CHEDA.X", verdict=Verdict.VALID),
        ),
        answered_at=hub.now,
    )
    unasked = hub.respond(forged)
    assert unasked.to(hub.topics.status) == []
    [dead] = unasked.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == UNASKED_DOCUMENT


def test_a_case_kept_for_a_control_stays_until_the_control_ends(hub: RetainingHub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.now += timedelta(seconds=31)
    hub.deadlines.handle(REF, 1, TICKS)  # silent partner: documentary control
    assert Case.from_bytes(hub.cases[KEY]).outcome is Outcome.CONTROL_DOCUMENTARY
    assert sent.records
    hub.now += timedelta(seconds=RETENTION_S + 1)
    hub.retention_tick()
    assert KEY in hub.cases  # its reservations wait for the control's result
    entry = RetentionEntry.from_bytes(hub.retained[KEY])
    assert entry.marker is None
    assert entry.due > hub.now.timestamp()  # looked at again


def test_a_control_a_later_version_on_another_partition_took_over_is_retired(
    hub: RetainingHub,
) -> None:
    """Its result came elsewhere (pipeline/takeover.py; outside audit of stop 50, F1):
    kept for ever before, the control's reservations waiting for a result read on
    another partition."""
    hub.intake.handle(declaration_xml(), SOURCE)
    hub.now += timedelta(seconds=31)
    hub.deadlines.handle(REF, 1, TICKS)  # silent partner: documentary control
    quotes = frozenset({("dgal", "CHEDP.FR.2026.0001234")})  # what it held: nothing left
    notice = Notice(2, "gun.declarations/1/0", Stage.LODGED, "", quotes).to_bytes()
    taken_over = hub._delivered(lambda: Takeover(hub.context, hub.store).handle(REF, notice, TICKS))
    assert [s.kind for s in hub.statuses(taken_over())] == [StatusKind.TAKEN_OVER_BY_LATER_VERSION]
    hub.retire()
    assert RetentionEntry.from_bytes(hub.retained[KEY]).marker is not None


def test_an_unconfirmed_decision_is_announced_again_not_retired(hub: RetainingHub) -> None:
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    hub.broker_up = False  # the worker dies before the broker confirms the decision
    hub.answer(sent, "dgal", Verdict.VALID)
    hub.broker_up = True
    hub.now += timedelta(seconds=RETENTION_S + 1)
    again = hub.retention_tick()
    assert hub.decisions(again) == [(REF, 1, Outcome.RELEASE)]
    assert KEY in hub.cases
    hub.now += timedelta(seconds=RETENTION_S + 1)
    hub.retention_tick()
    assert KEY not in hub.cases  # confirmed since, retired now


def test_the_marker_is_forgotten_after_its_time(hub: RetainingHub) -> None:
    hub.released()
    hub.retire()
    hub.now += timedelta(seconds=MARKER_S - 60)
    hub.retention_tick()
    assert KEY in hub.retained
    hub.now += timedelta(seconds=61)
    hub.retention_tick()
    assert hub.retained == {}


async def test_the_sweep_finds_what_is_due_per_partition_and_reseeds_on_assignment() -> None:
    table = {
        b"A": RetentionEntry(100.0, 0).to_bytes(),
        b"B": RetentionEntry(50.0, 1).to_bytes(),
        b"C": RetentionEntry(300.0, 0, b"{}").to_bytes(),
    }
    index = RetentionIndex()
    await index.refresh({0}, table.items)
    assert index.due(0, 99.0) == []
    assert index.due(0, 100.0) == [b"A"]
    assert index.due(1, 1000.0) == []  # not this worker's
    await index.refresh({1}, table.items)  # 0 revoked, 1 assigned
    assert index.partitions == {1}
    assert index.due(1, 1000.0) == [b"B"]
    await index.refresh({0, 1}, table.items)  # 0 back: seeded again
    assert index.due(0, 1000.0) == [b"A", b"C"]


async def test_entries_recovered_in_a_rebalance_are_read_once_it_completes() -> None:
    """A partition kept through a rebalance may have changed hands and back: its entries
    came through the changelog, not through this worker's ticks. Once faust's recovery
    has completed (``on_rebalance_complete``), every partition is read again."""
    table = {b"A": RetentionEntry(100.0, 0).to_bytes()}
    index = RetentionIndex()
    await index.refresh({0}, table.items)
    table[b"RECOVERED"] = RetentionEntry(50.0, 0).to_bytes()
    await index.refresh({0}, table.items)
    assert index.due(0, 60.0) == []  # not read again: nothing says it changed
    index.invalidate()
    await index.refresh({0}, table.items)
    assert index.due(0, 100.0) == [b"RECOVERED", b"A"]


async def test_the_index_reads_the_table_only_when_its_partitions_change() -> None:
    """Days of retained cases are many: the index holds every entry's key in due order
    (on the worker's disk), learns each entry written from the tick handler, and reads
    the whole table only when its partitions change or a rebalance says so (stop 44: it
    read it again every half hour, a quarter of a core at production's volume)."""
    table = {f"K{n}".encode(): RetentionEntry(n * 600.0, 0).to_bytes() for n in range(1, 11)}
    reads: list[int] = []

    def entries() -> Iterator[tuple[bytes, bytes]]:
        reads.append(1)
        yield from table.items()

    index = RetentionIndex()
    await index.refresh({0}, entries)
    assert len(index) == 10
    index.push(0, 1500.0, b"NEW")  # the tick handler schedules a case
    index.push(0, 500_000.0, b"LATER")  # days ahead: held all the same
    for _look in range(3):  # an hour's looks, a day's
        await index.refresh({0}, entries)
    assert len(reads) == 1, "no read while the partitions stay the same"
    assert index.due(0, 1800.0) == [b"K1", b"K2", b"NEW", b"K3"]
    assert index.due(0, 500_000.0) == [f"K{n}".encode() for n in range(4, 11)] + [b"LATER"]
    await index.refresh({0, 1}, entries)  # a partition taken: read again
    assert len(reads) == 2


async def test_under_a_steady_load_the_tables_stay_flat(hub: RetainingHub) -> None:
    """A declaration every six hours for 40 days, the sweep looking each time: once the
    retention and the marker time have passed (17 days), what the hub keeps stops growing."""
    kept: list[tuple[int, int]] = []  # (live cases, retention entries), daily
    for n in range(40 * 4):
        source = SourcePosition("gun.declarations", 0, n)
        sent = hub.intake.handle(declaration_xml(reference=f"26FRFLAT{n:010d}"), source)
        hub.answer(hub.answer(sent, "dgal", Verdict.VALID), "dgal", Verdict.VALID)
        now = hub.now.timestamp()
        await hub.index.refresh({0}, hub.retained.items)
        for key in hub.index.due(0, now):
            hub.retention_tick(key.decode())
        if n % 4 == 3:
            kept.append((len(hub.cases), len(hub.retained)))
        hub.now += timedelta(hours=6)
    steady = kept[18:]
    assert {cases for cases, _ in steady} == {12}  # three days of declarations
    entries = [entries for _, entries in steady]
    assert max(entries) - min(entries) <= 4
    assert max(entries) <= 17 * 4 + 4  # retention and marker time
    # The index holds a row per entry (on disk in the hub), no more: flat with the table.
    assert len(hub.index) == len(hub.retained)


def test_a_late_deletion_on_a_marker_an_earlier_hub_wrote_is_reported(
    hub: RetainingHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marker written before the hub kept what it asked (no ``asked``, its documents
    stripped) takes a late deletion's answer as that hub did: it was dead-lettered as
    unasked, its RESERVATION_DELETED lost (found by review of stop 37's change, G2)."""
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    refused = hub.answer(sent, "dgal", Verdict.NOT_FOUND)
    assert hub.decisions(refused) == [(REF, 1, Outcome.REFUSE)]
    marker_of = retention.marker_of
    monkeypatch.setattr(  # the marker as an earlier hub wrote it
        retention, "marker_of", lambda case: marker_of(case).model_copy(update={"asked": None})
    )
    hub.retire()
    monkeypatch.setattr(retention, "marker_of", marker_of)
    late = hub.answer(refused, "dgal", Verdict.VALID)
    assert hub.status_kinds(late) == [StatusKind.RESERVATION_DELETED]
    assert late.to(hub.topics.dlq) == []
