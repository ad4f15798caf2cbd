"""``gun-hub keys prune`` asks the broker how long the topics addressed to a party keep
their records, and keeps a retired encryption key while that says a record encrypted to it
can still be there (review stop 39-S, S2).

The prune judged by the topic registry's retention alone (7 days, so 14 after the
retirement). docs/operations.md has operators lengthen a request topic's retention for a
partner's outage and run the prune daily from cron: the cron prune then removed the key
while the unread requests encrypted to it were still in the log, and the adapter
dead-lettered each of them as ENVELOPE_RETIRED_KEY (not redrivable, ADR 0010). It now takes
the longer of the registry's and the broker's retention (twice it, as before); a topic
kept for ever keeps the key unless ``--older-than`` and ``--force`` say otherwise; with no
broker to ask, encryption keys are pruned only when ``--older-than`` states the span
(signing keys need no broker). Since stop 40 an adapter's key is also kept as long as
``gun.dlq`` keeps its dead letters (a redrive opens the original: 30 days, so 60 after the
retirement), so the backlog here waited longer than that.

The broker is stood in for by the function the command asks it through (a unit test); the
same command on a real broker: tests/integration/test_keys_prune_asks_the_broker.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import gun_hub.cli.keys as keys_cli
from gun_contract.envelope import ContentType, EnvelopeRejected
from gun_contract.kafka.client import Connect
from gun_contract.security.entitlements import Entitlements
from gun_contract.security.keystore import KeystoreFolder, KeyUse
from gun_contract.topics import topic_registry
from gun_hub.security.key_retention import needed_after_retirement
from tests.conftest import envelope_of
from tests.keystore_fixtures import (
    DAY_MS,
    BrokerRetentions,
    active_kid,
    keys_prune,
    private_kids,
    retired_after_a_rotation,
)

TOPICS = topic_registry("gun", ["cites", "dga", "dgal"])
REQUESTS = TOPICS.requests("dgal")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def nothing_listens_at_the_bootstrap(own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command finds this test's own keys, and no broker unless one is stood in."""
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(own_keys_dir))
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing there


