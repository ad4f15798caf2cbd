"""The dead-letter desk on the officer listener (ADR 0010): any officer lists and shows;
only a dead-letter operator reads a payload or redrives, never a sealed payload, and each
of those is on the broker as an audited action before it happens.

The listener runs for real (aiohttp on a free port) over a view built in memory; the
broker is a dict of records by position and a list of what was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.errors import KafkaTimeoutError

from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_record, header_value
from gun_contract.effects import OutgoingRecord
from gun_contract.envelope import LOG_APPEND_TIME, ContentType
from gun_contract.kafka.log_reader import LoggedRecord
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_contract.security.state_cipher import StateCipher
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from gun_hub.pipeline.redrive import HEADER_REDRIVE_DEAD_LETTER, HEADER_REDRIVE_OF
from gun_hub.security.operator_actions import ActionKind, open_action
from gun_hub.security.web_auth import add_officer, basic_authorization
from gun_hub.web import HubWeb, build_web
from gun_hub.web.dead_letters import DeadLetterDesk
from tests.conftest import envelope_of
from tests.unit.test_web_listeners import ALICE_PASSWORD, settings_for

TOPICS = topic_registry("gun", ("cites", "dga", "dgal"))
FEED = FeedTopics(
    status=TOPICS.status, facts=TOPICS.facts, dlq=TOPICS.dlq, health=TOPICS.ops_health
)
REFERENCE = "26FRDSK00000000001"
PARTITIONS = frozenset(range(4))
PLAIN = b"<declaration>not sealed</declaration>"
# alice's is the one settings_for gives her; bob's is made now.
SECRETS = {"alice": ALICE_PASSWORD, "bob": secrets.token_urlsafe(16)}


@dataclass
class Broker:
    """Records by position, and what the desk sent (acknowledged at the next offset)."""

    records: dict[tuple[str, int, int], LoggedRecord] = field(default_factory=dict)
    sent: list[OutgoingRecord] = field(default_factory=list)
    refusing: bool = False  # the broker refuses every send (KafkaTimeoutError)
    topics: dict[str, frozenset[int]] = field(
        default_factory=lambda: {topic.name: PARTITIONS for topic in TOPICS.specs()}
    )
    undescribed: bool = False  # the broker does not describe its topics (TimeoutError)
    slow: dict[tuple[str, int, int], float] = field(default_factory=dict)  # seconds to read

    def put(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.records[(topic, partition, offset)] = LoggedRecord(
            topic,
            partition,
            offset,
            key,
            value,
            tuple(headers or ()),
            int(time.time() * 1000),
            LOG_APPEND_TIME,
        )

    async def read(self, topic: str, partition: int, offset: int) -> LoggedRecord | None:
        if (topic, partition, offset) in self.slow:  # a broker slow to give this one
            await asyncio.sleep(self.slow[(topic, partition, offset)])
        return self.records.get((topic, partition, offset))

    async def partitions(self, *topics: str) -> dict[str, frozenset[int]]:
        if self.undescribed:
            raise TimeoutError
        return {topic: self.topics.get(topic, frozenset()) for topic in topics}

    async def send(self, record: OutgoingRecord) -> int:
        if self.refusing:
            raise KafkaTimeoutError
        self.sent.append(record)
        return 100 + len(self.sent)

    def to(self, topic: str) -> list[OutgoingRecord]:
        return [r for r in self.sent if r.topic == topic]


@dataclass
class Desk:
    url: str
    broker: Broker
    cipher: StateCipher
    view: OpsView
    topics: TopicRegistry = TOPICS

    async def call(
        self, method: str, path: str, officer: str = "alice", *, json_body: bool = True
    ) -> tuple[int, Any]:
        headers = {"Authorization": basic_authorization(officer, SECRETS[officer])}
        kwargs: dict[str, Any] = {"json": {}} if method == "POST" and json_body else {}
        if method == "POST" and not json_body:
            kwargs = {"data": "x=1", "headers": {**headers, "Content-Type": "text/plain"}}
        else:
            kwargs["headers"] = headers
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, f"{self.url}{path}", **kwargs) as response,
        ):
            return response.status, await response.json(content_type=None)

    def dead_letter(
        self,
        offset: int,
        value: bytes,
        *,
        kind: str,
        component: str = "hub.intake",
        source_topic: str | None = None,
        source_offset: int = 5,
        source_partition: int = 1,
        reference: str | None = None,
        key: bytes | None = REFERENCE.encode(),
        error_class: ErrorClass = ErrorClass.SECURITY,
    ) -> None:
        """A dead letter at ``1:offset``, on the broker and in the view, about the record
        at ``source_topic/source_partition/source_offset``."""
        letter = dead_letter_record(
            TOPICS.dlq,
            value,
            error_class=error_class,
            kind=kind,
            reason=f"the whole reason why {kind} " + "x" * 400,
            source=SourcePosition(
                source_topic or TOPICS.declarations, source_partition, source_offset, key
            ),
            component=component,
            reference=reference,
        )
        self.broker.put(TOPICS.dlq, 1, offset, letter.key, letter.value, letter.headers)
        at = int(time.time() * 1000)
        self.view.apply(
            [FeedRecord(TOPICS.dlq, 1, offset, at, letter.value, letter.headers, letter.key)]
        )

    def actions(self) -> list[tuple[str, str, int | None]]:
        """(action, officer, partition) of every action the desk sent."""
        return [
            (action.action.value, action.officer, record.partition)
            for record in self.broker.to(TOPICS.operator_actions)
            for action in [open_action(self.cipher, record.key or b"", record.value)]
        ]


@pytest.fixture
async def desk(tmp_path: Path, keys_dir: Path) -> AsyncIterator[Desk]:
    async with serving_desk(tmp_path, keys_dir, Broker()) as served:
        yield served


@contextlib.asynccontextmanager
async def serving_desk(tmp_path: Path, keys_dir: Path, broker: Broker) -> AsyncIterator[Desk]:
    """The desk on the officer listener, over ``broker`` and a view of its own (pages of
    10: settings_for); alice is a dead-letter operator, bob an officer only."""
    view = OpsView(tmp_path / "view.sqlite3", FEED)
    settings, _ = settings_for(tmp_path)
    assert settings.officers_file is not None  # settings_for names one
    add_officer(settings.officers_file, "bob", SECRETS["bob"])  # an officer, not an operator
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    web: HubWeb | None = build_web(
        settings,
        view.path,
        OpsState(),
        set(),
        DeadLetterDesk(TOPICS, broker, broker.send, cipher, frozenset({"alice"})),
    )
    assert web is not None
    await web.start()
    try:
        yield Desk(f"http://127.0.0.1:{settings.officer_port}", broker, cipher, view)
    finally:
        await web.stop()
        view.close()


def sealed_declaration(keys_dir: Path) -> bytes:
    return envelope_of(CLEARANCE_PARTY, TOPICS, keys_dir).seal(
        b"<declaration/>",
        recipient=HUB_PARTY,
        topic=TOPICS.declarations,
        content_type=ContentType.XML,
    )


# -- any officer ------------------------------------------------------------------------------


async def test_any_officer_lists_dead_letters_and_whether_each_can_be_redriven(
    desk: Desk,
) -> None:
    desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    desk.dead_letter(
        1,
        b"r",
        kind="REQUEST_MISADDRESSED",
        component="adapter.dgal",
        source_topic=TOPICS.requests("dgal"),
    )
    # An adapter honours a redrive of what it refused for a cause outside the request.
    desk.dead_letter(
        2,
        b"r",
        kind="ENVELOPE_UNKNOWN_KID",
        component="adapter.dgal",
        source_topic=TOPICS.requests("dgal"),
    )
    status, body = await desk.call("GET", "/dead-letters", "bob")
    assert status == 200
    rows = {row["id"]: row for row in body["dead_letters"]}
    assert set(rows) == {"1:0", "1:1", "1:2"}
    assert rows["1:0"]["redrivable"] is True
    assert rows["1:0"]["source"] == f"{TOPICS.declarations}/1/5"
    assert rows["1:0"]["reference"] == REFERENCE  # from the key: no reference header
    assert rows["1:1"]["redrivable"] is False
    assert "the request is refused again" in rows["1:1"]["not_redrivable"]
    assert (rows["1:2"]["redrivable"], rows["1:2"]["source"]) == (
        True,
        f"{TOPICS.requests('dgal')}/1/5",
    )
    status, body = await desk.call("GET", "/dead-letters?kind=REQUEST_MISADDRESSED", "bob")
    assert [row["id"] for row in body["dead_letters"]] == ["1:1"]
    assert body["next_offset"] is None


async def test_a_filter_that_cannot_be_used_is_refused_saying_which(desk: Desk) -> None:
    status, body = await desk.call("GET", "/dead-letters?since=yesterday", "bob")
    assert status == 400
    assert body["error"].startswith("since:")
    status, body = await desk.call("GET", "/dead-letters?reference=lower", "bob")
    assert (status, body["error"].split(":")[0]) == (400, "reference")


async def test_show_tells_the_whole_reason_and_what_the_value_is_never_the_value(
    desk: Desk, keys_dir: Path
) -> None:
    sealed = sealed_declaration(keys_dir)
    desk.dead_letter(0, sealed, kind="ENVELOPE_UNKNOWN_KID")
    status, body = await desk.call("GET", "/dead-letters/1:0", "bob")
    assert status == 200
    assert body["dead_letter"] == f"{TOPICS.dlq}/1/0"
    assert body["reason"].endswith("x" * 400)  # whole, not the view's 300 characters
    assert body["value"]["form"] == "sealed"
    assert body["value"]["sealed_to"].startswith("hub")
    assert body["value"]["bytes"] == len(sealed)
    assert sealed.decode() not in str(body)
    assert desk.broker.sent == []  # looking is not an action


async def test_an_unknown_or_malformed_id_is_answered_as_such(desk: Desk) -> None:
    assert (await desk.call("GET", "/dead-letters/1:99", "bob"))[0] == 404
    status, body = await desk.call("GET", "/dead-letters/one", "bob")
    assert status == 400
    assert "PARTITION:OFFSET" in body["error"]


async def test_a_dead_letter_on_a_partition_that_does_not_exist_is_not_found_saying_why(
    desk: Desk,
) -> None:
    """Not "ask again" (503): that record will never exist (review stop 37, H2)."""
    status, body = await desk.call("GET", "/dead-letters/99:0", "bob")
    assert status == 404
    assert body["error"] == f"no such dead letter: {TOPICS.dlq} has no partition 99 (it has 4)"
    status, body = await desk.call("POST", "/dead-letters/99:0/redrive", "alice")
    assert status == 404
    assert desk.broker.sent == []


async def test_a_dead_letter_whose_original_is_on_no_partition_cannot_be_redriven(
    desk: Desk,
) -> None:
    """A foreign producer's header, or a topic recreated with fewer partitions: listed as
    not redrivable, with the reason, and refused as such (review stop 37, H2)."""
    desk.dead_letter(0, PLAIN, kind="ENVELOPE_UNKNOWN_KID", source_partition=99)
    desk.dead_letter(1, PLAIN, kind="ENVELOPE_UNKNOWN_KID")
    why = (
        f"its original's partition, {TOPICS.declarations}/99, does not exist "
        f"({TOPICS.declarations} has 4)"
    )
    status, body = await desk.call("GET", "/dead-letters", "bob")
    assert status == 200
    rows = {row["id"]: row for row in body["dead_letters"]}
    assert (rows["1:0"]["redrivable"], rows["1:0"]["not_redrivable"]) == (False, why)
    assert (rows["1:1"]["redrivable"], rows["1:1"]["not_redrivable"]) == (True, None)
    status, body = await desk.call("GET", "/dead-letters/1:0", "bob")
    assert (status, body["redrivable"], body["not_redrivable"]) == (200, False, why)
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 409
    assert body["error"] == f"this dead letter cannot be redriven: {why}"
    assert desk.broker.sent == []


async def test_the_list_does_not_wait_on_a_broker_that_cannot_describe_its_topics(
    desk: Desk,
) -> None:
    """The list is the view's: what the broker cannot say now, the redrive checks again."""
    desk.dead_letter(0, PLAIN, kind="ENVELOPE_UNKNOWN_KID", source_partition=99)
    desk.broker.undescribed = True
    status, body = await desk.call("GET", "/dead-letters", "bob")
    assert status == 200
    assert [row["redrivable"] for row in body["dead_letters"]] == [True]
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 503
    assert desk.broker.sent == []


