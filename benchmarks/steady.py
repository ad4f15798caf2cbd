"""Memory and disk under a steady load (issue 12, bounded state): ``./tasks bench-steady``.

The stack of ``./tasks bench`` (a broker of the run's own, the three simulated partner
systems and their adapters, one hub worker as processes; the clearance system in this
process, sealing every declaration and opening every decision), warmed up as there, then:

1. **The rate**: ``--rate`` declarations/s, or half of a quick saturation measurement
   counted in versions (each control's release is a version too).
2. **The fill**: rounds at saturation until the hub's RocksDB memory reaches 90 % of its
   budget (at most ``--fill-minutes``, 4): its read cache fills by volume to its cap
   (``fill_the_caches``), and the run then measures a worker as it stands in service.
3. **A steady run** of ``--minutes`` (10): fresh declarations of the realistic mix
   (``benchmarks/mix.py``) offered on a fixed schedule at that rate. The clearance system
   also does what it does in production once a control is over: a few seconds after a
   control decision it sends the next version, RELEASED_AFTER_CONTROL. Without it a
   controlled case keeps its reservations and never leaves the hot table (by design:
   ``docs/bounded-state.md``), and 70 % of this mix's decisions are controls.
4. **Retention within the run**: the hub's case retention, marker time and sweep, and
   the envelope's message lifetime and clock skew (which bound every replay memory) are
   set to seconds (``--retention``) instead of days, so decided cases, their markers and
   the message ids seen do leave while the run lasts.
5. **Samples** every ``--sample`` seconds (30): VmRSS of every component process, the
   bytes on disk of each one's state, store by store (the hub's data folder: its RocksDB
   tables; the operations view's SQLite, kept by ``gun-hub view`` in a process of its own
   as ``./tasks bench`` runs it; each adapter's pending and replay SQLite; each partner
   system's ledger), the declarations decided so far, the decision latency of the window
   (from scheduled submission to decision opened, as ``./tasks bench``) and the hub's
   retention counters (cases retired, markers forgotten: retention seen operating).
6. **The judgement**: the first ``--settle`` of the run (20 %) excluded, each process's
   RSS in the last sample against the first sample after it, and its state size (which
   saws: write-ahead logs until a flush) in the highest sample of the judged time's last
   quarter against the highest of its first quarter: within ``--tolerance`` (±10 %)
   FLAT, else GROWING (or SHRINKING), with the least-squares slope per minute over the
   judged samples.
7. **Nothing lost**: every version offered (the declarations and the releases after
   control) decided exactly once.

A table is printed; everything is saved as JSON (``benchmarks/results/``, or ``--out``).
Exit code 1 when a declaration was lost or decided twice, or when the memory or state of
the hub, the operations view or an adapter grew.

Run: ./tasks bench-steady [--minutes M] [--rate R] [--retention S] [--seed N] [--out F]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import aiohttp

from benchmarks.bench import (
    CONTROLS,
    PARTITIONS,
    PREFIX,
    WARM_UP,
    Clearance,
    load_documents,
    open_clearance,
    print_machine,
    rss_mib,
    run_on_own_broker,
    stack_env,
    start_stack,
    warm_broker,
    write_documents,
)
from benchmarks.metrics_scrape import scrape
from benchmarks.mix import Mix, PlannedDeclaration
from benchmarks.report import latency_summary, render_table
from gun_contract.kafka.admin import ensure_topics
from gun_contract.resources import config_path
from gun_contract.security.entitlements import parties
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings, Settings
from gun_contract.topics import topic_registry
from gun_hub.cli.progress import progress_bar
from gun_hub.domain.routing import load_routing_table
from gun_tools.clearance_stand_in import DecisionReader, DeclarationSender
from gun_tools.local_broker import LocalBroker
from gun_tools.processes import (
    ProcessGroup,
    stopping_what_it_started_on_termination,
)

MIB = 1024 * 1024
FLAT, GROWING, SHRINKING = "FLAT", "GROWING", "SHRINKING"
# A SQLite WAL checkpoint or a RocksDB memtable flush moves a store of a few hundred
# kilobytes by more than 10 % without anything growing: state changes smaller than this
# count as flat whatever their share.
STATE_FLOOR_BYTES = 1 * MIB
# A RocksDB store saws: its write-ahead logs fill until their memtables flush (up to the
# write buffers' share of the hub's memory budget, tens of MiB), its level-0 files pile
# up until a compaction. Its last sample against its first depends on where in the saw
# each fell; a store judged by the highest sample of the judged time's first and last
# quarters grows only if its peaks rise.
STATE_PEAKS = 0.25
# The envelope's clock skew during the run (default 300 s): a replay memory keeps an id
# this long after the message's expiry. 30 s is still far more than a record takes from
# sealing to the broker on this machine.
CLOCK_SKEW_S = 30
# The partner systems' ledgers are the partners' own records (every reservation and
# write-off), not state the hub's bounds apply to: shown, but not part of the verdict.
BOUNDED = ("hub", "view", "adapter-")
RUN_PREFIX = "26FRSTEADYR"  # the steady run's references (the warm-ups' differ)
# The fill's rounds: references 26FRSTEADF<letter><serial>, one letter per round.
FILL_PREFIX = "26FRSTEADF"
FILL_ROUNDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Declarations per round of the fill, all sent at once: decided well within the envelope's
# shortened lifetime (their controls' releases too, sent together before the run).
FILL_ROUND = 1500
# The fill ends once the hub's RocksDB memory (its read cache and the write buffers
# charged to it) reaches this share of its budget: full, as a long run leaves it.
FILL_SHARE = 0.9
# The pace of the releases after control sent before the run (the warm-ups', the
# saturation's and the fill's): below what the hub decides at saturation.
RELEASES_PER_S = 60.0


@dataclass
class Options:
    minutes: float = 10.0
    rate: float | None = None  # declarations/s; None: half of a quick saturation run
    saturation_declarations: int = 1000
    fill_minutes: float = 4.0  # at most, at saturation, before the run; 0: none
    sample_s: float = 30.0
    settle: float = 0.2  # share of the run left out of the judgement
    tolerance: float = 0.10
    retention_s: float = 30.0
    control_result_after_s: float = 5.0
    warm_broker: bool = True
    seed: int = 1
    out: Path | None = None


# -- the settings that make retention operate within the run ----------------------------


def retention_env(retention_s: float) -> dict[str, str]:
    """Environment of every component: decided cases retire ``retention_s`` after their
    decision and their markers as long after the sweep (swept six times per retention),
    and a sealed message lives twice that (at least 30 s), so the replay memories (claimed ids,
    seen messages, the adapters' SQLite) forget an id about ``lifetime + skew`` after it
    was sealed. The operations view forgets its decisions, events, write-offs and dead
    letters ``retention_s`` after them (``ops.view_retention_days`` in a fraction of a
    day), pruned four times per retention; its daily counts stay until their day ends."""
    return {
        "GUN_HUB_HUB__CASE_RETENTION_S": f"{retention_s:g}",
        "GUN_HUB_HUB__DECIDED_MARKER_S": f"{retention_s:g}",
        "GUN_HUB_HUB__CASE_SWEEP_S": f"{max(1.0, retention_s / 6):g}",
        "GUN_HUB_SECURITY__MESSAGE_LIFETIME_S": str(message_lifetime_s(retention_s)),
        "GUN_HUB_SECURITY__MAX_CLOCK_SKEW_S": str(CLOCK_SKEW_S),
        "GUN_HUB_OPS__VIEW_RETENTION_DAYS": f"{retention_s / 86400:.9f}",
    }


def message_lifetime_s(retention_s: float) -> int:
    return max(30, round(2 * retention_s))


def release_after_control(planned: PlannedDeclaration) -> bytes:
    """The next version of a controlled declaration: the control is over, the goods
    released (version 2, RELEASED_AFTER_CONTROL, the same goods and documents)."""
    lodged = b"<Version>1</Version><Stage>LODGED</Stage>"
    if lodged not in planned.xml:
        raise ValueError(f"{planned.reference}: not a lodged version 1")
    return planned.xml.replace(lodged, b"<Version>2</Version><Stage>RELEASED_AFTER_CONTROL</Stage>")


# -- sampling (/proc and the state folders) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StateFiles:
    """Where a process keeps its state: the files ``pattern`` matches in ``base`` (a
    matching folder counts with everything in it)."""

    base: Path
    pattern: str


_PARTITION_SUFFIX = re.compile(r"-\d+\.db$")
_SQLITE_SIDE_FILES = re.compile(r"-(wal|shm|journal)$")
# The hub's retention index on its disk (runtime/due_keys.py), under hub.data_dir.
_RETENTION_INDEX = "retention-due"


def store_name(relative: PurePath) -> str:
    """The store a state file belongs to: a RocksDB table's folder (``<table>-<partition>
    .db``, every partition together), its write-ahead log (``*.log``) apart as
    ``<table> [wal]``: it holds every write since the last memtable flush, deletions
    included, so it grows until the memtable is full whatever the table holds; the hub's
    retention index (``retention-due``, one RocksDB database) likewise; else the file
    itself, with a SQLite database's side files (``-wal``, ``-shm``, ``-journal``)."""
    for part in relative.parts[:-1]:
        if part.endswith(".db") or part == _RETENTION_INDEX:
            table = _PARTITION_SUFFIX.sub("", part).removesuffix(".db")
            return f"{table} [wal]" if relative.suffix == ".log" else table
    return _SQLITE_SIDE_FILES.sub("", relative.name)


