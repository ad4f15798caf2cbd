"""The pure parts of ``./tasks bench-steady`` (issue 12, bounded state): what a process's
resident memory and state are read from, how a series of samples is judged flat or
growing, the books of versions offered and decided, and the printed report. The run
itself needs a broker and is never part of the test suite."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path, PurePath
from types import SimpleNamespace
from typing import Any, cast

import pytest

from benchmarks.metrics_scrape import metric_values
from benchmarks.mix import Mix
from benchmarks.steady import (
    FLAT,
    GROWING,
    MIB,
    SHRINKING,
    StateFiles,
    SteadyClearance,
    accounting,
    caches_full,
    grown,
    half_the_saturation,
    judge,
    judge_samples,
    release_after_control,
    render,
    retention_env,
    sample_processes,
    slope_per_minute,
    state_sizes,
    store_name,
    window_latency,
)
from gun_contract.model.verdicts import Outcome
from gun_contract.settings import Settings

# -- the judgement --------------------------------------------------------------------


def every_30_s(values: list[float | None]) -> list[tuple[float, float | None]]:
    return [(30.0 * n, v) for n, v in enumerate(values)]


def verdict(points: list[tuple[float, float | None]], **judged: float) -> str | None:
    trend = judge(points, **judged)
    return trend.verdict if trend else None


def test_a_figure_within_ten_percent_of_its_first_judged_sample_is_flat() -> None:
    trend = judge(every_30_s([100, 104, 97, 109]), settle_s=0)
    assert trend is not None
    assert trend.verdict == FLAT
    assert trend.first == 100
    assert trend.last == 109
    assert trend.change == pytest.approx(0.09)


def test_a_figure_more_than_ten_percent_above_is_growing_with_its_slope_per_minute() -> None:
    # 5 MiB more every 30 s: 10 MiB a minute.
    trend = judge(every_30_s([100, 105, 110, 115]), settle_s=0)
    assert trend is not None
    assert trend.verdict == GROWING
    assert trend.slope_per_minute == pytest.approx(10.0)
    assert trend.change == pytest.approx(0.15)


def test_a_figure_more_than_ten_percent_below_is_shrinking_not_growing() -> None:
    trend = judge(every_30_s([100, 90, 85]), settle_s=0)
    assert trend is not None
    assert trend.verdict == SHRINKING
    assert trend.slope_per_minute < 0


def test_the_samples_before_the_settling_window_are_left_out() -> None:
    # Doubling during the warm-up (tables filling, retention not yet due), flat after.
    points = every_30_s([50, 80, 100, 102, 101, 103])
    assert judge(points, settle_s=60) == judge(points[2:], settle_s=0)
    assert verdict(points, settle_s=60) == FLAT
    assert verdict(points, settle_s=0) == GROWING


def test_a_change_below_the_floor_is_flat_whatever_its_share() -> None:
    # A SQLite file of 100 kB whose WAL grew by 300 kB: +300 %, but under 1 MiB.
    points = every_30_s([100_000, 400_000])
    assert verdict(points, settle_s=0, floor=MIB) == FLAT
    assert verdict(points, settle_s=0) == GROWING


def test_a_store_that_appears_from_nothing_grows_and_one_that_stays_empty_is_flat() -> None:
    appeared = judge(every_30_s([0, 0, 5 * MIB]), settle_s=0, floor=MIB)
    assert appeared is not None
    assert appeared.verdict == GROWING
    assert appeared.change is None  # no share of nothing
    assert verdict(every_30_s([0, 0, 0]), settle_s=0) == FLAT


def test_without_two_samples_to_compare_there_is_no_verdict() -> None:
    assert judge(every_30_s([100]), settle_s=0) is None
    assert judge(every_30_s([100, 110, 120]), settle_s=61) is None
    # A process gone (no RSS) leaves its samples out rather than reading as zero.
    assert judge(every_30_s([100, None]), settle_s=0) is None


def test_a_store_that_saws_between_flushes_is_judged_by_its_peaks_and_is_flat() -> None:
    """RocksDB's write-ahead logs fill until their memtables flush, and its level-0 files
    pile up until a compaction: a bounded store saws between 12 and 29 MiB, and its last
    sample against its first says whatever the phase of the saw was. Its peaks do not
    rise."""
    saw = every_30_s([12, 20, 29, 14, 22, 28, 13, 21, 29])
    assert verdict(saw, settle_s=0) == GROWING
    trend = judge(saw, settle_s=0, peaks=0.25)
    assert trend is not None
    assert trend.verdict == FLAT
    assert (trend.first, trend.last) == (29, 29)  # the highest of the first and last quarter


def test_a_store_whose_peaks_rise_is_growing() -> None:
    rising = every_30_s([12, 20, 29, 14, 24, 33, 16, 27, 36])
    trend = judge(rising, settle_s=0, peaks=0.25)
    assert trend is not None
    assert trend.verdict == GROWING
    assert (trend.first, trend.last) == (29, 36)


def test_the_peaks_are_taken_after_the_settling_window() -> None:
    points = every_30_s([50, 80, 12, 20, 13, 21, 12, 20, 13])
    trend = judge(points, settle_s=60, peaks=0.25)
    assert trend is not None
    assert (trend.first, trend.last) == (20, 20)


def test_the_slope_is_the_least_squares_fit_per_minute() -> None:
    assert slope_per_minute([(0, 0), (60, 1), (120, 2)]) == pytest.approx(1.0)
    assert slope_per_minute([(0, 3), (60, 3)]) == 0.0
    assert slope_per_minute([(0, 3)]) == 0.0


def sample(
    t: float, hub_rss: float, hub_stores: dict[str, int], partner_rss: float
) -> dict[str, Any]:
    return {
        "t_s": t,
        "offered": 0,
        "decided": 0,
        "window_latency": {"count": 0},
        # As the processes were started: the partner system first, the hub last.
        "processes": {
            "partner-sim-dgal": {"rss_mib": partner_rss, "state_bytes": {"dgal.sqlite": 0}},
            "adapter-dgal": {"rss_mib": 80.0, "state_bytes": {"bench-dgal-pending.sqlite": 0}},
            "hub": {"rss_mib": hub_rss, "state_bytes": hub_stores},
        },
    }


def test_each_process_and_each_store_is_judged_and_only_the_bounded_ones_fail() -> None:
    samples = [
        sample(0, 100, {"cases": 10 * MIB, "ops-view.sqlite3": 4 * MIB}, 80),
        sample(30, 150, {"cases": 20 * MIB, "ops-view.sqlite3": 8 * MIB}, 80),
        sample(60, 152, {"cases": 20 * MIB, "ops-view.sqlite3": 12 * MIB}, 120),
        sample(90, 151, {"cases": 21 * MIB, "ops-view.sqlite3": 16 * MIB}, 160),
    ]
    judged = judge_samples(samples, settle_s=30, tolerance=0.10)
    assert list(judged) == ["hub", "adapter-dgal", "partner-sim-dgal"]
    hub = judged["hub"]
    assert hub["bounded"]
    assert hub["rss_mib"]["verdict"] == FLAT
    assert hub["stores"]["cases"]["verdict"] == FLAT
    assert hub["stores"]["ops-view.sqlite3"]["verdict"] == GROWING
    assert hub["stores"]["ops-view.sqlite3"]["slope_per_minute"] == pytest.approx(8 * MIB)
    assert hub["state_bytes"]["verdict"] == GROWING  # 28 -> 37 MiB, +32 %
    partner = judged["partner-sim-dgal"]
    assert not partner["bounded"]
    assert partner["rss_mib"]["verdict"] == GROWING
    # The partner's own records grow by design: only the hub's growth fails the run.
    assert grown(judged) == ["hub state_bytes"]


def test_the_state_is_judged_by_its_peaks_and_the_resident_memory_by_its_ends() -> None:
    """A store saws (write-ahead logs until a flush); resident memory does not, and a
    process whose memory ends higher than it started has grown whatever its peaks."""
    wal = [2, 10, 18, 4, 12, 18, 3, 11, 18]
    rss = [100, 108, 118, 104, 110, 118, 106, 112, 118]
    samples = [
        sample(30.0 * n, rss[n], {"cases [wal]": wal[n] * MIB, "cases": 10 * MIB}, 80)
        for n in range(len(wal))
    ]
    judged = judge_samples(samples, settle_s=0, tolerance=0.10)
    hub = judged["hub"]
    assert hub["stores"]["cases [wal]"]["verdict"] == FLAT
    assert hub["state_bytes"]["verdict"] == FLAT  # 28 MiB at the peaks of both quarters
    assert hub["rss_mib"]["verdict"] == GROWING  # 100 -> 118 MiB
    assert grown(judged) == ["hub rss_mib"]


# -- sampling /proc and the state folders ----------------------------------------------


def test_resident_memory_is_read_from_vmrss_in_kibibytes(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "status").write_text(
        "Name:\tpython\nVmPeak:\t 999999 kB\nVmRSS:\t  153600 kB\nVmSwap:\t0 kB\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    (state / "bench-dgal-pending.sqlite").write_bytes(b"x" * 4096)
    sampled = sample_processes(
        {"adapter-dgal": 42, "adapter-gone": 43},
        {"adapter-dgal": StateFiles(state, "bench-dgal-*")},
        proc=tmp_path,
    )
    assert sampled["adapter-dgal"] == {
        "rss_mib": 150.0,
        "state_bytes": {"bench-dgal-pending.sqlite": 4096},
    }
    # A process that has exited has no resident memory, and no state was named for it.
    assert sampled["adapter-gone"] == {"rss_mib": None, "state_bytes": {}}


def test_a_rocksdb_table_counts_all_its_partitions_and_a_sqlite_file_its_side_files(
    tmp_path: Path,
) -> None:
    tables = tmp_path / "hub" / "gun-hub-data" / "v1" / "tables"
    for partition, size in ((0, 1000), (3, 500)):
        table = tables / f"cases-{partition}.db"
        table.mkdir(parents=True)
        (table / "000012.sst").write_bytes(b"s" * size)
        (table / "LOG").write_bytes(b"l" * 10)
        (table / "000004.log").write_bytes(b"w" * size * 2)
    view = tmp_path / "hub" / "ops-view.sqlite3"
    view.write_bytes(b"v" * 300)
    Path(f"{view}-wal").write_bytes(b"w" * 200)
    (tmp_path / "dgal.sqlite").write_bytes(b"d" * 7)
    assert state_sizes(StateFiles(tmp_path, "hub")) == {
        "cases": 1000 + 500 + 2 * 10,
        "cases [wal]": 2 * (1000 + 500),
        "ops-view.sqlite3": 300 + 200,
    }
    assert state_sizes(StateFiles(tmp_path, "dgal.sqlite*")) == {"dgal.sqlite": 7}
    assert state_sizes(StateFiles(tmp_path, "absent*")) == {}


def test_store_names() -> None:
    assert store_name(PurePath("hub/v1/tables/claimed-ids-2.db/000009.sst")) == "claimed-ids"
    assert store_name(PurePath("hub/v1/tables/claimed-ids-2.db/000004.log")) == (
        "claimed-ids [wal]"
    )
    assert (
        store_name(PurePath("state/bench-cites-replay.sqlite-shm")) == "bench-cites-replay.sqlite"
    )
    assert store_name(PurePath("hub/ops-view.sqlite3-journal")) == "ops-view.sqlite3"
    # The retention index: one store, not its files one by one (stop 45's steady run).
    assert store_name(PurePath("hub/retention-due/000012.sst")) == "retention-due"
    assert store_name(PurePath("hub/retention-due/000004.log")) == "retention-due [wal]"
    assert store_name(PurePath("hub/retention-due/MANIFEST-000005")) == "retention-due"


def test_the_hubs_retention_counters_are_read_from_its_metrics_summed_over_labels() -> None:
    exposition = "\n".join(
        [
            "# HELP gun_hub_cases_retired_total Finalised cases deleted",
            "# TYPE gun_hub_cases_retired_total counter",
            "gun_hub_cases_retired_total 1234.0",
            "gun_hub_cases_retired_created 1.7964e+09",
            'gun_hub_case_retention_entries{partition="0"} 10.0',
            'gun_hub_case_retention_entries{partition="1"} 5.0',
        ]
    )
    assert metric_values(
        exposition,
        [
            "gun_hub_cases_retired_total",
            "gun_hub_case_retention_entries",
            "gun_hub_case_markers_forgotten_total",
        ],
    ) == {
        "gun_hub_cases_retired_total": 1234.0,
        "gun_hub_case_retention_entries": 15.0,
        "gun_hub_case_markers_forgotten_total": 0.0,  # absent: none forgotten yet
    }


# -- the run's settings and its books ---------------------------------------------------


def test_the_retention_settings_reach_every_component_as_it_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in retention_env(30).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.hub.case_retention_s == 30
    assert settings.hub.decided_marker_s == 30
    assert settings.hub.case_sweep_s == 5
    # Replay memories forget an id lifetime + skew after it was sealed: 90 s, not 65 min.
    assert settings.security.message_lifetime_s + settings.security.max_clock_skew_s == 90
    assert settings.ops.view_retention_days * 86400 == pytest.approx(30, abs=0.01)


def test_a_release_after_control_is_version_2_of_the_same_goods() -> None:
    planned = Mix(3).declarations(1, "26FRTEST")[0]
    released = release_after_control(planned)
    assert b"<Version>2</Version><Stage>RELEASED_AFTER_CONTROL</Stage>" in released
    assert (
        released.replace(b"<Version>2</Version>", b"<Version>1</Version>").replace(
            b"RELEASED_AFTER_CONTROL", b"LODGED"
        )
        == planned.xml
    )


def test_every_version_offered_must_be_decided_exactly_once() -> None:
    offered = {("A", 1), ("A", 2), ("B", 1), ("C", 1)}
    books = accounting(offered, {("A", 1): 1, ("A", 2): 1, ("B", 1): 1, ("C", 1): 1})
    assert books["ok"]
    assert books["decided"] == 4
    books = accounting(offered, {("A", 1): 1, ("A", 2): 2, ("B", 1): 1, ("Z", 1): 1})
    assert not books["ok"]
    assert (books["missing"], books["decided_twice"], books["not_offered"]) == (1, 1, 1)
    assert books["examples"] == {
        "missing": ["C v1"],
        "decided_twice": ["A v2"],
        "not_offered": ["Z v1"],
    }


def test_the_window_latency_takes_the_decisions_that_arrived_in_the_window() -> None:
    arrivals = [(10.0, 0.1), (29.0, 0.3), (30.0, 0.2), (31.0, 9.0)]
    window = window_latency(arrivals, since=0.0, until=30.0)
    assert window["count"] == 3
    assert window["p50_ms"] == 200.0
    assert window["p99_ms"] == 300.0
    assert window_latency(arrivals, since=60.0, until=90.0) == {"count": 0}


# -- the report ----------------------------------------------------------------------------


def report(books_ok: bool) -> dict[str, Any]:
    samples = [
        sample(0, 100, {"cases": 10 * MIB}, 80),
        sample(30, 101, {"cases": 10 * MIB}, 81),
        sample(60, 140, {"cases": 30 * MIB}, 82),
    ]
    samples[-1]["hub_retention"] = {
        "gun_hub_cases_retired_total": 321.0,
        "gun_hub_case_markers_forgotten_total": 123.0,
        "gun_hub_records_read_again_total": 7.0,
        "gun_hub_gc_pause_seconds_sum": 1.234,
    }
    offered = {("A", 1), ("B", 1)}
    return {
        "samples": samples,
        "settle_s": 30,
        "options": {"tolerance": 0.1},
        "judged": judge_samples(samples, 30, 0.1),
        "accounting": accounting(offered, {("A", 1): 1, ("B", 1): 1 if books_ok else 0}),
        "declarations": 2,
        "releases_after_control": 0,
        "pre_run_releases": accounting({("W", 2)}, {("W", 2): 1}),
    }


def test_the_report_names_each_verdict_and_what_grew() -> None:
    text = render(report(books_ok=True))
    hub_row = next(line for line in text.splitlines() if line.startswith("hub "))
    assert hub_row.split()[-1] == GROWING
    assert "+38.6 %" in hub_row  # RSS 101 -> 140 MiB
    assert "partner-sim-dgal (partner's own)" in text
    assert "hub: cases" in text
    last_sample = next(line for line in text.splitlines() if line.startswith("60 "))
    # Cases retired, markers forgotten, records the offset watchdog had read again,
    # seconds the garbage collector stopped the hub.
    assert last_sample.split()[-4:] == ["321", "123", "7", "1.23"]
    assert "NOTHING LOST" in text
    assert "before the run, the warm-ups' controls released: 1 offered, 1 decided" in text
    assert "GROWING: hub rss_mib, hub state_bytes" in text


def test_the_report_says_when_a_version_was_lost() -> None:
    text = render(report(books_ok=False))
    assert "LOST OR DOUBLED" in text
    assert "B v1" in text


# -- the clearance side: a control ends with its release --------------------------------


class FakeSender:
    """Takes what is published; each delivery already acknowledged."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self._changed = asyncio.Condition()

    def seal(self, data: bytes) -> bytes:
        return data

    async def publish(self, value: bytes, reference: str) -> asyncio.Future[None]:
        self.published.append((reference, value))
        async with self._changed:
            self._changed.notify_all()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def until_published(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.published) >= count)


