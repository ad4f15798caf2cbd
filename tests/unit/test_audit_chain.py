"""The audit trail: hash-chained per partition, anchored by checkpoints that the hub's own
audit key signs (issue 11, item 3).

Each attack of the issue is played here on the records as the topic would hold them, and
verified with public keys only (``jwks.json``): cutting the tail past a signed checkpoint,
appending forged records, and hiding real records behind a forged branch all break the
trail; so does a checkpoint signed with the wrong key or outside its key's validity.
"""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import ECKey

from gun_contract.security.keystore import (
    PUBLIC_JWKS,
    AuditSigner,
    KeystoreFolder,
    PartyKeys,
    PublicKey,
    read_public_keys,
)
from gun_hub.security.audit import (
    GENESIS,
    Anchor,
    AuditReport,
    AuditTrail,
    LoggedRecord,
    TailPolicy,
    canonical,
    record_hash,
    verify_chain,
)
from tests.forgery import kid_of

EVERY = 10
WITHIN_S = 60.0
POLICY = TailPolicy(max_unsigned=EVERY, max_unsigned_age_s=WITHIN_S + 300)


class Clock:
    """The hub's clock; it starts now, when the session's audit key is already valid."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Topic:
    """An audit topic: records laid out with offsets per partition, as Kafka would."""

    def __init__(self) -> None:
        self.log: list[LoggedRecord] = []

    def publish(self, partition: int, values: list[bytes]) -> None:
        for value in values:
            offset = sum(1 for r in self.log if r.partition == partition)
            self.log.append(LoggedRecord(partition, offset, value))

    def cut_after(self, partition: int, seq: int) -> None:
        """Keep only records up to ``seq`` on ``partition``: the tail cut off."""
        self.log = [
            r for r in self.log if r.partition != partition or json.loads(r.value)["seq"] <= seq
        ]


def decision(n: int) -> dict[str, object]:
    return {"kind": "DECISION", "reference": f"REF{n:05d}", "outcome": "RELEASE"}


def hub_trail(
    signer: ECKey | AuditSigner,
    clock: Clock,
    heads: dict[bytes, bytes] | None = None,
    **options: Any,
) -> AuditTrail:
    return AuditTrail(
        {} if heads is None else heads,
        signer,
        checkpoint_every=EVERY,
        checkpoint_within_s=WITHIN_S,
        clock=clock,
        **options,
    )


def run_hub(
    trail: AuditTrail, topic: Topic, clock: Clock, count: int, *, partition: int = 0
) -> None:
    """The hub records ``count`` decisions, one a second, each a new one (the trail
    chains an entry once)."""
    first = len(topic.log)
    for n in range(first, first + count):
        topic.publish(partition, trail.append(partition, decision(n)))
        clock.advance(1)


def verify(topic: Topic, public: dict[str, PublicKey], at: datetime, **kwargs: Any) -> AuditReport:
    return verify_chain(topic.log, public, policy=POLICY, now=at, **kwargs)


def only_break(report: AuditReport) -> str:
    assert not report.intact, "the attack went unnoticed"
    return report.broken[0].describe()


def forge(previous: dict[str, Any], body: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A record chained to ``previous`` as anyone can: the hash function is public."""
    record = {
        **body,
        "partition": previous["partition"],
        "seq": previous["seq"] + 1,
        "prev": previous["hash"],
        "at": at.isoformat(timespec="milliseconds"),
    }
    record["hash"] = record_hash(record)
    return record


def last(topic: Topic, partition: int = 0) -> dict[str, Any]:
    return dict(json.loads([r for r in topic.log if r.partition == partition][-1].value))


def seq_of(topic: Topic, seq: int, partition: int = 0) -> dict[str, Any]:
    [record] = [
        json.loads(r.value)
        for r in topic.log
        if r.partition == partition and json.loads(r.value)["seq"] == seq
    ]
    return dict(record)


# -- an honest trail ----------------------------------------------------------------------