def state_sizes(files: StateFiles) -> dict[str, int]:
    """Bytes on disk per store (:func:`store_name`); files that vanish meanwhile (a
    compaction, a checkpoint) are skipped."""
    sizes: Counter[str] = Counter()
    for match in sorted(files.base.glob(files.pattern)):
        found = [match] if not match.is_dir() else [p for p in match.rglob("*") if p.is_file()]
        for path in found:
            try:
                size = path.stat().st_size
            except OSError:
                continue
            sizes[store_name(path.relative_to(files.base))] += size
    return dict(sorted(sizes.items()))


def state_files(work: Path, authorities: Iterable[str]) -> dict[str, StateFiles]:
    """Each component's state as the stack of :func:`run` lays it out."""
    # The operations view (gun-hub view) keeps its SQLite in <work>/view.
    files = {"hub": StateFiles(work, "hub"), "view": StateFiles(work, "view")}
    for authority in authorities:
        # The pending queue and the replay memory: <prefix>-<authority>-*.sqlite.
        files[f"adapter-{authority}"] = StateFiles(work / "state", f"{PREFIX}-{authority}-*")
        files[f"partner-sim-{authority}"] = StateFiles(work, f"{authority}.sqlite*")
    return files


def sample_processes(
    pids: Mapping[str, int], files: Mapping[str, StateFiles], proc: Path = Path("/proc")
) -> dict[str, dict[str, Any]]:
    """Per process: its resident memory (MiB, None once it is gone) and state bytes per
    store."""
    return {
        name: {
            "rss_mib": rss_mib(pid, proc),
            "state_bytes": state_sizes(files[name]) if name in files else {},
        }
        for name, pid in pids.items()
    }


