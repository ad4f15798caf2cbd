"""The audit trail: hash-chained per partition, checkpoints signed by the hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from joserfc.jwk import ECKey

from gun_hub.security.audit import AuditTrail, LoggedRecord, verify_chain
from gun_hub.security.keystore import PartyKeys


@pytest.fixture
def hub_keys(keys_dir: Path) -> PartyKeys:
    return PartyKeys.load(keys_dir, "hub")


def write(trail: AuditTrail, entries: list[tuple[int, dict[str, object]]]) -> list[LoggedRecord]:
    """Append entries and lay them out as the topic would: offsets per partition."""
    log: list[LoggedRecord] = []
    offsets: dict[int, int] = {}
    for partition, body in entries:
        for value in trail.append(partition, body):
            offset = offsets.get(partition, 0)
            offsets[partition] = offset + 1
            log.append(LoggedRecord(partition, offset, value))
    return log


def decisions(count: int, partitions: int = 2) -> list[tuple[int, dict[str, object]]]:
    return [
        (n % partitions, {"kind": "DECISION", "reference": f"REF{n:05d}", "outcome": "RELEASE"})
        for n in range(count)
    ]


def test_an_untouched_trail_verifies_with_its_checkpoints(hub_keys: PartyKeys) -> None:
    log = write(AuditTrail({}, hub_keys.signing_key, checkpoint_every=10), decisions(45))
    report = verify_chain(log, hub_keys.public)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.by_kind["DECISION"] == 45
    assert report.checkpoints == 4  # two per partition: after seq 10 and 20 of each
    assert report.orphans == 0


def test_flipping_one_byte_of_one_record_is_detected_at_that_record(hub_keys: PartyKeys) -> None:
    log = write(AuditTrail({}, hub_keys.signing_key, checkpoint_every=10), decisions(30))
    victim = 17
    altered = bytearray(log[victim].value)
    position = altered.index(b"RELEASE")
    altered[position] ^= 0x20  # "RELEASE" -> "rELEASE"
    log[victim] = LoggedRecord(log[victim].partition, log[victim].offset, bytes(altered))
    report = verify_chain(log, hub_keys.public)
    assert not report.intact
    [broken] = report.broken
    assert (broken.partition, broken.offset) == (log[victim].partition, log[victim].offset)
    assert "altered" in broken.reason


def test_a_removed_record_breaks_the_chain(hub_keys: PartyKeys) -> None:
    log = write(AuditTrail({}, hub_keys.signing_key, checkpoint_every=100), decisions(10, 1))
    del log[4]
    [broken] = verify_chain(log, hub_keys.public).broken
    assert broken.seq == 5
    assert "missing" in broken.reason


def test_a_rewritten_history_without_the_hub_key_fails_at_the_checkpoint(
    hub_keys: PartyKeys,
) -> None:
    forger = ECKey.generate_key("P-256", parameters={"kid": hub_keys.signing_key.kid}, private=True)
    forged = write(AuditTrail({}, forger, checkpoint_every=5), decisions(5, 1))
    # The forger chained every hash correctly; only the checkpoint signature gives it away.
    report = verify_chain(forged, hub_keys.public)
    [broken] = report.broken
    assert "signature" in broken.reason


def test_an_intact_record_left_behind_by_a_crash_is_an_orphan_not_a_break(
    hub_keys: PartyKeys,
) -> None:
    heads: dict[bytes, bytes] = {}
    trail = AuditTrail(heads, hub_keys.signing_key, checkpoint_every=100)
    log = write(trail, decisions(3, 1))
    saved = dict(heads)
    log += [LoggedRecord(0, 3, trail.append(0, {"kind": "DECISION", "reference": "LOST"})[0])]
    heads.clear()
    heads.update(saved)  # the head of the lost record was never persisted
    log += [
        LoggedRecord(0, 4 + i, value)
        for i, value in enumerate(trail.append(0, {"kind": "DECISION", "reference": "NEXT"}))
    ]
    report = verify_chain(log, hub_keys.public)
    assert report.intact
    assert report.orphans == 1
    assert report.by_kind["DECISION"] == 4


def test_garbage_in_the_topic_is_a_break(hub_keys: PartyKeys) -> None:
    log = write(AuditTrail({}, hub_keys.signing_key), decisions(2, 1))
    log.append(LoggedRecord(0, 2, b"not json"))
    assert not verify_chain(log, hub_keys.public).intact


def test_records_are_canonical_json(hub_keys: PartyKeys) -> None:
    [value] = AuditTrail({}, hub_keys.signing_key, checkpoint_every=100).append(
        3, {"kind": "DECISION", "reference": "R"}
    )
    record = json.loads(value)
    assert (record["partition"], record["seq"], record["prev"]) == (3, 1, "0" * 64)
    assert value == json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