class FakeReader:
    """Hands out the decisions queued, a batch per call."""

    def __init__(self) -> None:
        self.queued: list[list[Any]] = []

    def decide(self, reference: str, version: int, outcome: Outcome) -> None:
        decision = SimpleNamespace(reference=reference, version=version, outcome=outcome)
        self.queued.append([SimpleNamespace(decision=decision)])

    async def collect(self, *, expected: int, timeout_s: float) -> list[Any]:
        await asyncio.sleep(0.01)
        return self.queued.pop(0) if self.queued else []


class FakeGroup:
    def check_alive(self) -> None:
        """Every component alive."""


async def test_a_control_is_followed_by_its_release_and_every_version_is_counted() -> None:
    sender, reader = FakeSender(), FakeReader()
    clearance = SteadyClearance(
        cast(Any, sender), cast(Any, reader), cast(Any, FakeGroup()), control_result_after_s=0.05
    )
    controlled, released = Mix(5).declarations(2, "26FRSTEADYR")
    clearance.start_reading()
    await clearance.offer([controlled, released], rate=100.0, start=time.monotonic())
    reader.decide(controlled.reference, 1, Outcome.CONTROL_PHYSICAL)
    reader.decide(released.reference, 1, Outcome.RELEASE)
    # The control's result is due 0.05 s after its decision: the third publication.
    await asyncio.wait_for(sender.until_published(3), 5)
    reader.decide(controlled.reference, 2, Outcome.RELEASE)
    reader.decide(controlled.reference, 2, Outcome.RELEASE)  # a duplicate, counted
    await clearance.drain(timeout_s=2)
    await clearance.stop_reading()

    assert [reference for reference, _ in sender.published] == [
        controlled.reference,
        released.reference,
        controlled.reference,
    ]
    assert sender.published[-1][1] == release_after_control(controlled)
    assert clearance.releases == 1
    assert len(clearance.arrivals) == 2  # the latency of each version 1
    books = accounting(clearance.offered, clearance.decided)
    assert (books["offered"], books["decided"], books["decided_twice"]) == (3, 3, 1)
    assert books["examples"]["decided_twice"] == [f"{controlled.reference} v2"]


