"""The pure parts of ``./tasks bench`` (issue 12): the declarations it sends, the
percentiles and rates it reports, the table it prints. The run itself needs a broker and
is never part of the test suite."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest

from benchmarks.cpu import busy_ticks, calibration_ms, calibration_work, process_ticks
from benchmarks.mix import Mix
from benchmarks.report import (
    backlog_grew,
    latency_summary,
    percentile,
    ratio,
    render_result,
    render_table,
    steady_rate,
    timeline,
    window_percentiles,
)
from gun_contract.resources import config_path
from gun_hub.domain.routing import load_routing_table
from gun_hub.xml.declaration_codec import DeclarationCodec

# -- the mix ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_declarations_byte_for_byte() -> None:
    first, again, other = Mix(7), Mix(7), Mix(8)
    assert [p.xml for p in first.declarations(50, "26FRB")] == [
        p.xml for p in again.declarations(50, "26FRB")
    ]
    assert first.documents_by_authority() == again.documents_by_authority()
    assert [p.xml for p in other.declarations(50, "26FRB")] != [
        p.xml for p in Mix(7).declarations(50, "26FRB")
    ]


def test_each_declaration_quotes_one_to_five_distinct_documents_over_the_three_authorities() -> (
    None
):
    planned = Mix(1).declarations(1000, "26FRB")
    counts = Counter(len(p.documents) for p in planned)
    assert set(counts) == {1, 2, 3, 4, 5}
    assert counts[1] > counts[5]  # fewer documents are more common
    for p in planned:
        references = [d.reference for d in p.documents]
        assert len(set(references)) == len(references)
    quoted = Counter(d.authority for p in planned for d in p.documents)
    assert set(quoted) == {"dgal", "cites", "dga"}
    assert sum(1 for p in planned if len(p.authorities) > 1) > 100  # mixed declarations


def test_every_goods_item_claims_a_line_of_its_own_that_covers_it() -> None:
    mix = Mix(3)
    planned = mix.declarations(400, "26FRA") + mix.declarations(400, "26FRB")
    lines = [(d.reference, d.line) for p in planned for d in p.documents]
    assert len(set(lines)) == len(lines)  # no hot line: nobody else claims it
    distinct_documents = {reference for reference, _ in lines}
    assert len(distinct_documents) > len(planned) / 5
    for p in planned:
        for quoted in p.documents:
            document = mix.documents[quoted.reference]
            assert document.authority == quoted.authority
            assert quoted.line is not None
            assert quoted.quantity is not None
            assert document.lines[quoted.line] >= Decimal(quoted.quantity)


def test_the_hub_reads_every_declaration_and_routes_its_documents_where_the_mix_says() -> None:
    codec = DeclarationCodec()
    routing = load_routing_table(config_path("routing.toml"))
    for p in Mix(5).declarations(200, "26FRBENCHS1"):
        declaration = codec.decode(p.xml)
        assert declaration.reference == p.reference
        documents = [d for item in declaration.goods_items for d in item.documents]
        assert [(d.reference, d.line) for d in documents] == [
            (q.reference, q.line) for q in p.documents
        ]
        assert [routing.authority_for(d.code) for d in documents] == [
            q.authority for q in p.documents
        ]


def test_the_partner_documents_of_a_later_batch_are_given_on_their_own() -> None:
    mix = Mix(2)
    mix.declarations(100, "26FRA")
    later = mix.declarations(20, "26FRB")
    quoted = {d.reference for p in later for d in p.documents}
    given = mix.documents_by_authority(quoted)
    assert {str(d["reference"]) for listed in given.values() for d in listed} == quoted
    for authority, listed in given.items():
        assert all(mix.documents[str(d["reference"])].authority == authority for d in listed)


# -- figures ------------------------------------------------------------------------------


def test_percentiles_are_nearest_rank_values_some_declaration_really_had() -> None:
    values = [float(n) for n in range(100, 0, -1)]  # 1..100, unsorted
    assert percentile(values, 50) == 50
    assert percentile(values, 95) == 95
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([0.2, 0.1, 0.4], 50) == 0.2
    assert percentile([0.2, 0.1, 0.4], 99) == 0.4  # never interpolated, never below the top
    assert percentile([3.0], 1) == 3.0


@pytest.mark.parametrize("q", [0, -1, 100.5])
def test_a_percentile_outside_zero_to_a_hundred_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        percentile([1.0], q)


def test_no_values_have_no_percentile() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    assert latency_summary([]) == {"count": 0}


def test_latencies_are_summarised_in_milliseconds() -> None:
    seconds = [n / 1000 for n in range(1, 1001)]  # 1 ms .. 1000 ms
    assert latency_summary(seconds) == {
        "count": 1000,
        "p50_ms": 500.0,
        "p95_ms": 950.0,
        "p99_ms": 990.0,
        "max_ms": 1000.0,
    }


def test_the_timeline_gives_each_second_of_the_schedule_its_median_and_worst() -> None:
    points = [(0.1, 0.050), (0.5, 0.070), (0.9, 0.060), (2.2, 3.0), (2.7, 0.1)]
    assert timeline(points) == [
        {"second": 0, "count": 3, "p50_ms": 60.0, "max_ms": 70.0},
        {"second": 2, "count": 2, "p50_ms": 100.0, "max_ms": 3000.0},
    ]


def _seconds(medians: list[float]) -> list[dict[str, float | int]]:
    return [{"second": n, "count": 10, "p50_ms": m, "max_ms": m} for n, m in enumerate(medians)]


def test_a_paced_run_whose_latency_keeps_climbing_is_flagged_as_not_sustained() -> None:
    climbing = _seconds([100, 120, 90, 300, 700, 1200, 2000, 3500, 5000])
    assert backlog_grew(climbing)
    stall_then_recovery = _seconds([100, 120, 90, 3000, 110, 100, 95, 120, 100])
    assert not backlog_grew(stall_then_recovery)
    fast_but_doubling = _seconds([20, 20, 20, 30, 30, 30, 60, 60, 60])  # still under 250 ms
    assert not backlog_grew(fast_but_doubling)
    assert not backlog_grew(_seconds([100, 5000]))  # too short to say


def test_the_steady_rate_leaves_out_the_ramp_and_the_tail() -> None:
    ramp = [5.0 + n * 0.5 for n in range(5)]  # slow start: 2 per second
    steady = [10.0 + n * 0.01 for n in range(90)]  # then 100 per second
    tail = [20.0 + n for n in range(5)]  # stragglers
    assert steady_rate(tail + steady + ramp) == pytest.approx(100)
    assert len(ramp + steady + tail) / 25.0 < 5  # what the whole span would have said
    assert steady_rate([1.0, 2.0]) is None  # too few to say


def test_a_process_cpu_time_is_its_user_and_system_ticks_whatever_its_name() -> None:
    stat = "4242 (python -m (odd)) S 1 4242 4242 0 -1 4194560 900 0 0 0 1500 250 7 3 20 0 4"
    assert process_ticks(stat) == 1750  # utime and stime; not its children's 7 + 3


def test_the_machine_is_busy_in_all_but_idle_and_iowait() -> None:
    proc_stat = "cpu  100 5 50 1000 20 3 2 1 9 9\ncpu0 50 2 25 500 10 1 1 0 0 0\n"
    assert busy_ticks(proc_stat) == 100 + 5 + 50 + 3 + 2 + 1


def test_a_ratio_reads_both_ways() -> None:
    assert ratio(0.0125) == "0.0125 (1 : 80)"
    assert ratio(2.5) == "2.50"
    assert ratio(0) == "-"


def test_a_table_aligns_names_left_and_figures_right() -> None:
    text = render_table("T", ["name", "per s"], [["a", 1234.5], ["longer", 7], ["c", None]])
    assert text.splitlines() == [
        "T",
        "name      per s",
        "------  -------",
        "a       1,234.5",
        "longer        7",
        "c             -",
    ]


def test_the_printed_result_shows_every_figure_the_issue_asks_for() -> None:
    result = {
        "hub": [
            {
                "workers": workers,
                "saturation": {
                    "declarations": 3000,
                    "decided": 3000,
                    "declarations_per_second": rate,
                    "steady_per_second": rate + 5,
                    "cpu": {
                        "wall_s": 40.0,
                        "others_s": 18.0,
                        "by_process_s": {"hub": 36.0 / workers, "broker": 10.0},
                    },
                },
                "latency": {
                    "backlog_grew": workers == 2,
                    "offered_per_second": rate / 2,
                    "latency": {"count": 9, "p50_ms": 120.0, "p95_ms": 300.0, "p99_ms": p99},
                },
            }
            for workers, rate, p99 in [(1, 90.0, 480.5), (2, 150.0, 610.25)]
        ],
        "raw_pipe": {"records_per_second": 9000.0},
        "hub_over_raw": {"1 worker": 0.01, "2 workers": 150 / 9000},
        "rss_mib": {"hub": {"start": 100.0, "end": 110.0}, "adapter-dga": {"start": 80.0}},
    }
    text = render_result(result)
    for shown in [
        "1 hub worker  ",
        "2 hub workers",
        "480.5",  # p99 of each configuration
        "610.2",
        "3000/3000",
        "9,000.0",  # the raw pipe, and the ratios
        "0.0100 (1 : 100)",
        "(1 : 60)",
        "0.45",  # other work kept 0.45 of a CPU busy during the saturation run
        "NOT SUSTAINED with 2 worker(s)",
    ]:
        assert shown in text
    assert "NOT SUSTAINED with 1 worker(s)" not in text
    processes = text.split("Processes:")[1].splitlines()
    hub_row = next(line for line in processes if line.startswith("hub "))
    # RSS start, end, change; % of a core during each saturation run; none in the raw pipe
    assert hub_row.split() == ["hub", "100.0", "110.0", "+10", "%", "90", "45", "-"]
    broker_row = next(line for line in processes if line.startswith("broker "))
    assert broker_row.split() == ["broker", "-", "-", "-", "25", "25", "-"]


def test_the_records_the_watchdog_read_again_are_shown_per_configuration() -> None:
    """A repair is a record handled twice and a late decision: it shows in the table
    (32 needless ones in a two-worker run went unseen until its logs were read)."""
    result = {
        "hub": [
            {"workers": 1, "saturation": {}, "records_read_again": 0},
            {"workers": 2, "saturation": {}, "records_read_again": 32},
            {"workers": 3, "saturation": {}},  # a hub that did not answer: unknown
        ]
    }
    table = render_result(result).split("\n\n")[0]
    header, _rule, *rows = table.splitlines()[1:]
    assert header.split()[-2:] == ["read", "again"]
    assert [row.split()[-1] for row in rows] == ["0", "32", "-"]


def test_each_window_of_a_paced_run_has_its_own_p99_so_one_run_shows_the_spread() -> None:
    """One latency run's p99 rests on its few slowest declarations: the p99 of each 30-s
    window of the schedule shows how much it moves within the run (issue 12 asks p99 at
    half rate; five runs of one day gave 0.33 to 0.83 s)."""
    quick = [(n / 10, 0.100) for n in range(300)]  # 0 to 30 s: 100 ms each
    stall = [(30 + n / 10, 0.100 if n % 50 else 0.900) for n in range(300)]  # 6 at 900 ms
    partial = [(60 + n / 10, 0.200) for n in range(50)]  # 5 s: too short a window
    assert window_percentiles(quick + stall + partial, 99, window_s=30) == [100.0, 900.0]
    assert window_percentiles([], 99) == []


def test_the_spread_of_the_windows_p99_is_printed_beside_the_run_p99() -> None:
    result = {
        "hub": [
            {
                "workers": 1,
                "saturation": {},
                "latency": {
                    "latency": {"p99_ms": 476.0},
                    "p99_ms_by_window": [230.6, 476.0, 720.25, 310.0],
                },
            },
            {"workers": 2, "saturation": {}, "latency": {"latency": {"p99_ms": 300.0}}},
        ]
    }
    table = render_result(result).split("\n\n")[0]
    header, _rule, one, two = table.splitlines()[1:]
    assert "p99 by 30 s" in header
    assert "231-720" in one.split()
    assert "-" in two.split()  # no windows: not known


def test_the_calibration_is_the_same_work_each_time_and_its_cpu_time() -> None:
    """The machine's speed is judged by a fixed piece of work (benchmarks/cpu.py): the same
    digest every time, so none of it is skipped, and a CPU time above zero."""
    assert calibration_work() == calibration_work()
    assert calibration_ms(rounds=2) > 0


def test_the_calibrations_before_and_after_the_runs_are_printed_lowest_to_highest() -> None:
    """Two runs of the same code, others at 0.00, cost the clearance side 1.5 and 2.2 ms
    of CPU per declaration (stop 28): the machine itself was slower in the second."""
    result = {
        "hub": [
            {
                "workers": 1,
                "saturation": {"cpu": {"calibration_ms": [11.5, 12.25]}},
                "latency": {"cpu": {"calibration_ms": [16.8, 11.4]}},
            },
            {"workers": 2, "saturation": {}},  # measured before the calibration existed
        ]
    }
    table = render_result(result).split("\n\n")[0]
    header, _rule, one, two = table.splitlines()[1:]
    assert header.split()[-6:-4] == ["calib", "ms"]
    assert one.split()[-3] == "11.4-16.8"
    assert two.split()[-3] == "-"


def test_the_clearance_side_s_cpu_per_declaration_gauges_the_machine_through_the_run() -> None:
    """Calibrated fast before and after (10.4-11.5 ms), a run cost the clearance side, the
    adapters, the partner systems and the broker about twice their CPU per declaration of
    an earlier run (stop 29): the machine was slower in between. The clearance side does
    the same work in every run, so its cost per declaration says so."""
    result = {
        "hub": [
            {
                "workers": 1,
                "saturation": {
                    "decided": 3000,
                    "cpu": {"by_process_s": {"clearance (this process)": 7.0, "hub": 50.6}},
                },
            },
            {"workers": 2, "saturation": {"decided": 0}},
        ]
    }
    table = render_result(result).split("\n\n")[0]
    header, _rule, one, two = table.splitlines()[1:]
    assert header.split()[-4:-2] == ["clr", "ms"]
    assert one.split()[-2] == "2.33"
    assert two.split()[-2] == "-"
