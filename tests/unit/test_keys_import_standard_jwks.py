"""``keys import-public FILE --party P`` takes a standard JWKS (RFC 7517) from P.

The contract (section 5) has each party make its keys where it runs and exchange public
keys, "one public JWKS for all"; it sets no key id format and no ``party`` member. A
clearance system that makes its keys with a JOSE library (jwcrypto here; nimbus, go-jose
alike) exports RFC 7638 thumbprints as key ids, no ``party``, maybe no ``use`` or ``alg``:
the hub refused it ("has no 'party' text", then "does not start with 'clearance-'"; found
by review, stop 36). Now the party is the one the command names (a file still never gives
keys in another party's name: stop 35), ``use`` and ``alg`` are inferred where the key
says it unambiguously, and a key id of another form is accepted as long as it cannot be
taken for another party's key.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwe, jwk, jws
from typer.testing import CliRunner, Result

from gun_contract.envelope import ContentType
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import (
    PUBLIC_JWKS,
    KeystoreError,
    KeystoreFolder,
    PartyKeys,
    read_public_keys,
)
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import topic_registry
from gun_hub.cli import app

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
XML = b"<Declaration/>"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)


def keys(*args: str | Path) -> Result:
    return CliRunner().invoke(app, ["keys", *map(str, args)])


def hub_machine(tmp_path: Path) -> Path:
    folder = tmp_path / "hub"
    result = keys("init", "--party", "hub", "--dir", folder)
    assert result.exit_code == 0, result.output
    return folder


class ClearanceSystem:
    """The clearance system's keys, made with jwcrypto, exported as jwcrypto writes them."""

    def __init__(self) -> None:
        self.signing = jwk.JWK.generate(kty="EC", crv="P-256")
        self.encryption = jwk.JWK.generate(kty="EC", crv="P-256")

    def exported(self, *, use: bool = True, alg: bool = True) -> list[dict[str, Any]]:
        entries = []
        for key, key_use, key_alg in (
            (self.signing, "sig", "ES256"),
            (self.encryption, "enc", "ECDH-ES+A256KW"),
        ):
            entry = json.loads(key.export_public())
            entry["kid"] = key.thumbprint()
            if use:
                entry["use"] = key_use
            if alg:
                entry["alg"] = key_alg
            entries.append(entry)
        return entries

    def file(self, tmp_path: Path, entries: list[dict[str, Any]]) -> Path:
        path = tmp_path / "clearance.jwks"
        path.write_text(json.dumps({"keys": entries}))
        return path

    def seal_to_hub(self, hub: Path) -> bytes:
        """A declaration signed with its jwcrypto key, under its thumbprint key id."""
        now = int(time.time())
        header = {
            "alg": "ES256",
            "kid": self.signing.thumbprint(),
            "typ": "JOSE",
            "cty": "application/xml",
            "iss": "clearance",
            "aud": "hub",
            "iat": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
            "topic": TOPICS.declarations,
        }
        signed = jws.JWS(XML)
        signed.add_signature(self.signing, protected=header)
        hub_key = PartyKeys.load(hub, "hub").encryption_key_for("hub")
        recipient = jwk.JWK(**hub_key.key.as_dict(private=False))
        sealed = jwe.JWE(
            signed.serialize(compact=True).encode(),
            protected={"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": hub_key.kid},
        )
        sealed.add_recipient(recipient)
        compact: str = sealed.serialize(compact=True)
        return compact.encode()


def hub_envelope(hub: Path) -> JoseEnvelope:
    return JoseEnvelope(
        PartyKeys.load(hub, "hub"), Entitlements.from_registry(TOPICS), MemoryReplayGuard()
    )


@pytest.mark.parametrize(
    ("use", "alg"), [(True, True), (True, False), (False, True)], ids=["both", "use", "alg"]
)
def test_a_standard_jwks_is_imported_for_the_party_named_and_its_messages_open(
    tmp_path: Path, use: bool, alg: bool
) -> None:
    hub = hub_machine(tmp_path)
    clearance = ClearanceSystem()
    result = keys(
        "import-public",
        clearance.file(tmp_path, clearance.exported(use=use, alg=alg)),
        "--party",
        "clearance",
        "--dir",
        hub,
    )
    assert result.exit_code == 0, result.output
    known = read_public_keys(hub / PUBLIC_JWKS)
    signing = known[clearance.signing.thumbprint()]
    encryption = known[clearance.encryption.thumbprint()]
    assert (signing.party, signing.use.value, signing.alg) == ("clearance", "sig", "ES256")
    assert (encryption.party, encryption.use.value, encryption.alg) == (
        "clearance",
        "enc",
        "ECDH-ES+A256KW",
    )
    stored = json.loads((hub / PUBLIC_JWKS).read_text())["keys"]
    assert {e["party"] for e in stored if e["kid"] == signing.kid} == {"clearance"}
    # What the clearance system seals with its own library opens at the hub, as its own.
    opened = hub_envelope(hub).open(clearance.seal_to_hub(hub), topic=TOPICS.declarations)
    assert (opened.payload, opened.sender, opened.content_type) == (
        XML,
        "clearance",
        ContentType.XML,
    )
    # And the hub encrypts to the imported encryption key.
    assert PartyKeys.load(hub, "hub").encryption_key_for("clearance").kid == encryption.kid


