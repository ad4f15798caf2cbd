"""The broker census of ``./tasks bench-hops``: the requests by type and records by topic
the broker handled per declaration of the batch, from two snapshots of its JMX counters.
The parts without a broker: what ``Census.java`` prints and how it is read, the difference
of two snapshots, the figures per declaration, the table, the JMX options of the broker
launcher, and a reader that reports a failure instead of raising it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.census import (
    JAVA_OPTIONS,
    PROGRAM,
    CensusError,
    CensusReader,
    Snapshot,
    census,
    census_command,
    difference,
    parse_snapshot,
    render_census,
)
from gun_contract.settings import BrokerSettings
from gun_tools.local_broker import LocalBroker

BEFORE = """\
request Produce 9 100
request Produce 11 50
request Fetch 16 400
request FetchConsumer 16 300
request Metadata 12 7
records gun.declarations 1000
records __consumer_offsets 20
records-all 1020
end
"""

# 10 declarations later.
AFTER = """\
request Produce 9 180
request Produce 11 100
request Fetch 16 520
request FetchConsumer 16 400
request Metadata 12 7
request EndTxn 4 10
records gun.declarations 1010
records __consumer_offsets 75
records gun.decisions 10
records-all 1115
end
"""


# -- reading what Census.java prints ------------------------------------------------------


def test_a_request_type_is_counted_over_all_its_versions() -> None:
    snapshot = parse_snapshot(BEFORE)
    assert snapshot.requests == {"Produce": 150, "Fetch": 400, "FetchConsumer": 300, "Metadata": 7}


def test_records_are_counted_per_topic_and_the_topicless_meter_is_the_total() -> None:
    snapshot = parse_snapshot(BEFORE)
    assert snapshot.records == {"gun.declarations": 1000, "__consumer_offsets": 20}
    assert snapshot.records_all == 1020


def test_a_snapshot_without_the_all_topics_meter_has_no_total() -> None:
    assert parse_snapshot("records gun.declarations 3\nend\n").records_all is None


@pytest.mark.parametrize("line", ["request Produce 100", "records gun.declarations many", "hello"])
def test_a_line_not_understood_is_an_error_not_a_zero(line: str) -> None:
    with pytest.raises(CensusError, match="census"):
        parse_snapshot(line)


# -- the difference and the figures per declaration ---------------------------------------


def test_the_difference_keeps_what_moved_and_counts_new_meters_from_zero() -> None:
    moved = difference(parse_snapshot(BEFORE), parse_snapshot(AFTER))
    assert moved.requests == {"Produce": 130, "Fetch": 120, "FetchConsumer": 100, "EndTxn": 10}
    assert "Metadata" not in moved.requests  # did not move
    assert moved.records == {"gun.declarations": 10, "__consumer_offsets": 55, "gun.decisions": 10}
    assert moved.records_all == 95


def test_each_count_is_divided_by_the_declarations_and_listed_largest_first() -> None:
    figures = census(parse_snapshot(BEFORE), parse_snapshot(AFTER), 10, seconds=2.04)
    assert list(figures["requests_per_declaration"].items()) == [
        ("Produce", 13.0),
        ("Fetch", 12.0),
        ("FetchConsumer", 10.0),
        ("EndTxn", 1.0),
    ]
    assert list(figures["records_per_declaration"].items()) == [
        ("__consumer_offsets", 5.5),
        ("gun.decisions", 1.0),
        ("gun.declarations", 1.0),
    ]
    assert figures["declarations"] == 10
    assert figures["seconds"] == 2.0
    assert figures["counts"]["requests"]["Produce"] == 130


def test_the_request_total_counts_fetch_once_not_its_consumer_part_again() -> None:
    figures = census(parse_snapshot(BEFORE), parse_snapshot(AFTER), 10)
    assert figures["totals"]["requests"] == 130 + 120 + 10
    assert figures["totals"]["requests_per_declaration"] == 26.0


def test_the_record_total_is_the_broker_s_all_topics_meter_or_else_the_topics_summed() -> None:
    with_meter = census(parse_snapshot(BEFORE), parse_snapshot(AFTER), 10)
    assert with_meter["totals"]["records"] == 95
    assert with_meter["totals"]["records_per_declaration"] == 9.5
    before = Snapshot({}, {"a": 1, "b": 1}, None)
    after = Snapshot({}, {"a": 5, "b": 3}, None)
    assert census(before, after, 2)["totals"]["records_per_declaration"] == 3.0


def test_a_batch_without_declarations_has_no_census() -> None:
    with pytest.raises(ValueError, match="per declaration"):
        census(parse_snapshot(BEFORE), parse_snapshot(AFTER), 0)


# -- the table ----------------------------------------------------------------------------


def test_the_table_lists_request_types_then_topics_largest_first_with_their_totals() -> None:
    text = render_census(census(parse_snapshot(BEFORE), parse_snapshot(AFTER), 10))
    lines = text.splitlines()
    assert (
        lines[0] == "broker census, per declaration of the batch (10): 26.00 requests, 9.50 records"
    )
    assert lines.index("| Produce | 13.00 |") < lines.index("| Fetch | 12.00 |")
    assert "| FetchConsumer (part of Fetch) | 10.00 |" in lines
    assert "| all requests | 26.00 |" in lines
    assert lines.index("| all requests | 26.00 |") < lines.index("| __consumer_offsets | 5.50 |")
    assert lines[-1] == "| all topics | 9.50 |"


def test_the_table_is_cut_to_the_largest_and_says_how_many_more() -> None:
    before = Snapshot({}, {}, None)
    after = Snapshot({f"R{n}": n for n in range(1, 21)}, {f"t{n}": n for n in range(1, 31)}, 465)
    text = render_census(census(before, after, 1), top_requests=15, top_topics=20)
    assert "| R20 | 20.00 |" in text
    assert "| R5 |" not in text
    assert "| (5 more types) | |" in text
    assert "| t11 | 11.00 |" in text
    assert "| t10 |" not in text
    assert "| (10 more topics) | |" in text
    one_more = Snapshot({f"R{n}": n for n in range(1, 4)}, {}, None)
    assert "| (1 more type) | |" in render_census(census(before, one_more, 1), top_requests=2)


# -- the broker's JMX agent ---------------------------------------------------------------


def test_a_broker_runs_without_jmx_unless_given_a_port(tmp_path: Path) -> None:
    plain = LocalBroker(BrokerSettings(home=tmp_path))._command("java", tmp_path / "p")
    assert not [option for option in plain if "jmxremote" in option or "rmi" in option]


def test_a_benchmark_broker_s_jmx_listens_on_localhost_only_on_its_one_port(
    tmp_path: Path,
) -> None:
    command = LocalBroker(BrokerSettings(home=tmp_path), jmx_port=41234)._command(
        "java", tmp_path / "p"
    )
    assert {
        "-Dcom.sun.management.jmxremote.port=41234",
        "-Dcom.sun.management.jmxremote.rmi.port=41234",
        "-Dcom.sun.management.jmxremote.host=127.0.0.1",
        "-Djava.rmi.server.hostname=127.0.0.1",
        "-Dcom.sun.management.jmxremote.authenticate=false",
        "-Dcom.sun.management.jmxremote.ssl=false",
    } <= set(command)
    assert command.index("-Dcom.sun.management.jmxremote.port=41234") < command.index("kafka.Kafka")


# -- the reader ---------------------------------------------------------------------------


def test_the_census_program_is_the_java_source_run_against_the_port() -> None:
    assert census_command(41234, "/usr/bin/java") == [
        "/usr/bin/java",
        *JAVA_OPTIONS,
        str(PROGRAM),
        "41234",
    ]
    assert PROGRAM.name == "Census.java"
    assert PROGRAM.exists()


def test_without_a_jmx_port_or_java_the_reader_says_why_and_gives_no_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert CensusReader.for_port(None).problem == "the broker runs without JMX"
    monkeypatch.setenv("PATH", "")
    reader = CensusReader.for_port(41234)
    assert reader.problem == "no java on PATH to read the broker's JMX counters"


# A stand-in for Census.java: one canned snapshot for every line it reads.
ANSWERS = f"""
import sys
answers = {[BEFORE, AFTER]!r}
for n, _ in enumerate(sys.stdin):
    sys.stdout.write(answers[min(n, 1)])
    sys.stdout.flush()
