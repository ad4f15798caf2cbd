"""A marker an older worker retired still keeps an ended declaration from its trader.

5030031 refused a trader's gateway version over a case "of the office's own stages,
decided or not" (CANCELLED, RELEASED_AFTER_CONTROL, INVALIDATED), and a retired case's
marker keeps its stage: a declaration the office cancelled after its control, retired,
stayed the office's. b7b66ca reads the stage only of an *undecided* case
(``customs_acted_on``: ``not known.decided and ...``) and otherwise the decision, which
a marker never keeps (``retention.marker_of``), trusting ``Case.customs_acted`` instead.
A marker written before b7b66ca has no such field (it loads False), but it does keep its
stage and its outcome: read by the upgraded worker, the office's CANCELLED is forgotten
and the trader's next version of the same goods, through the gateway, is taken and
decided from scratch: the declaration the office ended is revived, where the worker
before the upgrade refused it.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.intake import AMENDMENT_NOT_PERMITTED
from gun_hub.pipeline.retention import RetentionEntry
from tests.builders import declaration_xml
from tests.unit.test_a_trader_does_not_release_goods_held_for_a_control_by_lodging_them_again import (  # noqa: E501
    REFERENCE,
    TRADER,
    at,
    lodged_by_the_trader,
)
from tests.unit.test_decided_cases_leave_the_hot_table import RETENTION_S, RetainingHub

KEY = REFERENCE.encode()


def test_an_older_workers_marker_of_the_offices_cancellation_refuses_the_traders_next_version(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = RetainingHub(routing_table, keys_dir)

    hub.answer(lodged_by_the_trader(hub, 1, 0), "dgal", Verdict.VALID)
    # The office refuses the goods at its control: CANCELLED, by the clearance system.
    cancelled = hub.intake.handle(
        declaration_xml(reference=REFERENCE, version=2, stage=Stage.CANCELLED, declarant=TRADER),
        at(1),
    )
    deleted = hub.answer(cancelled, "dgal", Verdict.VALID)
    assert [o for *_, o in hub.decisions(cancelled) + hub.decisions(deleted)] == [Outcome.CANCELLED]

    # Retired, its marker as a worker before b7b66ca wrote it: no customs_acted field.
    hub.now += timedelta(seconds=RETENTION_S + 1)
    hub.retention_tick(REFERENCE)
    assert KEY not in hub.cases
    entry = RetentionEntry.from_bytes(hub.retained[KEY])
    assert entry.marker is not None
    fields = json.loads(entry.marker)
    assert fields["stage"] == Stage.CANCELLED.value
    fields.pop("customs_acted")
    older = RetentionEntry(entry.due, entry.partition, json.dumps(fields).encode())
    hub.retained[KEY] = older.to_bytes()

    again = lodged_by_the_trader(hub, 3, 2)
    kinds = [header_value(d.headers, HEADER_ERROR_KIND) for d in again.to(hub.topics.dlq)]
    assert again.to(hub.topics.requests("dgal")) == [], (
        "over an older worker's marker of the office's CANCELLED, the trader's version 3 "
        f"was taken and asked of DGAL afresh (dead letters: {kinds})"
    )
    assert kinds == [AMENDMENT_NOT_PERMITTED]
