"""A backlog the broker accepted before a key's retirement opens when read after it.

docs/security.md: ``gun-hub keys retire KID`` refuses what the broker accepts from then on;
what it accepted before still counts. A reader away when a party rotates and retires a
key (the hub down a day, an adapter whose partner was down, the clearance reader after a
weekend) opens its waiting messages, judged by each record's log-append time, the broker's
time the sender cannot choose (ADR 0006), never a time the message states. Without a
broker time the retired key is refused (review stop 38, L2).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreError, KeystoreFolder, KeyUse, PartyKeys
from gun_contract.topics import topic_registry
from gun_hub.domain.routing import RoutingTable
from tests.conftest import envelope_of
from tests.forgery import claims, encrypt, encryption_key, sign, signing_key
from tests.unit.test_hub_refuses_unverified_answers import pending_case
from tests.unit.test_pipeline import Hub

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
RESPONSES = TOPICS.responses("dgal")
REQUESTS = TOPICS.requests("dgal")
PAYLOAD = b'{"reference": "26FR000690I0000012"}'


def retired_at(folder: Path, kid: str) -> float:
    """The retirement time of ``kid`` as the JWKS holds it, in epoch seconds."""
    retired = KeystoreFolder(folder).public_keys()[kid].retired_at
    assert retired is not None
    return retired.timestamp()


def rejection(envelope: JoseEnvelope, sealed: bytes, topic: str, at: float | None) -> Kind:
    with pytest.raises(EnvelopeRejected) as refused:
        envelope.open(sealed, topic=topic, position=f"{topic}/0/7", accepted_at=at)
    return refused.value.kind


def answer_sealed_then_signing_key_retired(folder: Path) -> tuple[bytes, float]:
    """DGAL answers; then it rotates and retires the signing key that answer was signed
    with. The answer, and the retirement time."""
    sealed = envelope_of("dgal", TOPICS, folder).seal(
        PAYLOAD, recipient="hub", topic=RESPONSES, content_type=ContentType.JSON
    )
    old_kid = str(PartyKeys.load(folder, "dgal").signing_key.kid)
    KeystoreFolder(folder).rotate("dgal")
    KeystoreFolder(folder).retire(old_kid)
    return sealed, retired_at(folder, old_kid)


def test_an_answer_signed_before_its_key_was_retired_opens_when_read_after(
    own_keys_dir: Path,
) -> None:
    sealed, retired = answer_sealed_then_signing_key_retired(own_keys_dir)
    hub = envelope_of("hub", TOPICS, own_keys_dir)
    # The broker appended it a second before the retirement; the hub, away, reads it now.
    opened = hub.open(sealed, topic=RESPONSES, position=f"{RESPONSES}/0/7", accepted_at=retired - 1)
    assert opened.payload == PAYLOAD


def test_what_the_broker_accepted_from_the_retirement_on_is_refused(own_keys_dir: Path) -> None:
    sealed, retired = answer_sealed_then_signing_key_retired(own_keys_dir)
    for at in (retired, retired + 1):
        assert rejection(envelope_of("hub", TOPICS, own_keys_dir), sealed, RESPONSES, at) == (
            Kind.RETIRED_KEY
        )


def test_a_record_without_a_broker_time_gets_no_benefit(own_keys_dir: Path) -> None:
    """A topic not stamped LogAppendTime: nothing shows when the record was accepted; the
    message's own ``iat`` (a holder of the key writes what it likes) is not asked."""
    sealed, _ = answer_sealed_then_signing_key_retired(own_keys_dir)
    assert rejection(envelope_of("hub", TOPICS, own_keys_dir), sealed, RESPONSES, None) == (
        Kind.RETIRED_KEY
    )


def test_a_retired_key_with_no_retirement_time_serves_nothing(own_keys_dir: Path) -> None:
    sealed, retired = answer_sealed_then_signing_key_retired(own_keys_dir)
    jwks = json.loads((own_keys_dir / "jwks.json").read_text())
    for entry in jwks["keys"]:
        entry.pop("retired", None)
    (own_keys_dir / "jwks.json").write_text(json.dumps(jwks))
    assert rejection(envelope_of("hub", TOPICS, own_keys_dir), sealed, RESPONSES, retired - 60) == (
        Kind.RETIRED_KEY
    )


