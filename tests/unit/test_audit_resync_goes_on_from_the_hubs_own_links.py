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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gun_contract.security.keystore import PUBLIC_JWKS, AuditSigner, PublicKey, read_public_keys
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


@pytest.fixture
def signer(keys_dir: Path) -> AuditSigner:
    return AuditSigner.load(keys_dir)


@pytest.fixture
def public(keys_dir: Path) -> dict[str, PublicKey]:
    return read_public_keys(keys_dir / PUBLIC_JWKS)


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


def test_a_tail_written_before_links_carried_macs_is_gone_on_from(
    signer: AuditSigner,
) -> None:
    """The first taking over after the upgrade: the tail and the table are the former
    version's (no MAC anywhere; heads stored as ``v2``), and the chain goes on from it."""
    previous: dict[str, Any] = {"partition": 0, "seq": 0, "hash": "0" * 64}
    log = []
    for n in range(3):
        record = {**decision(n), "partition": 0, "seq": previous["seq"] + 1}
        record |= {"prev": previous["hash"], "at": datetime.now(UTC).isoformat()}
        record["hash"] = record_hash(record)
        log.append(canonical(record))
        previous = record
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
        assert kid == str(signer.key_for(datetime.now(UTC)).kid)
        assert len(mac) == 43  # HMAC-SHA-256, base64url without padding
        assert record_hash(record) == record["hash"]  # the hash covers the MAC