# -- operators only ---------------------------------------------------------------------------


async def test_only_an_operator_reads_a_payload_and_only_once_the_action_is_audited(
    desk: Desk,
) -> None:
    desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    status, body = await desk.call("POST", "/dead-letters/1:0/payload", "bob")
    assert status == 403
    assert "GUN_HUB_WEB__DEAD_LETTER_OPERATORS" in body["error"]
    assert desk.broker.sent == []
    status, body = await desk.call("POST", "/dead-letters/1:0/payload", "alice")
    assert status == 200
    assert (body["encoding"], body["payload"]) == ("utf-8", PLAIN.decode())
    assert desk.actions() == [(ActionKind.DLQ_PAYLOAD_READ.value, "alice", 1)]


async def test_a_payload_sealed_to_a_party_is_not_opened_for_anyone(
    desk: Desk, keys_dir: Path
) -> None:
    desk.dead_letter(0, sealed_declaration(keys_dir), kind="ENVELOPE_UNKNOWN_KID")
    status, body = await desk.call("POST", "/dead-letters/1:0/payload", "alice")
    assert status == 409
    assert "not opened for display" in body["error"]
    assert body["value"]["form"] == "sealed"
    assert "payload" not in body
    assert desk.broker.sent == []


async def test_a_redrive_republishes_the_original_on_its_partition_after_the_audit(
    desk: Desk, keys_dir: Path
) -> None:
    sealed = sealed_declaration(keys_dir)
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), sealed)
    desk.dead_letter(0, sealed, kind="ENVELOPE_UNKNOWN_KID")
    assert (await desk.call("POST", "/dead-letters/1:0/redrive", "bob"))[0] == 403
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 200
    action, redrive = desk.broker.sent  # in this order: audited first
    assert action.topic == TOPICS.operator_actions
    assert desk.actions() == [(ActionKind.DLQ_REDRIVE.value, "alice", 1)]
    assert (redrive.topic, redrive.partition) == (TOPICS.declarations, 1)
    assert (redrive.key, redrive.value) == (REFERENCE.encode(), sealed)
    assert header_value(redrive.headers, HEADER_REDRIVE_OF) == f"{TOPICS.declarations}/1/5"
    assert header_value(redrive.headers, HEADER_REDRIVE_DEAD_LETTER) == "1:0"
    assert body["origin"] == f"{TOPICS.declarations}/1/5"
    assert body["redrive"] == f"{TOPICS.declarations}/1/102"  # where the broker put it


