"""At the hub: an answer that fails verification is dead-lettered, counted, audited, and
never acted on (the case still waits, and a genuine answer still decides it)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey, OctKey
from prometheus_client import REGISTRY

from gun_contract.dead_letter import (
    HEADER_ERROR_CLASS,
    HEADER_ERROR_KIND,
    SourcePosition,
    header_value,
)
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Outcome
from gun_contract.security.keystore import KeystoreFolder
from gun_hub.domain.routing import RoutingTable
from tests.builders import answer_to, declaration_xml
from tests.conftest import envelope_of
from tests.forgery import (
    b64,
    claims,
    encrypt,
    encryption_key,
    flip_byte,
    kid_of,
    sign,
    signing_key,
)
from tests.unit.test_pipeline import Hub

RESPONSES = "gun.responses.dgal"

Forge = Callable[[Path, bytes], bytes]


def _genuine(keys: Path, payload: bytes, **overrides: Any) -> str:
    return sign(
        claims(iss="dgal", aud="hub", topic=RESPONSES, **overrides),
        payload,
        signing_key(keys, "dgal"),
    )


def _to_hub(keys: Path, signed: str | bytes) -> bytes:
    return encrypt(signed, encryption_key(keys, "hub"))


def _unknown_kid(keys: Path, payload: bytes) -> bytes:
    rogue = ECKey.generate_key("P-256", parameters={"kid": "dgal-sig-rogue"}, private=True)
    return _to_hub(keys, sign(claims(iss="dgal", aud="hub", topic=RESPONSES), payload, rogue))


def _hmac_with_public_key(keys: Path, payload: bytes) -> bytes:
    kid = kid_of(signing_key(keys, "dgal"))
    public = json.dumps(signing_key(keys, "dgal").as_dict(private=False)).encode()
    secret = OctKey.import_key(public, parameters={"kid": kid})
    return _to_hub(
        keys, sign(claims(iss="dgal", aud="hub", topic=RESPONSES), payload, secret, "HS256")
    )


def _unsigned(keys: Path, payload: bytes) -> bytes:
    header = {
        "alg": "none",
        "kid": signing_key(keys, "dgal").kid,
        **claims(iss="dgal", aud="hub", topic=RESPONSES),
    }
    return _to_hub(keys, f"{b64(header)}.{b64(payload)}.")


FORGERIES: dict[str, tuple[Forge, str]] = {
    "unknown kid": (_unknown_kid, "ENVELOPE_UNKNOWN_KID"),
    "bad signature": (
        lambda k, p: _to_hub(k, flip_byte(_genuine(k, p).encode(), 1)),
        "ENVELOPE_BAD_SIGNATURE",
    ),
    "alg none": (_unsigned, "ENVELOPE_DISALLOWED_ALG"),
    "alg HS256": (_hmac_with_public_key, "ENVELOPE_DISALLOWED_ALG"),
    "wrong recipient": (
        lambda k, p: _to_hub(
            k, sign(claims(iss="dgal", aud="cites", topic=RESPONSES), p, signing_key(k, "dgal"))
        ),
        "ENVELOPE_WRONG_RECIPIENT",
    ),
    "wrong topic": (
        lambda k, p: _to_hub(
            k,
            sign(
                claims(iss="dgal", aud="hub", topic="gun.requests.dgal"), p, signing_key(k, "dgal")
            ),
        ),
        "ENVELOPE_WRONG_TOPIC",
    ),
    "sender not entitled": (
        lambda k, p: _to_hub(
            k, sign(claims(iss="cites", aud="hub", topic=RESPONSES), p, signing_key(k, "cites"))
        ),
        "ENVELOPE_NOT_ENTITLED",
    ),
    "key of another party": (
        lambda k, p: _to_hub(
            k, sign(claims(iss="dgal", aud="hub", topic=RESPONSES), p, signing_key(k, "cites"))
        ),
        "ENVELOPE_SENDER_MISMATCH",
    ),
    "expired": (
        lambda k, p: _to_hub(
            k, _genuine(k, p, iat=int(time.time()) - 9000, exp=int(time.time()) - 5400)
        ),
        "ENVELOPE_EXPIRED",
    ),
    "issued in the future": (
        lambda k, p: _to_hub(
            k, _genuine(k, p, iat=int(time.time()) + 3600, exp=int(time.time()) + 3700)
        ),
        "ENVELOPE_IAT_SKEW",
    ),
    "tampered ciphertext": (
        lambda k, p: flip_byte(_to_hub(k, _genuine(k, p)), 3),
        "ENVELOPE_DECRYPTION_FAILED",
    ),
    "not an envelope": (lambda k, p: p, "ENVELOPE_MALFORMED"),
}


def pending_case(hub: Hub) -> tuple[AuthorityRequest, bytes]:
    """A lodged declaration waiting for DGAL, and the genuine answer DGAL would give."""
    sent = hub.intake.handle(declaration_xml(), SourcePosition("gun.declarations", 0, 0))
    [record] = sent.to(hub.topics.requests("dgal"))
    request = AuthorityRequest.model_validate_json(
        envelope_of("dgal", hub.topics, hub.keys_dir).open(record.value, topic=record.topic).payload
    )
    answer = answer_to(request)
    return request, answer.model_dump_json().encode()


def rejections(kind: str) -> float:
    value = REGISTRY.get_sample_value("gun_hub_envelope_rejections_total", {"kind": kind})
    return value or 0.0


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_an_unverified_answer_is_refused_and_never_acted_on(
    routing_table: RoutingTable, keys_dir: Path, name: str
) -> None:
    hub = Hub(routing_table, keys_dir)
    request, payload = pending_case(hub)
    forge, kind = FORGERIES[name]
    before = rejections(kind)
    source = SourcePosition(RESPONSES, 0, 11, request.reference.encode())

    out = hub.correlation.handle(forge(keys_dir, payload), source)

    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == kind
    assert header_value(dead.headers, HEADER_ERROR_CLASS) == "security"
    assert rejections(kind) == before + 1
    assert out.to(hub.topics.decision_outbox) == []
    assert out.to(hub.topics.status) == []  # not even recorded as an answer
    audited = hub.audit_keeper.handle(dead.headers, SourcePosition("gun.dlq", 0, 0))
    [audit] = audited.to(hub.topics.audit)
    entry = json.loads(audit.value)
    assert (entry["kind"], entry["rejection"]) == ("SECURITY_REJECTION", kind)
    # The case was untouched: the genuine answer still decides it.
    genuine = _to_hub(keys_dir, _genuine(keys_dir, payload))
    decided = hub.correlation.handle(genuine, SourcePosition(RESPONSES, 0, 12, source.key))
    assert hub.decisions(decided) == [(request.reference, 1, Outcome.RELEASE)]


def test_a_replayed_answer_is_refused(routing_table: RoutingTable, keys_dir: Path) -> None:
    hub = Hub(routing_table, keys_dir)
    request, payload = pending_case(hub)
    sealed = _to_hub(keys_dir, _genuine(keys_dir, payload))
    key = request.reference.encode()
    assert (
        len(hub.decisions(hub.correlation.handle(sealed, SourcePosition(RESPONSES, 0, 5, key))))
        == 1
    )
    again = hub.correlation.handle(sealed, SourcePosition(RESPONSES, 1, 9, key))
    [dead] = again.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_REPLAY"
    assert again.to(hub.topics.status) == []


def test_an_answer_signed_with_a_retired_key_is_refused(
    routing_table: RoutingTable, keys_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    shutil.copytree(keys_dir, folder)
    old_signing_key = signing_key(folder, "dgal")
    KeystoreFolder(folder).rotate("dgal")
    KeystoreFolder(folder).retire(str(old_signing_key.kid))
    hub = Hub(routing_table, folder)
    request, payload = pending_case(hub)
    stale = encrypt(
        sign(claims(iss="dgal", aud="hub", topic=RESPONSES), payload, old_signing_key),
        encryption_key(folder, "hub"),
    )
    out = hub.correlation.handle(stale, SourcePosition(RESPONSES, 0, 3, request.reference.encode()))
    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == "ENVELOPE_RETIRED_KEY"
    assert out.to(hub.topics.decision_outbox) == []
