"""What another party's standard JOSE library puts in a protected header, the hub reads by
the contract (section 5) and the RFCs; what it still refuses, it refuses for what it is.

The clearance system seals a declaration to the hub with jwcrypto, as the contract allows:
NumericDates that are not integers (RFC 7519 section 2), ``nbf`` and ``sub`` (registered
claims, section 4.1), ``aud`` as an array naming the hub (4.1.3), ``crit`` listing
parameters the hub understands (RFC 7515 section 4.1.11), ``x5c`` with a real certificate,
``cty`` as ``xml`` or with a charset (4.1.10), a lifetime of two hours. Each was refused,
most as ``ENVELOPE_BAD_SIGNATURE`` ("signature does not verify") though the signature was
fine, and operators would have chased keys (found by review, stop 36). A header the hub
still refuses (a member it does not know, a ``crit`` it cannot honour, too large, an
``nbf`` ahead, an ``aud`` naming others too) is refused with a kind that says so.
"""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from jwcrypto import jwe, jwk, jws

from gun_contract.envelope import ContentType, EnvelopeRejected, OpenedMessage
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security import jose_compact
from gun_contract.security.jose_envelope import content_type
from gun_contract.security.keystore import PartyKeys
from gun_contract.topics import topic_registry
from tests.conftest import envelope_of

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
DECLARATIONS = TOPICS.declarations
PAYLOAD = b'<Declaration xmlns="urn:example">...</Declaration>'


def _jwcrypto(keys_dir: Path, party: str, *, signing: bool) -> jwk.JWK:
    keys = PartyKeys.load(keys_dir, party)
    if signing:
        return jwk.JWK(**keys.signing_key.as_dict(private=True))
    return jwk.JWK(**keys.encryption_key_for(party).key.as_dict(private=False))


def contract_header(keys_dir: Path, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    header = {
        "alg": "ES256",
        "kid": PartyKeys.load(keys_dir, "clearance").signing_key.kid,
        "typ": "JOSE",
        "cty": "application/xml",
        "iss": "clearance",
        "aud": "hub",
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
        "topic": DECLARATIONS,
    }
    header.update(changes)
    return {name: value for name, value in header.items() if value is not None}


def sealed_by_jwcrypto(keys_dir: Path, header: dict[str, Any]) -> bytes:
    """The clearance system's jwcrypto: signs with ``header``, encrypts to the hub."""
    # A sender that marks parameters critical must understand them itself: jwcrypto
    # refuses to write a crit it has no registration for.
    understood = {
        name: jws.JWSEHeaderParameter(name, False, True, None) for name in ("topic", "jti", "nbf")
    }
    inner = jws.JWS(PAYLOAD, header_registry=understood)
    inner.add_signature(_jwcrypto(keys_dir, "clearance", signing=True), protected=header)
    hub = _jwcrypto(keys_dir, "hub", signing=False)
    outer = jwe.JWE(
        inner.serialize(compact=True).encode(),
        protected={"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": hub.get("kid")},
    )
    outer.add_recipient(hub)
    compact: str = outer.serialize(compact=True)
    return compact.encode()


def sealed_as_signed(keys_dir: Path, header: dict[str, Any], *, forge: bool = False) -> bytes:
    """Signed by the clearance system's own key with exactly ``header`` (what libraries
    refuse to write), encrypted to the hub; ``forge``: the signature then broken."""
    private = PartyKeys.load(keys_dir, "clearance").signing_key.private_key
    assert private is not None
    signed = jose_compact.sign_compact(header, PAYLOAD, private)
    if forge:
        head, signature = signed.rsplit(b".", 1)
        raw = bytearray(jose_compact.b64decode(signature))
        raw[5] ^= 1
        signed = head + b"." + jose_compact.b64encode(bytes(raw))
    hub_key = PartyKeys.load(keys_dir, "hub").encryption_key_for("hub")
    return jose_compact.encrypt_compact(
        {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": hub_key.kid},
        signed,
        hub_key.key.public_key,
    )


def opened(keys_dir: Path, sealed: bytes) -> OpenedMessage:
    return envelope_of("hub", TOPICS, keys_dir).open(sealed, topic=DECLARATIONS)


def refusal(keys_dir: Path, sealed: bytes) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as rejection:
        opened(keys_dir, sealed)
    return rejection.value


def certificate_chain(count: int) -> list[str]:
    """``count`` real self-signed P-256 certificates, standard base64 DER (RFC 7515 4.1.6)."""
    chain = []
    for number in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"clearance-{number}")])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        der = certificate.public_bytes(serialization.Encoding.DER)
        chain.append(base64.b64encode(der).decode())
    return chain


