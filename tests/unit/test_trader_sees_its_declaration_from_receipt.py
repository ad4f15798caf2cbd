"""A trader sees its declaration from the moment the hub received it (issue 11, item 1).

Before, the view learnt a declaration's declarant from its decision only, so a trader
asking about a declaration still being checked got the 404 of an unknown reference. The
intake now names the declarant on the hub-internal facts topic with the first records it
emits about a version (``gun.status`` stays as the contract has it: no declarant).

The real intake (no broker) feeds a real view, which the real trader listener answers
from: the declarant reads RECEIVED then CHECKING at once, anyone else gets the very 404 of
an unknown reference, and a pending war-material licence leaves no trace.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.declaration import DocumentRef, Stage
from gun_contract.model.verdicts import Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind, lodging
from gun_hub.ops.facts import FACT, ReceivedFact
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView, current_state
from gun_hub.security.web_auth import issue_trader_token
from gun_hub.web import HubWeb, build_web, confidential_authorities
from tests.builders import EORI, declaration_xml, document, goods_item
from tests.unit.test_pipeline import NOW, SOURCE, Hub
from tests.unit.test_web_listeners import settings_for

ANOTHER_TRADER = "DE987654321"
CHED = document("N853", "CHEDP.FR.2026.0001234", 1, "10")
LICENCE_REFERENCE = "LEMG.FR.2026.0042"
LICENCE = document("LEMG", LICENCE_REFERENCE, 1, "5", "NAR")
WITH_LICENCE = "26FRRECEIPT0000001"  # CHED-P (DGAL) and a war-material licence (DGA)
WITHOUT_LICENCE = "26FRRECEIPT0000002"  # the same CHED-P alone
LICENCE_ONLY = "26FRRECEIPT0000003"  # the licence alone
NO_SUCH = "26FRRECEIPT0000099"


def lodged(reference: str, *documents: DocumentRef) -> bytes:
    return declaration_xml(
        reference=reference, items=(goods_item(1, documents, commodity_code="9301100000"),)
    )


@dataclass
class Lookup:
    """The hub's intake, its view and the trader listener over that view."""

    hub: Hub
    view: OpsView
    web: HubWeb
    url: str
    portal_key: Any
    issuer: str
    audience: str
    offsets: dict[str, int] = field(default_factory=dict)

    def receive(self, declaration: bytes, source: SourcePosition = SOURCE) -> Effects:
        """The intake handles ``declaration``; the view applies what it emitted."""
        outbox = self.hub.intake.handle(declaration, source)
        self.apply(outbox.records)
        return outbox

    def apply(self, records: Iterable[Any]) -> None:
        """What the feed would read of ``records`` (the status and facts topics)."""
        read = []
        for record in records:
            if record.topic not in (self.view.topics.status, self.view.topics.facts):
                continue
            offset = self.offsets.get(record.topic, 0)
            self.offsets[record.topic] = offset + 1
            read.append(FeedRecord(record.topic, 0, offset, 0, record.value))
        self.view.apply(read)

    async def as_trader(self, reference: str, eori: str = EORI) -> tuple[int, Any]:
        token = issue_trader_token(
            self.portal_key, eori, issuer=self.issuer, audience=self.audience
        )
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{self.url}/declarations/{reference}"
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as got:
            return got.status, await got.json(content_type=None)


