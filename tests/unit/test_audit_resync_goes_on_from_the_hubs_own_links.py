"""A worker taking a partition over goes on from the last link the hub itself wrote, never
from one anybody else appended (security/audit.py ``resync``; open since stop 32, closed
in stop 34).

The threat of issue 11, item 3: an attacker may write to the audit topic but does not hold
the hub's audit key. Records appended at the head with a correct hash are caught by
``gun-hub audit verify`` while they wait unsigned, but a worker that took the partition
over read them as its tail, went on from them, and its next checkpoint signed them into
the chain. Each link now carries a MAC made with a key derived from the hub's audit key
(every worker holds it, an auditor needs none of it), and a resync goes on from the
highest link whose MAC holds. What the attacker appended stays off the signed chain: an
orphan to the auditor, logged as not the hub's by the worker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from gun_contract.security.keystore import (
    AUDITING_PARTY,
    MAC_KEY_SETTLES_S,
    AuditSigner,
    KeystoreFolder,
    PublicKey,
)
from gun_hub.security.audit import (
    AuditReport,
    AuditTrail,
    LoggedRecord,
    TailPolicy,
    canonical,
    record_hash,
    verify_chain,
)

EVERY = 10
WITHIN_S = 60.0


def worker(signer: AuditSigner, heads: dict[bytes, bytes]) -> AuditTrail:
    """A hub worker's trail as the hub builds it (a checkpoint at each taking over)."""
    return AuditTrail(
        heads,
        signer,
        checkpoint_every=EVERY,
        checkpoint_within_s=WITHIN_S,
        checkpoint_on_start=True,
    )


def decision(n: int) -> dict[str, Any]:
    return {"kind": "DECISION", "reference": f"26FR000690I{n:07d}", "outcome": "RELEASE"}