# Read from the hub's /metrics at each sample: what shows that retention operates during
# the run, and what may explain a late window.
HUB_METRICS = (
    "gun_hub_cases_retired_total",
    "gun_hub_case_markers_forgotten_total",
    "gun_hub_case_retention_entries",
    "gun_hub_rocksdb_memory_bytes",
    # The offset watchdog's repairs: records faust dropped, read again seconds later (a
    # late window's cause, or not).
    "gun_hub_records_read_again_total",
    # The garbage collector's pauses so far (seconds, every generation).
    "gun_hub_gc_pause_seconds_sum",
)
# The counters of HUB_METRICS printed in the samples table, in its order.
_COUNTS_SHOWN = (
    "gun_hub_cases_retired_total",
    "gun_hub_case_markers_forgotten_total",
    "gun_hub_records_read_again_total",
)


async def hub_metrics(http: aiohttp.ClientSession, url: str) -> dict[str, float] | None:
    """The hub's figures of ``HUB_METRICS``, None if it did not answer."""
    return await scrape(http, url, HUB_METRICS)


# -- the judgement (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trend:
    """How a figure moved over the judged samples."""

    first: float
    last: float
    change: float | None  # (last - first) / first; None when first is 0
    slope_per_minute: float  # least squares over the judged samples
    verdict: str

    def as_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "last": self.last,
            "change": None if self.change is None else round(self.change, 4),
            "slope_per_minute": round(self.slope_per_minute, 4),
            "verdict": self.verdict,
        }


def slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread * 60


def judge(
    points: Sequence[tuple[float, float | None]],
    settle_s: float,
    tolerance: float = 0.10,
    floor: float = 0.0,
    peaks: float | None = None,
) -> Trend | None:
    """The last sample against the first one at or after ``settle_s`` (seconds into the
    run): within ``tolerance`` of it (or within ``floor``, absolute) FLAT, else GROWING or
    SHRINKING. None without two samples to compare (a process gone shows as None).

    With ``peaks`` (a share of the judged time), the highest sample of its last
    ``peaks`` against the highest of its first instead: for a figure that saws (a
    RocksDB store between flushes and compactions), whose first and last samples fall
    wherever the saw happened to be."""
    kept = [(t, v) for t, v in points if t >= settle_s and v is not None]
    if len(kept) < 2:
        return None
    first, last = kept[0][1], kept[-1][1]
    if peaks is not None:
        start, end = kept[0][0], kept[-1][0]
        reach = peaks * (end - start)
        first = max(v for t, v in kept if t <= start + reach)
        last = max(v for t, v in kept if t >= end - reach)
    delta = last - first
    change = delta / first if first else None
    within = abs(delta) <= floor or (first > 0 and abs(delta) <= tolerance * first)
    verdict = FLAT if within else GROWING if delta > 0 else SHRINKING
    return Trend(first, last, change, slope_per_minute(kept), verdict)


def judge_samples(
    samples: Sequence[Mapping[str, Any]], settle_s: float, tolerance: float
) -> dict[str, dict[str, Any]]:
    """Per process: the trend of its RSS (MiB) and of its whole state (bytes), and of each
    of its stores."""
    # The hub, the adapters, then the partner systems, each in the order sampled.
    seen = list(dict.fromkeys(n for s in samples for n in s["processes"]))
    names = sorted(seen, key=lambda n: (not n.startswith("hub"), not n.startswith(BOUNDED)))
    judged: dict[str, dict[str, Any]] = {}
    for name in names:
        figures = [(s["t_s"], s["processes"].get(name)) for s in samples]
        rss = [(t, f["rss_mib"] if f else None) for t, f in figures]
        stores = list(dict.fromkeys(k for _, f in figures if f for k in f["state_bytes"]))
        state = [(t, float(sum(f["state_bytes"].values())) if f else None) for t, f in figures]
        rss_trend = judge(rss, settle_s, tolerance)
        state_trend = (
            judge(state, settle_s, tolerance, STATE_FLOOR_BYTES, STATE_PEAKS) if stores else None
        )
        by_store = {}
        for store in stores:
            series = [(t, float(f["state_bytes"].get(store, 0)) if f else None) for t, f in figures]
            trend = judge(series, settle_s, tolerance, STATE_FLOOR_BYTES, STATE_PEAKS)
            if trend is not None:
                by_store[store] = trend.as_json()
        judged[name] = {
            "bounded": name.startswith(BOUNDED),
            "rss_mib": rss_trend.as_json() if rss_trend else None,
            "state_bytes": state_trend.as_json() if state_trend else None,
            "stores": by_store,
        }
    return judged