async def test_a_truncated_dead_letter_is_redriven_from_its_original_by_digest(
    desk: Desk,
) -> None:
    """A dead letter keeps the head of an original that did not fit; the original itself
    is still in the log, and its digest is the one the dead letter recorded."""
    huge = b"<declaration>" + b" " * (2 * 1024 * 1024) + b"</declaration>"
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), huge)
    desk.dead_letter(0, huge, kind="XML_TOO_LARGE", error_class=ErrorClass.PERMANENT)
    status, _ = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 200
    assert desk.broker.to(TOPICS.declarations)[0].value == huge


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("adapter", "the request is refused again (REQUEST_MISADDRESSED)"),
        ("clearance", "cannot be redriven: written by 'clearance.reader'"),
        ("gone", "no longer in the log"),
        ("different", "are not those of"),
        ("replay", "a copy of a message already acted on"),
        ("chained", f"is itself a redrive of '{TOPICS.declarations}/1/2'"),
    ],
)
async def test_a_redrive_that_cannot_be_done_is_refused_and_nothing_is_sent(
    desk: Desk, case: str, why: str
) -> None:
    if case == "adapter":
        desk.broker.put(TOPICS.requests("dgal"), 1, 5, REFERENCE.encode(), PLAIN)
        desk.dead_letter(
            0,
            PLAIN,
            kind="REQUEST_MISADDRESSED",
            component="adapter.dgal",
            source_topic=TOPICS.requests("dgal"),
        )
    elif case == "clearance":
        desk.broker.put(TOPICS.decisions, 1, 5, REFERENCE.encode(), PLAIN)
        desk.dead_letter(
            0,
            PLAIN,
            kind="ENVELOPE_UNKNOWN_KID",
            component="clearance.reader",
            source_topic=TOPICS.decisions,
        )
    elif case == "gone":
        desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    elif case == "chained":
        # A dead letter about a redrive's own position: redrive the first original's.
        desk.broker.put(
            TOPICS.declarations,
            1,
            5,
            REFERENCE.encode(),
            PLAIN,
            [(HEADER_REDRIVE_OF, f"{TOPICS.declarations}/1/2".encode())],
        )
        desk.dead_letter(0, PLAIN, kind="UNHANDLED_ERROR", error_class=ErrorClass.PERMANENT)
    elif case == "replay":
        # Redriven once the claims memory forgot its id, a copy would be decided as a
        # first sighting on its own partition: a second decision (review, stop 35).
        desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), PLAIN)
        desk.dead_letter(0, PLAIN, kind="ENVELOPE_REPLAY", error_class=ErrorClass.SECURITY)
    else:
        desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), b"<other/>")
        desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 409
    assert why in body["error"]
    assert desk.broker.sent == []


