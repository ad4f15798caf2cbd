"""Heartbeats only in one's own name (issue 11, item 7).

Every adapter may write ``gun.ops.health``, so before this a heartbeat written by the DGA
adapter in the DGAL adapter's name (or the hub's) could hide an outage or fake one on the
dashboard and in ``/metrics``. Each heartbeat is now a JWS signed with the emitting party's
key; the operations feed believes one only if the signature verifies with a registered,
unretired key, it was signed for this topic, the component it names belongs to the party
that signed it, and it is newer than the last one believed. Anything else is left out,
logged with its reason (never its content) and counted in
``gun_hub_heartbeats_refused_total{reason}``; no bytes make the feed fail.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import OctKey
from prometheus_client import REGISTRY

from gun_contract.envelope import ContentType
from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.heartbeats import (
    HeartbeatFault,
    HeartbeatGate,
    HeartbeatRefused,
    signed_heartbeat,
)
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import KeystoreFolder, PartyKeys
from gun_contract.settings import SecuritySettings, Settings
from gun_contract.topics import topic_registry
from gun_hub.ops.feed import OpsFeed
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedTopics, OpsView
from tests import forgery
from tests.adapter_fixtures import adapter_runner
from tests.conftest import envelope_of
from tests.poison_corpus import mutants, named_bombs

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
HEALTH = TOPICS.ops_health
VIEW_TOPICS = FeedTopics(status=TOPICS.status, facts=TOPICS.facts, dlq=TOPICS.dlq, health=HEALTH)
REFUSED = "gun_hub_heartbeats_refused_total"
# A value of the heartbeat's content: it must never reach a log line. Seven digits a key
# id cannot hold (4242 was found in one's time stamp, 20261207T042420: CI, stop 52).
PENDING = 7777777


def beat(
    authority: str, *, circuit: CircuitStatus = CircuitStatus.CLOSED, age_s: float = 0
) -> PartnerHealth:
    return PartnerHealth(
        authority=authority,
        adapter=f"adapter.{authority}",
        circuit=circuit,
        pending_operations=PENDING,
        at=datetime.now(UTC) - timedelta(seconds=age_s),
        every_s=5.0,
    )


def signed_by(keys_dir: Path, party: str, health: PartnerHealth, topic: str = HEALTH) -> bytes:
    return signed_heartbeat(envelope_of(party, TOPICS, keys_dir), health, topic)


def gate_of(keys_dir: Path) -> HeartbeatGate:
    """What the hub's operations feed checks heartbeats with: public keys only matter."""
    return HeartbeatGate(PartyKeys.load(keys_dir, "hub"), Entitlements.from_registry(TOPICS))


def refusal(gate: HeartbeatGate, value: bytes, **latest: datetime) -> HeartbeatFault:
    with pytest.raises(HeartbeatRefused) as refused:
        gate.check(value, topic=HEALTH, latest={(a, ""): at for a, at in latest.items()})
    return refused.value.fault


def refused_count(fault: HeartbeatFault) -> float:
    return REGISTRY.get_sample_value(REFUSED, {"reason": fault.value}) or 0.0


# -- the gate: what a heartbeat must be to be believed -----------------------------------


def test_a_heartbeat_the_dga_adapter_signs_in_the_dgal_adapters_name_is_refused(
    keys_dir: Path,
) -> None:
    forged = signed_by(keys_dir, "dga", beat("dgal", circuit=CircuitStatus.OPEN))
    assert refusal(gate_of(keys_dir), forged) is HeartbeatFault.IMPERSONATION


def test_an_unsigned_heartbeat_is_refused(keys_dir: Path) -> None:
    gate = gate_of(keys_dir)
    assert refusal(gate, beat("dgal").to_bytes()) is HeartbeatFault.UNSIGNED


def test_a_genuine_heartbeat_is_believed(keys_dir: Path) -> None:
    health = beat("dgal", circuit=CircuitStatus.HALF_OPEN)
    believed = gate_of(keys_dir).check(signed_by(keys_dir, "dgal", health), topic=HEALTH)
    assert believed == health