def test_a_key_with_neither_use_nor_alg_is_refused_saying_what_to_add(tmp_path: Path) -> None:
    """A P-256 key may sign or be encrypted to: the hub does not guess which."""
    hub = hub_machine(tmp_path)
    clearance = ClearanceSystem()
    before = (hub / PUBLIC_JWKS).read_bytes()
    result = keys(
        "import-public",
        clearance.file(tmp_path, clearance.exported(use=False, alg=False)),
        "--party",
        "clearance",
        "--dir",
        hub,
    )
    assert result.exit_code == 1
    assert clearance.signing.thumbprint() in result.output
    assert '"use": "sig"' in result.output
    assert '"use": "enc"' in result.output
    assert (hub / PUBLIC_JWKS).read_bytes() == before


@pytest.mark.parametrize("first", ["-", "_"])
def test_a_thumbprint_starting_with_a_dash_or_underscore_is_a_key_id(
    tmp_path: Path, first: str
) -> None:
    """About 3 % of RFC 7638 thumbprints do (base64url)."""
    hub = hub_machine(tmp_path)
    clearance = ClearanceSystem()
    entries = clearance.exported()
    entries[0]["kid"] = first + entries[0]["kid"][1:]
    report = KeystoreFolder(hub).import_public(
        {"keys": entries}, party="clearance", source="clearance.jwks"
    )
    assert entries[0]["kid"] in {key.kid for key in report.added}


@pytest.mark.parametrize(
    "kid",
    ["hub-sig-mine", "gateway-sig-1", "dga-sig-20260101T000000-abcdef"],
    ids=["a-party-known-here", "the-gateway", "the-form-keys-init-gives-another-party"],
)
def test_a_key_id_that_reads_as_another_partys_is_refused(tmp_path: Path, kid: str) -> None:
    """A key id not of the ``P-`` form is P's only if it cannot be taken for another's:
    not starting with the name of a party known here or a contract party, nor of the form
    ``keys init`` gives another party's keys."""
    hub = hub_machine(tmp_path)
    clearance = ClearanceSystem()
    entries = clearance.exported()
    entries[0]["kid"] = kid
    with pytest.raises(KeystoreError, match="nothing imported") as refused:
        KeystoreFolder(hub).import_public(
            {"keys": entries}, party="clearance", source="clearance.jwks"
        )
    assert repr(kid) in str(refused.value)


def test_a_key_already_registered_under_another_id_is_refused(tmp_path: Path) -> None:
    """One key, one id, one party: the hub's own signing key offered again as the
    clearance system's (under a thumbprint id) would let the hub's key speak for it."""
    hub = hub_machine(tmp_path)
    [hub_signing] = [
        e
        for e in json.loads((hub / PUBLIC_JWKS).read_text())["keys"]
        if e["use"] == "sig" and not e.get("purpose")
    ]
    entry = {k: hub_signing[k] for k in ("kty", "crv", "x", "y")}
    entry["kid"] = jwk.JWK(**entry).thumbprint()
    entry["use"] = "sig"
    with pytest.raises(KeystoreError, match="already registered") as refused:
        KeystoreFolder(hub).import_public(
            {"keys": [entry]}, party="clearance", source="clearance.jwks"
        )
    assert hub_signing["kid"] in str(refused.value)


def test_the_party_the_file_names_must_still_be_the_one_the_command_names(
    tmp_path: Path,
) -> None:
    """Stop 35 stays: a standard file with a ``party`` member names the same party."""
    hub = hub_machine(tmp_path)
    clearance = ClearanceSystem()
    entries = [dict(e, party="gateway") for e in clearance.exported()]
    with pytest.raises(KeystoreError, match="'gateway'"):
        KeystoreFolder(hub).import_public(
            {"keys": entries}, party="clearance", source="clearance.jwks"
        )
