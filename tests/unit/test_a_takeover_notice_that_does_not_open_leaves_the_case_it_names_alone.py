"""A takeover notice that does not open is dead-lettered, and the case it names is left
as it is.

Since stop 56 a takeover notice is sealed with the hub's state key (takeover.py,
``NOTICE_STATE``), and ``Takeover.handle`` opens it with the record's key, the reference.
A notice that does not open (altered on the topic, moved under another reference's key, a
truncated copy, bytes that only begin like a sealed value) raises ``StateUnreadable``,
whose key is the reference: the deadlines agent (``app._handled``) takes it as a *stored
case* that does not open and ``UnreadableCases.forget`` discards the reference's case, its
retention entry and its deadline (ADR 0022 is about values of the ``cases`` table, which
do not open; here the case opens perfectly well, the *message* does not).

So one bad record on ``gun.hub.deadlines`` wipes a healthy case: what its versions hold
reserved at the partners is no longer known to the hub (never written off, deleted or
given back: reserved for ever), and the next version, or a stale one, is decided as a
declaration the hub has no history of. Before stop 56 the same bytes were a tick whose
``int()`` failed: an UNHANDLED_ERROR dead letter, the case untouched.
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.dead_letter import SourcePosition
from gun_contract.model.declaration import Stage
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.takeover import Takeover
from tests.builders import declaration_xml
from tests.dead_letters import dead_letters_in
from tests.unit.test_a_case_that_does_not_open_is_refused_and_forgotten import (
    KEY,
    REF,
    SealedHub,
    sealed,
)
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import at

__all__ = ["sealed"]  # the fixture, used by name below


async def test_a_notice_that_does_not_open_does_not_forget_the_case_it_names(
    sealed: SealedHub, routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = sealed.hub
    # Version 1, lodged on partition 0, decided RELEASE: its write-off went out, and an
    # invalidation must find what it wrote off here.
    lodged = await sealed.declaration(1, 0)
    hub.answer(lodged, "dgal", Verdict.VALID)
    assert sealed.case().outcome is Outcome.RELEASE
    before = sealed.below[KEY]

    # A genuine notice of version 2 (read on partition 1), one bit of it altered on the
    # topic: sealed, but it no longer opens.
    other = Hub(routing_table, keys_dir)
    told = other.intake.handle(declaration_xml(version=2, stage=Stage.LODGED), at(0, partition=1))
    [notice] = [r.value for r in told.to(other.topics.deadlines) if r.partition == 0]
    assert notice is not None
    altered = notice[:-1] + bytes([notice[-1] ^ 1])

    where = SourcePosition(hub.topics.deadlines, 0, 7, KEY)
    handled = await sealed.handled(
        lambda: Takeover(hub.context, sealed.store).handle(REF, altered, where),
        altered,
        where,
        "deadlines",
    )

    assert [d["kind"] for d in dead_letters_in(handled, hub.topics.dlq)]  # dead-lettered
    assert sealed.below.get(KEY) == before, (
        "a takeover notice that did not open discarded the reference's case, which opens: "
        "what version 1 wrote off and holds is no longer known to the hub"
    )
