"""``gun-hub stats`` and ``gun-hub lag`` say when there is nothing to show, and a failed
measurement does not end ``lag --watch`` (review stop 37, H1).

An officer asking for a period without decisions, a declarant without documents or a
document with nothing written off got ``TypeError: 'int' object is not iterable`` from
the table printer and exit 1; ``lag`` did the same when no group could be measured, which
is when the cluster is unwell and the operator needs it most.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner, Result

import gun_hub.cli.ops as ops
from gun_hub.cli import app
from gun_hub.cli.hub_client import print_table
from gun_hub.ops.lag import GroupLag, LagSnapshot, PartitionLag

NOW = datetime(2026, 12, 5, 5, 32, 16, tzinfo=UTC)

EMPTY_STATS = {
    "from": "2026-11-01",
    "to": "2026-12-01",
    "decisions": {
        "total": 0,
        "by_outcome": {},
        "by_day": {},
        "by_authority": {},
        "by_document_code": {},
    },
    "overrides": None,
    "dead_letters": {"total": 0, "by_kind": {}},
}


def officer(tmp_path: Path) -> str:
    credentials = tmp_path / "alice.credentials"
    credentials.write_text("alice:a-long-enough-password\n")
    credentials.chmod(0o600)
    return str(credentials)


def stats_answering(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, body: dict[str, Any], *args: str
) -> Result:
    monkeypatch.setattr(ops, "call_hub", lambda *_, **__: (200, body))
    return CliRunner().invoke(
        app, ["stats", *args, "--credentials-file", officer(tmp_path), "--hub-url", "http://h"]
    )


def test_the_table_printer_prints_the_headers_of_an_empty_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_table(["group", "topic", "lag"], [])
    assert capsys.readouterr().out.split() == ["group", "topic", "lag"]


def test_stats_of_a_period_without_decisions_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = stats_answering(monkeypatch, tmp_path, EMPTY_STATS)
    assert result.exit_code == 0, repr(result.exception)
    assert "decisions from 2026-11-01 to 2026-12-01 (UTC days): 0" in result.output
    assert "no decision from 2026-11-01 to 2026-12-01" in result.output
    assert "dead letters: 0" in result.output


def test_stats_of_a_declarant_without_documents_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    body: dict[str, object] = {"documents": [], "next_offset": None}
    result = stats_answering(monkeypatch, tmp_path, body, "--declarant", "FR12345678901234")
    assert result.exit_code == 0, repr(result.exception)
    assert "no document used by declarant FR12345678901234" in result.output


def test_stats_of_a_document_with_nothing_written_off_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    body: dict[str, object] = {"written_off": [], "next_offset": None}
    result = stats_answering(
        monkeypatch, tmp_path, body, "--written-off", "--document", "IMPORT.EU.FR.2026.0000001"
    )
    assert result.exit_code == 0, repr(result.exception)
    assert "nothing written off on document IMPORT.EU.FR.2026.0000001" in result.output
    everything = stats_answering(monkeypatch, tmp_path, body, "--written-off")
    assert everything.exit_code == 0, repr(everything.exception)
    assert "nothing written off on any document" in everything.output


class Monitor:
    """A lag monitor whose measurements are given: a snapshot, or an error raised."""

    measurements: ClassVar[list[LagSnapshot | Exception]] = []

    @classmethod
    def for_settings(cls, *_: object) -> Monitor:
        return cls()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def measure(self) -> LagSnapshot:
        if not Monitor.measurements:
            raise KeyboardInterrupt  # the operator's ^C: the watch ends there
        measured = Monitor.measurements.pop(0)
        if isinstance(measured, Exception):
            raise measured
        return measured


def lag_measuring(
    monkeypatch: pytest.MonkeyPatch, measurements: list[LagSnapshot | Exception], *args: str
) -> Result:
    monkeypatch.setattr(Monitor, "measurements", list(measurements))
    monkeypatch.setattr(ops, "LagMonitor", Monitor)
    return CliRunner().invoke(app, ["lag", *args])


MEASURED = LagSnapshot(
    at=NOW,
    groups=[GroupLag(group="gun-hub", lag=7, growing=False)],
    partitions=[
        PartitionLag(
            group="gun-hub", topic="gun.declarations", partition=0, committed=3, end=10, lag=7
        )
    ],
)
NOTHING_MEASURED = LagSnapshot(at=NOW, groups=[], partitions=[])


def test_lag_with_no_group_measured_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    result = lag_measuring(monkeypatch, [NOTHING_MEASURED])
    assert not isinstance(result.exception, TypeError), repr(result.exception)
    assert "no group could be measured" in result.output
    assert result.exit_code == 3  # documented: the cluster could not be measured


def test_lag_that_cannot_be_measured_is_one_sentence_and_exit_3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = lag_measuring(monkeypatch, [TimeoutError("the broker did not answer")])
    assert result.exit_code == 3, repr(result.exception)
    assert "cannot measure the lag at " in result.output
    assert ": TimeoutError: the broker did not answer" in result.output
    assert "Traceback" not in result.output


def test_a_failed_measurement_does_not_end_the_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    result = lag_measuring(
        monkeypatch,
        [MEASURED, RuntimeError("metadata went away"), NOTHING_MEASURED, MEASURED],
        "--watch",
        "0.01",
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code == 0
    assert "RuntimeError: metadata went away; measuring again in 0.01 s" in result.output
    assert "no group could be measured" in result.output
    # measured before and after the failures
    assert result.output.count("gun.declarations") == 2
