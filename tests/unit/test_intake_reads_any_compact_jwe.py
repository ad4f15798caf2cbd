"""Intake takes any compact JWE as sealed, however its protected header's JSON is spaced.

RFC 7516 does not require the protected header to be compact JSON: ``{ "alg": ...}`` is as
valid as ``{"alg": ...}``, but its base64url does not start with ``eyJ``, the prefix
intake's cheap precheck looked for. A declaration the clearance system sealed that way,
which the hub's envelope opens, was dead-lettered as DECLARATION_NOT_SEALED (found by
review, stop 36). The precheck now asks what a compact serialization is: base64url, then
a dot.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwk, jws

from gun_contract.dead_letter import HEADER_ERROR_KIND, SourcePosition, header_value
from gun_contract.model.verdicts import Outcome, Verdict
from gun_contract.security.jose_compact import b64encode, concat_kdf
from gun_contract.security.keystore import PartyKeys
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import NOT_SEALED
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub

REF = "26FR000690I0000012"


@pytest.fixture
def hub(routing_table: RoutingTable, keys_dir: Path) -> Hub:
    """The pipeline with a production intake: sealed declarations only."""
    return Hub(routing_table, keys_dir).sealed_only()


def signed_by_clearance(keys_dir: Path, xml: bytes, topic: str) -> bytes:
    key = PartyKeys.load(keys_dir, "clearance").signing_key
    now = int(time.time())
    header = {
        "alg": "ES256",
        "kid": key.kid,
        "typ": "JOSE",
        "cty": "application/xml",
        "iss": "clearance",
        "aud": "hub",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "topic": topic,
    }
    signed = jws.JWS(xml)
    signed.add_signature(jwk.JWK(**key.as_dict(private=True)), protected=header)
    compact: str = signed.serialize(compact=True)
    return compact.encode()


def encrypted_under_a_spaced_header(keys_dir: Path, plaintext: bytes) -> bytes:
    """ECDH-ES+A256KW / A256GCM to the hub (RFC 7518 4.6, 5.3), the protected header
    written with spaces and new lines, as some JSON writers do."""
    recipient = PartyKeys.load(keys_dir, "hub").encryption_key_for("hub")
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    point = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    header = {
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "kid": recipient.kid,
        "epk": {
            "kty": "EC",
            "crv": "P-256",
            "x": b64encode(point[1:33]).decode(),
            "y": b64encode(point[33:]).decode(),
        },
    }
    protected = b64encode(json.dumps(header, indent=1).encode())
    shared = ephemeral.exchange(ec.ECDH(), recipient.key.public_key)
    wrapping = concat_kdf(shared, "ECDH-ES+A256KW", b"", b"", 256)
    content_key, iv = os.urandom(32), os.urandom(12)
    sealed = AESGCM(content_key).encrypt(iv, plaintext, protected)
    return b".".join(
        (
            protected,
            b64encode(aes_key_wrap(wrapping, content_key)),
            b64encode(iv),
            b64encode(sealed[:-16]),
            b64encode(sealed[-16:]),
        )
    )


def test_a_declaration_sealed_under_a_spaced_header_is_decided(hub: Hub, keys_dir: Path) -> None:
    signed = signed_by_clearance(keys_dir, declaration_xml(), hub.topics.declarations)
    sealed = encrypted_under_a_spaced_header(keys_dir, signed)
    assert not sealed.startswith(b"eyJ")  # '{\n "alg"': "ewog..."
    sent = hub.intake.handle(sealed, SourcePosition("gun.declarations", 0, 0, REF.encode()))
    assert [header_value(r.headers, HEADER_ERROR_KIND) for r in sent.to(hub.topics.dlq)] == []
    assert hub.decisions(hub.answer(sent, "dgal", Verdict.VALID)) == [(REF, 1, Outcome.RELEASE)]


@pytest.mark.parametrize(
    "record",
    [b"\xef\xbb\xbf<?xml version='1.0'?><Declaration/>", b"  <Declaration/>", b"eyJhbGci", b""],
    ids=["bom", "spaces", "no-dot", "empty"],
)
def test_what_is_not_a_compact_serialization_is_still_not_sealed(hub: Hub, record: bytes) -> None:
    out = hub.intake.handle(record, SourcePosition("gun.declarations", 0, 0, REF.encode()))
    [dead] = out.to(hub.topics.dlq)
    assert header_value(dead.headers, HEADER_ERROR_KIND) == NOT_SEALED