def test_the_operations_view_in_its_own_process_is_held_to_the_bounds_too() -> None:
    samples = [
        {"t_s": t, "processes": {"view": {"rss_mib": 60.0, "state_bytes": {"ops-view.sqlite3": b}}}}
        for t, b in ((0, 8 * MIB), (30, 12 * MIB), (60, 16 * MIB))
    ]
    judged = judge_samples(samples, settle_s=0, tolerance=0.10)
    assert judged["view"]["bounded"]
    assert grown(judged) == ["view state_bytes"]


def test_half_the_saturation_counts_each_release_after_control_as_a_version() -> None:
    # 40 declarations/s at saturation, 70 % controlled: 20 versions/s are half of it,
    # and each declaration brings 1.7 versions.
    rate = half_the_saturation(40.0, 0.7)
    assert rate * 1.7 == pytest.approx(20.0)
    assert half_the_saturation(40.0, 0.0) == 20.0


def test_the_caches_are_full_from_nine_tenths_of_the_rocksdb_budget() -> None:
    budget = 64 * MIB
    assert not caches_full({"gun_hub_rocksdb_memory_bytes": 40 * MIB}, budget)
    assert caches_full({"gun_hub_rocksdb_memory_bytes": 58 * MIB}, budget)
    # A hub that did not answer, or has no RocksDB tables, is never found full.
    assert not caches_full(None, budget)
    assert not caches_full({"gun_hub_cases_retired_total": 3.0}, budget)