@pytest.fixture
async def lookup(
    tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> AsyncIterator[Lookup]:
    hub = Hub(routing_table, keys_dir)
    topics = FeedTopics(
        status=hub.topics.status,
        facts=hub.topics.facts,
        dlq=hub.topics.dlq,
        health=hub.topics.ops_health,
    )
    view = OpsView(tmp_path / "view.sqlite3", topics)
    settings, key = settings_for(tmp_path)
    web = build_web(settings, view.path, OpsState(), confidential_authorities(routing_table))
    assert web is not None
    await web.start()
    try:
        yield Lookup(
            hub,
            view,
            web,
            f"http://127.0.0.1:{settings.trader_port}",
            key,
            settings.portal_issuer,
            settings.token_audience,
        )
    finally:
        await web.stop()
        view.close()


def leaks(answer: Any) -> list[str]:
    """What would tell a war-material licence (``dga`` as a word: ``dgal`` is DGAL)."""
    text = json.dumps(answer).lower()
    words = (r"\bdga\b", "lemg", LICENCE_REFERENCE.lower(), "licen", r"\bwar\b")
    return [word for word in words if re.search(word, text)]


def without_reference(answer: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in answer.items() if name != "reference"}


async def test_the_trader_reads_its_declaration_as_soon_as_the_hub_received_it(
    lookup: Lookup,
) -> None:
    lookup.receive(lodged(WITHOUT_LICENCE, CHED))  # no authority has answered yet

    code, mine = await lookup.as_trader(WITHOUT_LICENCE)
    assert code == 200, mine
    assert (mine["reference"], mine["version"], mine["state"]) == (WITHOUT_LICENCE, 1, "CHECKING")
    assert [e["kind"] for e in mine["history"]] == ["RECEIVED", "REQUESTS_SENT"]
    assert mine["history"][0]["at"] == NOW.isoformat()
    assert "outcome" not in mine

    # Another trader cannot tell it from a reference that does not exist.
    theirs = await lookup.as_trader(WITHOUT_LICENCE, ANOTHER_TRADER)
    unknown = await lookup.as_trader(NO_SUCH, ANOTHER_TRADER)
    assert theirs[0] == unknown[0] == 404
    assert theirs[1] == {"error": "unknown declaration", "reference": WITHOUT_LICENCE}
    assert unknown[1] == {"error": "unknown declaration", "reference": NO_SUCH}


async def test_a_pending_war_material_licence_reads_like_any_pending_check(
    lookup: Lookup,
) -> None:
    lookup.receive(lodged(WITH_LICENCE, CHED, LICENCE))
    lookup.receive(lodged(WITHOUT_LICENCE, CHED))
    lookup.receive(lodged(LICENCE_ONLY, LICENCE))

    code, with_licence = await lookup.as_trader(WITH_LICENCE)
    assert code == 200, with_licence
    _, without_licence = await lookup.as_trader(WITHOUT_LICENCE)
    assert without_reference(with_licence) == without_reference(without_licence)
    assert leaks(with_licence) == []

    # The licence alone: a declaration received and being checked, nothing more.
    code, alone = await lookup.as_trader(LICENCE_ONLY)
    assert code == 200, alone
    assert (alone["state"], alone["answered_by"]) == ("CHECKING", [])
    assert [e["kind"] for e in alone["history"]] == ["RECEIVED"]
    assert leaks(alone) == []
    # And to anyone else, the 404 of an unknown reference.
    assert (await lookup.as_trader(LICENCE_ONLY, ANOTHER_TRADER))[0] == 404


async def test_the_same_trader_reads_it_from_its_receipt_to_its_decision(
    lookup: Lookup,
) -> None:
    sent = lookup.receive(lodged(WITHOUT_LICENCE, CHED))
    assert (await lookup.as_trader(WITHOUT_LICENCE))[0] == 200
    lookup.apply(lookup.hub.answer(sent, "dgal", Verdict.VALID).records)
    code, decided = await lookup.as_trader(WITHOUT_LICENCE)
    assert (code, decided["state"], decided["outcome"]) == (200, "DECIDED", "RELEASE")
    assert [e["kind"] for e in decided["history"]][:2] == ["RECEIVED", "REQUESTS_SENT"]
    assert (await lookup.as_trader(WITHOUT_LICENCE, ANOTHER_TRADER))[0] == 404


def test_the_intake_names_the_declarant_on_the_facts_topic_never_on_the_status_topic(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(lodged(WITH_LICENCE, CHED, LICENCE), SOURCE)
    facts = [FACT.validate_json(r.value) for r in sent.to(hub.topics.facts)]
    receipt = lodging(WITH_LICENCE, 1, SOURCE.describe())
    assert facts == [
        ReceivedFact(
            reference=WITH_LICENCE,
            version=1,
            declarant_eori=EORI,
            received_at=NOW,
            lodging=receipt,
        )
    ]
    # Emitted before the first status record, so the view hears of the owner first.
    topics = [r.topic for r in sent.records]
    assert topics.index(hub.topics.facts) < topics.index(hub.topics.status)
    # gun.status keeps its contract: no declarant, no licence.
    for record in sent.to(hub.topics.status):
        assert EORI not in record.value.decode()
        assert "declarant" not in json.loads(record.value)
        # Each names the receipt, which only the fact ties to its declarant.
        assert json.loads(record.value)["lodging"] == receipt
        assert LICENCE_REFERENCE not in record.value.decode()
    # Nothing about the documents on the fact either.
    assert LICENCE_REFERENCE not in sent.to(hub.topics.facts)[0].value.decode()

    # The same record read again after a crash (a redelivery): named again, harmless.
    again = hub.intake.handle(lodged(WITH_LICENCE, CHED, LICENCE), SOURCE)
    assert [FACT.validate_json(r.value) for r in again.to(hub.topics.facts)] == facts
    # A stale copy (another position) is ignored: nobody is named for it.
    stale = hub.intake.handle(
        lodged(WITH_LICENCE, CHED, LICENCE), SourcePosition(SOURCE.topic, 0, 7)
    )
    assert stale.to(hub.topics.facts) == []
    assert [s.kind for s in hub.statuses(stale)] == [StatusKind.IGNORED_STALE_VERSION]


# A plain declaration one declarant lodges is read whole by it, whatever becomes of it
# (the review of stop 54's changes checked the receipt rules against the real intake).
PLAIN = "26FRRECEIPT0000004"  # a CHED-P alone, lodged by one declarant


def plain_xml(version: int = 1, stage: Stage = Stage.LODGED) -> bytes:
    return declaration_xml(
        reference=PLAIN,
        version=version,
        stage=stage,
        items=(goods_item(1, (CHED,), commodity_code="9301100000"),),
    )


def read_at(offset: int) -> SourcePosition:
    return SourcePosition("gun.declarations", 0, offset)


def kinds_read_by(lookup: Lookup, eori: str = EORI) -> list[tuple[int, str]] | None:
    h = lookup.view.history_of_declarant(PLAIN, eori)
    return None if h is None else [(e["version"], e["kind"]) for e in h]


def state_read_by(lookup: Lookup, eori: str = EORI) -> dict[str, Any]:
    history = lookup.view.history_of_declarant(PLAIN, eori)
    assert history is not None, "its own declarant reads nothing"
    return current_state(history)


def every_kind(lookup: Lookup) -> list[tuple[int, str]]:
    return [(e["version"], e["kind"]) for e in lookup.view.history(PLAIN)]


async def test_released_then_written_off(lookup: Lookup) -> None:
    sent = lookup.receive(plain_xml(), read_at(0))
    decided = lookup.hub.answer(sent, "dgal", Verdict.VALID)
    lookup.apply(decided.records)
    wo = lookup.hub.answer(decided, "dgal", Verdict.VALID)
    lookup.apply(wo.records)
    assert kinds_read_by(lookup) == every_kind(lookup)
    assert state_read_by(lookup)["state"] == "DECIDED"
    assert kinds_read_by(lookup, ANOTHER_TRADER) is None


async def test_refused(lookup: Lookup) -> None:
    sent = lookup.receive(plain_xml(), read_at(0))
    lookup.apply(lookup.hub.answer(sent, "dgal", Verdict.NOT_FOUND).records)
    assert kinds_read_by(lookup) == every_kind(lookup)


async def test_new_version_and_copy(lookup: Lookup) -> None:
    lookup.receive(plain_xml(1), read_at(0))
    sent = lookup.receive(plain_xml(2), read_at(1))
    lookup.apply(lookup.hub.answer(sent, "dgal", Verdict.VALID).records)
    assert kinds_read_by(lookup) == every_kind(lookup)


async def test_invalidated(lookup: Lookup) -> None:
    sent = lookup.receive(plain_xml(1), read_at(0))
    decided = lookup.hub.answer(sent, "dgal", Verdict.VALID)
    lookup.apply(decided.records)
    lookup.apply(lookup.hub.answer(decided, "dgal", Verdict.VALID).records)
    inv = lookup.receive(plain_xml(2, Stage.INVALIDATED), read_at(1))
    lookup.apply(lookup.hub.answer(inv, "dgal", Verdict.VALID).records)
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)
    assert state_read_by(lookup)["state"] == "DECIDED"


async def test_refused_unread_later_version(lookup: Lookup) -> None:
    sent = lookup.receive(plain_xml(1), read_at(0))
    lookup.apply(lookup.hub.answer(sent, "dgal", Verdict.VALID).records)
    bad = plain_xml(2).replace(b"<Procedure>4000</Procedure>", b"<Procedure>x</Procedure>")
    lookup.receive(bad, read_at(1))
    assert (2, "REJECTED") in every_kind(lookup), every_kind(lookup)
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)


