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
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gun_hub.cli.keys as keys_cli
from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.envelope import EnvelopeRejectionKind as Kind
from gun_contract.kafka.client import Connect
from gun_contract.security.entitlements import CLEARANCE_PARTY, Entitlements
from gun_contract.security.keystore import (
    KeyStatus,
    KeystoreFolder,
    KeyUse,
    PartyKeys,
    PublicKey,
    prune_decision,
)
from gun_contract.topics import topic_registry
from gun_hub.cli import app
from gun_hub.security.factory import readable_s
from tests.conftest import envelope_of

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
REQUESTS = TOPICS.requests("dgal")
PAYLOAD = b'{"reference": "26FR000690I0000012"}'
NOW = datetime.now(UTC).replace(microsecond=0)  # retirements cannot be dated ahead
KEEP = timedelta(days=14)  # twice the request topics' retention (seven days)


@pytest.fixture
def folder(keys_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "keys"
    shutil.copytree(keys_dir, copy)
    return copy


def key_of(folder: Path, party: str, use: KeyUse, status: KeyStatus) -> PublicKey:
    [key] = [
        k
        for k in KeystoreFolder(folder).public_keys().values()
        if k.party == party and k.use is use and k.status is status and not k.purpose
    ]
    return key


def private_kids(folder: Path, party: str) -> set[str]:
    data = json.loads((folder / f"{party}.jwk").read_text())
    return {entry["kid"] for entry in data["keys"]}


def rotated_and_retired(folder: Path, party: str, retired: datetime) -> tuple[str, str]:
    """``party`` rotates, and retires its first generation as of ``retired``: the old
    encryption and signing key ids."""
    old_enc = key_of(folder, party, KeyUse.ENC, KeyStatus.ACTIVE).kid
    old_sig = key_of(folder, party, KeyUse.SIG, KeyStatus.ACTIVE).kid
    KeystoreFolder(folder).rotate(party)
    KeystoreFolder(folder).retire(old_enc, since=retired)
    KeystoreFolder(folder).retire(old_sig, since=retired)
    return old_enc, old_sig


# -- the rule ----------------------------------------------------------------------------


def test_a_current_key_is_never_pruned_even_forced(folder: Path) -> None:
    active = key_of(folder, "dgal", KeyUse.ENC, KeyStatus.ACTIVE)
    for force in (False, True):
        decision = prune_decision(active, now=NOW, keep_for=KEEP, force=force)
        assert not decision.prunable
        assert "retire it first" in decision.reason


def test_an_encryption_key_is_pruned_only_once_its_backlog_can_have_left_the_log(
    folder: Path,
) -> None:
    old_enc, _ = rotated_and_retired(folder, "dgal", NOW - timedelta(days=20))
    key = KeystoreFolder(folder).public_keys()[old_enc]
    retired = key.retired_at
    assert retired is not None
    too_soon = prune_decision(key, now=retired + KEEP - timedelta(seconds=1), keep_for=KEEP)
    assert not too_soon.prunable
    assert "--force" in too_soon.reason
    assert prune_decision(key, now=retired + KEEP, keep_for=KEEP).prunable
    forced = prune_decision(key, now=retired + timedelta(hours=1), keep_for=KEEP, force=True)
    assert forced.prunable
    assert "forced" in forced.reason


def test_a_retired_signing_key_serves_nothing_its_private_part_could_do(folder: Path) -> None:
    """What a retired signing key signs is refused from its retirement on: its private
    part is needed for nothing, however recent the retirement."""
    _, old_sig = rotated_and_retired(folder, "dgal", NOW - timedelta(minutes=1))
    key = KeystoreFolder(folder).public_keys()[old_sig]
    assert prune_decision(key, now=NOW, keep_for=KEEP).prunable


def test_how_long_a_key_is_needed_follows_the_retention_of_the_topics_addressed_to_it() -> None:
    entitlements = Entitlements.from_registry(TOPICS)
    assert readable_s(TOPICS, entitlements, "dgal") == KEEP.total_seconds()
    assert readable_s(TOPICS, entitlements, CLEARANCE_PARTY) == 60 * 86_400


# -- the keystore ------------------------------------------------------------------------


def test_pruning_removes_the_private_parts_and_keeps_the_public_ones(folder: Path) -> None:
    old_enc, old_sig = rotated_and_retired(folder, "dgal", NOW - timedelta(days=20))
    store = KeystoreFolder(folder)
    said = store.prune("dgal", keep_for=KEEP, now=NOW, apply=False)  # the dry run
    assert {d.kid for d in said if d.prunable} == {old_enc, old_sig}
    assert {old_enc, old_sig} <= private_kids(folder, "dgal")  # nothing removed yet

    store.prune("dgal", keep_for=KEEP, now=NOW, apply=True)
    assert not {old_enc, old_sig} & private_kids(folder, "dgal")
    assert {old_enc, old_sig} <= set(store.public_keys())  # the kids stay known
    keys = PartyKeys.load(folder, "dgal")
    assert old_enc not in keys.retired_decryption_keys
    assert keys.pruned_decryption_keys[old_enc].pruned == NOW.isoformat(timespec="seconds")
    # The new generation still works, and the state key is kept.
    assert keys.decryption_keys
    assert keys.signing_key
    assert json.loads((folder / "dgal.jwk").read_text())["state_keys"]
    # A later rotation keeps the record of what was pruned.
    store.rotate("dgal")
    assert old_enc in PartyKeys.load(folder, "dgal").pruned_decryption_keys


def test_a_key_retired_too_recently_is_kept_unless_forced(folder: Path) -> None:
    old_enc, _ = rotated_and_retired(folder, "dgal", NOW - timedelta(days=3))
    store = KeystoreFolder(folder)
    store.prune("dgal", keep_for=KEEP, now=NOW, apply=True)
    assert old_enc in private_kids(folder, "dgal")
    store.prune("dgal", keep_for=KEEP, now=NOW, apply=True, force=True)
    assert old_enc not in private_kids(folder, "dgal")


# -- a late record ---------------------------------------------------------------------


def test_a_record_sealed_to_a_pruned_key_is_refused_as_retired_and_pruned(
    folder: Path,
) -> None:
    sealed = envelope_of("hub", TOPICS, folder).seal(
        PAYLOAD, recipient="dgal", topic=REQUESTS, content_type=ContentType.JSON
    )
    accepted = datetime.now(UTC) - timedelta(days=20)  # the broker took it then
    old_enc, _ = rotated_and_retired(folder, "dgal", accepted + timedelta(hours=1))
    KeystoreFolder(folder).prune("dgal", keep_for=KEEP, apply=True)

    adapter = envelope_of("dgal", TOPICS, folder)
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
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_enc, old_sig = rotated_and_retired(folder, "dgal", datetime.now(UTC) - timedelta(days=20))
    recent, _ = rotated_and_retired(folder, "dgal", datetime.now(UTC) - timedelta(days=1))
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(folder))

    async def as_registered(connect: Connect, names: Sequence[str]) -> dict[str, int | None]:
        """The broker keeps the topics as the registry says (it is asked since stop 39-S:
        test_a_key_is_pruned_only_once_the_brokers_retention_has_passed.py)."""
        return {spec.name: spec.retention_ms for spec in TOPICS.specs() if spec.name in names}

    monkeypatch.setattr(keys_cli, "retentions_on_the_broker", as_registered)
    runner = CliRunner()

    dry = runner.invoke(app, ["keys", "prune", "--party", "dgal", "--dir", str(folder)])
    assert dry.exit_code == 0, dry.output
    assert f"would prune dgal enc {old_enc}" in dry.output
    assert f"keep dgal enc {recent}" in dry.output
    assert "--apply" in dry.output
    assert old_enc in private_kids(folder, "dgal")

    shorter = runner.invoke(
        app, ["keys", "prune", "--party", "dgal", "--older-than", "1", "--dir", str(folder)]
    )
    assert shorter.exit_code != 0
    assert "14" in shorter.output  # the days the topics can keep a record, named

    done = runner.invoke(app, ["keys", "prune", "--party", "dgal", "--apply", "--dir", str(folder)])
    assert done.exit_code == 0, done.output
    assert f"pruned dgal enc {old_enc}" in done.output
    assert not {old_enc, old_sig} & private_kids(folder, "dgal")
    assert recent in private_kids(folder, "dgal")
