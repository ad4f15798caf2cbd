"""``gun-hub audit verify`` on each attack of issue 11, item 3: exit 1 and a clear message.

The topic is replaced by a list of records here (the same command on the real broker:
tests/integration/test_audit_attacks_on_the_broker.py); the command reads the public JWKS
only, from a folder that holds no private key at all.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from typer.testing import CliRunner, Result

from gun_contract.security.keystore import PUBLIC_JWKS, AuditSigner
from gun_contract.settings import load_settings
from gun_hub.cli import app
from gun_hub.cli import audit as audit_command
from gun_hub.security.audit import AuditTrail, LoggedRecord, canonical, record_hash

TOPIC = "gun.audit"


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def hub_keys(keys_dir: Path, tmp_path: Path) -> Path:
    """The hub's keys, its audit key made a day ago (the trails below start in the past)."""
    folder = tmp_path / "hub-keys"
    shutil.copytree(keys_dir, folder)
    jwks = json.loads((folder / PUBLIC_JWKS).read_text())
    for entry in jwks["keys"]:
        if entry.get("purpose") == "audit":
            entry["not_before"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    (folder / PUBLIC_JWKS).write_text(json.dumps(jwks))
    return folder


@pytest.fixture
def auditor(hub_keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The auditor's keys folder: the public JWKS, and nothing else."""
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "auditor"
    folder.mkdir()
    shutil.copy(hub_keys / PUBLIC_JWKS, folder / PUBLIC_JWKS)
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(folder))
    monkeypatch.setenv("GUN_HUB_HUB__AUDIT_CHECKPOINT_EVERY", "10")
    return folder


class Trail:
    """A trail the hub wrote, one record a second, ending ``ago`` before now."""

    def __init__(self, keys_dir: Path, count: int, ago: timedelta = timedelta(0)) -> None:
        self.clock = Clock(datetime.now(UTC) - ago - timedelta(seconds=count))
        self.trail = AuditTrail(
            {}, AuditSigner.load(keys_dir), checkpoint_every=10, clock=self.clock
        )
        self.log: list[LoggedRecord] = []
        for n in range(count):
            self.add(self.trail.append(0, {"kind": "DECISION", "reference": f"R{n}"}))
            self.clock.now += timedelta(seconds=1)

    def add(self, values: list[bytes]) -> None:
        for value in values:
            self.log.append(LoggedRecord(0, len(self.log), value))

    def last(self) -> dict[str, Any]:
        return dict(json.loads(self.log[-1].value))

    def at_seq(self, seq: int) -> dict[str, Any]:
        return dict(
            next(r for r in map(json.loads, (x.value for x in self.log)) if r["seq"] == seq)
        )


def forged_after(previous: dict[str, Any], outcome: str = "RELEASE") -> dict[str, Any]:
    record = {
        "kind": "DECISION",
        "reference": "FORGED",
        "outcome": outcome,
        "partition": 0,
        "seq": previous["seq"] + 1,
        "prev": previous["hash"],
        "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
    }
    record["hash"] = record_hash(record)
    return record


def verify(monkeypatch: pytest.MonkeyPatch, log: list[LoggedRecord], *args: str) -> Result:
    async def read_topic(*_: object, **__: object) -> list[LoggedRecord]:
        return list(log)

    monkeypatch.setattr(audit_command, "read_topic", read_topic)
    return CliRunner().invoke(app, ["audit", "verify", *args])


def test_an_intact_trail_verifies_with_public_keys_only(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = verify(monkeypatch, Trail(hub_keys, 25).log)
    assert result.exit_code == 0, result.output
    assert "audit trail intact" in result.output
    assert "2 signed checkpoints verified" in result.output
    assert sorted(p.name for p in auditor.iterdir()) == [PUBLIC_JWKS]


def test_attack_a_a_cut_tail_is_reported(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = Trail(hub_keys, 25, ago=timedelta(hours=1))
    cut = [r for r in trail.log if json.loads(r.value)["seq"] <= 15]
    result = verify(monkeypatch, cut)
    assert result.exit_code == 1, result.output
    assert "AUDIT TRAIL BROKEN" in result.output
    assert "seq 12" in result.output
    assert "unsigned" in result.output


def test_attack_a_a_cut_at_a_checkpoint_is_reported_with_a_witness(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trail = Trail(hub_keys, 22)  # its last record is the checkpoint at seq 22
    witness = tmp_path / "witness.json"
    first = verify(monkeypatch, trail.log, "--witness", str(witness))
    assert first.exit_code == 0, first.output
    assert json.loads(witness.read_text())[TOPIC]["0"]["seq"] == 22
    cut = [r for r in trail.log if json.loads(r.value)["seq"] <= 11]
    result = verify(monkeypatch, cut, "--witness", str(witness))
    assert result.exit_code == 1, result.output
    assert "seq 22" in result.output
    assert "cut" in result.output
    assert json.loads(witness.read_text())[TOPIC]["0"]["seq"] == 22  # never moved back


def test_attack_b_forged_records_appended_are_reported(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = Trail(hub_keys, 12)
    previous = trail.last()
    for _ in range(10):
        previous = forged_after(previous)
        trail.add([canonical(previous)])
    result = verify(monkeypatch, trail.log)
    assert result.exit_code == 1, result.output
    assert "at most 10" in result.output
    assert "checkpoint" in result.output


def test_attack_c_a_forged_branch_hiding_real_records_is_reported(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = Trail(hub_keys, 15)  # seq 12..16 unsigned, the hub's own
    forged = forged_after(trail.at_seq(13))
    trail.add([canonical(forged)])
    for _ in range(5):
        forged = forged_after(forged)
        trail.add([canonical(forged)])
    result = verify(monkeypatch, trail.log)
    assert result.exit_code == 1, result.output
    assert "seq 14" in result.output
    assert "forks" in result.output


def test_a_corrupt_jwks_stops_the_command_with_the_files_name(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (auditor / PUBLIC_JWKS).write_text('{"keys": [{"kty": "EC"')
    result = verify(monkeypatch, Trail(hub_keys, 3).log)
    assert result.exit_code == 2
    assert str(auditor / PUBLIC_JWKS) in result.output


def test_the_bounds_are_settings_and_options(
    auditor: Path, hub_keys: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().hub.audit_checkpoint_every == 10
    log = Trail(hub_keys, 9, ago=timedelta(minutes=3)).log
    assert verify(monkeypatch, log).exit_code == 0
    strict = verify(monkeypatch, log, "--max-unsigned-age-s", "60")
    assert strict.exit_code == 1, strict.output
    assert verify(monkeypatch, log, "--max-unsigned", "5").exit_code == 1


def failing_to_read(monkeypatch: pytest.MonkeyPatch, error: Exception, *args: str) -> Result:
    async def read_topic(*_: object, **__: object) -> list[LoggedRecord]:
        raise error

    monkeypatch.setattr(audit_command, "read_topic", read_topic)
    return CliRunner().invoke(app, ["audit", "verify", *args])


@pytest.mark.parametrize(
    "error",
    [
        LookupError("topic gun.nope does not exist"),
        KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 1)]"),
        TimeoutError(),
    ],
    ids=["a missing topic", "an unreachable broker", "a broker that does not answer"],
)
def test_a_trail_that_cannot_be_read_is_not_a_break(
    auditor: Path, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # Exit 1 is a break: an auditor's cron job reads it as tampering (review stop 37, H3).
    result = failing_to_read(monkeypatch, error, "--topic", "gun.nope")
    assert result.exit_code == 3, repr(result.exception)
    assert result.output.startswith("cannot read the audit trail gun.nope: ")
    assert len(result.output.strip().splitlines()) == 1
    assert "BROKEN" not in result.output


def test_an_empty_trail_is_said_to_verify_nothing(
    auditor: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = verify(monkeypatch, [])
    assert result.exit_code == 0, result.output
    assert "0 audit records: nothing verified" in result.output
    assert "intact" not in result.output
