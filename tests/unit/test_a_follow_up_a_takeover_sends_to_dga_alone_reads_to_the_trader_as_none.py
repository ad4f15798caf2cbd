"""What a takeover sends a confidential authority alone reads to the trader as nothing.

A version read on another partition than its case's takes over what the case held
(takeover.py, stop 50): the partition holding the earlier version deletes or writes off
what the later version does not quote, and says so on ``gun.status`` as
``"DELETE of 1 document(s) version 2 does not quote sent to dga"``. The trader's
redaction (web/redaction.py) reads lists of authorities clause by clause in the wordings
of intake.py, hub_context.py and deadlines.py only; takeover.py's wording is none of them,
so the detail is replaced whole by the fixed ``follow-up requests sent`` and the event is
kept. A follow-up sent to DGA alone then shows the trader an event that a declaration
without the licence never has (and that the same versions read on one partition never
show: intake.py's "DELETE of 1 document(s) no longer reserved sent to dga" is left out):
the trader learns that its licence was held at an authority, i.e. that DGA took part
(docs/security.md, "Who may see what": "What remains must read exactly as it would had the
confidential authority never taken part"; threat "a trader learns who exports arms").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gun_contract.model.declaration import DocumentRef
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.status_events import StatusKind
from gun_hub.web.redaction import trader_history
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_a_later_version_on_another_partition_takes_over_what_the_earlier_held import (
    notices_to,
    told,
)
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at

CONFIDENTIAL = frozenset({"dga"})
CHED = document("N853", "CHEDP.FR.2026.0001234", 1, "40")
LICENCE = document("LEMG", "LEMG-FR-2026-0042", 1, "3", "NAR")


def lodged(version: int, *documents: DocumentRef) -> bytes:
    item = goods_item(1, documents, commodity_code="9301100000")
    return declaration_xml(version=version, items=(item,))


def history_on_the_first_partition(
    routing_table: RoutingTable, keys_dir: Path, licence: tuple[DocumentRef, ...]
) -> list[dict[str, Any]]:
    """Version 1 (the CHED, and the licence if given) read on partition 0; version 2
    quoting the CHED alone read on partition 1: what partition 0 writes of version 1."""
    first, other = Hub(routing_table, keys_dir), Hub(routing_table, keys_dir)
    outboxes = [first.intake.handle(lodged(1, CHED, *licence), at(0, partition=0))]
    later = other.intake.handle(lodged(2, CHED), at(0, partition=1))
    outboxes.append(told(first, notices_to(other, later, 0)))
    return [
        status.model_dump(mode="json") for outbox in outboxes for status in first.statuses(outbox)
    ]


def test_a_takeover_deleting_the_licence_alone_reads_as_it_would_without_it(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    with_licence = history_on_the_first_partition(routing_table, keys_dir, (LICENCE,))
    without = history_on_the_first_partition(routing_table, keys_dir, ())
    # The takeover did send DGA the deletion of the licence, and said so.
    sent = [e for e in with_licence if e["kind"] == StatusKind.FOLLOW_UP_SENT.value]
    assert [e["detail"] for e in sent] == [
        "DELETE of 1 document(s) version 2 does not quote sent to dga"
    ]
    seen = trader_history(with_licence, CONFIDENTIAL)
    assert seen == trader_history(without, CONFIDENTIAL), (
        "the trader reads an event a declaration without the licence never has: "
        f"{[e for e in seen if e['kind'] == StatusKind.FOLLOW_UP_SENT.value]}"
    )


def test_a_takeovers_follow_ups_read_to_the_trader_without_the_confidential_authority() -> None:
    """The takeover's wordings are read clause by clause, as the intake's: the
    confidential authority and the count of documents (it would count DGA's) leave."""
    said = [
        "DELETE of 2 document(s) version 2 does not quote sent to dga, dgal",
        "WRITE_OFF of 3 document(s) version 3 does not quote sent again to cites, dga",
        "GIVE_BACK of 2 document(s) written off, for version 4 (invalidated), sent to dga, dgal",
    ]
    history = [
        {"version": 1, "kind": StatusKind.FOLLOW_UP_SENT.value, "at": "t", "detail": detail}
        for detail in said
    ]
    assert [e["detail"] for e in trader_history(history, {"dga"})] == [
        "DELETE of documents version 2 does not quote sent to dgal",
        "WRITE_OFF of documents version 3 does not quote sent again to cites",
        "GIVE_BACK of documents written off, for version 4 (invalidated), sent to dgal",
    ]