"""


async def test_the_reader_asks_one_program_for_each_snapshot() -> None:
    reader = CensusReader([sys.executable, "-c", ANSWERS])
    try:
        before = await reader.snapshot()
        after = await reader.snapshot()
    finally:
        await reader.close()
    assert before == parse_snapshot(BEFORE)
    assert after == parse_snapshot(AFTER)
    assert reader.problem is None


async def test_a_program_that_fails_leaves_its_last_words_as_the_problem() -> None:
    failing = (
        "import sys; print('JMX on 127.0.0.1:1: Connection refused', file=sys.stderr); sys.exit(2)"
    )
    reader = CensusReader([sys.executable, "-c", failing])
    assert await reader.snapshot() is None
    assert reader.problem == "JMX on 127.0.0.1:1: Connection refused"
    assert await reader.snapshot() is None  # no second attempt
    await reader.close()


async def test_a_program_that_does_not_answer_in_time_is_ended() -> None:
    silent = "import time; time.sleep(60)"
    reader = CensusReader([sys.executable, "-c", silent], timeout_s=0.5)
    assert await reader.snapshot() is None
    assert reader.problem == "no snapshot within 0.5s"
    await reader.close()


async def test_a_program_that_cannot_be_started_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    reader = CensusReader([str(tmp_path / "no-such-java")])
    assert await reader.snapshot() is None
    assert "no-such-java" in (reader.problem or "")
