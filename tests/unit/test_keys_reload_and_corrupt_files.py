"""Running processes see a rotation or retirement without a restart; a corrupt key file
is named in a clear error (issue 11, item 6).

Envelopes are built exactly as the hub and the adapters build them
(``JoseEnvelope(PartyKeys.load(folder, party), ...)``); the keystore looks at its files
again at most once every few seconds, so the tests move its clock instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import (
    KEY_RECHECK_S,
    PUBLIC_JWKS,
    AuditSigner,
    KeyStatus,
    KeystoreError,
    KeystoreFolder,
    KeyUse,
    PartyKeys,
    read_public_keys,
)
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import topic_registry
from gun_hub.cli import app
from tests.conftest import envelope_of
from tests.keystore_fixtures import KeystoreClocks, protected_header

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
REQUEST = TOPICS.requests("dgal")


def running(folder: Path, party: str) -> JoseEnvelope:
    """``party``'s envelope, built once, as a process builds it at start-up."""
    return envelope_of(party, TOPICS, folder)


def seal(hub: JoseEnvelope) -> bytes:
    return hub.seal(b"{}", recipient="dgal", topic=REQUEST, content_type=ContentType.JSON)


def refused(envelope: JoseEnvelope, sealed: bytes) -> Kind:
    with pytest.raises(EnvelopeRejected) as rejection:
        envelope.open(sealed, topic=REQUEST)
    return rejection.value.kind


