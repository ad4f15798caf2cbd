"""Issue 12: the correlation reads (decrypts and parses) an answer's case once, for both
its checks (was this asked? what does it change?), not once per check: at saturation
reading a case is, after opening the answer's envelope, the largest part of handling it."""

from __future__ import annotations

from pathlib import Path

from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.correlation import Correlation
from tests.builders import declaration_xml
from tests.unit.test_pipeline import SOURCE, Hub


class CountedReads(dict[bytes, bytes]):
    """The hub's case store, counting the reads made through it."""

    reads = 0

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads += 1
        return super().get(key, default)


def test_an_answer_reads_its_case_once_and_still_decides(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    store = CountedReads(hub.cases)
    hub.correlation = Correlation(hub.context, store)
    released = hub.answer(sent, "dgal", Verdict.VALID)
    assert [outcome for _, _, outcome in hub.decisions(released)] == [Outcome.RELEASE]
    assert store.reads == 1


def test_an_answer_to_a_decided_case_reads_it_once_too(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    hub = Hub(routing_table, keys_dir)
    sent = hub.intake.handle(declaration_xml(), SOURCE)
    store = CountedReads(hub.cases)
    hub.correlation = Correlation(hub.context, store)
    decided = hub.answer(sent, "dgal", Verdict.VALID)
    assert [outcome for _, _, outcome in hub.decisions(decided)] == [Outcome.RELEASE]
    # The same answer again (an adapter's batch redelivered): the decision stands.
    store.reads = 0
    again = hub.answer(sent, "dgal", Verdict.VALID)
    assert hub.decisions(again) == []
    assert store.reads == 1
