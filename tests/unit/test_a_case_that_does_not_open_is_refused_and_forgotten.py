"""A stored case that does not open is data about its reference, never a stop (review stop
40-F, F3; ADR 0022).

Random bytes under a reference's key on the cases changelog, a value in clear from before
state encryption, or a sealed value altered: restored into the ``cases`` table, the next
version of that reference made ``SealedStore.get`` raise ``StateUnreadable``, which the
worker retried for 30 s and re-raised into faust: the agent restarted, read the same
record, crashed again, and the partition's commit never moved past it. Now the version is
refused with a stable reason (the hub cannot apply the versions rule, the declarant check
or the reservations it no longer knows), the record is dead-lettered (STATE_UNREADABLE,
naming the table, the key and why, never the value), the refused case takes the place of
what did not open, and the next version is decided as ever. An answer or a deadline tick
meeting such a value is dead-lettered and the value forgotten. A value sealed with a state
key id this worker does not hold is no record's fault: the worker stops, naming the key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gun_contract.dead_letter import (
    SourcePosition,
)
from gun_contract.effects import Effects
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.keystore import StateKey
from gun_contract.security.state_cipher import (
    SealedStore,
    StateCipher,
    StateKeyMissing,
    StateUnreadable,
)
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.retention import RetainedCases
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE, UnreadableCases
from gun_hub.runtime import app as runtime
from gun_hub.runtime.app import _handled
from gun_hub.runtime.faust_app import handled_agent
from tests.builders import declaration_xml, document, goods_item
from tests.dead_letters import dead_letters_in
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"  # declaration_xml's
KEY = REF.encode()
# Not a sealed value: what a party writes under the key (it does not start with b"GS1").
GARBAGE = bytes(range(0x80, 0xC0))


def at(offset: int, topic: str = "gun.declarations") -> SourcePosition:
    return SourcePosition(topic, 0, offset, KEY)


@dataclass
class SealedHub:
    """The pipeline over the worker's store: cases sealed with the hub's state key below
    a dict standing for the faust table (RocksDB and its changelog)."""

    hub: Hub
    below: dict[bytes, bytes]
    store: RetainedCases

    def handled(
        self, handle: Callable[[], Effects], data: bytes, source: SourcePosition, agent: str
    ) -> Any:
        """``handle`` as the worker's ``agent`` runs it (``app._handled``)."""
        return _handled(
            handle,
            data,
            source,
            self.hub.topics.dlq,
            agent,
            rollback=self.hub.context,
            unreadable=UnreadableCases(self.store, self.hub.open_cases).forget,
        )

    def declaration(self, version: int, offset: int, **fields: Any) -> Any:
        data = declaration_xml(version=version, **fields)
        return self.handled(
            lambda: self.hub.intake.handle(data, at(offset)), data, at(offset), "intake"
        )

    def case(self) -> Case:
        stored = self.store.get(KEY)
        assert stored is not None
        return Case.from_bytes(stored)


@pytest.fixture
def sealed(routing_table: RoutingTable, keys_dir: Path) -> SealedHub:
    below: dict[bytes, bytes] = {}
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    store = RetainedCases(SealedStore(below, cipher, "cases"), dict[bytes, bytes](), cipher)
    return SealedHub(Hub(routing_table, keys_dir, cases=store), below, store)


def unreadable(sealed: SealedHub, form: str) -> bytes:
    """What the changelog may hold under the key, in the three forms that do not open."""
    value = sealed.below[KEY]
    if form == "random bytes":
        return GARBAGE
    if form == "in clear (before state encryption)":
        return sealed.case().to_bytes()
    return value[:-1] + bytes([value[-1] ^ 1])  # altered: the tag no longer matches


def dead_letters(hub: Hub, outbox: Effects) -> list[dict[str, str | None]]:
    return dead_letters_in(outbox, hub.topics.dlq)


FORMS = ["random bytes", "in clear (before state encryption)", "altered"]


@pytest.mark.parametrize("form", FORMS)
async def test_the_next_version_over_a_case_that_does_not_open_is_refused_and_the_one_after_decided(
    sealed: SealedHub, form: str
) -> None:
    hub = sealed.hub
    first = await sealed.declaration(1, 0)
    assert len(first.to(hub.topics.requests("dgal"))) == 1  # version 1 opened its case
    sealed.below[KEY] = unreadable(sealed, form)

    second = await sealed.declaration(2, 1)

    assert hub.decisions(second) == [(REF, 2, Outcome.REFUSE)]
    [decision] = hub.decision_objects(second)
    [reason] = decision.reasons
    assert reason.code == STATE_UNREADABLE
    assert "could not be read" in reason.text
    assert second.to(hub.topics.requests("dgal")) == []  # nothing reserved for it
    [dead] = dead_letters(hub, second)
    assert (dead["kind"], dead["reference"], dead["component"]) == (
        STATE_UNREADABLE,
        REF,
        "hub.intake",
    )
    assert dead["reason"] is not None
    assert f"cases: the value of key '{REF}'" in dead["reason"]
    # The refused version took the place of what did not open: it opens, and it is the
    # earlier version's deadline no more.
    assert (sealed.case().version, sealed.case().outcome) == (2, Outcome.REFUSE)
    assert KEY not in hub.open_cases

    third = await sealed.declaration(3, 2)
    assert hub.decisions(third) == []
    assert len(third.to(hub.topics.requests("dgal"))) == 1  # decided as ever
    assert dead_letters(hub, third) == []
    assert hub.decisions(hub.answer(third, "dgal", Verdict.VALID)) == [(REF, 3, Outcome.RELEASE)]