@pytest.mark.parametrize("forged_before", [0, 150])
async def test_a_dead_letter_forged_beside_a_refused_replay_does_not_redrive_it(
    desk: Desk, forged_before: int
) -> None:
    """Every party may write ``gun.dlq``, so a dead letter's kind is its writer's word. A
    second dead letter about a refused replay, claiming a kind that may be redriven, got
    the replay redriven (found by review, stop 46). What the desk knows of the same
    original counts: any dead letter about it that forbids a redrive forbids it, however
    many forgeries come before it (a first check read 100 of them: found by review of
    that change)."""
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), PLAIN)
    for offset in range(forged_before):
        desk.dead_letter(offset, PLAIN, kind="ENVELOPE_UNKNOWN_KID")
    genuine = forged_before
    desk.dead_letter(genuine, PLAIN, kind="ENVELOPE_REPLAY", error_class=ErrorClass.SECURITY)
    forged = genuine + 1
    desk.dead_letter(forged, PLAIN, kind="ENVELOPE_UNKNOWN_KID")  # the forgery, same original
    status, body = await desk.call("POST", f"/dead-letters/1:{forged}/redrive", "alice")
    assert status == 409, body
    assert f"1:{genuine}" in body["error"]
    assert "a copy of a message already acted on" in body["error"]
    assert desk.broker.sent == []