# -- what the contract and the RFCs allow opens ----------------------------------------------


def _now() -> float:
    return time.time()


ALLOWED: dict[str, Any] = {
    "iat and exp as non-integer NumericDates": lambda: {"iat": _now(), "exp": _now() + 600.5},
    "nbf, passed": lambda: {"nbf": int(_now()) - 5},
    "nbf, within the skew ahead": lambda: {"nbf": int(_now()) + 60},
    "sub": lambda: {"sub": "FR12345678901234"},
    "aud, an array naming the hub alone": lambda: {"aud": ["hub"]},
    "crit, parameters the hub understands": lambda: {"crit": ["topic", "jti"]},
    "crit, nbf honoured": lambda: {"crit": ["nbf"], "nbf": int(_now())},
    "x5c, one real certificate": lambda: {"x5c": certificate_chain(1)},
    "x5c, a chain of three": lambda: {"x5c": certificate_chain(3)},
    "x5t#S256": lambda: {"x5t#S256": "K5GsDR1nh8V_9f2qg2tTm27V2zR4pTYuvsjJ4C1yh1w"},
    "cty xml, the short form of application/xml": lambda: {"cty": "xml"},
    "cty with a charset": lambda: {"cty": "application/xml; charset=utf-8"},
    "cty in capitals, charset quoted": lambda: {"cty": 'Application/XML;Charset="UTF-8"'},
    "a lifetime of two hours": lambda: {"iat": int(_now()), "exp": int(_now()) + 7200},
    "typ as the media type, in lower case": lambda: {"typ": "application/jose"},
    "typ in lower case": lambda: {"typ": "jose"},
}


@pytest.mark.parametrize("changes", ALLOWED.values(), ids=ALLOWED.keys())
def test_a_header_the_contract_and_the_rfcs_allow_opens(keys_dir: Path, changes: Any) -> None:
    message = opened(keys_dir, sealed_by_jwcrypto(keys_dir, contract_header(keys_dir, **changes())))
    assert message.payload == PAYLOAD
    assert message.sender == "clearance"
    assert message.content_type.value == "application/xml"


def test_a_non_integer_issue_time_is_read_as_the_second_it_falls_in(keys_dir: Path) -> None:
    now = time.time()
    header = contract_header(keys_dir, iat=now, exp=now + 600.25)
    message = opened(keys_dir, sealed_by_jwcrypto(keys_dir, header))
    assert message.issued_at == math.floor(now)


def test_a_long_lifetime_opens_but_is_remembered_no_longer_than_policy(keys_dir: Path) -> None:
    """Acceptance is bounded by ``iat`` within the skew whatever ``exp`` says, so a longer
    lifetime widens nothing; the replay memory still keeps the id for the policy's hour
    at most (not for as long as a sender writes), and a copy is a replay."""
    now = int(time.time())
    header = contract_header(keys_dir, iat=now, exp=now + 30 * 86400)
    sealed = sealed_by_jwcrypto(keys_dir, header)
    hub = envelope_of("hub", TOPICS, keys_dir)
    first = hub.open(sealed, topic=DECLARATIONS, position="gun.declarations/0/1")
    assert first.accept_until == now + 3600 + 300
    with pytest.raises(EnvelopeRejected) as copy:
        hub.open(sealed, topic=DECLARATIONS, position="gun.declarations/0/2")
    assert copy.value.kind is Kind.REPLAY


def test_a_message_stays_refused_once_its_issue_time_is_past_the_skew(keys_dir: Path) -> None:
    """A long ``exp`` does not let a captured message be used later: ``iat`` decides."""
    now = int(time.time())
    header = contract_header(keys_dir, iat=now - 4000, exp=now + 86400)
    assert refusal(keys_dir, sealed_by_jwcrypto(keys_dir, header)).kind is Kind.IAT_SKEW


# -- what stays refused, for what it is ----------------------------------------------------


def test_nbf_ahead_beyond_the_skew_is_not_yet_valid(keys_dir: Path) -> None:
    header = contract_header(keys_dir, nbf=int(time.time()) + 900)
    rejected = refusal(keys_dir, sealed_by_jwcrypto(keys_dir, header))
    assert rejected.kind is Kind.NOT_YET_VALID
    assert "not valid before" in str(rejected)


