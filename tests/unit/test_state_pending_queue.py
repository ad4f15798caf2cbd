"""An adapter's queue of pending operations holds no war-material licence in clear (issue
11, item 2).

A write-off, a deletion or a give-back the partner could not take waits in a SQLite file
(adapters/base/pending.py) until it is replayed; the request it keeps quotes the licence.
The adapter opens its queue with its state key: the ``request`` column is sealed
(AES-256-GCM, bound to its row), the reference and version that order the queue stay in
clear, and the queue still replays in each declaration's order.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from adapters.base.pending import STATE_TABLE, PendingOperations
from adapters.base.replay import Replayer
from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    DocumentAnswer,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from gun_contract.security.keystore import KeystoreFolder, StateKey
from gun_contract.security.state_cipher import StateCipher, StateUnreadable
from gun_contract.settings import SecuritySettings, Settings
from gun_contract.topics import topic_registry
from tests.adapter_fixtures import PartnerAnsweringByRule, adapter_runner

LICENCE = "LEMG.FR.2026.SECRET-0815"
R1 = "26FRSTATEQ00000001"
R2 = "26FRSTATEQ00000002"
TOPICS = topic_registry("gun", ("dgal", "cites", "dga"))


@cache
def dga(operation: Operation, reference: str = R1, version: int = 1) -> AuthorityRequest:
    """A request of the hub to DGA quoting the licence (made once: compared as a whole)."""
    return AuthorityRequest(
        request_id=request_id_for(reference, version, "dga", operation),
        authority="dga",
        operation=operation,
        reference=reference,
        version=version,
        stage=Stage.LODGED,
        direction=Direction.EXPORT,
        procedure="1000",
        declarant_eori="FR12345678901234",
        country_of_destination="AE",
        items=(
            RequestedItem(
                number=1,
                commodity_code="9301900000",
                documents=(RequestedDocument(code="LEMG", reference=LICENCE),),
            ),
        ),
        sent_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    )


def files_holding(folder: Path, needle: str) -> list[str]:
    return [
        path.name
        for path in folder.rglob("*")
        if path.is_file() and needle.encode() in path.read_bytes()
    ]


def cipher(seed: int = 1) -> StateCipher:
    return StateCipher.of([StateKey(f"dga-state-test-{seed}", bytes([seed]) * 32)])


async def test_the_dga_adapters_queue_keeps_no_licence_in_its_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    KeystoreFolder(keys).init(["hub", "dga"])
    state = tmp_path / "state"
    settings = Settings(security=SecuritySettings(keys_dir=keys, state_dir=state))
    runner = adapter_runner("dga", settings, TOPICS)
    runner.pending.add(dga(Operation.WRITE_OFF), partition=3)
    runner.pending.add(dga(Operation.DELETE, R2))

    assert files_holding(state, LICENCE) == []
    assert runner.pending.queued_at(R1) == [(dga(Operation.WRITE_OFF), 3)]
    [file] = state.glob("*-dga-pending.sqlite")
    with sqlite3.connect(file) as db:
        rows = db.execute(
            "SELECT reference, version, typeof(request), operation_key FROM queue ORDER BY id"
        ).fetchall()
    # What orders the queue is in clear; the request is sealed; the row key is no digest
    # of the documents (which a guessed licence number would confirm).
    assert [row[:3] for row in rows] == [(R1, 1, "blob"), (R2, 1, "blob")]
    assert rows[0][3].startswith(dga(Operation.WRITE_OFF).request_id + "#")
    runner.pending.close()


async def test_the_sealed_queue_replays_in_each_declarations_order_after_a_restart(
    tmp_path: Path,
) -> None:
    first = PendingOperations(tmp_path / "p.sqlite", cipher())
    for request in (
        dga(Operation.DELETE),
        dga(Operation.WRITE_OFF, R2),
        dga(Operation.WRITE_OFF, version=2),
    ):
        first.add(request)
    first.add(dga(Operation.DELETE))  # a redelivery keeps its first place
    first.close()

    again = PendingOperations(tmp_path / "p.sqlite", cipher())
    assert again.references() == [R1, R2]
    assert len(again) == 3
    partner = PartnerAnsweringByRule()
    published: list[str] = []

    async def publish(
        request: AuthorityRequest, answers: tuple[DocumentAnswer, ...], partition: int | None
    ) -> None:
        published.append(request.request_id)

    await Replayer(again, partner, publish).replay_all()
    r1 = [asked for asked in partner.asked if asked.startswith(R1)]
    assert r1 == [dga(Operation.DELETE).request_id, dga(Operation.WRITE_OFF, version=2).request_id]
    assert sorted(published) == sorted(partner.asked)
    assert len(again) == 0
    again.close()
    assert files_holding(tmp_path, LICENCE) == []


async def test_a_queue_kept_in_clear_is_sealed_when_the_adapter_opens_it(
    tmp_path: Path,
) -> None:
    old = PendingOperations(tmp_path / "p.sqlite")  # written before queues were sealed
    old.add(dga(Operation.WRITE_OFF), partition=1)
    old.add(dga(Operation.GIVE_BACK, R2))
    old.close()
    assert files_holding(tmp_path, LICENCE) != []

    sealed = PendingOperations(tmp_path / "p.sqlite", cipher())
    assert files_holding(tmp_path, LICENCE) == []  # not in the file, nor its WAL
    assert sealed.queued_at(R1) == [(dga(Operation.WRITE_OFF), 1)]
    assert sealed.queued(R2) == [dga(Operation.GIVE_BACK, R2)]
    sealed.done(dga(Operation.WRITE_OFF))
    assert sealed.references() == [R2]
    sealed.close()


def test_a_request_moved_to_another_row_altered_or_written_in_clear_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.sqlite"
    queue = PendingOperations(path, cipher())
    queue.add(dga(Operation.WRITE_OFF))
    queue.add(dga(Operation.DELETE, R2))
    db = sqlite3.connect(path, isolation_level=None)
    [(first,), (second,)] = db.execute("SELECT request FROM queue ORDER BY id").fetchall()

    db.execute("UPDATE queue SET request = ? WHERE reference = ?", (first, R2))  # moved
    with pytest.raises(StateUnreadable) as moved:
        queue.queued(R2)
    assert STATE_TABLE in str(moved.value)
    assert R2 in str(moved.value)
    assert LICENCE not in str(moved.value)

    altered = bytearray(second)
    altered[-1] ^= 1
    db.execute("UPDATE queue SET request = ? WHERE reference = ?", (bytes(altered), R2))
    with pytest.raises(StateUnreadable, match="does not decrypt"):
        queue.queued(R2)

    db.execute(
        "UPDATE queue SET request = ? WHERE reference = ?",
        (dga(Operation.DELETE, R2).model_dump_json(), R2),
    )
    with pytest.raises(StateUnreadable, match="in clear"):
        queue.queued(R2)

    assert queue.queued(R1) == [dga(Operation.WRITE_OFF)]  # the untouched row still opens
    db.close()
    queue.close()


def test_a_queue_sealed_with_another_key_names_the_key(tmp_path: Path) -> None:
    queue = PendingOperations(tmp_path / "p.sqlite", cipher(1))
    queue.add(dga(Operation.WRITE_OFF))
    queue.close()
    other = PendingOperations(tmp_path / "p.sqlite", cipher(2))
    with pytest.raises(StateUnreadable, match="dga-state-test-1"):
        other.queued(R1)
    other.close()
