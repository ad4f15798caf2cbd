"""A trader's withdrawal refused unacted, once its case is retired, leaves the declaration
its own.

``Intake._refuse_over_unreadable`` stores a REFUSE of the version's own stage (CANCELLED,
for a trader's withdrawal) with no ``customs_acted``, "so the next version is decided as
ever", and while that case is live the trader may withdraw again
(test_a_traders_withdrawal_refused_over_a_case_that_did_not_open_leaves_its_declaration_its_own).
Retired, its marker keeps its stage and outcome (REFUSE) but no decision
(``retention.marker_of``). 49df99a has ``customs_acted_on`` count any case with no decision
whose stage is CANCELLED: the marker of the refused withdrawal now reads as customs' act,
and the trader's next version through the gateway is refused AMENDMENT_NOT_PERMITTED
("version 2 was lodged CANCELLED"): a declaration the hub never acted on is locked from
its declarant once the retention passes. Before 49df99a (``not known.decided and ...``:
the marker's outcome REFUSE is a decision) it was taken.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import HEADER_ERROR_KIND, header_value
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome
from gun_contract.security.entitlements import HUB_PARTY
from gun_contract.security.state_cipher import SealedStore, StateCipher
from gun_hub.domain.case import Case
from gun_hub.domain.routing import RoutingTable
from gun_hub.domain.trader_stages import customs_acted_on
from gun_hub.pipeline.retention import CaseRetention, RetainedCases, RetentionIndex
from gun_hub.pipeline.unreadable_state import STATE_UNREADABLE
from tests.unit.test_a_case_that_does_not_open_is_refused_and_forgotten import SealedHub
from tests.unit.test_a_traders_withdrawal_refused_over_a_case_that_did_not_open_leaves_its_declaration_its_own import (  # noqa: E501
    KEY,
    REFERENCE,
    lodged,
)
from tests.unit.test_pipeline import Hub

RETENTION_S = 3600.0


async def test_a_trader_withdraws_again_after_its_refused_withdrawal_was_retired(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    below: dict[bytes, bytes] = {}
    entries: dict[bytes, bytes] = {}  # the case-retention table
    cipher = StateCipher.load(keys_dir, HUB_PARTY)
    live = SealedStore(below, cipher, "cases")
    store = RetainedCases(live, entries, cipher)
    sealed = SealedHub(Hub(routing_table, keys_dir, cases=store), below, store)
    hub = sealed.hub
    retention = CaseRetention(
        cases=live,
        entries=entries,
        open_cases=hub.open_cases,
        index=RetentionIndex(),
        clock=lambda: hub.now,
        retention_s=RETENTION_S,
        cipher=cipher,
    )

    first = await lodged(sealed, 1, Stage.LODGED, 0)
    assert first.to(hub.topics.requests("dgal"))  # undecided: still the trader's
    value = sealed.below[KEY]
    sealed.below[KEY] = value[:-1] + bytes([value[-1] ^ 1])  # no longer opens

    withdrawn = await lodged(sealed, 2, Stage.CANCELLED, 1)
    assert hub.decisions(withdrawn) == [(REFERENCE, 2, Outcome.REFUSE)]
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in withdrawn.to(hub.topics.dlq)]
    assert kinds == [STATE_UNREADABLE]
    refused = store.get(KEY)
    assert refused is not None
    assert not customs_acted_on(Case.from_bytes(refused))  # live: still the trader's

    # Past the retention, the worker's tick retires it: a marker of stage CANCELLED.
    retention.decided(REFERENCE, 0)
    hub.now += timedelta(seconds=RETENTION_S + 1)
    retention.handle(REFERENCE, 0, lambda _outbox, _case: False)
    assert live.get(KEY) is None, "not retired"
    stored = store.get(KEY)
    assert stored is not None
    marker = Case.from_bytes(stored)
    assert (marker.stage, marker.decision, marker.customs_acted) == (Stage.CANCELLED, None, False)

    again = await lodged(sealed, 3, Stage.CANCELLED, 2)
    kinds = [header_value(r.headers, HEADER_ERROR_KIND) for r in again.to(hub.topics.dlq)]
    assert kinds == [], (
        "the marker of a withdrawal the hub refused unacted ended the declaration once "
        f"retired (dead letters of the trader's version 3: {kinds})"
    )
    assert hub.decisions(again) or again.to(hub.topics.requests("dgal")), "not taken"