def test_a_retirement_dated_after_the_jwks_is_loaded_serves_nothing(
    own_keys_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Review stop 38-s, S4: imports before stop 38 stored a partner's retirement time
    as stated, so a jwks.json can hold one dated ahead; taken at its word, a key refused
    until the upgrade vouched again for all the broker accepted until that date. Loaded,
    it is a retirement with no time (it serves nothing), said once, naming the key."""
    sealed = envelope_of("dgal", TOPICS, own_keys_dir).seal(
        PAYLOAD, recipient="hub", topic=RESPONSES, content_type=ContentType.JSON
    )
    kid = str(PartyKeys.load(own_keys_dir, "dgal").signing_key.kid)
    jwks = json.loads((own_keys_dir / "jwks.json").read_text())
    for entry in jwks["keys"]:
        if entry["kid"] == kid:
            entry["status"] = "retired"
            entry["retired"] = "2099-01-01T00:00:00+00:00"
    (own_keys_dir / "jwks.json").write_text(json.dumps(jwks))

    with caplog.at_level("WARNING"):
        hub = envelope_of("hub", TOPICS, own_keys_dir)
    assert KeystoreFolder(own_keys_dir).public_keys()[kid].retired_at is None
    now = datetime.now(UTC).timestamp()  # the broker accepted the record now
    assert rejection(hub, sealed, RESPONSES, now) == Kind.RETIRED_KEY
    assert rejection(hub, sealed, RESPONSES, now - 3600) == Kind.RETIRED_KEY
    warned = [r.getMessage() for r in caplog.records if kid in r.getMessage()]
    assert len(warned) == 1, warned
    assert "2099-01-01" in warned[0]


def test_a_request_encrypted_to_a_retired_key_of_the_reader_opens_if_accepted_before(
    own_keys_dir: Path,
) -> None:
    """DGAL rotates and retires its old encryption key while requests encrypted to it wait
    for its adapter: the adapter keeps the old private key and decrypts them."""
    sealed = envelope_of("hub", TOPICS, own_keys_dir).seal(
        PAYLOAD, recipient="dgal", topic=REQUESTS, content_type=ContentType.JSON
    )
    [old_kid] = PartyKeys.load(own_keys_dir, "dgal").decryption_keys
    KeystoreFolder(own_keys_dir).rotate("dgal")
    KeystoreFolder(own_keys_dir).retire(old_kid)
    retired = retired_at(own_keys_dir, old_kid)
    assert old_kid not in PartyKeys.load(own_keys_dir, "dgal").decryption_keys
    adapter = envelope_of("dgal", TOPICS, own_keys_dir)
    opened = adapter.open(
        sealed, topic=REQUESTS, position=f"{REQUESTS}/0/7", accepted_at=retired - 1
    )
    assert opened.payload == PAYLOAD
    # The same bytes accepted at or after the retirement, or with no broker time: refused.
    for at in (retired, retired + 1, None):
        assert rejection(envelope_of("dgal", TOPICS, own_keys_dir), sealed, REQUESTS, at) == (
            Kind.RETIRED_KEY
        )


def test_an_encryption_key_no_longer_in_the_jwks_decrypts_nothing(own_keys_dir: Path) -> None:
    sealed = envelope_of("hub", TOPICS, own_keys_dir).seal(
        PAYLOAD, recipient="dgal", topic=REQUESTS, content_type=ContentType.JSON
    )
    [old_kid] = PartyKeys.load(own_keys_dir, "dgal").decryption_keys
    KeystoreFolder(own_keys_dir).rotate("dgal")
    jwks = json.loads((own_keys_dir / "jwks.json").read_text())
    jwks["keys"] = [e for e in jwks["keys"] if e["kid"] != old_kid]
    (own_keys_dir / "jwks.json").write_text(json.dumps(jwks))
    at = datetime.now(UTC).timestamp()
    assert rejection(envelope_of("dgal", TOPICS, own_keys_dir), sealed, REQUESTS, at) == (
        Kind.UNKNOWN_KID
    )


def test_a_leaked_key_retired_since_the_leak_refuses_the_backlog_since_then(
    own_keys_dir: Path,
) -> None:
    sealed = envelope_of("dgal", TOPICS, own_keys_dir).seal(
        PAYLOAD, recipient="hub", topic=RESPONSES, content_type=ContentType.JSON
    )
    accepted = datetime.now(UTC).timestamp()
    old_kid = str(PartyKeys.load(own_keys_dir, "dgal").signing_key.kid)
    KeystoreFolder(own_keys_dir).rotate("dgal")
    leak = datetime.fromtimestamp(accepted - 60, UTC)
    KeystoreFolder(own_keys_dir).retire(old_kid, since=leak)
    assert retired_at(own_keys_dir, old_kid) == int(leak.timestamp())
    assert rejection(envelope_of("hub", TOPICS, own_keys_dir), sealed, RESPONSES, accepted) == (
        Kind.RETIRED_KEY
    )


def test_retiring_a_key_again_never_moves_its_retirement_later(own_keys_dir: Path) -> None:
    kid = str(PartyKeys.load(own_keys_dir, "dgal").signing_key.kid)
    KeystoreFolder(own_keys_dir).rotate("dgal")
    first = datetime.now(UTC) - timedelta(hours=1)
    KeystoreFolder(own_keys_dir).retire(kid, since=first)
    KeystoreFolder(own_keys_dir).retire(kid)
    assert retired_at(own_keys_dir, kid) == int(first.timestamp())
    with pytest.raises(KeystoreError, match="future"):
        KeystoreFolder(own_keys_dir).retire(kid, since=datetime.now(UTC) + timedelta(hours=1))


def test_an_imported_retirement_is_never_later_than_its_import(
    own_keys_dir: Path, tmp_path: Path
) -> None:
    """DGAL's export dates its key's retirement a day ahead: at the hub it is retired as of
    the import, not a day later; an export dating it back (a leak) is taken over."""
    dgal_kid = str(PartyKeys.load(own_keys_dir, "dgal").signing_key.kid)
    exported = KeystoreFolder(own_keys_dir).export_public("dgal")
    hub_side = tmp_path / "hub-side"
    hub_side.mkdir()
    KeystoreFolder(hub_side).init_party("hub")
    KeystoreFolder(hub_side).import_public(exported, party="dgal", source="dgal.jwks")
    ahead = datetime.now(UTC) + timedelta(days=1)
    for entry in exported["keys"]:
        if entry["kid"] == dgal_kid:
            entry.update(status="retired", retired=ahead.isoformat())
    before_import = datetime.now(UTC).timestamp()
    report = KeystoreFolder(hub_side).import_public(exported, party="dgal", source="dgal.jwks")
    assert [k.kid for k in report.retired] == [dgal_kid]
    assert before_import - 1 <= retired_at(hub_side, dgal_kid) <= datetime.now(UTC).timestamp()
    leak = datetime.now(UTC) - timedelta(days=2)
    for entry in exported["keys"]:
        if entry["kid"] == dgal_kid:
            entry["retired"] = leak.isoformat()
    report = KeystoreFolder(hub_side).import_public(exported, party="dgal", source="dgal.jwks")
    assert [k.kid for k in report.retired] == [dgal_kid]
    assert retired_at(hub_side, dgal_kid) == int(leak.timestamp())
    # A later date than the one held now is not taken: it would let more through.
    for entry in exported["keys"]:
        if entry["kid"] == dgal_kid:
            entry["retired"] = datetime.now(UTC).isoformat()
    report = KeystoreFolder(hub_side).import_public(exported, party="dgal", source="dgal.jwks")
    assert report.retired == []
    assert retired_at(hub_side, dgal_kid) == int(leak.timestamp())


# -- at the hub ----------------------------------------------------------------------------


def test_the_hub_decides_on_an_answer_accepted_before_its_signing_key_was_retired(
    routing_table: RoutingTable, own_keys_dir: Path
) -> None:
    old_signing_key = signing_key(own_keys_dir, "dgal")
    KeystoreFolder(own_keys_dir).rotate("dgal")
    KeystoreFolder(own_keys_dir).retire(str(old_signing_key.kid))
    retired = retired_at(own_keys_dir, str(old_signing_key.kid))
    hub = Hub(routing_table, own_keys_dir)
    request, payload = pending_case(hub)
    answer = encrypt(
        sign(claims(iss="dgal", aud="hub", topic=RESPONSES), payload, old_signing_key),
        encryption_key(own_keys_dir, "hub"),
    )
    key = request.reference.encode()
    late = hub.correlation.handle(answer, SourcePosition(RESPONSES, 0, 3, key), retired + 1)
    [dead] = late.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_RETIRED_KEY"
    assert late.to(hub.topics.decision_outbox) == []
    in_time = hub.correlation.handle(answer, SourcePosition(RESPONSES, 0, 4, key), retired - 1)
    assert in_time.to(hub.topics.dlq) == []
    assert len(hub.decisions(in_time)) == 1


def test_a_party_keeps_decrypting_only_with_its_own_retired_encryption_keys(
    own_keys_dir: Path,
) -> None:
    """Retiring every key of DGAL's first generation leaves DGAL one retired key to
    decrypt a backlog with: its old encryption key, not its old signing key."""
    first = PartyKeys.load(own_keys_dir, "dgal")
    [old_enc] = first.decryption_keys
    generation = [kid for kid, key in first.public.items() if key.party == "dgal"]
    KeystoreFolder(own_keys_dir).rotate("dgal")
    for kid in generation:
        KeystoreFolder(own_keys_dir).retire(kid)
    keys = PartyKeys.load(own_keys_dir, "dgal")
    assert list(keys.retired_decryption_keys) == [old_enc]
    assert keys.retired_decryption_keys[old_enc].public.use is KeyUse.ENC
    assert old_enc not in keys.decryption_keys
