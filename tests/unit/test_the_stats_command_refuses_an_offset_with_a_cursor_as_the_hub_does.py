"""``gun-hub stats --offset N --after C`` asks for two starts at once: the hub refuses
``?offset=&after=`` (docs/operations.md: "``after`` and ``offset`` together are
refused"), and the command offers them as alternatives (``[--offset N|--after C]``).
It sent ``after`` alone and dropped ``--offset`` without a word (``gun_hub/cli/ops.py``,
``paging``): the officer read the page after the cursor as if the offset had been
applied, exit status 0.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_hub.cli import app
from tests.unit.test_a_list_paged_by_cursor_neither_skips_nor_repeats_a_row_as_rows_arrive import (
    DECLARANT,
    LISTS,
    Hub,
    Officer,
    hub_and_officer,
)
from tests.unit.test_web_listeners import ALICE_PASSWORD

__all__ = ["hub_and_officer"]  # the fixture, shared

ASKED = {"documents": ["--declarant", DECLARANT], "written-off": ["--written-off"]}


@pytest.mark.parametrize("listed", list(LISTS))
async def test_the_stats_command_refuses_an_offset_given_with_a_cursor(
    hub_and_officer: tuple[Hub, Officer], tmp_path: Path, listed: str
) -> None:
    _, officer = hub_and_officer
    path, _ = LISTS[listed]
    code, first = await officer.read(path)
    assert code == 200, first
    credentials = tmp_path / "alice.credentials"
    credentials.write_text(f"alice:{ALICE_PASSWORD}\n")
    credentials.chmod(0o600)
    ran = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["stats", *ASKED[listed], "--limit", "5", "--offset", "5", "--after",
         first["next_after"], "--json", "--credentials-file", str(credentials),
         "--hub-url", officer.url],
    )  # fmt: skip
    assert ran.exit_code != 0, f"--offset dropped without a word: {ran.stdout}"
    assert "offset" in ran.stderr
