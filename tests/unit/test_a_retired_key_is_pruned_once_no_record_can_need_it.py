"""A retired key's private part is removed (``gun-hub keys prune``) once no record it
could still serve can be in the log, and a late record sealed to it is refused saying so.

Since stop 38 a retired encryption key still decrypts the backlog the broker accepted
before its retirement, so rotation keeps every old private part in ``P.jwk``; nothing
ever removed them, and a key store stolen years later opened everything ever sealed to
any of them (review stop 38-s). A record encrypted to a key before its retirement stays
readable at most twice the retention of the topics addressed to its party (a segment is
deleted only once its newest record is past the retention): after that the private part
serves nothing. The public part stays in ``jwks.json``, so a late record is dead-lettered
as a retired key whose private part was pruned, never as an unknown key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.security.entitlements import CLEARANCE_PARTY, Entitlements
from gun_contract.security.keystore import (
    KeyStatus,
    KeystoreFolder,
    KeyUse,
    PartyKeys,
    prune_decision,
)
from gun_contract.topics import topic_registry
from gun_hub.cli import app
from gun_hub.security.factory import readable_s
from tests.conftest import envelope_of
from tests.keystore_fixtures import (
    BrokerRetentions,
    key_of,
    private_kids,
    retired_after_a_rotation,
)

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
REQUESTS = TOPICS.requests("dgal")
PAYLOAD = b'{"reference": "26FR000690I0000012"}'
NOW = datetime.now(UTC).replace(microsecond=0)  # retirements cannot be dated ahead
KEEP = timedelta(days=14)  # twice the request topics' retention (seven days)


# -- the rule ----------------------------------------------------------------------------


def test_a_current_key_is_never_pruned_even_forced(own_keys_dir: Path) -> None:
    active = key_of(own_keys_dir, "dgal", KeyUse.ENC, KeyStatus.ACTIVE)
    for force in (False, True):
        decision = prune_decision(active, now=NOW, keep_for=KEEP, force=force)
        assert not decision.prunable
        assert "retire it first" in decision.reason


def test_an_encryption_key_is_pruned_only_once_its_backlog_can_have_left_the_log(
    own_keys_dir: Path,
) -> None:
    old_enc, _ = retired_after_a_rotation(own_keys_dir, "dgal", NOW - timedelta(days=20))
    key = KeystoreFolder(own_keys_dir).public_keys()[old_enc]
    retired = key.retired_at
    assert retired is not None
    too_soon = prune_decision(key, now=retired + KEEP - timedelta(seconds=1), keep_for=KEEP)
    assert not too_soon.prunable
    assert "--force" in too_soon.reason
    assert prune_decision(key, now=retired + KEEP, keep_for=KEEP).prunable
    forced = prune_decision(key, now=retired + timedelta(hours=1), keep_for=KEEP, force=True)
    assert forced.prunable
    assert "forced" in forced.reason


def test_a_retired_signing_key_serves_nothing_its_private_part_could_do(own_keys_dir: Path) -> None:
    """What a retired signing key signs is refused from its retirement on: its private
    part is needed for nothing, however recent the retirement."""
    _, old_sig = retired_after_a_rotation(own_keys_dir, "dgal", NOW - timedelta(minutes=1))
    key = KeystoreFolder(own_keys_dir).public_keys()[old_sig]
    assert prune_decision(key, now=NOW, keep_for=KEEP).prunable


def test_how_long_a_key_is_needed_follows_the_retention_of_the_topics_addressed_to_it() -> None:
    entitlements = Entitlements.from_registry(TOPICS)
    assert readable_s(TOPICS, entitlements, "dgal") == KEEP.total_seconds()
    assert readable_s(TOPICS, entitlements, CLEARANCE_PARTY) == 60 * 86_400


# -- the keystore ------------------------------------------------------------------------


def test_pruning_removes_the_private_parts_and_keeps_the_public_ones(own_keys_dir: Path) -> None:
    old_enc, old_sig = retired_after_a_rotation(own_keys_dir, "dgal", NOW - timedelta(days=20))
    store = KeystoreFolder(own_keys_dir)
    said = store.prune("dgal", keep_for=KEEP, now=NOW, apply=False)  # the dry run
    assert {d.kid for d in said if d.prunable} == {old_enc, old_sig}
    assert {old_enc, old_sig} <= private_kids(own_keys_dir, "dgal")  # nothing removed yet

    store.prune("dgal", keep_for=KEEP, now=NOW, apply=True)
    assert not {old_enc, old_sig} & private_kids(own_keys_dir, "dgal")
    assert {old_enc, old_sig} <= set(store.public_keys())  # the kids stay known
    keys = PartyKeys.load(own_keys_dir, "dgal")
    assert old_enc not in keys.retired_decryption_keys
    assert keys.pruned_decryption_keys[old_enc].pruned == NOW.isoformat(timespec="seconds")
    # The new generation still works, and the state key is kept.
    assert keys.decryption_keys
    assert keys.signing_key
    assert json.loads((own_keys_dir / "dgal.jwk").read_text())["state_keys"]
    # A later rotation keeps the record of what was pruned.
    store.rotate("dgal")
    assert old_enc in PartyKeys.load(own_keys_dir, "dgal").pruned_decryption_keys


def test_a_key_retired_too_recently_is_kept_unless_forced(own_keys_dir: Path) -> None:
    old_enc, _ = retired_after_a_rotation(own_keys_dir, "dgal", NOW - timedelta(days=3))
    store = KeystoreFolder(own_keys_dir)
    store.prune("dgal", keep_for=KEEP, now=NOW, apply=True)
    assert old_enc in private_kids(own_keys_dir, "dgal")
    store.prune("dgal", keep_for=KEEP, now=NOW, apply=True, force=True)
    assert old_enc not in private_kids(own_keys_dir, "dgal")


# -- a late record ---------------------------------------------------------------------


def test_a_record_sealed_to_a_pruned_key_is_refused_as_retired_and_pruned(
    own_keys_dir: Path,
) -> None:
    sealed = envelope_of("hub", TOPICS, own_keys_dir).seal(
        PAYLOAD, recipient="dgal", topic=REQUESTS, content_type=ContentType.JSON
    )
    accepted = datetime.now(UTC) - timedelta(days=20)  # the broker took it then
    old_enc, _ = retired_after_a_rotation(own_keys_dir, "dgal", accepted + timedelta(hours=1))
    KeystoreFolder(own_keys_dir).prune("dgal", keep_for=KEEP, apply=True)

    adapter = envelope_of("dgal", TOPICS, own_keys_dir)
    with pytest.raises(EnvelopeRejected) as refused:
        adapter.open(
            sealed,
            topic=REQUESTS,
            position=f"{REQUESTS}/0/7",
            accepted_at=accepted.timestamp(),
        )
    assert refused.value.kind is Kind.RETIRED_KEY
    reason = str(refused.value)
    assert old_enc in reason
    assert "pruned" in reason
    assert "retired on" in reason


def test_the_command_says_what_it_would_prune_and_prunes_only_when_told(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_enc, old_sig = retired_after_a_rotation(
        own_keys_dir, "dgal", datetime.now(UTC) - timedelta(days=61)
    )
    recent, _ = retired_after_a_rotation(
        own_keys_dir, "dgal", datetime.now(UTC) - timedelta(days=1)
    )
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(own_keys_dir))

    # The broker keeps the topics as the registry says (it is asked since stop 39-S:
    # test_a_key_is_pruned_only_once_the_brokers_retention_has_passed.py).
    BrokerRetentions.as_registered(monkeypatch, TOPICS)
    runner = CliRunner()

    dry = runner.invoke(app, ["keys", "prune", "--party", "dgal", "--dir", str(own_keys_dir)])
    assert dry.exit_code == 0, dry.output
    assert f"would prune dgal enc {old_enc}" in dry.output
    assert f"keep dgal enc {recent}" in dry.output
    assert "--apply" in dry.output
    assert old_enc in private_kids(own_keys_dir, "dgal")

    shorter = runner.invoke(
        app, ["keys", "prune", "--party", "dgal", "--older-than", "1", "--dir", str(own_keys_dir)]
    )
    assert shorter.exit_code != 0
    # The days a record can be needed, named: twice gun.dlq's 30 (an adapter's dead
    # letters are redriven since stop 40).
    assert "60" in shorter.output

    done = runner.invoke(
        app, ["keys", "prune", "--party", "dgal", "--apply", "--dir", str(own_keys_dir)]
    )
    assert done.exit_code == 0, done.output
    assert f"pruned dgal enc {old_enc}" in done.output
    assert not {old_enc, old_sig} & private_kids(own_keys_dir, "dgal")
    assert recent in private_kids(own_keys_dir, "dgal")