def grown(judged: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The bounded processes (hub, operations view, adapters) whose memory or state grew:
    what fails."""
    return [
        f"{name} {figure}"
        for name, trends in judged.items()
        if trends["bounded"]
        for figure in ("rss_mib", "state_bytes")
        if (trends[figure] or {}).get("verdict") == GROWING
    ]


Version = tuple[str, int]


def accounting(offered: Collection[Version], decided: Mapping[Version, int]) -> dict[str, Any]:
    """Every offered version decided exactly once? Counts, and the first few of each kind
    of fault by name."""
    missing = sorted(v for v in offered if not decided.get(v))
    doubled = sorted(v for v, n in decided.items() if n > 1)
    unexpected = sorted(v for v in decided if v not in offered)
    return {
        "offered": len(offered),
        "decided": sum(1 for v in offered if decided.get(v)),
        "missing": len(missing),
        "decided_twice": len(doubled),
        "not_offered": len(unexpected),
        "examples": {
            "missing": [f"{r} v{n}" for r, n in missing[:10]],
            "decided_twice": [f"{r} v{n}" for r, n in doubled[:10]],
            "not_offered": [f"{r} v{n}" for r, n in unexpected[:10]],
        },
        "ok": not missing and not doubled and not unexpected,
    }


# -- the report (pure) ------------------------------------------------------------------


def _mib(value: float | None, *, of_bytes: bool = False) -> float | None:
    if value is None:
        return None
    return round(value / MIB, 2) if of_bytes else value


def _count(value: float | None) -> int | None:
    return None if value is None else int(value)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _trend_cells(trend: Mapping[str, Any] | None, *, of_bytes: bool) -> list[Any]:
    if not trend:
        return ["-", "-", "-", "-", "-"]
    change = trend["change"]
    slope = trend["slope_per_minute"] / MIB if of_bytes else trend["slope_per_minute"]
    return [
        _mib(trend["first"], of_bytes=of_bytes),
        _mib(trend["last"], of_bytes=of_bytes),
        f"{change * 100:+.1f} %" if change is not None else "-",
        f"{slope:+.2f}",
        trend["verdict"],
    ]


def render(result: Mapping[str, Any]) -> str:
    """The samples, each process's judgement and each store's, and the accounting."""
    sections = []
    sample_rows = []
    for s in result["samples"]:
        hub = s["processes"].get("hub", {})
        latency = s["window_latency"]
        sample_rows.append(
            [
                f"{s['t_s']:.0f}",
                s["offered"],
                s["decided"],
                hub.get("rss_mib"),
                _mib(
                    (s.get("hub_retention") or {}).get("gun_hub_rocksdb_memory_bytes"),
                    of_bytes=True,
                ),
                _mib(sum(hub.get("state_bytes", {}).values()), of_bytes=True),
                latency.get("count", 0),
                latency.get("p50_ms"),
                latency.get("p99_ms"),
                *(_count((s.get("hub_retention") or {}).get(name)) for name in _COUNTS_SHOWN),
                _seconds((s.get("hub_retention") or {}).get("gun_hub_gc_pause_seconds_sum")),
            ]
        )
    sections.append(
        render_table(
            "Samples (window latency: declarations decided in the window, from scheduled "
            "submission to decision opened; the hub's RocksDB memory (shared cache and write "
            "buffers); its cases retired, markers forgotten, records read again by the "
            "offset watchdog and seconds stopped by the garbage collector so far)",
            [
                "t s",
                "offered",
                "decided",
                "hub RSS MiB",
                "RocksDB MiB",
                "hub state MiB",
                "n",
                "p50 ms",
                "p99 ms",
                "retired",
                "markers gone",
                "read again",
                "GC s",
            ],
            sample_rows,
        )
    )
    settle = result["settle_s"]
    tolerance = result["options"]["tolerance"]
    fill = result.get("fill")
    filled = (
        f"; the caches filled first: {fill['declarations']} declarations, the hub's RocksDB "
        f"memory {fill['rocksdb_mib_after']} MiB of {fill['budget_mib']:g}"
        f"{'' if fill['full'] else ' (NOT FULL)'}"
        if fill
        else ""
    )
    rows = []
    for name, trends in result["judged"].items():
        label = name if trends["bounded"] else f"{name} (partner's own)"
        rows.append(
            [
                label,
                *_trend_cells(trends["rss_mib"], of_bytes=False),
                *_trend_cells(trends["state_bytes"], of_bytes=True),
            ]
        )
    sections.append(
        render_table(
            f"Flatness from {settle:.0f} s to the end (RSS: last vs first sample; state: peak of "
            f"the last quarter vs peak of the first; ±{tolerance:.0%}; "
            f"slope per minute, least squares{filled})",
            [
                "process",
                "RSS MiB",
                "then",
                "change",
                "MiB/min",
                "RSS",
                "state MiB",
                "then",
                "change",
                "MiB/min",
                "state",
            ],
            rows,
        )
    )
    store_rows = [
        [f"{name}: {store}", *_trend_cells(trend, of_bytes=True)]
        for name, trends in result["judged"].items()
        for store, trend in trends["stores"].items()
    ]
    sections.append(
        render_table(
            f"State by store (changes under {STATE_FLOOR_BYTES // MIB} MiB count as flat)",
            ["store", "MiB", "then", "change", "MiB/min", "verdict"],
            store_rows,
        )
    )
    books = result["accounting"]
    before = result.get("pre_run_releases") or {"offered": 0, "decided": 0}
    sections.append(
        f"versions offered {books['offered']:,} (declarations {result['declarations']:,}, "
        f"releases after control {result['releases_after_control']:,}, before the run "
        f"{before['offered']:,}), decided "
        f"{books['decided']:,}; missing {books['missing']}, decided twice "
        f"{books['decided_twice']}, not offered {books['not_offered']}: "
        + ("NOTHING LOST" if books["ok"] else f"LOST OR DOUBLED {books['examples']}")
    )
    if before["offered"]:
        sections[-1] += (
            f"\nbefore the run, the warm-ups' controls released: {before['offered']:,} "
            f"offered, {before['decided']:,} decided when it started"
        )
    failed = grown(result["judged"])
    sections.append(
        "hub, operations view and adapters: "
        + (f"GROWING: {', '.join(failed)}" if failed else "memory and state FLAT")
    )
    return "\n\n".join(sections)


# -- the clearance system's side of the steady run --------------------------------------


@dataclass
class SteadyClearance:
    """Offers declarations on a fixed schedule, follows each control with its release,
    and counts every decision per version."""

    sender: DeclarationSender
    reader: DecisionReader
    group: ProcessGroup
    control_result_after_s: float
    offered: set[Version] = field(default_factory=set)
    decided: Counter[Version] = field(default_factory=Counter)
    # (arrival, latency) of each version 1 decided, monotonic seconds.
    arrivals: list[tuple[float, float]] = field(default_factory=list)
    releases: int = 0
    sent: int = 0  # declarations (versions 1) offered
    _scheduled: dict[str, float] = field(default_factory=dict)
    _xml: dict[str, PlannedDeclaration] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # releases that could not be sent
    _follow_ups: set[asyncio.Task[None]] = field(default_factory=set)
    _reading: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start_reading(self) -> None:
        self._stop = asyncio.Event()  # read again after a stop (the fill's rounds)
        self._reading = asyncio.create_task(self.collect(self._stop))

    def check_reading(self) -> None:
        """Raise what stopped the reader (a component that died, say), if anything."""
        self.group.check_alive()
        if self._reading is not None and self._reading.done():
            self._reading.result()
            raise RuntimeError("the decision reader stopped")

    async def stop_reading(self) -> None:
        self._stop.set()
        if self._reading is not None:
            await asyncio.gather(self._reading, return_exceptions=True)

    async def collect(self, until: asyncio.Event) -> None:
        """Read decisions until ``until`` is set."""
        while not until.is_set():
            self.group.check_alive()
            for received in await self.reader.collect(expected=1, timeout_s=0.2):
                now = time.monotonic()
                decision = received.decision
                version = (decision.reference, decision.version)
                self.decided[version] += 1
                if self.decided[version] > 1:
                    continue
                if decision.version == 1 and decision.reference in self._scheduled:
                    self.arrivals.append((now, now - self._scheduled.pop(decision.reference)))
                planned = self._xml.pop(decision.reference, None) if decision.version == 1 else None
                if planned is not None and decision.outcome in CONTROLS:
                    self.follow_up(planned, self.control_result_after_s)

    def follow_up(self, planned: PlannedDeclaration, after_s: float) -> None:
        task = asyncio.create_task(self._release(planned, after_s))
        self._follow_ups.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._follow_ups.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self.errors.append(repr(error))

    async def _release(self, planned: PlannedDeclaration, after_s: float) -> None:
        await asyncio.sleep(after_s)
        self.offered.add((planned.reference, 2))
        self.releases += 1
        value = self.sender.seal(release_after_control(planned))
        await (await self.sender.publish(value, planned.reference))

    async def offer(self, batch: Sequence[PlannedDeclaration], rate: float, start: float) -> None:
        """``batch`` at ``rate`` per second from ``start`` (monotonic), each sealed as it
        leaves; a sender that falls behind adds to the latency (from the schedule)."""
        deliveries = []
        for n, planned in enumerate(batch):
            at = start + n / rate
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._scheduled[planned.reference] = at
            self._xml[planned.reference] = planned
            self.offered.add((planned.reference, 1))
            self.sent += 1
            value = self.sender.seal(planned.xml)
            deliveries.append(await self.sender.publish(value, planned.reference))
            if len(deliveries) >= 1000:
                await asyncio.gather(*deliveries)
                deliveries.clear()
        await asyncio.gather(*deliveries)

    def outstanding_versions(self) -> list[Version]:
        return [v for v in self.offered if not self.decided.get(v)]

    def outstanding(self) -> int:
        return len(self.outstanding_versions()) + len(self._follow_ups)

    async def drain(self, timeout_s: float) -> None:
        """Until every version offered (and every release still to send) is decided."""
        deadline = time.monotonic() + timeout_s
        with progress_bar("draining", total=self.outstanding(), unit="versions") as bar:
            left = self.outstanding()
            while left and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                self.check_reading()
                now_left = self.outstanding()
                bar.advance(max(0, left - now_left))
                left = now_left
        for task in list(self._follow_ups):
            task.cancel()


def half_the_saturation(declarations_per_s: float, controlled_share: float) -> float:
    """Declarations/s that make half the saturation rate in versions decided: each
    control is followed by its release, a second version the hub decides (offering half
    the saturation in declarations was 86 % of it in versions: latency grew throughout)."""
    return declarations_per_s / 2 / (1 + controlled_share)


def caches_full(metrics: Mapping[str, float] | None, budget_bytes: int) -> bool:
    """Whether the hub's RocksDB memory (``gun_hub_rocksdb_memory_bytes``) reached
    ``FILL_SHARE`` of its budget."""
    used = (metrics or {}).get("gun_hub_rocksdb_memory_bytes")
    return used is not None and used >= FILL_SHARE * budget_bytes


def window_latency(
    arrivals: Sequence[tuple[float, float]], since: float, until: float
) -> dict[str, float | int]:
    """p50/p99 of the latencies of the versions 1 decided in (since, until]."""
    return latency_summary([latency for at, latency in arrivals if since < at <= until])


# -- the run ------------------------------------------------------------------------------


@dataclass
class RememberingMix(Mix):
    """The mix, remembering every declaration it drew (the broker's warm-up draws its
    own), so that each control among them can be followed by its release."""

    drawn: dict[str, PlannedDeclaration] = field(default_factory=dict, init=False)

    def declarations(self, count: int, prefix: str) -> list[PlannedDeclaration]:
        batch = super().declarations(count, prefix)
        self.drawn.update((p.reference, p) for p in batch)
        return batch


async def fill_the_caches(
    clearance: Clearance,
    steady: SteadyClearance,
    mix: RememberingMix,
    http: aiohttp.ClientSession,
    partner_ports: Mapping[str, int],
    metrics_url: str,
    minutes: float,
) -> dict[str, Any]:
    """Rounds of ``FILL_ROUND`` declarations at saturation until the hub's RocksDB memory
    is full (``caches_full``), for at most ``minutes``.

    Its read cache is a least-recently-used cache: it keeps the blocks of the files each
    flush and compaction replaces until it reaches its cap, so it fills by volume, whatever
    the tables hold (the tables' files stay under 10 MiB in a steady run while the cache
    grows by 20 MiB). At half the saturation rate it takes some 20 minutes to get there
    (stop 33), and a 10-minute run from a fresh start measured the cache filling, not
    whether anything grows without bound. Filled first, the run starts where a worker in
    service stands."""
    budget = Settings().hub.rocksdb_memory_mib * MIB  # the components' defaults
    began = time.monotonic()
    rounds = 0
    metrics = await hub_metrics(http, metrics_url)
    before = (metrics or {}).get("gun_hub_rocksdb_memory_bytes")
    while (
        minutes > 0
        and not caches_full(metrics, budget)
        and time.monotonic() - began < minutes * 60
        and rounds < len(FILL_ROUNDS)
    ):
        batch = mix.declarations(FILL_ROUND, FILL_PREFIX + FILL_ROUNDS[rounds])
        await load_documents(http, partner_ports, mix, batch)
        await clearance.saturate(batch)
        # Each round's controls released as it ends, as a clearance system does: held
        # until the fill's end, thousands of controlled cases raised the hub's high-water
        # mark, under which a slow leak could hide for the whole run (review, stop 34).
        steady.start_reading()
        await release_controls(steady, clearance, mix.drawn)
        await steady.stop_reading()
        rounds += 1
        metrics = await hub_metrics(http, metrics_url)
    after = (metrics or {}).get("gun_hub_rocksdb_memory_bytes")
    filled = {
        "rounds": rounds,
        "declarations": rounds * FILL_ROUND,
        "seconds": round(time.monotonic() - began, 1),
        "rocksdb_mib_before": _mib(before, of_bytes=True),
        "rocksdb_mib_after": _mib(after, of_bytes=True),
        "budget_mib": budget / MIB,
        "full": caches_full(metrics, budget),
    }
    print(
        f"fill: {filled['declarations']} declarations in {filled['seconds']} s, the hub's "
        f"RocksDB memory {filled['rocksdb_mib_before']} -> {filled['rocksdb_mib_after']} MiB "
        f"of {filled['budget_mib']:g} ({'full' if filled['full'] else 'NOT FULL'})",
        flush=True,
    )
    return filled


async def release_controls(
    steady: SteadyClearance,
    clearance: Clearance,
    drawn: Mapping[str, PlannedDeclaration],
) -> dict[str, Any]:
    """The releases of the warm-ups', the saturation's and the fill's controls, decided before the
    steady run (their cases would otherwise stay in the hot table throughout it); their
    books when the run starts. They stay in the run's books: one decided late, or twice,
    is counted there."""
    count = len(clearance.controlled)
    # Spread at RELEASES_PER_S, each sealed as it leaves: thousands sealed at once would
    # expire in the queue (the run shortens the envelope's lifetime to a minute).
    for n, reference in enumerate(sorted(clearance.controlled)):
        steady.follow_up(drawn[reference], n / RELEASES_PER_S)
    clearance.controlled.clear()
    # Decided at the hub's pace, at least 2 a second on a busy machine.
    await steady.drain(120 + count / 2)
    books = accounting(steady.offered, steady.decided)
    steady.releases = 0
    if not books["ok"]:
        print(f"the run starts before the warm-ups' releases are all decided: {books}")
    return books


async def run(options: Options, work: Path, broker: LocalBroker) -> dict[str, Any]:
    bootstrap = broker.bootstrap_servers
    routing = load_routing_table(config_path("routing.toml"))
    topics = topic_registry(PREFIX, routing.authorities)
    await ensure_topics(bootstrap, topics, PARTITIONS, 1)
    security = SecuritySettings(
        keys_dir=work / "keys",
        state_dir=work / "state",
        # The clearance system's seals must fit the components' (shortened) lifetime.
        message_lifetime_s=message_lifetime_s(options.retention_s),
        max_clock_skew_s=CLOCK_SKEW_S,
    )
    KeystoreFolder(security.keys_dir).init(parties(topics))
    mix = RememberingMix(options.seed)
    warm_up = mix.declarations(WARM_UP, "26FRSTEADYW")
    saturation = mix.declarations(options.saturation_declarations, "26FRSTEADYS")
    files = write_documents(work, mix.documents_by_authority())
    env = {**stack_env(bootstrap, security), **retention_env(options.retention_s)}
    duration_s = options.minutes * 60
    result: dict[str, Any] = {"settings": retention_env(options.retention_s)}
    with ProcessGroup(work / "logs", env, stop_together=True) as group:
        # The operations view in a process of its own, as ./tasks bench runs it (ADR 0015).
        readiness, partner_ports = await start_stack(
            group, work, routing.authorities, files, view_in_hub=False
        )
        sender, reader = await open_clearance(security, topics, bootstrap)
        clearance = Clearance(sender, reader, group)
        steady = SteadyClearance(sender, reader, group, options.control_result_after_s)
        probe: aiohttp.ClientSession | None = None  # the hub's /metrics, while sampling
        try:
            async with aiohttp.ClientSession() as http:
                await clearance.warm_up(warm_up)
                if options.warm_broker:
                    result["broker_jit_cpus_while_warming"] = await warm_broker(
                        clearance,
                        mix,
                        broker.running_pid() or 0,
                        http,
                        partner_ports,
                        "26FRSTEADYJ",
                    )
                rate = options.rate
                if rate is None:
                    await load_documents(http, partner_ports, mix, saturation)
                    measured, _ = await clearance.saturate(saturation)
                    controlled = sum(p.reference in clearance.controlled for p in saturation)
                    result["saturation"] = measured | {"controlled": controlled}
                    rate = half_the_saturation(
                        measured["declarations_per_second"] or 0, controlled / len(saturation)
                    )
                    if rate <= 0:
                        raise RuntimeError(f"no saturation rate measured: {measured}")
                if options.fill_minutes > 0:
                    result["fill"] = await fill_the_caches(
                        clearance,
                        steady,
                        mix,
                        http,
                        partner_ports,
                        readiness["hub"].removesuffix("/readyz") + "/metrics",
                        options.fill_minutes,
                    )
                batch = mix.declarations(max(1, round(rate * duration_s)), RUN_PREFIX)
                # Every document the run quotes, given to the partner systems before it
                # starts: during the run their state changes by the ledger only.
                await load_documents(http, partner_ports, mix, batch)
            steady.start_reading()
            pre_run = await release_controls(steady, clearance, mix.drawn)
            print(f"steady run: {rate:.1f} declarations/s for {options.minutes:g} min", flush=True)
            pids = {name: child.process.pid for name, child in group.children.items()}
            metrics_url = readiness["hub"].removesuffix("/readyz") + "/metrics"
            probe = aiohttp.ClientSession()
            state = state_files(work, routing.authorities)
            samples: list[dict[str, Any]] = []
            start = time.monotonic() + 0.1
            sending = asyncio.create_task(steady.offer(batch, rate, start))
            steps = int(duration_s // options.sample_s)
            with progress_bar("steady run", total=steps, unit="samples") as bar:
                for step in range(steps + 1):
                    at = start + step * options.sample_s
                    await asyncio.sleep(max(0.0, at - time.monotonic()))
                    steady.check_reading()
                    now = time.monotonic()
                    processes = await asyncio.to_thread(sample_processes, pids, state)
                    retention = await hub_metrics(probe, metrics_url)
                    samples.append(
                        {
                            "t_s": round(now - start, 1),
                            "offered": steady.sent,
                            "decided": sum(1 for v in steady.decided if v[1] == 1),
                            "releases_decided": sum(
                                1 for r, n in steady.decided if n == 2 and r.startswith(RUN_PREFIX)
                            ),
                            "window_latency": window_latency(
                                steady.arrivals, now - options.sample_s, now
                            ),
                            "processes": processes,
                            "hub_retention": retention,
                        }
                    )
                    if step:
                        bar.advance()
            await sending
            await steady.drain(120 + len(batch) / 50)
        finally:
            if probe is not None:
                await probe.close()
            await steady.stop_reading()
            await reader.stop()
            await sender.stop()
    settle_s = options.settle * duration_s
    judged = judge_samples(samples, settle_s, options.tolerance)
    latencies = [latency for _, latency in steady.arrivals]
    return result | {
        "rate": round(rate, 2),
        "declarations": len(batch),
        "releases_after_control": steady.releases,
        "follow_up_errors": steady.errors,
        "settle_s": settle_s,
        "pre_run_releases": pre_run,
        "latency": latency_summary(latencies),
        "samples": samples,
        "judged": judged,
        "accounting": accounting(steady.offered, steady.decided),
    }


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="./tasks bench-steady", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--minutes", type=float, default=Options.minutes,
        help="minutes of steady load (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=None,
        help="declarations/s offered (default: half of a quick saturation run)",
    )  # fmt: skip
    parser.add_argument(
        "--saturation-declarations", type=int, default=Options.saturation_declarations,
        help="declarations of that saturation run (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--fill-minutes", type=float, default=Options.fill_minutes,
        help="at most this long at saturation before the run, until the hub's RocksDB "
        "memory is full (default %(default)s; 0: no fill)",
    )  # fmt: skip
    parser.add_argument(
        "--sample", type=float, default=Options.sample_s,
        help="seconds between samples (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--settle", type=float, default=Options.settle,
        help="share of the run left out of the judgement (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--tolerance", type=float, default=Options.tolerance,
        help="largest change that is still flat (default %(default)s: ±10 %%)",
    )  # fmt: skip
    parser.add_argument(
        "--retention", type=float, default=Options.retention_s,
        help="seconds a decided case and then its marker are kept (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--control-result-after", type=float, default=Options.control_result_after_s,
        help="seconds from a control decision to its release (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--cold-broker", action="store_true",
        help="skip warming the broker until its JIT compiler is quiet",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=Options.seed, help="the mix's seed")
    parser.add_argument("--out", type=Path, help="the JSON file (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if not 0 <= args.settle < 1:
        parser.error("--settle is a share of the run, from 0 to below 1")
    return Options(
        minutes=args.minutes,
        rate=args.rate,
        saturation_declarations=args.saturation_declarations,
        fill_minutes=args.fill_minutes,
        sample_s=args.sample,
        settle=args.settle,
        tolerance=args.tolerance,
        retention_s=args.retention,
        control_result_after_s=args.control_result_after,
        warm_broker=not args.cold_broker,
        seed=args.seed,
        out=args.out,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    result, out = run_on_own_broker(
        "steady",
        {
            "minutes": options.minutes,
            "rate": options.rate,
            "saturation_declarations": options.saturation_declarations,
            "fill_minutes": options.fill_minutes,
            "sample_s": options.sample_s,
            "settle": options.settle,
            "tolerance": options.tolerance,
            "retention_s": options.retention_s,
            "control_result_after_s": options.control_result_after_s,
            "warm_broker": options.warm_broker,
            "seed": options.seed,
        },
        options.out,
        lambda work, broker: run(options, work, broker),
    )
    print()
    print(render(result))
    latency = result["latency"]
    print(
        f"\n{result['rate']} declarations/s offered; latency over the run p50 "
        f"{latency.get('p50_ms')} ms, p99 {latency.get('p99_ms')} ms"
    )
    print_machine(result, out)
    return 0 if result["accounting"]["ok"] and not grown(result["judged"]) else 1


if __name__ == "__main__":
    # A SIGTERM or SIGHUP stops the broker and components it started, as Ctrl-C does.
    with stopping_what_it_started_on_termination():
        sys.exit(main())