async def test_controlled_then_released_after_control(lookup: Lookup) -> None:

    lookup.receive(plain_xml(1), read_at(0))
    lookup.hub.now += timedelta(seconds=31)
    lookup.apply(
        lookup.hub.deadlines.handle(PLAIN, 1, SourcePosition("gun.hub.deadlines", 0, 0)).records
    )
    lookup.hub.now += timedelta(seconds=lookup.hub.control_report_after_s + 1)
    lookup.apply(
        lookup.hub.deadlines.handle(PLAIN, 1, SourcePosition("gun.hub.deadlines", 0, 1)).records
    )
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)
    after = lookup.receive(plain_xml(2, Stage.RELEASED_AFTER_CONTROL), read_at(1))
    lookup.apply(lookup.hub.answer(after, "dgal", Verdict.VALID).records)
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)
    st = state_read_by(lookup)
    assert (st["version"], st["state"], st["outcome"]) == (2, "DECIDED", "RELEASE")


# A copy of a version the hub already has is ignored (IGNORED_STALE_VERSION). Since stop
# 54 an event naming no receipt of a version whose receipt is known is nobody's, and the
# copy's event named none: its declarant no longer read that its second submission was
# ignored (stop 54's open item). The copy's event now names the case's receipt when the
# copy names the case's declarant, and still none when it names another.


