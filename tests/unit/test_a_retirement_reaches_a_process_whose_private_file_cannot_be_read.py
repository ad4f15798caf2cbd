"""A running process whose own private key file can no longer be read still applies what
the public key set says about everyone else's keys (review of stop 47's key management,
its finding 2's second half).

A rotation done by hand (``sudo``, another umask) can leave a party's private file
refused (readable by others) or broken while ``jwks.json`` is fine. The process kept its
whole previous view: a partner's key retired because it leaked was still accepted until
somebody noticed and mended the private file, and a partner's new key was refused as
unknown. Now a reading that fails on the private file alone takes the public key set
as read: every other party's keys as a complete reading would, its own keys' retirements
(a retirement only narrows what is accepted), and its own private keys as before.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from gun_contract.envelope import EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import (
    KEY_RECHECK_S,
    PUBLIC_JWKS,
    AuditSigner,
    KeystoreFolder,
    KeyUse,
    PartyKeys,
)
from gun_contract.security.replay import MemoryReplayGuard
from tests.conftest import PARTIES
from tests.keystore_fixtures import KeystoreClocks, active_kid, new_kid
from tests.unit.test_keys_reload_and_corrupt_files import REQUEST, TOPICS, refused, running, seal


def make_private_file_unusable(folder: Path, party: str) -> None:
    """What a rotation run as another user leaves: the private file readable by others,
    which every reader refuses (as it would one it cannot open)."""
    (folder / f"{party}.jwk").chmod(0o644)


def test_a_partners_key_retired_while_the_private_file_is_refused_is_refused(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks, caplog: pytest.LogCaptureFixture
) -> None:
    hub, dgal = running(own_keys_dir, "hub"), running(own_keys_dir, "dgal")
    leaked = active_kid(own_keys_dir, "hub", KeyUse.SIG)
    under_the_leaked_key = seal(hub)
    assert dgal.open(seal(hub), topic=REQUEST).signing_kid == leaked

    make_private_file_unusable(own_keys_dir, "dgal")
    KeystoreFolder(own_keys_dir).rotate("hub")
    KeystoreFolder(own_keys_dir).retire(leaked)
    keystore_clocks.advance(KEY_RECHECK_S + 1)

    with caplog.at_level(logging.ERROR, logger="gun_contract.security.keystore"):
        assert refused(dgal, under_the_leaked_key) is Kind.RETIRED_KEY
    assert str(own_keys_dir / "dgal.jwk") in caplog.text
    assert f"applying what {PUBLIC_JWKS} says" in caplog.text


def test_a_partners_new_key_is_accepted_while_the_private_file_is_refused(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    dgal = running(own_keys_dir, "dgal")
    make_private_file_unusable(own_keys_dir, "dgal")
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    assert dgal.open(seal(running(own_keys_dir, "hub")), topic=REQUEST).sender == "hub"

    new_signing = new_kid(
        KeystoreFolder(own_keys_dir).rotate("hub", use_from=keystore_clocks.wall()), KeyUse.SIG
    )
    opened = dgal.open(seal(running(own_keys_dir, "hub")), topic=REQUEST)
    assert (opened.sender, opened.signing_kid) == ("hub", new_signing)


def test_the_process_keeps_its_own_private_keys_and_mended_reads_them_again(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    dgal_keys = PartyKeys.load(own_keys_dir, "dgal")
    signing_before = dgal_keys.signing_key.kid
    decryption_before = set(dgal_keys.decryption_keys)
    make_private_file_unusable(own_keys_dir, "dgal")
    KeystoreFolder(own_keys_dir).rotate("hub")
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    assert dgal_keys.signing_key.kid == signing_before
    assert set(dgal_keys.decryption_keys) == decryption_before

    (own_keys_dir / "dgal.jwk").chmod(0o600)
    rotated = KeystoreFolder(own_keys_dir).rotate("dgal", use_from=keystore_clocks.wall())
    new_signing, new_encryption = new_kid(rotated, KeyUse.SIG), new_kid(rotated, KeyUse.ENC)
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    assert dgal_keys.signing_key.kid == new_signing
    assert set(dgal_keys.decryption_keys) == decryption_before | {new_encryption}


def test_its_own_encryption_key_retired_meanwhile_decrypts_only_what_came_before(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    old = active_kid(own_keys_dir, "dgal", KeyUse.ENC)
    KeystoreFolder(own_keys_dir).rotate("dgal")  # the new key comes into use later
    dgal_keys = PartyKeys.load(own_keys_dir, "dgal")
    dgal = JoseEnvelope(dgal_keys, Entitlements.from_registry(TOPICS), MemoryReplayGuard())
    hub = running(own_keys_dir, "hub")
    accepted_before, accepted_after = seal(hub), seal(hub)  # both encrypted to the old key

    make_private_file_unusable(own_keys_dir, "dgal")
    keystore_clocks.advance(1)
    KeystoreFolder(own_keys_dir).retire(old)
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    retired = KeystoreFolder(own_keys_dir).public_keys()[old].retired_at
    assert retired is not None
    assert old not in dgal_keys.decryption_keys

    opened = dgal.open(accepted_before, topic=REQUEST, accepted_at=retired.timestamp() - 1)
    assert opened.sender == "hub"
    with pytest.raises(EnvelopeRejected) as refusal:
        dgal.open(accepted_after, topic=REQUEST, accepted_at=retired.timestamp() + 1)
    assert refusal.value.kind is Kind.RETIRED_KEY


def test_an_audit_key_retired_while_the_audit_file_is_broken_signs_no_more(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    signer = AuditSigner.load(own_keys_dir)
    [newer] = KeystoreFolder(own_keys_dir).rotate("hub", audit=True)
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    [older, _] = [key.kid for key in signer.every_key()]
    assert newer in [key.kid for key in signer.every_key()]

    (own_keys_dir / "hub.audit.jwk").chmod(0o644)
    keystore_clocks.advance(1)
    KeystoreFolder(own_keys_dir).retire(str(older))
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    assert [key.kid for key in signer.every_key()] == [newer]


@pytest.mark.parametrize("private_file", ["reads", "refused"])
def test_another_keystores_jwks_restored_by_mistake_is_not_applied(
    private_file: str, own_keys_dir: Path, tmp_path: Path, keystore_clocks: KeystoreClocks
) -> None:
    """Review of stop 48's own commits: a staging folder's jwks.json copied over this
    one failed the complete reading ("dgal has no active signing key") and its keys were
    taken: the genuine hub refused, the staging hub's key accepted. Unless our private
    file is what fails, and the public key set lists our keys as we hold them, the keys
    loaded before are kept whole."""
    staging = tmp_path / "staging"
    KeystoreFolder(staging).init(list(PARTIES), force=True)
    staging_hub = str(PartyKeys.load(staging, "hub").signing_key.kid)
    dgal_keys = PartyKeys.load(own_keys_dir, "dgal")
    dgal = JoseEnvelope(dgal_keys, Entitlements.from_registry(TOPICS), MemoryReplayGuard())
    genuine = seal(running(own_keys_dir, "hub"))
    if private_file == "refused":
        make_private_file_unusable(own_keys_dir, "dgal")
    shutil.copy(staging / PUBLIC_JWKS, own_keys_dir / PUBLIC_JWKS)
    keystore_clocks.advance(KEY_RECHECK_S + 1)
    assert dgal.open(genuine, topic=REQUEST).sender == "hub"
    assert staging_hub not in dgal_keys.public
