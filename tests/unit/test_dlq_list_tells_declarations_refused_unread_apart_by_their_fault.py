"""``gun-hub dlq list`` tells declarations refused unread apart by their fault.

The list shows each dead letter's reason cut to 60 characters (cli/dlq.py ``_short``),
which is what an operator triages by. db8d002 puts a head on the reason of every
declaration refused before its reference could be read (``Intake._reject``:
``NOTHING_DECIDED``, "its reference could not be read, so nothing was decided", 55
characters and its colon), not only the oversized one the redrive rule reads it for:
in the list every such dead letter, a file that is not well-formed as one whose
reference lies past the sniff, reads the same 60 characters, the fault itself cut off.
"""

from __future__ import annotations

import time
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_REASON, SourcePosition, header_value
from gun_hub.domain.routing import RoutingTable
from gun_hub.ops.view import FeedRecord
from tests.unit.test_dead_letter_desk import REFERENCE, TOPICS, Desk
from tests.unit.test_dlq_command import desk, dlq
from tests.unit.test_pipeline import Hub

__all__ = ["desk"]  # the fixture, used below


async def test_a_declaration_refused_unread_shows_its_fault_in_the_list(
    desk: Desk, tmp_path: Path, routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    broken = b"<Declaration xmlns='urn:gun-hub:declaration:v1'><Reference>"  # cut short
    refused = hub.intake.handle(
        broken, SourcePosition(TOPICS.declarations, 1, 5, REFERENCE.encode())
    )
    [letter] = refused.to(hub.topics.dlq)
    reason = header_value(letter.headers, HEADER_ERROR_REASON) or ""
    desk.broker.put(TOPICS.dlq, 1, 0, letter.key, letter.value, letter.headers)
    desk.view.apply(
        [
            FeedRecord(
                TOPICS.dlq, 1, 0, int(time.time() * 1000), letter.value, letter.headers, letter.key
            )
        ]
    )

    listed = await dlq(desk, tmp_path, "bob", "list")
    assert listed.exit_code == 0, listed.output
    [_, row] = listed.stdout.splitlines()
    assert "not well-formed XML" in reason
    assert "not well-formed" in row, (
        f"the list reads {row.split('  ')[-1]!r} for a declaration refused {reason!r}: "
        "its fault is cut off"
    )
