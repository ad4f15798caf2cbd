"""What ``gun-hub demo`` prints, and when it fails: the decisions, a table of them by
outcome and authority, and exit code 1 naming every sample left without a decision."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_contract.envelope import ContentType, OpenedMessage
from gun_contract.model.decision import Decision, DocumentResult
from gun_contract.model.verdicts import Outcome, Verdict
from gun_hub.cli import app
from gun_hub.domain.routing import RoutingTable
from gun_tools.clearance_stand_in import ReceivedDecision
from gun_tools.demo import DemoFailed, DemoResult
from gun_tools.demo.report import NO_AUTHORITY, outcome_table, problems, report
from gun_tools.demo.samples import SampleDeclaration, SampleRun, load_samples

AUTHORITIES = ["dgal", "cites", "dga"]


def decision(outcome: Outcome, *authorities: str | None, reference: str = "R1") -> Decision:
    return Decision(
        reference=reference,
        version=1,
        outcome=outcome,
        decided_at=datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
        documents=tuple(
            DocumentResult(
                goods_item=1,
                code="X000",
                reference=f"DOC-{authority}-{reference}",
                authority=authority,
                verdict=Verdict.VALID,
            )
            for authority in authorities
        ),
    )


def table(decisions: list[Decision]) -> dict[str, dict[str, int]]:
    """The printed table read back: outcome -> column -> count."""
    title, header, *rows = outcome_table(decisions, AUTHORITIES)
    assert title == "decisions by outcome and authority"
    columns = header.split()[1:]
    return {
        row.split()[0]: dict(zip(columns, map(int, row.split()[1:]), strict=True)) for row in rows
    }


def test_a_decision_quoting_two_authorities_counts_under_each_and_once_in_the_total() -> None:
    counted = table(
        [
            decision(Outcome.RELEASE, "dgal", "cites", reference="CAVIAR"),
            decision(Outcome.RELEASE, "dgal", reference="SALMON"),
            decision(Outcome.RELEASE, None, reference="EXEMPT"),
            decision(Outcome.CONTROL_DOCUMENTARY, "dga", reference="EXPORT"),
            decision(Outcome.REFUSE, reference="UNREADABLE"),
        ]
    )
    assert counted == {
        "RELEASE": {"dgal": 2, "cites": 1, "dga": 0, NO_AUTHORITY: 1, "total": 3},
        "CONTROL_DOCUMENTARY": {"dgal": 0, "cites": 0, "dga": 1, NO_AUTHORITY: 0, "total": 1},
        "REFUSE": {"dgal": 0, "cites": 0, "dga": 0, NO_AUTHORITY: 1, "total": 1},
    }


def received(sample: SampleDeclaration, outcome: Outcome = Outcome.RELEASE) -> ReceivedDecision:
    opened = OpenedMessage(b"", ContentType.XML, "hub", "clearance", "t", "m", 0, "k")
    made = decision(outcome, "dga").model_copy(
        update={"reference": sample.reference, "version": sample.version}
    )
    return ReceivedDecision(made, opened, 0, 0)


@pytest.fixture
def run(samples: Path) -> SampleRun:
    return load_samples(samples / "declarations", "26FRDEMO123456")


def result_without(
    run: SampleRun, routing: RoutingTable, tmp_path: Path, *left_out: str
) -> DemoResult:
    decided = {s.key: received(s) for s in run.declarations if s.name not in left_out}
    return DemoResult(run, routing, decided, 12.5, tmp_path / "logs")


def test_the_report_ends_with_how_many_decisions_came_and_where_the_logs_are(
    run: SampleRun, routing_table: RoutingTable, tmp_path: Path
) -> None:
    result = result_without(run, routing_table, tmp_path, "14b-cancelled-live-parrots.xml")
    lines = report(result)
    count = len(run.declarations)
    assert lines[-1] == (
        f"{count - 1} of {count} decisions in 12.5s (component logs in {tmp_path / 'logs'})"
    )
    # Every document of these decisions is the war-material authority's: masked.
    assert not any("DOC-dga" in line for line in lines)


def test_every_sample_without_a_decision_is_named(
    run: SampleRun, routing_table: RoutingTable, tmp_path: Path
) -> None:
    result = result_without(
        run,
        routing_table,
        tmp_path,
        "13b-release-fillets-amended.xml",
        "09-release-cites-handbags.xml",
    )
    [cites, fillets] = [s for s in run.declarations if s.name.startswith(("09", "13b"))]
    assert problems(result) == [
        "no decision within 120s for:",
        f"    09-release-cites-handbags.xml ({cites.reference} v1)",
        f"    13b-release-fillets-amended.xml ({fillets.reference} v2)",
    ]


def test_a_version_never_sent_for_want_of_its_predecessors_decision_is_said_apart(
    run: SampleRun, routing_table: RoutingTable, tmp_path: Path
) -> None:
    """13b leaves only once 13a is decided: listed as without a decision, it read as a
    version the hub had and lost (operator review of stop 48)."""
    result = result_without(
        run,
        routing_table,
        tmp_path,
        "13a-refuse-fillets-beyond-ched.xml",
        "13b-release-fillets-amended.xml",
    )
    [first, second] = [s for s in run.declarations if s.name.startswith(("13a", "13b"))]
    assert problems(result) == [
        "no decision within 120s for:",
        f"    13a-refuse-fillets-beyond-ched.xml ({first.reference} v1)",
        "not sent, each waiting for the decision on the version before it:",
        f"    13b-release-fillets-amended.xml ({second.reference} v2)",
    ]


def test_a_second_decision_for_one_version_is_a_problem(
    run: SampleRun, routing_table: RoutingTable, tmp_path: Path
) -> None:
    result = result_without(run, routing_table, tmp_path)
    assert problems(result) == []
    [salmon] = [s for s in run.declarations if s.name == "01-release-salmon.xml"]
    result.duplicates.append(received(salmon))
    assert problems(result) == [
        f"a second decision for {salmon.reference} v1 (01-release-salmon.xml): "
        "the contract allows one"
    ]


def test_the_demo_exits_1_when_a_sample_gets_no_decision(
    run: SampleRun, routing_table: RoutingTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incomplete = result_without(run, routing_table, tmp_path, "14b-cancelled-live-parrots.xml")
    monkeypatch.setattr("gun_tools.demo.run_demo", lambda *args, **kwargs: incomplete)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    outcome = CliRunner().invoke(app, ["demo"])

    assert outcome.exit_code == 1
    assert "no decision within 120s for:" in outcome.stderr
    assert "14b-cancelled-live-parrots.xml" in outcome.stderr
    assert outcome.stdout.rstrip().endswith(
        f"decisions in 12.5s (component logs in {tmp_path / 'logs'})"
    )


def test_the_demo_exits_1_with_the_reason_when_it_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fails(*args: object, **kwargs: object) -> DemoResult:
        raise DemoFailed("adapter-dga exited with code 1:\n(its log)")

    monkeypatch.setattr("gun_tools.demo.run_demo", fails)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    outcome = CliRunner().invoke(app, ["demo"])

    assert outcome.exit_code == 1
    assert outcome.stderr.startswith("demo failed: adapter-dga exited with code 1")
