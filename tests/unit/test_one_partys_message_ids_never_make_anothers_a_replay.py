"""A message id (``jti``) is unique for its issuer only (RFC 7519 section 4.1.7): the
replay memories remember it with the party that signed it (JOSE review of stop 48).

Kept by ``jti`` alone, one memory for every partner, an id one partner used made another
partner's message with the same id a replay: a hostile authority that could guess the
ids another one uses (a counter, a request id; the contract leaves their form to each
partner's library) had that authority's answers refused, its cases left to their
deadlines. A copy of one party's own message stays a replay.
"""

from __future__ import annotations

import uuid
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from gun_contract.dead_letter import SourcePosition
from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security import jose_envelope
from gun_contract.security.entitlements import (
    CLEARANCE_PARTY,
    GATEWAY_PARTY,
    HUB_PARTY,
    Entitlements,
)
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import PartyKeys
from gun_contract.security.replay import SqliteReplayGuard
from gun_contract.topics import topic_registry
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.admission import (
    Claim,
    ClaimJudge,
    ClaimVerdict,
    claim_partition,
    claims_memory,
    read_claims_record,
)
from tests.builders import declaration_xml
from tests.conftest import envelope_of
from tests.unit.test_declarations_admitted_once_claimed import Admission

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
THE_SAME_ID = uuid.UUID("0123456789abcdef0123456789abcdef")


def answer_with_the_same_id(
    keys_dir: Path, authority: str, monkeypatch: pytest.MonkeyPatch
) -> bytes:
    monkeypatch.setattr(jose_envelope, "uuid", SimpleNamespace(uuid4=lambda: THE_SAME_ID))
    return envelope_of(authority, TOPICS, keys_dir).seal(
        b"{}", recipient="hub", topic=TOPICS.responses(authority), content_type=ContentType.JSON
    )


def test_another_partys_message_with_the_same_id_is_no_replay(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = envelope_of("hub", TOPICS, keys_dir)
    from_dga = answer_with_the_same_id(keys_dir, "dga", monkeypatch)
    from_dgal = answer_with_the_same_id(keys_dir, "dgal", monkeypatch)
    first = hub.open(from_dga, topic=TOPICS.responses("dga"), position="gun.responses.dga/0/1")
    second = hub.open(from_dgal, topic=TOPICS.responses("dgal"), position="gun.responses.dgal/0/1")
    assert (first.sender, second.sender) == ("dga", "dgal")
    assert first.message_id == second.message_id == THE_SAME_ID.hex


def test_a_copy_of_one_partys_own_message_is_still_a_replay(
    keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = envelope_of("hub", TOPICS, keys_dir)
    answer = answer_with_the_same_id(keys_dir, "dgal", monkeypatch)
    hub.open(answer, topic=TOPICS.responses("dgal"), position="gun.responses.dgal/0/1")
    with pytest.raises(EnvelopeRejected) as copy:
        hub.open(answer, topic=TOPICS.responses("dgal"), position="gun.responses.dgal/0/2")
    assert copy.value.kind is Kind.REPLAY
    assert THE_SAME_ID.hex in str(copy.value)


def test_a_declaration_lodged_through_the_gateway_with_the_clearance_systems_id_is_decided(
    routing_table: RoutingTable, keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claims memory (one owner partition per id, ADR 0008) keys the id with its
    issuer too: the gateway's declaration is no replay of the clearance system's."""
    admission = Admission(routing_table, keys_dir)
    monkeypatch.setattr(jose_envelope, "uuid", SimpleNamespace(uuid4=lambda: THE_SAME_ID))
    topic = admission.topics.declarations
    for offset, (party, reference) in enumerate(
        [(CLEARANCE_PARTY, "26FR000690I0000012"), (GATEWAY_PARTY, "FR12345678901234-0001")]
    ):
        sealed = admission.hub.envelope(party).seal(
            declaration_xml(reference=reference),
            recipient=HUB_PARTY,
            topic=topic,
            content_type=ContentType.XML,
        )
        [admitted] = admission.through(sealed, SourcePosition(topic, 0, offset, reference.encode()))
        assert admitted.to(admission.topics.dlq) == []
        assert len(admitted.to(admission.topics.requests("dgal"))) == 1


# -- during an upgrade: what a worker of the previous version kept under the bare jti ------
#
# Review of stop 48's own commits: nothing looked the bare jti up any more, so during a
# rolling upgrade a copy of a message first read by a worker of the previous version was
# a first sighting for a new one, and for 14 days after it a redrive of a copy refused
# then (whose id is kept that long) was too: the stop-47 redrive hole reopened.


def test_a_copy_of_an_answer_a_previous_version_remembered_is_still_a_replay(
    keys_dir: Path, tmp_path: Path
) -> None:
    hub = envelope_of("hub", TOPICS, keys_dir)
    answer = envelope_of("dgal", TOPICS, keys_dir).seal(
        b"{}", recipient="hub", topic=TOPICS.responses("dgal"), content_type=ContentType.JSON
    )
    opened = hub.open(answer, topic=TOPICS.responses("dgal"), check_replay=False)
    previous_version = SqliteReplayGuard(tmp_path / "replay.sqlite", keep_after_expiry_s=300)
    assert previous_version.first_sighting(opened.message_id, 2**40, "gun.responses.dgal/0/1")
    upgraded = JoseEnvelope(
        PartyKeys.load(keys_dir, "hub"), Entitlements.from_registry(TOPICS), previous_version
    )
    with pytest.raises(EnvelopeRejected) as copy:
        upgraded.open(answer, topic=TOPICS.responses("dgal"), position="gun.responses.dgal/0/2")
    assert copy.value.kind is Kind.REPLAY
    read_again = upgraded.open(
        answer, topic=TOPICS.responses("dgal"), position="gun.responses.dgal/0/1"
    )
    assert read_again.sender == "dgal"  # the original read again: a redelivery


def test_a_declaration_claimed_by_a_previous_version_is_a_replay_for_the_new_one() -> None:
    claims: dict[bytes, bytes] = {}
    judge = ClaimJudge(
        claims_memory(claims, 4, keep_after_expiry_s=300, readable_s=14 * 24 * 3600),
        "gun.hub.claims",
    )
    jti = "5f0c6f2e9b1d4a7c8e3f2a1b0c9d8e7f"
    # The previous version claimed the bare jti, at the bare jti's claim partition.
    claims[jti.encode()] = b"gun.declarations/0/7|9999999999"
    assert claim_partition(f"clearance/{jti}", 4) == zlib.crc32(jti.encode()) % 4
    copy = Claim(
        message_id=f"clearance/{jti}",
        accept_until=9_999_999_999,
        source=SourcePosition("gun.declarations", 1, 3),
        accepted_at=None,
    )
    [record] = judge.judge(copy).records
    verdict = read_claims_record(record.value)
    assert isinstance(verdict, ClaimVerdict)
    assert (verdict.first, verdict.held_at) == (False, "gun.declarations/0/7")