@pytest.mark.parametrize(
    ("signer", "named"),
    [("dga", "hub"), ("hub", "hub"), ("clearance", "clearance"), ("dgal", "dgax")],
)
def test_a_heartbeat_naming_no_component_that_sends_heartbeats_is_refused(
    keys_dir: Path, signer: str, named: str
) -> None:
    forged = signed_by(keys_dir, signer, beat(named))
    assert refusal(gate_of(keys_dir), forged) is HeartbeatFault.UNKNOWN_COMPONENT


def test_a_replayed_older_heartbeat_cannot_hide_an_outage(keys_dir: Path) -> None:
    """The DGAL partner is down now; a copy of its heartbeat from a minute ago said all was
    well. Written again, it is no newer than what operations already believe."""
    gate = gate_of(keys_dir)
    earlier = signed_by(keys_dir, "dgal", beat("dgal", age_s=60))
    now = beat("dgal", circuit=CircuitStatus.OPEN)
    assert gate.check(signed_by(keys_dir, "dgal", now), topic=HEALTH) == now
    assert refusal(gate, earlier, dgal=now.at) is HeartbeatFault.NOT_NEWER
    same = signed_by(keys_dir, "dgal", now)
    assert refusal(gate, same, dgal=now.at) is HeartbeatFault.NOT_NEWER


def test_a_heartbeat_from_the_future_is_refused_and_blocks_nothing(keys_dir: Path) -> None:
    gate = gate_of(keys_dir)
    future = signed_by(keys_dir, "dgal", beat("dgal", age_s=-3600))
    assert refusal(gate, future) is HeartbeatFault.FROM_THE_FUTURE
    # A belief from the future (kept from before heartbeats were signed) blocks nothing.
    genuine = beat("dgal")
    value = signed_by(keys_dir, "dgal", genuine)
    far = datetime.now(UTC) + timedelta(days=365)
    assert gate.check(value, topic=HEALTH, latest={("dgal", ""): far}) == genuine


def _forgeries(keys_dir: Path) -> dict[str, tuple[bytes, HeartbeatFault]]:
    payload = beat("dgal").to_bytes()
    dgal = forgery.signing_key(keys_dir, "dgal")
    dga = forgery.signing_key(keys_dir, "dga")
    now = int(time.time())
    header = {"typ": "gun-signed", "cty": "application/json", "iss": "dgal", "iat": now}
    genuine = signed_by(keys_dir, "dgal", beat("dgal"))
    envelope_inner = forgery.sign(
        forgery.claims(iss="dgal", aud="hub", topic=HEALTH), payload, dgal
    ).encode()
    other_folder = keys_dir.parent / f"{keys_dir.name}-stranger"
    if not other_folder.exists():
        KeystoreFolder(other_folder).init(["dgal"], force=True)
    stranger = PartyKeys.load(other_folder, "dgal").signing_key
    stranger_as_dgal = forgery.sign({**header, "topic": HEALTH}, payload, stranger)
    public_as_hmac = forgery.sign(
        {**header, "topic": HEALTH},
        payload,
        OctKey.import_key(
            json.dumps(dgal.as_dict(private=False)).encode(),
            parameters={"kid": forgery.kid_of(dgal)},
        ),
        alg="HS256",
    )
    return {
        "signed for another topic": (
            signed_by(keys_dir, "dgal", beat("dgal"), topic=TOPICS.status),
            HeartbeatFault.WRONG_TOPIC,
        ),
        "iss not the key's owner": (
            forgery.sign({**header, "iss": "dga", "topic": HEALTH}, payload, dgal).encode(),
            HeartbeatFault.SENDER_MISMATCH,
        ),
        "dga's key under dgal's kid": (
            forgery.sign({**header, "topic": HEALTH, "kid": dgal.kid}, payload, dga).encode(),
            HeartbeatFault.BAD_SIGNATURE,
        ),
        "an unregistered key": (stranger_as_dgal.encode(), HeartbeatFault.UNKNOWN_KEY),
        "alg none": (
            forgery.with_header(genuine, {**header, "alg": "none", "kid": dgal.kid}),
            HeartbeatFault.DISALLOWED_ALG,
        ),
        "HS256 keyed with the public key": (
            public_as_hmac.encode(),
            HeartbeatFault.DISALLOWED_ALG,
        ),
        "content changed after signing": (
            forgery.flip_byte(genuine, 1),
            HeartbeatFault.BAD_SIGNATURE,
        ),
        "an envelope's inner JWS": (envelope_inner, HeartbeatFault.MALFORMED),
        "signed, but no heartbeat": (
            signed_heartbeat_of_bytes(keys_dir, "dgal", b'{"authority": "dgal"}'),
            HeartbeatFault.INVALID,
        ),
        "a sealed envelope": (
            envelope_of("dgal", TOPICS, keys_dir).seal(
                payload, recipient="hub", topic=HEALTH, content_type=ContentType.JSON
            ),
            HeartbeatFault.UNSIGNED,
        ),
    }