def test_an_untouched_trail_verifies_with_public_keys_only(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    for n in range(45):
        topic.publish(n % 2, trail.append(n % 2, decision(n)))
        clock.advance(1)
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.by_kind["DECISION"] == 45
    assert report.checkpoints == 4  # two per partition: after 10 and 20 of its decisions
    assert report.orphans == 0
    assert report.unsigned_tail == {0: 3, 1: 2}


def test_a_checkpoint_signs_partition_head_count_and_time_with_the_audit_key(
    signer: AuditSigner, public: dict[str, PublicKey], keys_dir: Path
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, EVERY)
    checkpoint = last(topic)
    assert checkpoint["kind"] == "CHECKPOINT"
    header_b64, payload_b64, _ = checkpoint["signature"].split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    assert payload == {
        "partition": 0,
        "seq": EVERY + 1,
        "prev": seq_of(topic, EVERY)["hash"],
        "count": EVERY,
        "at": checkpoint["at"],
    }
    key = public[header["kid"]]
    assert (key.party, key.purpose) == ("hub", "audit")
    # Not the key that signs the hub's envelopes: a key of its own.
    assert header["kid"] != PartyKeys.load(keys_dir, "hub").signing_key.kid
    assert header["kid"] not in PartyKeys.load(keys_dir, "hub").public


def test_an_idle_partition_is_signed_by_the_tick_within_the_bound(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    run_hub(trail, topic, clock, 3)
    assert not trail.checkpoint_due(0)
    assert trail.tick(0) == []
    clock.advance(WITHIN_S / 2)
    assert trail.checkpoint_due(0)
    topic.publish(0, trail.tick(0))
    assert last(topic)["kind"] == "CHECKPOINT"
    assert not trail.checkpoint_due(0)
    # An hour later, nothing waits unsigned: still intact.
    report = verify(topic, public, clock.now + timedelta(hours=1))
    assert report.intact, [b.describe() for b in report.broken]
    assert report.unsigned_tail == {}


def test_a_busy_partition_is_signed_after_at_most_every_records(signer: AuditSigner) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 35)
    kinds = [json.loads(r.value)["kind"] for r in topic.log]
    runs = "".join("C" if k == "CHECKPOINT" else "." for k in kinds).split("C")
    assert max(len(run) for run in runs) <= EVERY


# -- item 3, attack (a): the tail cut past a signed checkpoint --------------------------


def test_a_tail_cut_past_a_signed_checkpoint_leaves_records_unsigned_too_long(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 25)  # checkpoints at seq 11 and 22
    assert verify(topic, public, clock.now).intact
    topic.cut_after(0, 15)  # checkpoint 22 and what followed it are gone
    # The hub signs every record within a minute: these four were signed by the cut
    # checkpoint; without it they have waited unsigned far beyond the bound.
    broken = only_break(verify(topic, public, clock.now + timedelta(minutes=10)))
    assert "seq 12" in broken
    assert "unsigned" in broken


def test_a_tail_cut_exactly_at_a_checkpoint_is_caught_by_the_auditors_witness(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    run_hub(trail, topic, clock, 25)
    clock.advance(WITHIN_S)
    topic.publish(0, trail.tick(0))  # the idle tick signs the rest
    first = verify(topic, public, clock.now)
    assert first.intact
    witness = first.anchors  # what the auditor keeps from its last verification
    assert witness[0].seq == last(topic)["seq"]
    topic.cut_after(0, 11)  # back to the first checkpoint: no unsigned tail at all
    broken = only_break(verify(topic, public, clock.now, witness=witness))
    assert f"seq {witness[0].seq}" in broken
    assert "cut" in broken


def test_a_witness_is_satisfied_by_a_trail_that_grew(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    run_hub(trail, topic, clock, 12)
    witness = verify(topic, public, clock.now).anchors
    run_hub(trail, topic, clock, 30)
    report = verify(topic, public, clock.now, witness=witness)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.anchors[0].seq > witness[0].seq


def test_a_partition_the_witness_knows_that_vanished_is_a_break(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12, partition=3)
    witness = verify(topic, public, clock.now).anchors
    topic.log = []
    broken = only_break(verify(topic, public, clock.now, witness=witness))
    assert "partition 3" in broken


# -- item 3, attack (b): forged records appended -------------------------------------------


def test_forged_records_beyond_the_unsigned_bound_are_a_missing_checkpoint(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12)
    previous = last(topic)
    for n in range(EVERY):  # perfectly chained, never signed
        previous = forge(previous, decision(900 + n), clock.now)
        topic.publish(0, [canonical(previous)])
    broken = only_break(verify(topic, public, clock.now))
    assert "checkpoint" in broken
    assert f"at most {EVERY}" in broken


def test_a_forged_record_is_a_break_once_it_has_waited_beyond_the_bound(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    run_hub(trail, topic, clock, 12)
    clock.advance(WITHIN_S)
    topic.publish(0, trail.tick(0))  # the hub has signed all it wrote
    forged = forge(last(topic), {**decision(1), "outcome": "REFUSE"}, clock.now)
    topic.publish(0, [canonical(forged)])
    # Right away it is indistinguishable from a record the hub has not signed yet...
    fresh = verify(topic, public, clock.now)
    assert fresh.intact
    assert fresh.unsigned_tail == {0: 1}
    # ...but the hub never signs it: past the bound it is a break.
    broken = only_break(verify(topic, public, clock.now + timedelta(minutes=7)))
    assert f"seq {forged['seq']}" in broken
    assert "unsigned" in broken


def test_a_forged_record_dated_in_the_future_to_look_fresh_is_a_break(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 11)
    forged = forge(last(topic), decision(1), clock.now + timedelta(days=30))
    topic.publish(0, [canonical(forged)])
    broken = only_break(verify(topic, public, clock.now))
    assert "future" in broken


def test_a_checkpoint_forged_with_the_hubs_envelope_key_is_refused(
    keys_dir: Path, public: dict[str, PublicKey]
) -> None:
    """The envelope key signs thousands of messages a day in the hub's agents; a key of
    its own for checkpoints means leaking it does not let anyone seal the audit."""
    clock, topic = Clock(), Topic()
    envelope_key = PartyKeys.load(keys_dir, "hub").signing_key
    run_hub(hub_trail(envelope_key, clock), topic, clock, 12)
    broken = only_break(verify(topic, public, clock.now))
    assert "seq 11" in broken
    assert "not an audit key" in broken


def test_a_checkpoint_signed_by_an_unknown_key_under_the_audit_kid_is_refused(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    kid = kid_of(signer.key_for(clock.now))
    forger = ECKey.generate_key("P-256", parameters={"kid": kid}, private=True)
    run_hub(hub_trail(forger, clock), topic, clock, 12)
    broken = only_break(verify(topic, public, clock.now))
    assert "signature does not verify" in broken


def test_a_checkpoint_outside_its_keys_validity_is_refused(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    [audit_key] = [k for k in public.values() if k.purpose == "audit"]
    assert audit_key.not_after is not None
    late = Clock(audit_key.not_after + timedelta(days=1))
    topic = Topic()
    run_hub(hub_trail(signer, late), topic, late, 12)
    broken = only_break(verify(topic, public, late.now))
    assert "validity" in broken


def test_a_checkpoint_after_its_key_was_retired_is_refused(keys_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    shutil.copytree(keys_dir, folder)
    jwks = json.loads((folder / PUBLIC_JWKS).read_text())
    for entry in jwks["keys"]:  # made two hours ago, so that it signed an hour ago
        if entry.get("purpose") == "audit":
            entry["not_before"] = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    (folder / PUBLIC_JWKS).write_text(json.dumps(jwks))
    clock, topic = Clock(datetime.now(UTC) - timedelta(hours=1)), Topic()
    heads: dict[bytes, bytes] = {}
    trail = hub_trail(AuditSigner.load(folder), clock, heads)
    run_hub(trail, topic, clock, 12)
    clock.advance(WITHIN_S)
    topic.publish(0, trail.tick(0))
    [kid] = [k.kid for k in read_public_keys(folder / PUBLIC_JWKS).values() if k.purpose]
    KeystoreFolder(folder).retire(kid)
    clock.now = datetime.now(UTC) + timedelta(seconds=5)
    # What the key signed before its retirement still verifies...
    assert verify(topic, read_public_keys(folder / PUBLIC_JWKS), clock.now).intact
    # ...a checkpoint signed with it afterwards (a stolen old key) does not.
    [stolen] = json.loads((folder / "hub.audit.jwk").read_text())["keys"]
    run_hub(hub_trail(ECKey.import_key(stolen), clock, heads), topic, clock, 10)
    broken = only_break(verify(topic, read_public_keys(folder / PUBLIC_JWKS), clock.now))
    assert "retired" in broken


# -- item 3, attack (c): a forged branch hides real records ------------------------------


def test_a_forged_branch_in_the_unsigned_tail_is_a_break_not_an_orphan(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 5)  # real: seq 1..5, a REFUSE at 5
    fork = seq_of(topic, 4)
    forged = forge(fork, {**decision(4), "outcome": "RELEASE"}, clock.now)
    topic.publish(0, [canonical(forged)])
    for n in range(2):  # longer than the real branch, so it looks like the live one
        forged = forge(forged, decision(800 + n), clock.now)
        topic.publish(0, [canonical(forged)])
    broken = only_break(verify(topic, public, clock.now))
    assert "seq 5" in broken
    assert "forks" in broken


def test_a_forged_branch_written_after_signed_records_is_a_break(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    run_hub(trail, topic, clock, 25)
    fork = seq_of(topic, 7)
    forged = forge(fork, decision(7), clock.now)
    topic.publish(0, [canonical(forged)])
    broken = only_break(verify(topic, public, clock.now))
    assert "seq 8" in broken
    assert "after the signed record" in broken


def test_signed_checkpoints_decide_which_branch_is_real(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """Before the fix, the verifier followed whichever branch had a successor: a forged
    branch written ahead of the hub's next record took the real one's place."""
    clock, topic = Clock(), Topic()
    heads: dict[bytes, bytes] = {}
    trail = hub_trail(signer, clock, heads)
    run_hub(trail, topic, clock, 3)
    forged = forge(last(topic), decision(99), clock.now)
    topic.publish(0, [canonical(forged)])  # before the hub's own fourth record
    forged_next = forge(forged, decision(98), clock.now)
    topic.publish(0, [canonical(forged_next)])
    run_hub(trail, topic, clock, 8)  # the hub goes on: its checkpoint seals its branch
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.by_kind["DECISION"] == 11  # the hub's own, none of the forged ones
    assert report.orphans == 2  # reported, never part of the signed chain


# -- what a crash leaves behind --------------------------------------------------------------


def test_a_record_left_by_a_crash_is_an_orphan_once_the_next_checkpoint_signs(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    heads: dict[bytes, bytes] = {}
    trail = hub_trail(signer, clock, heads)
    run_hub(trail, topic, clock, 3)
    saved = dict(heads)
    topic.publish(0, trail.append(0, {"kind": "DECISION", "reference": "LOST"}))
    heads.clear()
    heads.update(saved)  # the head of the lost record was never persisted
    run_hub(trail, topic, clock, 1)
    # Until the hub signs, nobody can tell which of the two is genuine: a fork.
    assert not verify(topic, public, clock.now).intact
    clock.advance(WITHIN_S / 2)
    topic.publish(0, trail.tick(0))
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.orphans == 1
    assert report.by_kind["DECISION"] == 4


def test_a_restarted_worker_signs_at_once_so_a_crash_leaves_no_fork(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """The hub's trail signs each partition's head when a worker first writes to it: what
    the crashed worker left behind is an orphan from the first record of its successor."""
    clock, topic = Clock(), Topic()
    heads: dict[bytes, bytes] = {}

    def worker() -> AuditTrail:
        return AuditTrail(
            heads,
            signer,
            checkpoint_every=EVERY,
            checkpoint_within_s=WITHIN_S,
            checkpoint_on_start=True,
            clock=clock,
        )

    first = worker()
    run_hub(first, topic, clock, 3)
    saved = dict(heads)
    topic.publish(0, first.append(0, {"kind": "DECISION", "reference": "LOST"}))
    heads.clear()
    heads.update(saved)  # killed before the head of that record was persisted
    run_hub(worker(), topic, clock, 1)  # the worker that takes over
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.orphans == 1


def test_an_idle_partition_is_signed_by_its_new_owners_first_tick(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    heads: dict[bytes, bytes] = {}
    first = AuditTrail(heads, signer, checkpoint_every=EVERY, checkpoint_on_start=True)
    topic.publish(0, first.append(0, decision(1)))
    saved = dict(heads)
    topic.publish(0, first.append(0, decision(2)))
    heads.clear()
    heads.update(saved)
    successor = AuditTrail(
        heads, signer, checkpoint_every=EVERY, checkpoint_on_start=True, clock=clock
    )
    assert successor.checkpoint_due(0)
    topic.publish(0, successor.tick(0))
    assert not successor.checkpoint_due(0)
    report = verify(topic, public, clock.now)
    assert report.intact, [b.describe() for b in report.broken]
    assert report.orphans == 1
    successor.release(0)  # lost in a rebalance, and back: signed again
    assert successor.checkpoint_due(0)


def test_a_trail_written_before_the_upgrade_gets_a_checkpoint_at_once(
    signer: AuditSigner,
) -> None:
    """Heads stored as ``seq:hash`` say nothing of the unsigned tail: sign it at once."""
    clock = Clock()
    heads = {b"audit-head/0": f"7:{'a' * 64}".encode()}
    records = hub_trail(signer, clock, heads).append(0, decision(1))
    assert [json.loads(r)["kind"] for r in records] == ["DECISION", "CHECKPOINT"]
    assert json.loads(records[0])["seq"] == 8


# -- breaks found before --------------------------------------------------------------------


def test_flipping_one_byte_of_one_record_is_detected_at_that_record(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    for n in range(30):
        topic.publish(n % 2, trail.append(n % 2, decision(n)))
    victim = 17
    altered = bytearray(topic.log[victim].value)
    altered[altered.index(b"RELEASE")] ^= 0x20  # "RELEASE" -> "rELEASE"
    where = topic.log[victim]
    topic.log[victim] = LoggedRecord(where.partition, where.offset, bytes(altered))
    report = verify(topic, public, clock.now)
    assert not report.intact
    [broken] = report.broken
    assert (broken.partition, broken.offset) == (where.partition, where.offset)
    assert "altered" in broken.reason


def test_an_altered_copy_beside_the_real_record_is_a_break(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12)
    copy = seq_of(topic, 5)
    copy["outcome"] = "REFUSE"  # the hash no longer matches
    topic.publish(0, [canonical(copy)])
    assert "altered" in only_break(verify(topic, public, clock.now))


def test_a_removed_record_breaks_the_chain(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 8)
    del topic.log[4]
    [broken] = verify(topic, public, clock.now).broken
    assert broken.seq == 5
    assert "missing" in broken.reason


def test_a_record_that_chains_to_nothing_is_a_break(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12)
    stray = forge({"partition": 0, "seq": 3, "hash": "f" * 64}, decision(5), clock.now)
    topic.publish(0, [canonical(stray)])
    assert "chains to no record" in only_break(verify(topic, public, clock.now))


def test_garbage_in_the_topic_is_a_break(signer: AuditSigner, public: dict[str, PublicKey]) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 2)
    topic.log.append(LoggedRecord(0, 2, b"not json"))
    assert not verify(topic, public, clock.now).intact


def test_records_are_canonical_json(signer: AuditSigner) -> None:
    [value] = AuditTrail({}, signer, checkpoint_every=100).append(
        3, {"kind": "DECISION", "reference": "R"}
    )
    record = json.loads(value)
    assert (record["partition"], record["seq"], record["prev"]) == (3, 1, GENESIS)
    assert value == json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def test_the_verifier_needs_no_private_key(keys_dir: Path, tmp_path: Path) -> None:
    """An auditor's folder holds the public JWKS and nothing else."""
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    shutil.copy(keys_dir / PUBLIC_JWKS, auditor / PUBLIC_JWKS)
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(AuditSigner.load(keys_dir), clock), topic, clock, 25)
    assert verify(topic, read_public_keys(auditor / PUBLIC_JWKS), clock.now).intact


def test_anchors_name_the_last_checkpoint_of_each_partition(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12, partition=1)
    anchors = verify(topic, public, clock.now).anchors
    checkpoint = seq_of(topic, 11, partition=1)
    assert anchors == {1: Anchor(11, checkpoint["hash"], checkpoint["at"])}


def test_a_genuine_signature_copied_onto_a_forged_checkpoint_is_refused(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12)
    genuine = seq_of(topic, 11)["signature"]
    forged = last(topic)
    for n in range(EVERY - 2):
        forged = forge(forged, decision(700 + n), clock.now)
        topic.publish(0, [canonical(forged)])
    forged = forge(forged, {"kind": "CHECKPOINT", "signature": genuine}, clock.now)
    topic.publish(0, [canonical(forged)])
    assert "another point" in only_break(verify(topic, public, clock.now))


# -- found by review in stop 34 ------------------------------------------------------------


def with_header(checkpoint: dict[str, Any], **header: Any) -> str:
    """``checkpoint``'s signature under a protected header that also holds ``header``:
    the hub's algorithm and audit kid, so the verifier goes as far as the JWS library."""
    protected, payload, signature = str(checkpoint["signature"]).split(".")
    fields = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    encoded = json.dumps(fields | header).encode()
    return ".".join([base64.urlsafe_b64encode(encoded).rstrip(b"=").decode(), payload, signature])


@pytest.mark.parametrize(
    "hostile",
    [
        pytest.param(
            lambda genuine: {k: v for k, v in genuine.items() if k != "at"},
            id="a checkpoint copied without its time",
        ),
        pytest.param(lambda genuine: genuine | {"x": "\ud800"}, id="a lone surrogate"),
        pytest.param(
            lambda genuine: genuine | {"x": json.loads("[" * 900 + "]" * 900)},
            id="nested 900 deep",
        ),
        pytest.param(
            lambda genuine: genuine | {"signature": with_header(genuine, crit=5)},
            id="a signature whose crit is no list",
        ),
    ],
)
def test_no_record_makes_the_verification_crash(
    signer: AuditSigner, public: dict[str, PublicKey], hostile: Any
) -> None:
    """An auditor gets a break at the record, never a traceback."""
    clock, topic = Clock(), Topic()
    trail = hub_trail(signer, clock)
    run_hub(trail, topic, clock, EVERY)  # the tenth record is followed by a checkpoint
    checkpoint = json.loads(topic.log[-1].value)
    assert checkpoint["kind"] == "CHECKPOINT"
    record = hostile(checkpoint) | {"seq": checkpoint["seq"] + 1, "prev": checkpoint["hash"]}
    del record["hash"]
    try:
        record["hash"] = record_hash(record)
    except UnicodeEncodeError:
        record["hash"] = "0" * 64
    topic.log.append(
        LoggedRecord(0, len(topic.log), json.dumps(record).encode())  # ASCII-escaped
    )
    report = verify(topic, public, clock.now)
    assert not report.intact


def test_a_junk_record_does_not_hide_a_forged_branch_after_it(
    signer: AuditSigner, public: dict[str, PublicKey]
) -> None:
    """One record that is no audit record switched the verification of its whole
    partition off: a writer appended junk, and every forged branch after it went
    unreported (found by review)."""
    clock, topic = Clock(), Topic()
    run_hub(hub_trail(signer, clock), topic, clock, 12)
    fork = seq_of(topic, 5)
    topic.publish(0, [b"not json"])
    topic.publish(0, [canonical(forge(fork, decision(700), clock.now))])

    report = verify(topic, public, clock.now)

    reasons = [b.reason for b in report.broken if b.partition == 0]
    assert "not a readable audit record" in reasons
    assert any("forged branch" in reason for reason in reasons), reasons