async def test_the_dead_letter_names_where_the_value_is_never_what_it_holds(
    sealed: SealedHub,
) -> None:
    await sealed.declaration(1, 0)
    in_clear = sealed.case().to_bytes()  # it quotes the documents (a licence, say)
    sealed.below[KEY] = in_clear
    [dead] = dead_letters(sealed.hub, await sealed.declaration(2, 1))
    assert dead["reason"] is not None
    assert "CHEDP" not in dead["reason"]
    assert in_clear.decode() not in dead["reason"]


async def test_a_malformed_version_over_a_case_that_does_not_open_is_refused_for_its_own_fault(
    sealed: SealedHub,
) -> None:
    """Its refusal and its one dead letter say what is wrong with it, and the state too; the
    refusal takes the state's place."""
    hub = sealed.hub
    await sealed.declaration(1, 0)
    sealed.below[KEY] = GARBAGE
    broken = await sealed.declaration(2, 1, items=(goods_item(1, (document(quantity="-5"),)),))
    assert hub.decisions(broken) == [(REF, 2, Outcome.REFUSE)]
    [dead] = dead_letters(hub, broken)
    assert dead["kind"] == "XML_SCHEMA"
    assert dead["reason"] is not None
    assert f"cases: the value of key '{REF}'" in dead["reason"]
    assert (sealed.case().version, sealed.case().written_off) == (2, None)
    assert len((await sealed.declaration(3, 2)).to(hub.topics.requests("dgal"))) == 1


@pytest.mark.parametrize("event", ["an answer", "a deadline tick"])
async def test_an_event_meeting_a_case_that_does_not_open_is_dead_lettered_and_the_case_forgotten(
    sealed: SealedHub, event: str
) -> None:
    hub = sealed.hub
    sent = await sealed.declaration(1, 0)
    assert KEY in hub.open_cases  # its deadline
    sealed.below[KEY] = GARBAGE

    if event == "an answer":
        source = SourcePosition(hub.topics.responses("dgal"), 0, 0, KEY)
        outbox = await sealed.handled(
            lambda: hub.answer(sent, "dgal", Verdict.VALID), b"", source, "correlation"
        )
    else:
        hub.now = hub.now.replace(hour=hub.now.hour + 1)  # past its deadline
        source = SourcePosition(hub.topics.deadlines, 0, 0, KEY)
        outbox = await sealed.handled(
            lambda: hub.deadlines.handle(REF, 1, source), b"1", source, "deadlines"
        )

    assert hub.decisions(outbox) == []
    [dead] = dead_letters(hub, outbox)
    assert (dead["kind"], dead["reference"]) == (STATE_UNREADABLE, REF)
    assert dead["component"] == ("hub.correlation" if event == "an answer" else "hub.deadlines")
    # Forgotten: the next event about the reference finds nothing, and the deadline timer
    # no longer ticks it (a dead letter every few seconds).
    assert KEY not in sealed.below
    assert KEY not in hub.open_cases
    assert sealed.store.get(KEY) is None


async def test_a_case_sealed_with_a_state_key_this_worker_lacks_is_no_records_fault(
    sealed: SealedHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker rotated the state key and this one was not given it yet: a
    deployment to finish, not data to refuse. Nothing is dead-lettered or forgotten; the
    handling fails, naming the key id (the agent then stops the worker: below)."""
    monkeypatch.setattr(runtime, "_CLUSTER_RETRIES", 2)  # the backoff is not under test
    await sealed.declaration(1, 0)
    rotated = StateCipher.of([StateKey("hub-state-20990101T000000-abcdef", bytes(32))])
    sealed.below[KEY] = rotated.seal("cases", KEY, sealed.case().to_bytes())
    kept = sealed.below[KEY]

    with pytest.raises(StateKeyMissing, match="hub-state-20990101T000000-abcdef"):
        await sealed.declaration(2, 1)
    assert sealed.below[KEY] == kept


class _App:
    """What ``handled_agent`` asks of the faust app: its agent decorator, its consumer
    and ``crash``."""

    consumer = None

    def __init__(self) -> None:
        self.crashed: list[BaseException] = []
        self.process: Callable[[Any], Any] | None = None

    def agent(self, _topic: Any, **_: Any) -> Callable[[Any], Any]:
        def register(process: Callable[[Any], Any]) -> Any:
            self.process = process
            return process

        return register

    async def crash(self, reason: BaseException) -> None:
        self.crashed.append(reason)


class _Stream:
    def __init__(self, events: int) -> None:
        self._events = events

    async def events(self) -> AsyncIterator[object]:
        for _ in range(self._events):
            yield object()


async def test_an_agent_that_meets_a_state_key_it_lacks_stops_the_worker() -> None:
    """Restarted by faust's supervisor, the agent read the same record, failed again, and
    the worker stayed up and ready with its partition's commit stuck (the crash loop of
    the finding): the worker stops instead, exit non-zero, its restart redelivers."""
    app = _App()
    handled: list[object] = []
    missing = StateKeyMissing(
        "cases: sealed with state key 'hub-state-x', which is not among the state keys",
        table="cases",
        key=KEY,
        kid="hub-state-x",
    )

    async def handle(event: object) -> None:
        handled.append(event)
        raise missing

    handled_agent(app, "gun.declarations", "intake", handle)
    assert app.process is not None
    await app.process(_Stream(events=2))
    assert app.crashed == [missing]
    assert len(handled) == 1  # nothing read after it


def test_a_state_unreadable_says_where_it_was_found() -> None:
    """The worker forgets the value by its table and key, not by parsing a message."""
    cipher = StateCipher.of([StateKey("hub-state-1", bytes(32))])
    with pytest.raises(StateUnreadable) as raised:
        cipher.open("cases", KEY, GARBAGE)
    assert (raised.value.table, raised.value.key) == ("cases", KEY)
    assert not isinstance(raised.value, StateKeyMissing)
