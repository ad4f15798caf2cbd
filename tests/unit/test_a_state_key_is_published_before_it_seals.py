"""A rotated state key opens at once and seals only from its use time (review stop 41, R2
and R3; ADR 0020's addendum of stop 41).

``gun-hub keys rotate hub --state`` made a key that sealed from the moment a process read
it. Rolled out as docs/deployment.md says (the Secret replaced, the workers restarted one
at a time), a restarted worker sealed decisions, cases and officers' actions with it while
another worker, not restarted yet, did not hold it: its publisher dead-lettered those
decisions (lost for the clearance system), its audit keeper refused those actions as
forged. Now the new key is written usable to open at once and to seal only from a use
time, ``ROTATION_GRACE`` ahead by default, as envelope keys are (ADR 0020): every worker
restarted before then opens whatever any of them seals.

Each worker here is a pod's own copy of the operator's folder, made at a different moment
around the rotation, as deploy/k8s copies the Secret at each pod's start.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from gun_contract.security.entitlements import HUB_PARTY, Entitlements, parties
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import (
    ROTATION_GRACE,
    KeystoreError,
    KeystoreFolder,
    PartyKeys,
    read_state_keys,
)
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.security.state_cipher import MAGIC, StateCipher, StateKeyMissing
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.cli import app
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.decision_outbox import HEADER_VERSION, OUTBOX_STATE, outbox_record_key
from gun_hub.runtime import publisher as pub
from tests.keystore_fixtures import KeystoreClocks

REFERENCE = b"26FR000690I0000001"
CASE = b'{"reference":"26FR000690I0000001"}'


def pod(operator: Path, where: Path) -> Path:
    """A worker's keys: the operator's folder as it is now, copied (the pod's Secret)."""
    shutil.copytree(operator, where)
    return where


def sealed_with(sealed: bytes) -> str:
    """The key id a sealed value names."""
    size = sealed[len(MAGIC)]
    return sealed[len(MAGIC) + 1 : len(MAGIC) + 1 + size].decode()


def publisher_of(folder: Path, topics: TopicRegistry) -> pub.DecisionPublisher:
    """Worker ``folder``'s decision publisher, as far as opening an outbox record goes."""
    publisher = pub.DecisionPublisher.__new__(pub.DecisionPublisher)
    publisher._outbox_cipher = StateCipher.load(folder, HUB_PARTY)
    publisher._decisions = topics.decisions
    publisher._envelope = JoseEnvelope(
        PartyKeys.load(folder, HUB_PARTY),
        Entitlements.from_registry(topics),
        MemoryReplayGuard(),
    )
    return publisher


def outbox_record(topics: TopicRegistry, sealed: bytes) -> SimpleNamespace:
    return SimpleNamespace(
        topic=topics.decision_outbox,
        partition=0,
        offset=7,
        key=REFERENCE,
        headers=[(HEADER_VERSION, b"1")],
        value=sealed,
    )


@pytest.fixture
def topics(routing_table: RoutingTable) -> TopicRegistry:
    return topic_registry("gun", routing_table.authorities)


def rotate_state(folder: Path, *options: str) -> str:
    result = CliRunner().invoke(
        app, ["keys", "rotate", "hub", "--state", "--dir", str(folder), *options]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_worker_given_the_new_state_key_seals_with_the_old_one_until_its_use_time(
    tmp_path: Path, topics: TopicRegistry, keystore_clocks: KeystoreClocks
) -> None:
    """The reviewer's reproduction: worker A restarted with the new Secret, worker B not
    yet. Before the use time A still seals with the old key, so B's publisher opens (and
    publishes) what A decided; B restarted with the new file before then opens whatever
    A seals after it."""
    operator = tmp_path / "operator"
    KeystoreFolder(operator).init(parties(topics), force=True)
    old_kid = read_state_keys(operator, HUB_PARTY)[-1].kid
    worker_b = pod(operator, tmp_path / "b")  # not restarted yet: the old Secret
    [new_kid] = KeystoreFolder(operator).rotate(HUB_PARTY, state=True)
    worker_a = pod(operator, tmp_path / "a")  # restarted first: the new Secret
    cipher_a = StateCipher.load(worker_a, HUB_PARTY)

    decided = cipher_a.seal(OUTBOX_STATE, outbox_record_key(REFERENCE, b"1"), b"<decision/>")
    assert sealed_with(decided) == old_kid
    assert cipher_a.sealing_kid == old_kid
    assert publisher_of(worker_b, topics)._seal_for_clearance(outbox_record(topics, decided)), (
        "worker B's publisher opens what worker A sealed during the rollout"
    )
    assert (
        StateCipher.load(worker_b, HUB_PARTY).open(
            "cases", REFERENCE, cipher_a.seal("cases", REFERENCE, CASE)
        )
        == CASE
    )

    # B restarted with the new Secret, still before the use time; then the use time comes:
    # A seals with the new key (no restart, no file change), and B opens it.
    worker_b_restarted = pod(operator, tmp_path / "b-restarted")
    cipher_b = StateCipher.load(worker_b_restarted, HUB_PARTY)
    keystore_clocks.advance(ROTATION_GRACE.total_seconds() - 1)
    assert sealed_with(cipher_a.seal("cases", REFERENCE, CASE)) == old_kid
    keystore_clocks.advance(1)
    after = cipher_a.seal("cases", REFERENCE, CASE)
    assert sealed_with(after) == new_kid
    assert cipher_a.sealing_kid == new_kid
    assert cipher_b.open("cases", REFERENCE, after) == CASE
    # What the old key sealed keeps opening.
    assert cipher_b.open(OUTBOX_STATE, outbox_record_key(REFERENCE, b"1"), decided)


def test_a_worker_still_lacking_the_key_after_its_use_time_is_told_which_key(
    tmp_path: Path, topics: TopicRegistry, keystore_clocks: KeystoreClocks
) -> None:
    """The rollout not finished by the use time: the worker without the key meets a value
    it cannot open, and knows it is a key it lacks (it stops naming it, ADR 0022), not a
    value to dead-letter."""
    operator = tmp_path / "operator"
    KeystoreFolder(operator).init([HUB_PARTY], force=True)
    late = pod(operator, tmp_path / "late")
    [new_kid] = KeystoreFolder(operator).rotate(HUB_PARTY, state=True)
    keystore_clocks.advance(ROTATION_GRACE.total_seconds())
    sealed = StateCipher.load(operator, HUB_PARTY).seal("cases", REFERENCE, CASE)
    with pytest.raises(StateKeyMissing) as missing:
        StateCipher.load(late, HUB_PARTY).open("cases", REFERENCE, sealed)
    assert missing.value.kid == new_kid


def test_keys_rotate_state_says_when_the_new_key_seals_from(
    tmp_path: Path, keystore_clocks: KeystoreClocks
) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init([HUB_PARTY], force=True)
    now = keystore_clocks.wall()

    said = rotate_state(folder)
    newest = read_state_keys(folder, HUB_PARTY)[-1]
    assert newest.use_from is not None
    assert abs(newest.use_from - (now + ROTATION_GRACE)) < timedelta(seconds=5)
    assert newest.kid in said
    assert f"seals from {newest.use_from.isoformat(timespec='seconds')}" in said
    assert "restart" in said  # every process must hold it by then

    later = (now + timedelta(hours=2)).replace(microsecond=0)
    rotate_state(folder, "--use-from", later.strftime("%Y-%m-%dT%H:%M:%S%z"))
    assert read_state_keys(folder, HUB_PARTY)[-1].use_from == later

    # "Now" is the key store's clock, the one that judges use times: the real clock
    # read by the command once ticked a second past it (CI, stop 50), and here an hour.
    keystore_clocks.offset -= timedelta(hours=1)
    said = rotate_state(folder, "--use-now")
    newest = read_state_keys(folder, HUB_PARTY)[-1]
    assert newest.use_from is not None
    assert newest.use_from <= keystore_clocks.wall()
    assert "seals from now" in said
    # The one in use now seals: the --use-now key, not the one waiting for two hours.
    assert StateCipher.load(folder, HUB_PARTY).sealing_kid == newest.kid


def test_keys_list_shows_which_state_key_seals_and_from_when(
    tmp_path: Path, keystore_clocks: KeystoreClocks
) -> None:
    """The use time is not only in the rotate command's output, which an operator may not
    have kept (review stop 41, V-b): ``keys list`` names each state key (id and times, never
    its material), the one sealing now and the one waiting for its use time."""
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init([HUB_PARTY], force=True)
    [first] = read_state_keys(folder, HUB_PARTY)
    rotate_state(folder)
    newest = read_state_keys(folder, HUB_PARTY)[-1]
    assert newest.use_from is not None

    listed = CliRunner().invoke(app, ["keys", "list", "--dir", str(folder)])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[2]: line for line in listed.output.splitlines() if " state " in line}
    assert "seals now" in lines[first.kid]
    assert f"seals from {newest.use_from.isoformat(timespec='seconds')}" in lines[newest.kid]
    material = [base64.urlsafe_b64encode(k.secret).rstrip(b"=").decode() for k in (first, newest)]
    assert not [m for m in material if m in listed.output]

    keystore_clocks.advance(ROTATION_GRACE.total_seconds() + 1)
    listed = CliRunner().invoke(app, ["keys", "list", "--dir", str(folder)])
    lines = {line.split()[2]: line for line in listed.output.splitlines() if " state " in line}
    assert "seals now" in lines[newest.kid]
    assert "opens what it sealed" in lines[first.kid]


def test_a_state_key_without_a_use_time_seals_as_before(tmp_path: Path) -> None:
    """Files written before stop 41 hold state keys with no use time: each is in use, the
    newest seals (the format is unchanged for them)."""
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init([HUB_PARTY], force=True)
    path = folder / "hub.jwk"
    data = json.loads(path.read_text())
    [first] = data["state_keys"]
    assert "use_from" not in first  # a party's first state key is in use at once
    second = dict(first, kid="hub-state-20261101T000000-abcdef", k="A" * 43)
    data["state_keys"].append(second)
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    assert StateCipher.load(folder, HUB_PARTY).sealing_kid == second["kid"]


def test_the_first_state_key_of_an_old_file_is_in_use_at_once(tmp_path: Path) -> None:
    """A file made before state keys existed has nothing else to seal with: its first
    state key does not wait."""
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init_party("dga")
    path = folder / "dga.jwk"
    data = json.loads(path.read_text())
    del data["state_keys"]
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    said = rotate_state_of(folder, "dga")
    [key] = read_state_keys(folder, "dga")
    assert key.use_from is None
    assert "seals from now" in said
    assert StateCipher.load(folder, "dga").sealing_kid == key.kid


def rotate_state_of(folder: Path, party: str) -> str:
    result = CliRunner().invoke(app, ["keys", "rotate", party, "--state", "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_use_time_that_is_not_a_time_is_named_by_file(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init([HUB_PARTY], force=True)
    KeystoreFolder(folder).rotate(HUB_PARTY, state=True)
    path = folder / "hub.jwk"
    data = json.loads(path.read_text())
    data["state_keys"][-1]["use_from"] = "next tuesday"
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    with pytest.raises(KeystoreError, match="use_from") as refused:
        read_state_keys(folder, HUB_PARTY)
    assert str(path) in str(refused.value)


def test_the_audit_key_still_takes_no_use_time(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    KeystoreFolder(folder).init([HUB_PARTY], force=True)
    with pytest.raises(KeystoreError, match="audit key"):
        KeystoreFolder(folder).rotate(HUB_PARTY, audit=True, use_from=datetime.now(UTC))