def forged_after(previous: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A link the attacker appends: right partition, place and hash, no key of the hub's."""
    record = {
        "kind": "DECISION",
        "reference": "26FR000690I0999999",
        "outcome": "RELEASE",
        "partition": previous["partition"],
        "seq": previous["seq"] + 1,
        "prev": previous["hash"],
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **extra,
    }
    record["hash"] = record_hash(record)
    return record


def verify(log: list[bytes], public: dict[str, PublicKey]) -> AuditReport:
    return verify_chain(
        [LoggedRecord(0, offset, value) for offset, value in enumerate(log)],
        public,
        policy=TailPolicy(max_unsigned=EVERY, max_unsigned_age_s=WITHIN_S + 300),
        now=datetime.now(UTC) + timedelta(seconds=1),
    )


def test_links_appended_without_the_hubs_key_are_not_gone_on_from(
    signer: AuditSigner, public: dict[str, PublicKey], caplog: pytest.LogCaptureFixture
) -> None:
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = [record for n in range(4) for record in first.append(0, decision(n))]
    genuine = json.loads(log[-1])
    forged = forged_after(genuine)
    log.append(canonical(forged))

    successor = worker(signer, heads)
    with caplog.at_level(logging.ERROR):
        successor.resync(0, log)
    after = [json.loads(r) for r in successor.append(0, decision(4))]
    log += [canonical(r) for r in after]

    assert (after[0]["seq"], after[0]["prev"]) == (genuine["seq"] + 1, genuine["hash"])
    assert "audit partition 0: 1 record(s)" in caplog.text
    assert "not written by the hub" in caplog.text
    # The auditor, with public keys only: the successor's checkpoint signs its own branch,
    # the attacker's record is an orphan, off the chain.
    report = verify(log, public)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.orphans == 1


def test_a_link_whose_mac_was_made_with_another_key_is_not_gone_on_from(
    signer: AuditSigner,
) -> None:
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = [record for n in range(3) for record in first.append(0, decision(n))]
    genuine = json.loads(log[-1])
    own = json.loads(log[0])["mac"].split(".", 1)[0]
    # The hub's kid and a MAC of the right form, made with a secret that is not the hub's.
    forged = forged_after(genuine)
    del forged["hash"]
    digest = hmac.new(os.urandom(32), canonical(forged), hashlib.sha256).digest()
    forged["mac"] = f"{own}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"
    forged["hash"] = record_hash(forged)
    successor = worker(signer, heads)
    successor.resync(0, [*log, canonical(forged)])
    [link, *_] = [json.loads(r) for r in successor.append(0, decision(3))]
    assert link["prev"] == genuine["hash"]


def test_a_flood_past_the_tail_read_leaves_the_chain_where_the_hub_left_it(
    signer: AuditSigner,
) -> None:
    """More forged records than the resync reads: none of the tail is the hub's, and the
    chain goes on from the head the worker's table holds, the hub's own."""
    heads: dict[bytes, bytes] = {}
    first = worker(signer, heads)
    log = [record for n in range(3) for record in first.append(0, decision(n))]
    previous = genuine = json.loads(log[-1])
    flood = []
    for _ in range(20):
        previous = forged_after(previous)
        flood.append(canonical(previous))
    successor = worker(signer, heads)
    successor.resync(0, flood)
    [link, *_] = [json.loads(r) for r in successor.append(0, decision(3))]
    assert (link["seq"], link["prev"]) == (genuine["seq"] + 1, genuine["hash"])


def former_version_log(count: int) -> list[bytes]:
    """Links as the version before wrote them: no MAC."""
    previous: dict[str, Any] = {"partition": 0, "seq": 0, "hash": "0" * 64}
    log = []
    for n in range(count):
        record = {**decision(n), "partition": 0, "seq": previous["seq"] + 1}
        record |= {"prev": previous["hash"], "at": datetime.now(UTC).isoformat()}
        record["hash"] = record_hash(record)
        log.append(canonical(record))
        previous = record
    return log


def test_a_tail_written_before_links_carried_macs_is_gone_on_from(
    signer: AuditSigner,
) -> None:
    """The first taking over after the upgrade: the tail and the table are the former
    version's (no MAC anywhere; heads stored as ``v2``), and the chain goes on from it."""
    log = former_version_log(3)
    previous = json.loads(log[-1])
    heads = {b"audit-head/0": f"v2|{previous['seq']}|{previous['hash']}|3|0".encode()}
    successor = worker(signer, heads)
    successor.resync(0, log)
    [link, *_] = [json.loads(r) for r in successor.append(0, decision(3))]
    assert (link["seq"], link["prev"]) == (4, previous["hash"])


def test_every_link_carries_a_mac_under_the_kid_of_an_audit_key(signer: AuditSigner) -> None:
    trail = worker(signer, {})
    records = [json.loads(r) for n in range(3) for r in trail.append(0, decision(n))]
    kinds = {r["kind"] for r in records}
    assert kinds == {"DECISION", "CHECKPOINT"}
    for record in records:
        kid, mac = record["mac"].split(".")
        assert kid == str(signer.mac_key_for(datetime.now(UTC)).kid)
        assert len(mac) == 43  # HMAC-SHA-256, base64url without padding
        assert record_hash(record) == record["hash"]  # the hash covers the MAC


# -- found by review in stop 34 ---------------------------------------------------------


def hub_log(signer: AuditSigner, heads: dict[bytes, bytes], count: int) -> list[bytes]:
    trail = worker(signer, heads)
    return [record for n in range(count) for record in trail.append(0, decision(n))]


def genuine_head(log: list[bytes]) -> dict[str, Any]:
    return dict(json.loads(log[-1]))


def next_link(trail: AuditTrail) -> dict[str, Any]:
    return dict(json.loads(trail.append(0, decision(99))[0]))


def hostile(genuine: dict[str, Any], **fields: Any) -> bytes:
    """A record at the head with ``fields`` and a hash that holds."""
    record = forged_after(genuine)
    del record["hash"]
    record |= fields
    record["hash"] = record_hash(record)
    return json.dumps(record, sort_keys=True).encode()


@pytest.mark.parametrize(
    "poison",
    [
        pytest.param(lambda g, kid: hostile(g, mac=f"{kid}.é"), id="a MAC that is no ASCII"),
        pytest.param(lambda g, kid: hostile(g, mac=12), id="a MAC that is no text"),
        pytest.param(lambda g, kid: hostile(g, mac=None), id="a null MAC"),
        pytest.param(lambda g, kid: hostile(g, seq=float("inf")), id="seq Infinity"),
        pytest.param(lambda g, kid: hostile(g, seq=True), id="seq true"),
        pytest.param(lambda g, kid: hostile(g, seq="7"), id="seq as text"),
        pytest.param(lambda g, kid: hostile(g, seq=10**30), id="seq past any chain"),
        pytest.param(lambda g, kid: hostile(g, partition="0"), id="partition as text"),
        pytest.param(lambda g, kid: b"[" * 100_000 + b"]" * 100_000, id="nested 100,000 deep"),
        pytest.param(lambda g, kid: b'{"seq": 1e999, "hash": 1}', id="seq overflowing"),
    ],
)
def test_no_record_anybody_writes_stops_a_worker_taking_the_partition_over(
    signer: AuditSigner, poison: Any
) -> None:
    """A record that crashed the resync crashed every worker that took the partition,
    for good: no owner could append past it (found by review in stop 34)."""
    heads: dict[bytes, bytes] = {}
    log = hub_log(signer, heads, 3)
    genuine = genuine_head(log)
    kid = str(genuine["mac"]).split(".", 1)[0]
    successor = worker(signer, heads)
    successor.resync(0, [*log, poison(genuine, kid)])
    link = next_link(successor)
    assert (link["seq"], link["prev"]) == (genuine["seq"] + 1, genuine["hash"])


def test_a_genuine_link_copied_from_another_partition_is_not_gone_on_from(
    signer: AuditSigner,
) -> None:
    heads: dict[bytes, bytes] = {}
    trail = worker(signer, heads)
    log0 = [r for n in range(3) for r in trail.append(0, decision(n))]
    log1 = [r for n in range(3, 30) for r in trail.append(1, decision(n))]
    genuine = genuine_head(log0)
    successor = worker(signer, heads)
    successor.resync(0, [*log0, log1[-1]])  # partition 1's head, MAC and all
    link = next_link(successor)
    assert (link["seq"], link["prev"]) == (genuine["seq"] + 1, genuine["hash"])


def written_then_key_retired(
    keys_dir: Path, tmp_path: Path
) -> tuple[Path, dict[bytes, bytes], list[bytes], ECKey]:
    """A keys folder whose audit key wrote a partition's last links, then was replaced
    and retired: the folder, the worker's head table, the links and the retired key."""
    folder = tmp_path / "keys"
    shutil.copytree(keys_dir, folder)
    before = AuditSigner.load(folder)
    heads: dict[bytes, bytes] = {}
    log = hub_log(before, heads, 3)
    [retired] = before.every_key()
    keystore = KeystoreFolder(folder)
    keystore.rotate(AUDITING_PARTY, audit=True)
    keystore.retire(str(retired.kid))
    return folder, heads, log, retired


def test_a_link_made_with_a_retired_audit_key_is_not_gone_on_from(
    keys_dir: Path, tmp_path: Path
) -> None:
    """Retiring an audit key is how a leaked one is revoked: its MACs count no more."""
    folder, heads, log, leaked = written_then_key_retired(keys_dir, tmp_path)
    genuine = genuine_head(log)
    # Whoever holds the leaked key makes a link the old way.
    thief = AuditTrail({}, leaked, checkpoint_every=EVERY)
    thief.resync(0, log)
    forged, *_ = thief.append(0, {"kind": "DECISION", "reference": "26FR000690I0999999"})
    successor = worker(AuditSigner.load(folder), heads)
    successor.resync(0, [*log, forged])
    report, link, *_ = [json.loads(r) for r in successor.append(0, decision(99))]
    assert (report["kind"], report["count"]) == ("FOREIGN_RECORDS", 1)
    assert (report["seq"], report["prev"]) == (genuine["seq"] + 1, genuine["hash"])
    assert link["kind"] == "DECISION"


def test_the_hubs_own_links_made_with_a_key_retired_since_are_not_called_foreign(
    keys_dir: Path, tmp_path: Path
) -> None:
    """A partition idle since its audit key was retired: none of its tail's MACs count
    any more, but the link its head table names is the hub's, and nothing below it is a
    stranger (found by review in stop 34: every link of the tail was reported foreign)."""
    folder, heads, log, _ = written_then_key_retired(keys_dir, tmp_path)
    genuine = genuine_head(log)
    successor = worker(AuditSigner.load(folder), heads)
    successor.resync(0, log)
    link = next_link(successor)
    assert link["kind"] == "DECISION"
    assert (link["seq"], link["prev"]) == (genuine["seq"] + 1, genuine["hash"])


def test_a_report_of_foreign_records_undone_with_its_handler_is_made_again(
    signer: AuditSigner,
) -> None:
    """The handler that chained the report failed: its links are undone, and the report
    waits for the next one (found by review in stop 34: it was lost)."""
    heads: dict[bytes, bytes] = {}
    log = hub_log(signer, heads, 3)
    successor = worker(signer, heads)
    successor.resync(0, [*log, canonical(forged_after(genuine_head(log)))])
    mark = successor.mark()
    failed = [json.loads(r) for r in successor.append(0, decision(98))]
    assert failed[0]["kind"] == "FOREIGN_RECORDS"
    successor.undo(mark)
    again = [json.loads(r) for r in successor.append(0, decision(99))]
    assert [r["kind"] for r in again][:2] == ["FOREIGN_RECORDS", "DECISION"]
    assert again[0]["seq"] == failed[0]["seq"]


def test_links_take_a_new_audit_key_only_once_every_worker_can_hold_it(
    keys_dir: Path, tmp_path: Path
) -> None:
    """A worker still on the former key files, taking a partition over, would leave the
    links made with a key it does not know yet behind, and fork its own chain."""
    folder = tmp_path / "keys"
    shutil.copytree(keys_dir, folder)
    [old] = AuditSigner.load(folder).every_key()
    [new] = KeystoreFolder(folder).rotate(AUDITING_PARTY, audit=True)
    signer = AuditSigner.load(folder)
    now = datetime.now(UTC)
    assert str(signer.mac_key_for(now).kid) == str(old.kid)
    assert str(signer.mac_key_for(now + timedelta(seconds=MAC_KEY_SETTLES_S + 1)).kid) == new
    assert str(signer.key_for(now).kid) == new  # checkpoints: the newest at once


def test_in_the_upgrade_window_a_stray_mac_does_not_leave_the_tail_behind(
    signer: AuditSigner,
) -> None:
    """The head table is the former version's (v2) and a step behind the tail: the tail
    is taken as it is, whatever a record at its head carries."""
    log = former_version_log(3)
    previous = json.loads(log[-1])
    stale = {b"audit-head/0": f"v2|2|{json.loads(log[1])['hash']}|2|0".encode()}
    successor = worker(signer, stale)
    successor.resync(0, [*log, hostile(previous, mac="junk.junk")])
    assert next_link(successor)["seq"] == 5


def test_a_first_link_with_a_mac_lost_in_a_crash_leaves_the_chain_on_the_former_tail(
    signer: AuditSigner,
) -> None:
    """The first worker of the new version saved its first head (MACs from there on) and
    was killed before its record reached the topic: the tail is all the former
    version's, and the chain goes on from it, not from a head with no record."""
    log = former_version_log(3)
    previous = json.loads(log[-1])
    heads = {b"audit-head/0": f"v2|3|{previous['hash']}|3|0".encode()}
    first = worker(signer, heads)
    first.resync(0, log)
    first.append(0, decision(3))  # its records lost; its head saved
    successor = worker(signer, heads)
    successor.resync(0, log)
    link = next_link(successor)
    assert (link["seq"], link["prev"]) == (4, previous["hash"])


def test_records_not_the_hubs_are_reported_in_the_chain_it_signs(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """The auditor, reading public keys only, learns of them from the hub's own signed
    entry, not only from orphans a crash could have left."""
    heads: dict[bytes, bytes] = {}
    log = hub_log(signer, heads, 3)
    genuine = genuine_head(log)
    forged = [canonical(forged_after(genuine))]
    successor = worker(signer, heads)
    successor.resync(0, [*log, *forged])
    after = successor.tick(0)
    records = [json.loads(r) for r in after]
    assert [r["kind"] for r in records] == ["FOREIGN_RECORDS", "CHECKPOINT"]
    report = records[0]
    place = genuine["seq"] + 1
    assert (report["count"], report["first_seq"], report["last_seq"]) == (1, place, place)
    assert report["hashes"] == [json.loads(forged[0])["hash"]]
    verified = verify([*log, *forged, *after], public)
    assert verified.intact
    assert verified.foreign == [f"partition 0: 1 record(s) from seq {place} to {place}"]
    assert successor.tick(0) == []  # reported once
