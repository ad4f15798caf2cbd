"""``gun-hub dlq`` as an operator runs it, against a real officer listener and desk
(tests/unit/test_dead_letter_desk.py): what it prints, and what it exits with."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gun_contract.dead_letter import ErrorClass
from gun_hub.cli import app, hub_client
from gun_hub.security.web_auth import write_officer_credentials
from tests.unit.test_dead_letter_desk import PLAIN, REFERENCE, SECRETS, TOPICS, Desk, desk

__all__ = ["desk"]  # the fixture, used below


async def dlq(desk: Desk, work: Path, officer: str, *args: str) -> Result:
    credentials = work / f"{officer}.credentials"
    write_officer_credentials(credentials, officer, SECRETS[officer])
    return await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["dlq", *args, "--credentials-file", str(credentials), "--hub-url", desk.url],
    )


async def test_list_prints_the_ids_to_type_and_what_can_be_redriven(
    desk: Desk, tmp_path: Path
) -> None:
    desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    listed = await dlq(desk, tmp_path, "bob", "list")
    assert listed.exit_code == 0, listed.output
    [header, row] = listed.stdout.splitlines()
    assert header.split()[:3] == ["id", "at", "kind"]
    assert row.split()[0] == "1:0"
    assert REFERENCE in row
    assert f"{TOPICS.declarations}/1/5" in row
    assert " yes " in row
    none = await dlq(desk, tmp_path, "bob", "list", "--kind", "NO_SUCH_KIND")
    assert none.exit_code == 0
    assert "no dead letter matches" in none.stderr


async def test_redriving_a_kind_redrives_each_original_once(desk: Desk, tmp_path: Path) -> None:
    """Two dead letters about the same original (a redrive dead-lettered again) and one an
    the clearance reader wrote: one redrive, one dead letter that cannot be redriven."""
    desk.broker.put(TOPICS.declarations, 1, 5, REFERENCE.encode(), PLAIN)
    desk.dead_letter(0, PLAIN, kind="UNHANDLED_ERROR", error_class=ErrorClass.PERMANENT)
    desk.dead_letter(1, PLAIN, kind="UNHANDLED_ERROR", error_class=ErrorClass.PERMANENT)
    desk.dead_letter(
        2,
        PLAIN,
        kind="UNHANDLED_ERROR",
        component="clearance.reader",
        source_topic=TOPICS.decisions,
        error_class=ErrorClass.PERMANENT,
    )
    done = await dlq(desk, tmp_path, "alice", "redrive", "--kind", "UNHANDLED_ERROR")
    assert done.exit_code == 0, done.output
    assert f"1:0 ({REFERENCE}): {TOPICS.declarations}/1/5 redriven as" in done.stdout
    assert "1:2: not redriven: written by 'clearance.reader'" in done.stderr
    assert "1 redriven, 1 cannot be redriven, 0 refused, 0 not answered" in done.stderr
    assert len(desk.broker.to(TOPICS.declarations)) == 1


async def test_redriving_a_kind_says_each_dead_letter_not_redriven_and_goes_on(
    desk: Desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One original on a partition that does not exist, one the hub does not answer for in
    time: each is said, the others are redriven, and the summary ends it (review stop 37,
    H2: the command stopped at the first it could not redrive, without a summary)."""
    # Room for every other answer on a loaded machine (0.5 s failed under the CI's load:
    # "cannot reach the hub ... timed out" for an answer that was not the slow one).
    monkeypatch.setattr(hub_client, "ANSWER_TIMEOUT_S", 2.0)
    for offset in (5, 6, 7):
        desk.broker.put(TOPICS.declarations, 1, offset, REFERENCE.encode(), PLAIN)
    desk.broker.slow[(TOPICS.declarations, 1, 6)] = 8.0
    desk.dead_letter(0, PLAIN, kind="ENVELOPE_UNKNOWN_KID", source_partition=99)
    desk.dead_letter(1, PLAIN, kind="ENVELOPE_UNKNOWN_KID", source_offset=5)
    desk.dead_letter(2, PLAIN, kind="ENVELOPE_UNKNOWN_KID", source_offset=6)
    desk.dead_letter(3, PLAIN, kind="ENVELOPE_UNKNOWN_KID", source_offset=7)
    done = await dlq(desk, tmp_path, "alice", "redrive", "--kind", "ENVELOPE_UNKNOWN_KID")
    assert done.exit_code == 3, done.output  # documented: some went unanswered
    assert (
        f"1:0: not redriven: its original's partition, {TOPICS.declarations}/99, does not exist"
        in done.stderr
    )
    assert "1:2: not redriven: the hub did not answer (timed out)" in done.stderr
    assert f"1:1 ({REFERENCE}): {TOPICS.declarations}/1/5 redriven as" in done.stdout
    assert f"1:3 ({REFERENCE}): {TOPICS.declarations}/1/7 redriven as" in done.stdout
    assert done.stderr.splitlines()[-1] == (
        "2 redriven, 1 cannot be redriven, 0 refused, 1 not answered"
    )


async def test_an_officer_who_is_no_operator_is_told_so_and_exits_5(
    desk: Desk, tmp_path: Path
) -> None:
    desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    refused = await dlq(desk, tmp_path, "bob", "redrive", "1:0")
    assert refused.exit_code == 5
    assert "only dead-letter operators may redrive" in refused.stderr
    payload = await dlq(desk, tmp_path, "bob", "show", "1:0", "--payload")
    assert payload.exit_code == 5
    assert "DECLARATION_NOT_SEALED" in payload.stdout  # the metadata is any officer's
    assert desk.broker.sent == []


async def test_an_operator_writes_a_payload_to_a_private_file(desk: Desk, tmp_path: Path) -> None:
    desk.dead_letter(0, PLAIN, kind="DECLARATION_NOT_SEALED")
    out = tmp_path / "payload.xml"
    shown = await dlq(
        desk, tmp_path, "alice", "show", "gun.dlq/1/0", "--payload", "--out", str(out)
    )
    assert shown.exit_code == 0, shown.output
    assert out.read_bytes() == PLAIN
    assert out.stat().st_mode & 0o077 == 0


async def test_what_names_no_dead_letter_exits_before_asking_the_hub(
    desk: Desk, tmp_path: Path
) -> None:
    malformed = await dlq(desk, tmp_path, "alice", "redrive", "17")
    assert malformed.exit_code == 2
    assert "expected PARTITION:OFFSET" in malformed.stderr
    both = await dlq(desk, tmp_path, "alice", "redrive", "1:0", "--kind", "K")
    assert both.exit_code == 2
    missing = await dlq(desk, tmp_path, "alice", "show", "1:404")
    assert missing.exit_code == 1
    assert desk.broker.sent == []
