"""``gun-hub decisions`` exits 1 when a record it read failed verification or could not be
read (it dead-letters it and says so on stderr): it exited 0, and a script or a CI step
reading decisions took a forged or unreadable decision for none (operator review of stop
48). The reader itself runs on the real broker in tests/e2e/test_security_end_to_end.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

import gun_tools.clearance_stand_in as clearance
from gun_hub.cli import app


class ReaderThatDeadLettered:
    """The clearance reader as the command drives it, having read ``unreadable`` records
    it could not take and no decision."""

    unreadable: ClassVar[list[object]] = []

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def collect(self, *, expected: int, timeout_s: float) -> list[object]:
        return []

    async def stop(self) -> None:
        pass


@pytest.mark.parametrize(("unreadable", "status"), [(0, 0), (2, 1)])
def test_the_exit_status_says_whether_a_record_was_dead_lettered(
    unreadable: int,
    status: int,
    keys_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("GUN_HUB_SECURITY__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(ReaderThatDeadLettered, "unreadable", [object()] * unreadable)
    monkeypatch.setattr(clearance, "DecisionReader", ReaderThatDeadLettered)
    result = CliRunner().invoke(app, ["decisions", "--timeout", "1"])
    assert result.exit_code == status, result.output
    assert ("were dead-lettered" in result.output) is bool(unreadable)
