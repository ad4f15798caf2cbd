"""A rotated key is published before it is used, and a reader looks at its key files again
before refusing a key id it does not know (review stop 39-U, U1).

``gun-hub keys rotate P`` had P sign (and its peers encrypt to P) with the new key as soon
as P's process read its files again, while a reader that had not read ``jwks.json`` yet
refused those records as ENVELOPE_UNKNOWN_KID and dead-lettered them for good: requests
never asked, a cancellation's deletion never sent, a reservation held for ever. Now a
rotation publishes the new keys with a ``use_from`` time (ten minutes ahead by default)
and they sign and are encrypted to only from then on, readers accepting them from the
moment they see them; and a reader refused an unknown key id looks at its files again
before it refuses (at what cost:
``test_a_forged_key_id_never_delays_a_key_published_a_moment_ago.py``).

The keystore's clocks are moved, never slept on: ``keystore_clocks.monotonic`` for when
files are looked at again, its wall clock for the time a key comes into use.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.health import CircuitStatus, PartnerHealth
from gun_contract.heartbeats import HeartbeatGate
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import (
    KEY_RECHECK_S,
    ROTATION_GRACE,
    KeystoreFolder,
    KeyUse,
    PartyKeys,
)
from gun_contract.topics import topic_registry
from gun_hub.cli import app
from tests.conftest import envelope_of
from tests.keystore_fixtures import KeystoreClocks, new_kid, protected_header

TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))
REQUESTS = TOPICS.requests("dgal")
RESPONSES = TOPICS.responses("dgal")


def running(folder: Path, party: str) -> JoseEnvelope:
    """``party``'s envelope as its process builds it at start-up (it then follows the files)."""
    return envelope_of(party, TOPICS, folder)


def request(hub: JoseEnvelope) -> bytes:
    return hub.seal(b"<r/>", recipient="dgal", topic=REQUESTS, content_type=ContentType.XML)


def refusal(envelope: JoseEnvelope, sealed: bytes, topic: str = REQUESTS) -> EnvelopeRejected:
    with pytest.raises(EnvelopeRejected) as refused:
        envelope.open(sealed, topic=topic, accepted_at=time.time())
    return refused.value


# -- publish before use --------------------------------------------------------------------


def test_a_request_signed_right_after_the_hubs_rotation_is_opened_by_the_adapter(
    tmp_path: Path,
) -> None:
    """The reviewer's race, as it was found: the adapter running since before the rotation,
    the hub's process reading its files first (its recheck came due, or it restarted)."""
    KeystoreFolder(tmp_path).init(["hub", "dgal", "cites", "dga"], force=True)
    adapter = running(tmp_path, "dgal")
    adapter.open(request(running(tmp_path, "hub")), topic=REQUESTS, accepted_at=time.time())

    KeystoreFolder(tmp_path).rotate("hub")  # gun-hub keys rotate hub
    hub = running(tmp_path, "hub")
    opened = adapter.open(request(hub), topic=REQUESTS, accepted_at=time.time())
    assert opened.sender == "hub"