@pytest.mark.parametrize("audience", [["hub", "dga"], ["dga"], [], "dga"])
def test_an_audience_that_is_not_the_hub_alone_is_the_wrong_recipient(
    keys_dir: Path, audience: Any
) -> None:
    header = contract_header(keys_dir, aud=audience)
    assert refusal(keys_dir, sealed_as_signed(keys_dir, header)).kind is Kind.WRONG_RECIPIENT


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "a member no registry defines": ({"x-priority": "high"}, "'x-priority'"),
    "crit naming what the hub does not act on": ({"crit": ["sub"], "sub": "x"}, "'sub'"),
    "crit naming a JWS parameter": ({"crit": ["alg"]}, "'alg'"),
    "crit naming a member absent": ({"crit": ["nbf"]}, "'nbf'"),
    "crit empty": ({"crit": []}, "crit"),
    "crit with b64": ({"crit": ["b64"], "b64": False}, "'b64'"),
    "iat not a number": ({"iat": "now"}, "'iat'"),
    "iat true": ({"iat": True}, "'iat'"),
    "exp not finite": ({"exp": math.inf}, "'exp'"),
    "iat NaN": ({"iat": math.nan}, "'iat'"),
    "jti missing": ({"jti": None}, "'jti'"),
    "cty another charset": ({"cty": "application/xml; charset=iso-8859-1"}, "cty"),
    "cty another type": ({"cty": "text/plain"}, "cty"),
    "aud a number": ({"aud": 7}, "'aud'"),
    # An integer no float can hold made the check of its finiteness raise OverflowError
    # out of open(): a bug dead letter, not a security one (JOSE review of stop 48).
    "iat an integer beyond any float": ({"iat": 10**400}, "'iat'"),
    "exp an integer beyond any float": ({"exp": 10**400}, "'exp'"),
    "nbf an integer beyond any float": ({"nbf": -(10**400)}, "'nbf'"),
    # The contract's protected header has a typ; another type (a heartbeat's signed-only
    # message, a JWT) is not an envelope, whatever else it holds (RFC 8725 section 3.11).
    "typ missing": ({"typ": None}, "'typ'"),
    "typ of a signed-only message": ({"typ": "gun-signed"}, "'typ'"),
    "typ JWT": ({"typ": "JWT"}, "'typ'"),
}


@pytest.mark.parametrize(("changes", "named"), REFUSED.values(), ids=REFUSED.keys())
def test_a_signed_header_outside_the_policy_is_refused_as_such_naming_why(
    keys_dir: Path, changes: dict[str, Any], named: str
) -> None:
    header = contract_header(keys_dir, **changes)
    rejected = refusal(keys_dir, sealed_as_signed(keys_dir, header))
    assert rejected.kind is Kind.HEADER_REFUSED
    assert named in str(rejected)
    assert "signature" not in str(rejected)


def test_the_same_header_under_a_broken_signature_is_a_bad_signature(keys_dir: Path) -> None:
    """The header is judged once its signature verifies: a forgery stays BAD_SIGNATURE,
    never told apart by what its header holds."""
    header = contract_header(keys_dir, **{"x-priority": "high"})
    assert refusal(keys_dir, sealed_as_signed(keys_dir, header, forge=True)).kind is (
        Kind.BAD_SIGNATURE
    )


def test_a_header_over_the_size_cap_is_refused_as_too_large(keys_dir: Path) -> None:
    """8 KiB holds a certificate chain; beyond, the header is not even read."""
    header = contract_header(keys_dir, x5c=certificate_chain(20))
    assert len(json.dumps(header)) > 8192
    rejected = refusal(keys_dir, sealed_by_jwcrypto(keys_dir, header))
    assert rejected.kind is Kind.HEADER_REFUSED
    assert "bytes" in str(rejected)


CONTENT_TYPES: dict[str, tuple[Any, ContentType | None]] = {
    "as the parties seal it, XML": ("application/xml", ContentType.XML),
    "as the parties seal it, JSON": ("application/json", ContentType.JSON),
    "the short form": ("xml", ContentType.XML),
    "a charset": ("application/json; charset=utf-8", ContentType.JSON),
    "capitals, charset quoted": ('Application/XML;Charset="UTF-8"', ContentType.XML),
    "another charset": ("application/xml; charset=iso-8859-1", None),
    "another type": ("text/plain", None),
    "a space before": (" application/xml", ContentType.XML),
    "a member name in place of a type": ("application/xml/", None),
    "too long": ("application/xml;" + " " * 128, None),
    "a number": (7, None),
    "a list (unhashable)": (["application/xml"], None),
    "an object (unhashable)": ({"type": "application/xml"}, None),
}


@pytest.mark.parametrize(("value", "kind"), CONTENT_TYPES.values(), ids=CONTENT_TYPES.keys())
def test_a_content_type_is_read_the_same_whether_spelled_as_sealed_or_otherwise(
    value: Any, kind: ContentType | None
) -> None:
    """Stop 39: the spelling the parties seal with is found without parsing (an opened
    message's ``cty`` is judged twice); every other spelling is parsed as before."""
    assert content_type(value) is kind
