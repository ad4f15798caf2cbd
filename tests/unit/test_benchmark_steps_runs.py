"""``./tasks bench-steps`` runs its declarations through the hub's steps to the end.

No test ran it: stop 38's rule that a declaration's record key is its reference refused
every declaration of the benchmark, which then stopped on a missing request, unnoticed
until someone ran it. Its figure is not checked here (a benchmark, not a timed test), only
that every declaration is decided through the steps it measures: its answers were refused
the same way, unnoticed, until stop 39 measured the mark of a decision and found none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import common, steps
from gun_contract.effects import OutgoingRecord
from tests.unit.test_pipeline import Hub  # the hub the benchmark drives


def test_every_declaration_goes_through_intake_answer_and_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    published: list[bytes] = []
    opening = Hub.outbox_document

    def publishing(hub: Hub, record: OutgoingRecord) -> bytes:
        published.append(opening(hub, record))
        return published[-1]

    monkeypatch.setattr(Hub, "outbox_document", publishing)

    steps.main(3)

    printed = capsys.readouterr().out
    assert "3 sealed declarations, intake + one answer + publishing each" in printed
    assert (tmp_path / "steps.json").exists()
    # Each declaration decided by its answer and its decision sealed on, in both runs (the
    # timed one and the profiled one): stop 38's key rule refused every answer, keyed by
    # nothing, and the benchmark measured intake and a dead letter (found in stop 39).
    assert len(published) == 2 * 3
