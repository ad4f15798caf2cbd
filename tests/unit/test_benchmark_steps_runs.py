"""``./tasks bench-steps`` runs its declarations through the hub's steps to the end.

No test ran it: stop 38's rule that a declaration's record key is its reference refused
every declaration of the benchmark, which then stopped on a missing request, unnoticed
until someone ran it. Its figure is not checked here (a benchmark, not a timed test), only
that every declaration is decided through the steps it measures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import common, steps


def test_every_declaration_goes_through_intake_answer_and_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path)

    steps.main(3)

    printed = capsys.readouterr().out
    assert "3 sealed declarations, intake + one answer + publishing each" in printed
    assert (tmp_path / "steps.json").exists()