def test_rotated_keys_sign_and_are_encrypted_to_only_from_their_use_time(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    old_signing = str(PartyKeys.load(own_keys_dir, "hub").signing_key.kid)
    [old_encryption] = PartyKeys.load(own_keys_dir, "dgal").decryption_keys
    hub_kids = KeystoreFolder(own_keys_dir).rotate("hub")
    dgal_kids = KeystoreFolder(own_keys_dir).rotate("dgal")
    hub = running(own_keys_dir, "hub")  # reads the new keys at once: they are published

    sealed = request(hub)
    assert protected_header(sealed)["kid"] == old_encryption  # dgal's new key is not in use yet
    adapter = running(own_keys_dir, "dgal")
    assert adapter.open(sealed, topic=REQUESTS).signing_kid == old_signing

    # The grace passes: no file changes, the hub's process switches on its own.
    keystore_clocks.advance(ROTATION_GRACE.total_seconds() + 1)
    sealed = request(hub)
    assert protected_header(sealed)["kid"] == new_kid(dgal_kids, KeyUse.ENC)
    assert adapter.open(sealed, topic=REQUESTS).signing_kid == new_kid(hub_kids, KeyUse.SIG)


def test_a_reader_accepts_a_published_key_before_its_use_time(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    """A sender whose clock runs ahead (or one told to use it now, on another machine)
    uses the key early: every reader that has it accepts it from the moment it sees it."""
    hub_kids = KeystoreFolder(own_keys_dir).rotate("hub")
    adapter = running(own_keys_dir, "dgal")
    keystore_clocks.advance(ROTATION_GRACE.total_seconds() + 1)
    early = request(running(own_keys_dir, "hub"))
    keystore_clocks.offset = timedelta(0)  # the reader's clock: before the use time
    assert adapter.open(early, topic=REQUESTS).signing_kid == new_kid(hub_kids, KeyUse.SIG)


def test_retiring_the_old_key_before_the_use_time_puts_the_new_one_in_use(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    """A leaked key retired at once: its successor signs, published or not for long."""
    old = str(PartyKeys.load(own_keys_dir, "hub").signing_key.kid)
    hub_kids = KeystoreFolder(own_keys_dir).rotate("hub")
    KeystoreFolder(own_keys_dir).retire(old)
    sealed = request(running(own_keys_dir, "hub"))
    assert running(own_keys_dir, "dgal").open(sealed, topic=REQUESTS).signing_kid == new_kid(
        hub_kids, KeyUse.SIG
    )


def test_the_use_time_travels_with_the_export(
    tmp_path: Path, keystore_clocks: KeystoreClocks
) -> None:
    """On another machine: the hub encrypts to dgal's imported new key from dgal's use
    time on, not from the import."""
    hub_machine, dgal_machine = tmp_path / "hub", tmp_path / "dgal"
    KeystoreFolder(hub_machine).init_party("hub")
    KeystoreFolder(dgal_machine).init_party("dgal")
    first = KeystoreFolder(dgal_machine).export_public("dgal")
    KeystoreFolder(hub_machine).import_public(first, party="dgal", source="dgal.jwks")
    [old_encryption] = PartyKeys.load(dgal_machine, "dgal").decryption_keys
    kids = KeystoreFolder(dgal_machine).rotate("dgal")
    rotated = KeystoreFolder(dgal_machine).export_public("dgal")
    KeystoreFolder(hub_machine).import_public(rotated, party="dgal", source="dgal.jwks")

    hub_keys = PartyKeys.load(hub_machine, "hub")
    assert hub_keys.encryption_key_for("dgal").kid == old_encryption
    keystore_clocks.advance(ROTATION_GRACE.total_seconds() + 1)
    assert hub_keys.encryption_key_for("dgal").kid == new_kid(kids, KeyUse.ENC)


def test_rotate_on_the_command_line_says_when_the_keys_come_into_use(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(own_keys_dir))
    runner = CliRunner()
    published = runner.invoke(app, ["keys", "rotate", "hub", "--dir", str(own_keys_dir)])
    assert published.exit_code == 0, published.output
    assert "in use from" in published.output
    listed = runner.invoke(app, ["keys", "list", "--dir", str(own_keys_dir)])
    assert "published, in use from" in listed.output

    at_once = runner.invoke(
        app, ["keys", "rotate", "dgal", "--use-now", "--dir", str(own_keys_dir)]
    )
    assert at_once.exit_code == 0, at_once.output
    kid = at_once.output.split("new keys ")[1].split(",")[0].strip()
    assert str(PartyKeys.load(own_keys_dir, "dgal").signing_key.kid) == kid

    before = (own_keys_dir / "jwks.json").read_text()
    both = CliRunner().invoke(
        app,
        ["keys", "rotate", "cites", "--use-now", "--use-from", "2030-01-01T00:00:00"],
    )
    assert both.exit_code == 2
    assert (own_keys_dir / "jwks.json").read_text() == before


# -- a reader looks again before refusing an unknown key id --------------------------------


def test_a_reader_looks_at_its_files_again_before_refusing_an_unknown_signing_key(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    """Used at once (--use-now, the single-machine or leaked-key case): the adapter has not
    reached its 5 s recheck, yet opens what the hub signs with the new key."""
    adapter = running(own_keys_dir, "dgal")
    kids = KeystoreFolder(own_keys_dir).rotate("hub", use_from=keystore_clocks.wall())
    sealed = request(running(own_keys_dir, "hub"))
    keystore_clocks.monotonic += KEY_RECHECK_S / 10
    assert adapter.open(sealed, topic=REQUESTS).signing_kid == new_kid(kids, KeyUse.SIG)


def test_a_reader_looks_again_before_refusing_an_unknown_encryption_key(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    """dgal's own key, rotated at once by another of its processes: the hub encrypts to it
    before this adapter process's recheck."""
    adapter = running(own_keys_dir, "dgal")
    kids = KeystoreFolder(own_keys_dir).rotate("dgal", use_from=keystore_clocks.wall())
    sealed = request(running(own_keys_dir, "hub"))
    assert protected_header(sealed)["kid"] == new_kid(kids, KeyUse.ENC)
    assert adapter.open(sealed, topic=REQUESTS).sender == "hub"


def test_a_signed_heartbeat_under_a_key_published_a_moment_ago_is_taken(
    own_keys_dir: Path, keystore_clocks: KeystoreClocks
) -> None:
    gate = HeartbeatGate(PartyKeys.load(own_keys_dir, "hub"), Entitlements.from_registry(TOPICS))
    kids = KeystoreFolder(own_keys_dir).rotate("dgal", use_from=keystore_clocks.wall())
    health = PartnerHealth(
        authority="dgal",
        adapter="adapter.dgal",
        circuit=CircuitStatus.CLOSED,
        pending_operations=0,
        at=datetime.now(UTC),
        every_s=5.0,
    )
    signed = running(own_keys_dir, "dgal").sign(
        health.model_dump_json().encode(), topic=TOPICS.ops_health, content_type=ContentType.JSON
    )
    assert protected_header(signed)["kid"] == new_kid(kids, KeyUse.SIG)
    assert gate.check(signed, topic=TOPICS.ops_health).authority == "dgal"


def test_a_successor_in_use_early_is_listed_as_in_use_now(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by review, stop 41 (R4): the old signing key retired before its successor's
    use time (a leak), the hub signs with the successor at once, yet `keys list` said it
    was waiting for its use time: an operator was told he had 10 minutes to hand out the
    new jwks.json when every other machine already met records signed with it."""
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(own_keys_dir))
    runner = CliRunner()
    old = str(PartyKeys.load(own_keys_dir, "hub").signing_key.kid)
    rotated = runner.invoke(app, ["keys", "rotate", "hub", "--dir", str(own_keys_dir)])
    assert rotated.exit_code == 0, rotated.output
    kids = [k.strip() for k in rotated.output.split("new keys ")[1].split(",")[:2]]
    new = new_kid(kids, KeyUse.SIG)
    waiting = runner.invoke(app, ["keys", "list", "--dir", str(own_keys_dir)])
    assert f"{new} (active, published, in use from" in waiting.output

    retired = runner.invoke(app, ["keys", "retire", old, "--dir", str(own_keys_dir)])
    assert retired.exit_code == 0, retired.output
    assert str(PartyKeys.load(own_keys_dir, "hub").signing_key.kid) == new
    assert f"key {new} is in use now" in retired.output
    listed = runner.invoke(app, ["keys", "list", "--dir", str(own_keys_dir)])
    line = next(x for x in listed.output.splitlines() if new in x)
    assert "in use now" in line, line
    assert "in use from" not in line, line
    # The other parties' rotated-but-waiting keys are still listed as waiting.
    others = runner.invoke(app, ["keys", "rotate", "dgal", "--dir", str(own_keys_dir)])
    assert others.exit_code == 0, others.output
    listed = runner.invoke(app, ["keys", "list", "--dir", str(own_keys_dir)])
    dgal_waiting = [x for x in listed.output.splitlines() if x.startswith("dgal sig")]
    assert any("in use from" in x for x in dgal_waiting), dgal_waiting