async def test_a_redrive_is_audited_under_the_originals_own_reference(desk: Desk) -> None:
    """The audit of a redrive named the reference the dead letter's headers claimed,
    whatever the original's key (found by review, stop 46): the action now names what
    was redriven, read from the log."""
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), PLAIN)
    desk.dead_letter(0, PLAIN, kind="UNHANDLED_ERROR", reference="26FROTHER000000099")
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 200, body
    [record] = desk.broker.to(TOPICS.operator_actions)
    action = open_action(desk.cipher, record.key or b"", record.value)
    assert (action.reference, action.origin) == (REFERENCE, f"{TOPICS.declarations}/1/5")
    assert body["reference"] == REFERENCE


async def test_actions_take_json_only_so_no_other_site_can_send_them(desk: Desk) -> None:
    """A form on another site can post text/plain with the officer's cached credentials;
    it cannot post JSON without a CORS consent the listener never gives."""
    desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    status, _ = await desk.call("POST", "/dead-letters/1:0/payload", "alice", json_body=False)
    assert status == 415
    status, _ = await desk.call("POST", "/dead-letters/1:0/redrive", "alice", json_body=False)
    assert status == 415
    assert desk.broker.sent == []


async def test_an_action_the_broker_does_not_record_is_not_done(desk: Desk, keys_dir: Path) -> None:
    sealed = sealed_declaration(keys_dir)
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), sealed)
    desk.dead_letter(0, sealed, kind="ENVELOPE_UNKNOWN_KID")
    desk.dead_letter(1, PLAIN, kind="DECLARATION_NOT_SEALED", source_offset=6)
    desk.broker.refusing = True
    status, body = await desk.call("POST", "/dead-letters/1:0/redrive", "alice")
    assert status == 503
    assert "could not be recorded" in body["error"]
    status, body = await desk.call("POST", "/dead-letters/1:1/payload", "alice")
    assert status == 503
    assert "payload" not in body
    desk.broker.refusing = False
    assert desk.broker.sent == []