async def test_the_declarant_reads_that_its_copy_of_a_version_was_ignored(lookup: Lookup) -> None:
    lookup.receive(plain_xml(1), read_at(0))
    lookup.receive(plain_xml(1), read_at(1))  # the same version lodged again
    assert (1, "IGNORED_STALE_VERSION") in every_kind(lookup), every_kind(lookup)
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)


async def test_the_declarant_reads_that_its_older_version_read_late_was_ignored(
    lookup: Lookup,
) -> None:
    lookup.receive(plain_xml(2), read_at(0))
    lookup.receive(plain_xml(1), read_at(1))  # an older version after a newer one
    assert (1, "IGNORED_STALE_VERSION") in every_kind(lookup), every_kind(lookup)
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)


async def test_a_copy_naming_another_declarant_is_shown_to_neither(lookup: Lookup) -> None:
    lookup.receive(plain_xml(1), read_at(0))
    copy = declaration_xml(
        reference=PLAIN,
        version=1,
        declarant=ANOTHER_TRADER,
        items=(goods_item(1, (CHED,), commodity_code="9301100000"),),
    )
    lookup.receive(copy, read_at(1))
    assert (1, "IGNORED_STALE_VERSION") in every_kind(lookup), every_kind(lookup)
    first = kinds_read_by(lookup)
    assert first is not None
    assert (1, "IGNORED_STALE_VERSION") not in first, first
    assert kinds_read_by(lookup, ANOTHER_TRADER) is None


async def test_a_copy_naming_a_later_versions_receipt_hides_none_of_the_declarants_events(
    lookup: Lookup,
) -> None:
    """The copy's event names the case's receipt, a later version's: the view does not
    take it for a receipt of the copy's version (which would make that version's events
    naming none, its refusal unread, nobody's)."""
    lookup.receive(plain_xml(1), read_at(0))
    bad = plain_xml(2).replace(b"<Procedure>4000</Procedure>", b"<Procedure>x</Procedure>")
    lookup.receive(bad, read_at(1))  # version 2 refused unread: its events name no receipt
    lookup.receive(plain_xml(3), read_at(2))
    lookup.receive(plain_xml(2), read_at(3))  # version 2 read after 3: ignored
    assert (2, "REJECTED") in every_kind(lookup), every_kind(lookup)
    assert (2, "IGNORED_STALE_VERSION") in every_kind(lookup), every_kind(lookup)
    assert kinds_read_by(lookup) == every_kind(lookup), every_kind(lookup)