def test_a_retired_key_is_refused_by_a_running_process(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    hub, dgal = running(own_keys_dir, "hub"), running(own_keys_dir, "dgal")
    old = hub.seal(b"{}", recipient="dgal", topic=REQUEST, content_type=ContentType.JSON)
    also_old = seal(hub)
    assert dgal.open(seal(hub), topic=REQUEST).sender == "hub"
    old_kid = PartyKeys.load(own_keys_dir, "hub").signing_key.kid

    KeystoreFolder(own_keys_dir).rotate("hub")
    KeystoreFolder(own_keys_dir).retire(str(old_kid))
    # The files are looked at again at most once every KEY_RECHECK_S seconds...
    keystore_clocks.monotonic += KEY_RECHECK_S / 2
    assert dgal.open(old, topic=REQUEST).signing_kid == old_kid
    # ...and then the retirement holds, with no restart.
    keystore_clocks.monotonic += KEY_RECHECK_S
    assert refused(dgal, also_old) is Kind.RETIRED_KEY


def test_a_rotation_reaches_running_senders_and_receivers(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    hub, dgal = running(own_keys_dir, "hub"), running(own_keys_dir, "dgal")
    # In use at once (the keys' use time is test_a_rotated_key_is_published_before_it_signs'),
    # at the key store's own clock: the real one may have ticked into the next second since
    # the test's wall clock stood still, putting the keys' use a second ahead (CI, stop 56).
    now = keystore_clocks.wall()
    new_hub_kids = KeystoreFolder(own_keys_dir).rotate("hub", use_from=now)
    new_dgal_kids = KeystoreFolder(own_keys_dir).rotate("dgal", use_from=now)
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    sealed = seal(hub)
    # The hub signs with its new key and encrypts to dgal's new key...
    outer = protected_header(sealed)
    assert outer["kid"] in new_dgal_kids
    # ...and dgal, running since before either rotation, opens it.
    assert dgal.open(sealed, topic=REQUEST).signing_kid in new_hub_kids


def _encrypted_to(sealed: bytes) -> str:
    return str(protected_header(sealed)["kid"])


def _newest_by_scanning(keys: PartyKeys, party: str) -> str | None:
    """The rule before stop 39 looked the key up this way at every seal."""
    candidates = [
        k
        for k in keys.public.values()
        if k.party == party and k.use is KeyUse.ENC and k.status is KeyStatus.ACTIVE
    ]
    return candidates[-1].kid if candidates else None


def test_a_running_sender_encrypts_to_the_newest_active_key_as_the_jwks_lists_it(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    """Stop 39: each party's newest active encryption key is chosen once per reading of
    the key files, not by scanning every key at each seal; the choice is the same, and
    follows a rotation and a retirement without a restart."""
    hub_keys = PartyKeys.load(own_keys_dir, "hub")
    hub = JoseEnvelope(hub_keys, Entitlements.from_registry(TOPICS), MemoryReplayGuard())
    first = _encrypted_to(seal(hub))
    [newer] = [
        kid
        for kid in KeystoreFolder(own_keys_dir).rotate("dgal", use_from=keystore_clocks.wall())
        if read_public_keys(own_keys_dir / PUBLIC_JWKS)[kid].use is KeyUse.ENC
    ]
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    assert _encrypted_to(seal(hub)) == newer != first
    for party in ("hub", "clearance", "dgal", "cites", "dga"):
        assert hub_keys.encryption_key_for(party).kid == _newest_by_scanning(hub_keys, party)

    KeystoreFolder(own_keys_dir).retire(newer)  # the older key is still active: sealed to again
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    assert _encrypted_to(seal(hub)) == first == _newest_by_scanning(hub_keys, "dgal")

    KeystoreFolder(own_keys_dir).retire(first, last=True)  # none left: nothing sealed to dgal
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    assert _newest_by_scanning(hub_keys, "dgal") is None
    with pytest.raises(KeystoreError, match="no active encryption key for 'dgal'"):
        seal(hub)


def test_the_audit_signer_picks_up_a_new_audit_key(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    signer = AuditSigner.load(own_keys_dir)
    now = keystore_clocks.wall()
    before = signer.key_for(now).kid
    [new] = KeystoreFolder(own_keys_dir).rotate("hub", audit=True)
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    assert signer.key_for(now).kid == new != before


def test_a_file_broken_while_running_keeps_the_last_good_keys_and_says_which(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks, caplog: pytest.LogCaptureFixture
) -> None:
    hub, dgal = running(own_keys_dir, "hub"), running(own_keys_dir, "dgal")
    good = (own_keys_dir / PUBLIC_JWKS).read_text()
    (own_keys_dir / PUBLIC_JWKS).write_text(good[: len(good) // 2])  # a copy cut short
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    with caplog.at_level(logging.ERROR, logger="gun_contract.security.keystore"):
        assert dgal.open(seal(hub), topic=REQUEST).sender == "hub"
    assert str(own_keys_dir / PUBLIC_JWKS) in caplog.text
    assert "keeping the keys loaded before" in caplog.text
    # Mended, it is read again.
    (own_keys_dir / PUBLIC_JWKS).write_text(good)
    os.utime(own_keys_dir / PUBLIC_JWKS, ns=(1, 1))
    caplog.clear()
    keystore_clocks.monotonic += KEY_RECHECK_S + 1
    with caplog.at_level(logging.ERROR, logger="gun_contract.security.keystore"):
        assert dgal.open(seal(hub), topic=REQUEST).sender == "hub"
    assert caplog.text == ""


# -- corrupt files -------------------------------------------------------------------------


def _corrupt_public(folder: Path, how: str) -> None:
    path = folder / PUBLIC_JWKS
    data = json.loads(path.read_text())
    key = data["keys"][0]
    if how == "cut short":
        path.write_text(path.read_text()[:100])
        return
    if how == "not a set":
        data = ["nothing"]
    elif how == "point off the curve":
        key["x"] = key["y"]
    elif how == "another curve":
        key["crv"] = "P-384"
    elif how == "no kid":
        del key["kid"]
    elif how == "unknown use":
        key["use"] = "wrap"
    elif how == "unknown status":
        key["status"] = "maybe"
    elif how == "no party":
        del key["party"]
    elif how == "bad date":
        key["created"] = "yesterday"
    path.write_text(json.dumps(data))


PUBLIC_DAMAGE = [
    "cut short",
    "not a set",
    "point off the curve",
    "another curve",
    "no kid",
    "unknown use",
    "unknown status",
    "no party",
    "bad date",
]


@pytest.mark.parametrize("how", PUBLIC_DAMAGE)
def test_a_corrupt_public_jwks_is_named_in_a_clear_error(own_keys_dir: Path, how: str) -> None:
    _corrupt_public(own_keys_dir, how)
    with pytest.raises(KeystoreError) as error:
        PartyKeys.load(own_keys_dir, "hub")
    message = str(error.value)
    assert str(own_keys_dir / PUBLIC_JWKS) in message
    assert "Traceback" not in message
    assert error.value.__cause__ is None or isinstance(error.value.__cause__, KeystoreError)


@pytest.mark.parametrize(
    "damage",
    ["", "{", '{"keys": 3}', '{"keys": [{"kty": "EC"}]}', '{"keys": [{"kty": "oct", "k": "AA"}]}'],
)
def test_a_corrupt_private_key_file_is_named_in_a_clear_error(
    own_keys_dir: Path, damage: str
) -> None:
    (own_keys_dir / "dgal.jwk").write_text(damage)
    with pytest.raises(KeystoreError) as error:
        PartyKeys.load(own_keys_dir, "dgal")
    assert str(own_keys_dir / "dgal.jwk") in str(error.value)


def test_a_private_file_holding_only_public_keys_is_refused(own_keys_dir: Path) -> None:
    data = json.loads((own_keys_dir / "dgal.jwk").read_text())
    for key in data["keys"]:
        key.pop("d")
    (own_keys_dir / "dgal.jwk").write_text(json.dumps(data))
    with pytest.raises(KeystoreError, match="no private key"):
        PartyKeys.load(own_keys_dir, "dgal")


def test_a_corrupt_audit_key_file_is_named(own_keys_dir: Path) -> None:
    (own_keys_dir / "hub.audit.jwk").write_text("{]")
    with pytest.raises(KeystoreError, match=str(own_keys_dir / "hub.audit.jwk")):
        AuditSigner.load(own_keys_dir)


@pytest.mark.parametrize("how", ["cut short", "point off the curve"])
def test_the_commands_report_a_corrupt_file_without_a_stack_trace(
    own_keys_dir: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)
    _corrupt_public(own_keys_dir, how)
    for command in (["rotate", "hub"], ["retire", "x"], ["export-public", "--party", "hub"]):
        result = CliRunner().invoke(app, ["keys", *command, "--dir", str(own_keys_dir)])
        assert result.exit_code == 1, (command, result.output)
        assert str(own_keys_dir / PUBLIC_JWKS) in result.output
        assert not isinstance(result.exception, KeyError | ValueError)


def test_validity_is_read_as_dates(own_keys_dir: Path) -> None:
    [audit] = [k for k in read_public_keys(own_keys_dir / PUBLIC_JWKS).values() if k.purpose]
    assert audit.not_before is not None
    assert audit.not_after is not None
    assert audit.not_after - audit.not_before >= timedelta(days=365)