def backlog_then_retired(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[bytes, float, str]:
    """A request sealed to dgal's encryption key and accepted 62 days ago (dgal's partner
    is down, its unread backlog waits); dgal rotates and retires that key as of 61 days
    ago, past the 60 its dead letters need it. The request, when the broker accepted it,
    and the retired key id."""
    accepted_at = (NOW - timedelta(days=62)).timestamp()
    with monkeypatch.context() as then:  # sealed then, as the broker accepted it
        then.setattr(time, "time", lambda: accepted_at)  # the envelope's clock (jose_envelope)
        backlog = envelope_of("hub", TOPICS, folder).seal(
            b"<r/>", recipient="dgal", topic=REQUESTS, content_type=ContentType.XML
        )
    [old_enc] = retired_after_a_rotation(
        folder, "dgal", NOW - timedelta(days=61), uses=[KeyUse.ENC], use_from=NOW
    )
    assert opens(folder, backlog, accepted_at)
    return backlog, accepted_at, old_enc


def opens(folder: Path, sealed: bytes, accepted_at: float) -> bool:
    try:
        envelope_of("dgal", TOPICS, folder).open(sealed, topic=REQUESTS, accepted_at=accepted_at)
    except EnvelopeRejected:
        return False
    return True


def prune(*args: str) -> tuple[int, str, str]:
    return keys_prune("dgal", *args)


# -- how long, from what --------------------------------------------------------------------


def test_the_span_is_twice_the_longer_of_the_registrys_and_the_brokers_retention() -> None:
    entitlements = Entitlements.from_registry(TOPICS)
    as_registered = needed_after_retirement(TOPICS, entitlements, "dgal", {})
    assert as_registered.span == timedelta(days=60)  # twice gun.dlq's 30 (stop 40)
    shortened = needed_after_retirement(TOPICS, entitlements, "dgal", {REQUESTS: 1 * DAY_MS})
    assert shortened.span == timedelta(days=60)  # the registry's still holds
    lengthened = needed_after_retirement(TOPICS, entitlements, "dgal", {REQUESTS: 45 * DAY_MS})
    assert lengthened.span == timedelta(days=90)
    assert REQUESTS in lengthened.because
    assert "45 days" in lengthened.because
    for_ever = needed_after_retirement(TOPICS, entitlements, "dgal", {REQUESTS: None})
    assert for_ever.span is None
    assert REQUESTS in for_ever.because
    # Another party's topic changes nothing for dgal.
    other = needed_after_retirement(
        TOPICS, entitlements, "dgal", {TOPICS.requests("cites"): 90 * DAY_MS}
    )
    assert other.span == timedelta(days=60)


def test_the_hubs_key_is_kept_as_long_as_its_dead_letters_can_be_redriven() -> None:
    """A redrive opens the dead letter's original, sealed to the hub, for as long as
    ``gun.dlq`` keeps it (30 days; ADR 0010): the hub's key is needed that long after its
    retirement, twice over, not only the 7 days of its own input topics."""
    entitlements = Entitlements.from_registry(TOPICS)
    dead_letters_kept = next(s.retention_ms for s in TOPICS.specs() if s.name == TOPICS.dlq)
    assert dead_letters_kept is not None
    as_registered = needed_after_retirement(TOPICS, entitlements, "hub", {})
    assert as_registered.span == 2 * timedelta(milliseconds=dead_letters_kept)
    lengthened = needed_after_retirement(TOPICS, entitlements, "hub", {TOPICS.dlq: 90 * DAY_MS})
    assert lengthened.span == timedelta(days=180)
    assert TOPICS.dlq in lengthened.because


def test_an_adapters_key_is_kept_as_long_as_its_dead_letters_can_be_redriven() -> None:
    """Since stop 40 an adapter honours a redrive of its own dead letters (ADR 0010,
    addendum): the redrive opens the original request, sealed to the adapter, for as long
    as ``gun.dlq`` keeps the dead letter, as the hub's own. Pruned after twice the request
    topic's 7 days, the key left a dead letter fixed by a key import unredrivable
    (ENVELOPE_RETIRED_KEY on the redrive)."""
    entitlements = Entitlements.from_registry(TOPICS)
    dead_letters_kept = next(s.retention_ms for s in TOPICS.specs() if s.name == TOPICS.dlq)
    assert dead_letters_kept is not None
    for authority in TOPICS.authorities:
        as_registered = needed_after_retirement(TOPICS, entitlements, authority, {})
        assert as_registered.span == 2 * timedelta(milliseconds=dead_letters_kept), authority
    lengthened = needed_after_retirement(TOPICS, entitlements, "dgal", {TOPICS.dlq: 90 * DAY_MS})
    assert lengthened.span == timedelta(days=180)
    assert TOPICS.dlq in lengthened.because
    # The clearance reader's dead letters are not redriven: its key owes gun.dlq nothing.
    assert (
        needed_after_retirement(TOPICS, entitlements, "clearance", {TOPICS.dlq: 90 * DAY_MS}).span
        == needed_after_retirement(TOPICS, entitlements, "clearance", {}).span
    )


# -- the command --------------------------------------------------------------------------


def test_prune_keeps_a_key_whose_backlog_the_broker_still_keeps(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's case, the broker reachable: the request topic lengthened to 45 days."""
    backlog, accepted_at, old_enc = backlog_then_retired(own_keys_dir, monkeypatch)
    broker = BrokerRetentions(monkeypatch, {REQUESTS: 45 * DAY_MS})

    code, out, err = prune("--apply")
    assert code == 0, out + err
    assert broker.asked
    assert REQUESTS in broker.asked[0]
    assert f"keep dgal enc {old_enc}" in out
    assert "90 days" in out  # twice the broker's 45
    assert old_enc in private_kids(own_keys_dir, "dgal")
    assert opens(own_keys_dir, backlog, accepted_at)

    # The outage over, the retention set back: the same cron prune removes it.
    broker.retention_ms[REQUESTS] = 7 * DAY_MS
    code, out, err = prune("--apply")
    assert code == 0, out + err
    assert f"pruned dgal enc {old_enc}" in out
    assert old_enc not in private_kids(own_keys_dir, "dgal")


def test_with_no_broker_to_ask_encryption_keys_are_pruned_only_when_the_span_is_stated(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reviewer's reproduction as it was: nothing listens at the bootstrap address."""
    old_sig = active_kid(own_keys_dir, "dgal", KeyUse.SIG)
    backlog, accepted_at, old_enc = backlog_then_retired(own_keys_dir, monkeypatch)
    KeystoreFolder(own_keys_dir).retire(old_sig)
    code, out, err = prune("--apply")
    assert code == 1, out + err  # a cron job shows it: the keys it should judge were not
    [why] = [line for line in err.splitlines() if line.strip()]
    assert "127.0.0.1:9" in why
    assert "--older-than" in why
    assert f"keep dgal enc {old_enc}" in out
    assert old_enc in private_kids(own_keys_dir, "dgal")
    assert opens(own_keys_dir, backlog, accepted_at)
    assert f"pruned dgal sig {old_sig}" in out  # a signing key needs no broker
    assert old_sig not in private_kids(own_keys_dir, "dgal")

    # The operator states the span (knowing the topics' retention): that is taken.
    code, out, err = prune("--apply", "--older-than", "60")
    assert code == 0, out + err
    assert f"pruned dgal enc {old_enc}" in out
    assert old_enc not in private_kids(own_keys_dir, "dgal")


def test_with_no_broker_a_retired_signing_key_is_still_pruned(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to ask the broker for: what a retired signing key signs is refused anyway."""
    [old_sig] = retired_after_a_rotation(own_keys_dir, "dgal", uses=[KeyUse.SIG], use_from=NOW)

    async def never(connect: Connect, names: Sequence[str]) -> dict[str, int | None]:
        raise AssertionError(f"the broker was asked about {names}")

    monkeypatch.setattr(keys_cli, "retentions_on_the_broker", never)
    code, out, err = prune("--apply")
    assert code == 0, out + err
    assert f"pruned dgal sig {old_sig}" in out
    assert old_sig not in private_kids(own_keys_dir, "dgal")


def test_a_topic_kept_for_ever_keeps_the_key_unless_a_span_is_stated_and_forced(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, old_enc = backlog_then_retired(own_keys_dir, monkeypatch)
    BrokerRetentions(monkeypatch, {REQUESTS: None})  # retention.ms -1

    code, out, err = prune("--apply", "--force")
    assert code == 0, out + err
    assert f"keep dgal enc {old_enc}" in out
    assert "for ever" in out
    assert old_enc in private_kids(own_keys_dir, "dgal")

    code, out, err = prune("--apply", "--older-than", "10")
    assert code == 1
    assert "for ever" in out + err
    assert "--force" in out + err
    assert old_enc in private_kids(own_keys_dir, "dgal")

    code, out, err = prune("--apply", "--older-than", "10", "--force")
    assert code == 0, out + err
    assert f"pruned dgal enc {old_enc}" in out
    assert old_enc not in private_kids(own_keys_dir, "dgal")


def test_a_stated_span_shorter_than_the_brokers_needs_force(
    own_keys_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, old_enc = backlog_then_retired(own_keys_dir, monkeypatch)
    BrokerRetentions(monkeypatch, {REQUESTS: 45 * DAY_MS})
    code, out, err = prune("--apply", "--older-than", "60")
    assert code == 1
    assert "90" in out + err
    assert old_enc in private_kids(own_keys_dir, "dgal")