def signed_heartbeat_of_bytes(keys_dir: Path, party: str, payload: bytes) -> bytes:
    return envelope_of(party, TOPICS, keys_dir).sign(
        payload, topic=HEALTH, content_type=ContentType.JSON
    )


def test_every_forgery_is_refused_for_what_it_is(keys_dir: Path) -> None:
    gate = gate_of(keys_dir)
    found = {name: refusal(gate, value) for name, (value, _) in _forgeries(keys_dir).items()}
    assert found == {name: fault for name, (_, fault) in _forgeries(keys_dir).items()}


def test_a_heartbeat_signed_with_a_retired_key_is_refused(tmp_path: Path) -> None:
    folder = KeystoreFolder(tmp_path / "keys")
    folder.init(["hub", "dgal"])
    old = signed_heartbeat(envelope_of("dgal", TOPICS, folder.folder), beat("dgal"), HEALTH)
    kid = json.loads(base64.urlsafe_b64decode(old.split(b".")[0] + b"=="))["kid"]
    folder.rotate("dgal")
    folder.retire(kid)
    gate = HeartbeatGate(
        PartyKeys.load(folder.folder, "hub", recheck_s=0), Entitlements.from_registry(TOPICS)
    )
    assert refusal(gate, old) is HeartbeatFault.RETIRED_KEY
    fresh = signed_heartbeat(envelope_of("dgal", TOPICS, folder.folder), beat("dgal"), HEALTH)
    assert gate.check(fresh, topic=HEALTH).authority == "dgal"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.binary(max_size=3000))
def test_random_bytes_are_refused_never_raised(value: bytes, keys_dir: Path) -> None:
    gate = _GATES.setdefault(str(keys_dir), gate_of(keys_dir))
    refusal(gate, value)


_GATES: dict[str, HeartbeatGate] = {}


def test_bombs_and_mutants_of_a_genuine_heartbeat_are_refused(keys_dir: Path) -> None:
    gate = gate_of(keys_dir)
    health = beat("dgal")
    genuine = signed_by(keys_dir, "dgal", health)
    poison = list(named_bombs().items()) + mutants(random.Random(11), [genuine], 400)
    for name, value in poison:
        try:
            believed = gate.check(value, topic=HEALTH, latest={("dgal", ""): health.at})
        except HeartbeatRefused:
            continue
        raise AssertionError(f"{name} believed: {believed}")


# -- the feed: what operations see -------------------------------------------------------


class _HealthLog:
    """Serves a fixed log of the health topic, two records a batch (the feed's consumer)."""

    def __init__(self, values: list[bytes]) -> None:
        now = int(time.time() * 1000)
        self._log = [
            ConsumerRecord(HEALTH, 0, n, now, 0, None, v, None, 0, len(v), [])
            for n, v in enumerate(values)
        ]
        self.position_ = 0

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, len(self._log))

    async def getmany(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batch = self._log[self.position_ : self.position_ + 2]
        self.position_ += len(batch)
        if not batch:
            await asyncio.sleep(0.01)
            return {}
        return {TopicPartition(HEALTH, 0): batch}

    async def position(self, tp: TopicPartition) -> int:
        return self.position_

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_ = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.position_ = 0


async def follow_to_the_end(
    tmp_path: Path, keys_dir: Path, values: list[bytes]
) -> tuple[OpsView, OpsState]:
    view = OpsView(tmp_path / "view.sqlite3", VIEW_TOPICS)
    state = OpsState()
    feed = OpsFeed(None, view, state, heartbeats=gate_of(keys_dir))  # type: ignore[arg-type]
    follow = asyncio.create_task(feed.follow(_HealthLog(values), [TopicPartition(HEALTH, 0)]))
    try:
        async with asyncio.timeout(10):
            await feed.caught_up.wait()
    finally:
        follow.cancel()
    return view, state


async def test_the_feed_believes_the_genuine_heartbeats_only(
    tmp_path: Path, keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dga_up = beat("dga", age_s=2)
    dgal_down = beat("dgal", circuit=CircuitStatus.OPEN, age_s=1)
    faults = {
        HeartbeatFault.IMPERSONATION: 1,
        HeartbeatFault.UNSIGNED: 2,
        HeartbeatFault.NOT_NEWER: 1,
        HeartbeatFault.UNKNOWN_COMPONENT: 1,
    }
    before = {fault: refused_count(fault) for fault in faults}
    values = [
        signed_by(keys_dir, "dga", dga_up),
        signed_by(keys_dir, "dgal", dgal_down),
        # The DGA adapter hides DGAL's outage, unsigned or under its own key...
        beat("dgal").to_bytes(),
        signed_by(keys_dir, "dga", beat("dgal")),
        # ... or plays an old DGAL heartbeat again, or speaks for the hub.
        signed_by(keys_dir, "dgal", beat("dgal", age_s=30)),
        signed_by(keys_dir, "dga", beat("hub")),
        b"\x00\xff" * 100,
    ]
    with caplog.at_level(logging.WARNING, logger="gun_hub.ops.feed"):
        view, state = await follow_to_the_end(tmp_path, keys_dir, values)

    assert state.partners == {("dga", ""): dga_up, ("dgal", ""): dgal_down}
    assert view.partners() == state.partners
    assert view.skipped == 0  # refused before the view: nothing unusable reached it
    for fault, times in faults.items():
        assert refused_count(fault) == before[fault] + times, fault
    lines = [r.getMessage() for r in caplog.records if r.name == "gun_hub.ops.feed"]
    impersonation = [line for line in lines if HeartbeatFault.IMPERSONATION.value in line]
    assert impersonation, lines
    assert f"{HEALTH}/0/3" in impersonation[0]
    assert "'dga'" in impersonation[0]  # the party whose key signed it
    for line in lines:
        assert str(PENDING) not in line  # what a heartbeat says is never logged...
        assert "\\x00" not in line
        if "IMPERSONATION" in line or "UNSIGNED" in line:
            assert "dgal" not in line  # ... nor whom it claims to speak for


async def test_the_feed_survives_any_bytes_on_the_health_topic(
    tmp_path: Path, keys_dir: Path
) -> None:
    rng = random.Random(7)
    genuine = signed_by(keys_dir, "dgal", beat("dgal", age_s=5))
    poison = [value for _, value in named_bombs().items()]
    poison += [value for _, value in mutants(rng, [genuine], 200)]
    poison += [rng.randbytes(rng.randrange(1, 3000)) for _ in range(100)]
    last = beat("dgal")
    view, state = await follow_to_the_end(
        tmp_path, keys_dir, [genuine, *poison, signed_by(keys_dir, "dgal", last)]
    )
    assert state.partners == {("dgal", ""): last}
    assert view.partners() == {("dgal", ""): last}


# -- the adapter: what it writes -----------------------------------------------------------


def test_the_adapter_signs_its_heartbeat_with_its_own_key(tmp_path: Path, keys_dir: Path) -> None:
    settings = Settings(security=SecuritySettings(keys_dir=keys_dir, state_dir=tmp_path / "state"))
    runner = adapter_runner("dga", settings, TOPICS)
    try:
        value = runner.heartbeat()
        believed = gate_of(keys_dir).check(value, topic=HEALTH)
    finally:
        runner.pending.close()
    assert believed.authority == "dga"
    assert believed.adapter == "adapter.dga"
    header = json.loads(base64.urlsafe_b64decode(value.split(b".")[0] + b"=="))
    assert header["iss"] == "dga"
    assert header["kid"] == PartyKeys.load(keys_dir, "dga").signing_key.kid
