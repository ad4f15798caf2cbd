"""Where a declaration's time goes, hop by hop (issue 12): ``./tasks bench-hops``.

The same stack as ``./tasks bench`` (own broker, the three partner systems and adapters,
one hub worker and the operations view beside it, ``gun-hub view``, unless
``--view-in-hub``; the clearance system in this process), then a batch of declarations
sent at once (saturation) or paced (``--rate``). Afterwards every record of their path
is read back from the broker and lined up per declaration version:

=============  ===================================================  ==================
stage          record                                               time
=============  ===================================================  ==================
declaration    ``gun.declarations`` (key: reference)                log-append (broker)
claim          ``gun.hub.claims``, kind claim (the record's position)  create (hub)
verdict        ``gun.hub.claims``, kind verdict                     create (hub)
request        ``gun.requests.<authority>`` (trace header), last    log-append (broker)
answer         ``gun.responses.<authority>`` (trace header), last   log-append (broker)
outbox         ``gun.hub.decision-outbox`` (trace header)           create (hub)
decision       ``gun.decisions`` (trace header)                     log-append (broker)
seen           the clearance system opened the decision             this process
=============  ===================================================  ==================

A gap is the time between two stages of one declaration: the reading, the work and the
sending of the stage in between, and any queue in front of it. At saturation the queue
builds in front of the slowest stage, so the hop with the largest share is the one that
limits the rate. Each stage's own rate (records per second between the 10th and 90th
percentile of its times) shows the same from the other side. Create times are the hub's
clock and log-append times the broker's: one machine, one clock.

Beside the hops, a census of the broker's work (``benchmarks/census.py``): the requests of
each type and the records on each topic it handled per declaration of the batch, from its
JMX counters read just before the batch is sent and just after its last decision is seen.

Run: ./tasks bench-hops [--declarations N] [--rate R] [--seed N] [--out FILE] [--view-in-hub]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.bench import (
    PARTITIONS,
    PREFIX,
    WARM_UP,
    Clearance,
    load_documents,
    open_clearance,
    print_machine,
    run_on_own_broker,
    stack_env,
    start_stack,
    warm_broker,
    write_documents,
)
from benchmarks.census import CensusReader, census, render_census
from benchmarks.cpu import CpuMeter, broker_threads, thread_ticks
from benchmarks.mix import Mix, PlannedDeclaration
from benchmarks.profile import Profiler
from benchmarks.profile import render as render_profile
from benchmarks.report import percentile, steady_rate
from gun_contract.kafka.admin import ensure_topics
from gun_contract.kafka.client import consumer_options
from gun_contract.resources import config_path
from gun_contract.security.entitlements import parties
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.settings import SecuritySettings
from gun_contract.topics import TopicRegistry, topic_registry
from gun_contract.trace import trace_id_for, trace_in
from gun_hub.domain.routing import load_routing_table
from gun_hub.pipeline.admission import Claim, ClaimVerdict, read_claims_record
from gun_tools.local_broker import LocalBroker
from gun_tools.processes import (
    ProcessGroup,
    stopping_what_it_started_on_termination,
)

STAGES = ("declaration", "claim", "verdict", "request", "answer", "outbox", "decision", "seen")
# What each gap between two stages is made of, for the printed table.
HOP_NAMES = {
    ("declaration", "claim"): "hub intake: read, open envelope, send claim",
    ("claim", "verdict"): "hub claims agent: read claim, judge, send verdict",
    ("verdict", "request"): "hub intake: read verdict, decide route, send requests",
    ("request", "answer"): "adapters + partner systems (last answer)",
    ("answer", "outbox"): "hub correlation: read last answer, decide, outbox",
    ("outbox", "decision"): "hub publisher: read outbox, seal, transaction",
    ("decision", "seen"): "commit marker + clearance reader",
}

# The processes ``--profile`` samples: the one that sets the rate, and the busiest adapter
# (the mix asks DGAL most).
PROFILED = ("hub", "adapter-dgal")


@dataclass
class Options:
    declarations: int = 1000
    warm_up: int = WARM_UP
    rate: float | None = None  # declarations/s offered; None: all at once (saturation)
    warm_broker: bool = True  # until its JIT compiler is quiet (bench.py, warm_broker)
    seed: int = 1
    out: Path | None = None
    view_in_hub: bool = False  # the hub worker keeps the view, no `gun-hub view`
    # py-spy on the hub worker and the DGAL adapter during the batch (benchmarks/profile.py)
    profile: bool = False


# -- the figures (pure) -------------------------------------------------------------------


def hop_table(paths: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Per hop between consecutive stages: how many declarations have both ends, the
    median, p95 and mean gap in ms, and the hop's share of the summed end-to-end time.
    ``paths``: per declaration, the time (s) of each stage it reached."""
    complete = [p for p in paths.values() if all(s in p for s in STAGES)]
    total = sum(p["seen"] - p["declaration"] for p in complete)
    rows = []
    for start, end in itertools.pairwise(STAGES):
        gaps = [p[end] - p[start] for p in complete]
        if not gaps:
            continue
        rows.append(
            {
                "hop": f"{start} → {end}",
                "what": HOP_NAMES[(start, end)],
                "count": len(gaps),
                "p50_ms": round(percentile(gaps, 50) * 1000, 1),
                "p95_ms": round(percentile(gaps, 95) * 1000, 1),
                "mean_ms": round(statistics.fmean(gaps) * 1000, 1),
                "share": round(sum(gaps) / total, 3) if total > 0 else None,
            }
        )
    ends = [p["seen"] - p["declaration"] for p in complete]
    if ends:
        rows.append(
            {
                "hop": "declaration → seen",
                "what": "end to end",
                "count": len(ends),
                "p50_ms": round(percentile(ends, 50) * 1000, 1),
                "p95_ms": round(percentile(ends, 95) * 1000, 1),
                "mean_ms": round(statistics.fmean(ends) * 1000, 1),
                "share": 1.0,
            }
        )
    return rows


def stage_rates(paths: Mapping[str, Mapping[str, float]]) -> dict[str, float | None]:
    """Each stage's steady rate (per second, 10th to 90th percentile of its times)."""
    rates: dict[str, float | None] = {}
    for stage in STAGES:
        times = sorted(p[stage] for p in paths.values() if stage in p)
        if len(times) < 10:
            rates[stage] = None
            continue
        rate = steady_rate([t - times[0] for t in times])
        rates[stage] = round(rate, 1) if rate else None
    return rates


def render(rows: Sequence[Mapping[str, Any]], rates: Mapping[str, float | None]) -> str:
    lines = [
        "| hop | what | p50 ms | p95 ms | mean ms | share |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        share = f"{row['share'] * 100:.0f} %" if row["share"] is not None else "-"
        lines.append(
            f"| {row['hop']} | {row['what']} | {row['p50_ms']:,} | {row['p95_ms']:,} "
            f"| {row['mean_ms']:,} | {share} |"
        )
    lines.append("")
    lines.append(
        "stage rates /s (10th-90th percentile): "
        + ", ".join(f"{s} {r if r is not None else '-'}" for s, r in rates.items())
    )
    return "\n".join(lines)


# -- what each process's main thread did meanwhile --------------------------------------


def schedstat(pid: int) -> tuple[int, int] | None:
    """The main thread's time on a CPU and waiting for one (ns, /proc/PID/schedstat)."""
    try:
        on_cpu, waiting, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(on_cpu), int(waiting)


@dataclass
class ThreadClock:
    """Where each process's main thread spent the measured time: running, runnable but
    waiting for a CPU (the machine is busy), or asleep (waiting on I/O, a timer, nothing
    to do). A pipeline that waits on something shows as asleep; a starved one, waiting
    for a CPU. Threads besides the main one (the consumer thread faust runs aiokafka's
    fetcher on, the JVM's) are left out: the main thread is where the handling runs."""

    pids: Mapping[str, int]
    began: float = 0.0
    start: dict[str, tuple[int, int]] | None = None

    def begin(self) -> None:
        self.began = time.monotonic()
        self.start = {n: t for n, p in self.pids.items() if (t := schedstat(p)) is not None}

    def end(self) -> dict[str, dict[str, float]]:
        wall = time.monotonic() - self.began
        shares: dict[str, dict[str, float]] = {}
        for name, (cpu0, wait0) in (self.start or {}).items():
            now = schedstat(self.pids[name])
            if now is None or wall <= 0:
                continue
            running = (now[0] - cpu0) / 1e9 / wall
            waiting = (now[1] - wait0) / 1e9 / wall
            shares[name] = {
                "running": round(running, 3),
                "waiting_for_cpu": round(waiting, 3),
                "asleep": round(max(0.0, 1 - running - waiting), 3),
            }
        return shares


# -- reading the path back ----------------------------------------------------------------


async def read_all(bootstrap: str, topic_names: Sequence[str]) -> list[Any]:
    """Every record now on ``topic_names`` (all partitions, from the beginning)."""
    consumer = AIOKafkaConsumer(
        **consumer_options(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assigned = [TopicPartition(t, p) for t in topic_names for p in range(PARTITIONS)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        records: list[Any] = []
        while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def _keep_first(path: dict[str, float], stage: str, at: float) -> None:
    path[stage] = min(path.get(stage, at), at)


def _keep_last(path: dict[str, float], stage: str, at: float) -> None:
    path[stage] = max(path.get(stage, at), at)


async def paths_of(
    bootstrap: str,
    topics: TopicRegistry,
    references: set[str],
    seen_at: Mapping[str, float],
) -> dict[str, dict[str, float]]:
    """Per declaration (trace id, version 1), the time of each stage of its path."""
    traces = {trace_id_for(r, 1): r for r in references}
    paths: dict[str, dict[str, float]] = defaultdict(dict)
    position: dict[tuple[int, int], str] = {}  # declaration (partition, offset) -> trace
    for record in await read_all(bootstrap, [topics.declarations]):
        reference = (record.key or b"").decode()
        if reference in references:
            trace = trace_id_for(reference, 1)
            position[(record.partition, record.offset)] = trace
            _keep_first(paths[trace], "declaration", record.timestamp / 1000)
    for record in await read_all(bootstrap, [topics.claims]):
        claim = read_claims_record(record.value or b"")
        trace_of = position.get((claim.source.partition, claim.source.offset))
        if trace_of is None:
            continue
        if isinstance(claim, Claim):
            _keep_first(paths[trace_of], "claim", record.timestamp / 1000)
        elif isinstance(claim, ClaimVerdict):
            _keep_first(paths[trace_of], "verdict", record.timestamp / 1000)
    stage_of = {topics.decision_outbox: "outbox", topics.decisions: "decision"}
    stage_of |= {topics.requests(a): "request" for a in topics.authorities}
    stage_of |= dict.fromkeys(topics.all_responses(), "answer")
    for record in await read_all(bootstrap, list(stage_of)):
        traced = trace_in(list(record.headers))
        if traced is None or traced not in traces:
            continue
        stage = stage_of[record.topic]
        # The last request and answer: the declaration waits for all of them.
        keep = _keep_last if stage in ("request", "answer") else _keep_first
        keep(paths[traced], stage, record.timestamp / 1000)
    for reference, at in seen_at.items():
        paths[trace_id_for(reference, 1)]["seen"] = at
    return dict(paths)


# -- the run ------------------------------------------------------------------------------


async def send_batch(
    clearance: Clearance, batch: list[PlannedDeclaration], rate: float | None
) -> dict[str, float]:
    """Send ``batch`` (all at once, or at ``rate``); when each was seen decided (wall
    clock seconds, comparable with the records' times)."""
    values = [clearance.sender.seal(p.xml) for p in batch]

    async def send() -> None:
        deliveries = []
        began = time.monotonic()
        for n, (value, planned) in enumerate(zip(values, batch, strict=True)):
            if rate is not None:
                delay = began + n / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            deliveries.append(await clearance.sender.publish(value, planned.reference))
        await asyncio.gather(*deliveries)

    sending = asyncio.create_task(send())
    offset = time.time() - time.monotonic()
    timeout = 120 + len(batch) / (rate or 10)
    arrived = await clearance._decisions({p.reference for p in batch}, timeout, "hops")
    await sending
    return {reference: at + offset for reference, at in arrived.items()}


async def run(options: Options, work: Path, broker: LocalBroker) -> dict[str, Any]:
    bootstrap = broker.bootstrap_servers
    routing = load_routing_table(config_path("routing.toml"))
    topics = topic_registry(PREFIX, routing.authorities)
    await ensure_topics(bootstrap, topics, PARTITIONS, 1)
    security = SecuritySettings(keys_dir=work / "keys", state_dir=work / "state")
    KeystoreFolder(security.keys_dir).init(parties(topics))
    mix = Mix(options.seed)
    warm_up = mix.declarations(options.warm_up, "26FRHOPSW")
    batch = mix.declarations(options.declarations, "26FRHOPSS")
    files = write_documents(work, mix.documents_by_authority())
    env = stack_env(bootstrap, security)
    with ProcessGroup(work / "logs", env, stop_together=True) as group:
        _, partner_ports = await start_stack(
            group, work, routing.authorities, files, view_in_hub=options.view_in_hub
        )
        sender, reader = await open_clearance(security, topics, bootstrap)
        clearance = Clearance(sender, reader, group)
        counters = CensusReader.for_port(broker.jmx_port)
        try:
            await clearance.warm_up(warm_up)
            async with aiohttp.ClientSession() as http:
                jit_busy = (
                    await warm_broker(
                        clearance, mix, broker.running_pid() or 0, http, partner_ports, "26FRHOPSJ"
                    )
                    if options.warm_broker
                    else []
                )
                await load_documents(http, partner_ports, mix, batch)
            pids = {"broker": broker.running_pid() or 0} | {
                name: child.process.pid for name, child in group.children.items()
            }
            meter = CpuMeter(lambda: pids)
            threads = ThreadClock({n: p for n, p in pids.items() if n != "broker"})
            broker_pid = broker.running_pid() or 0
            broker_before = thread_ticks(broker_pid)
            # The census's first snapshot starts its JVM: before the meters start.
            counted_before = await counters.snapshot()
            counted_from = time.monotonic()
            profilers = {
                name: Profiler(pids[name], work / "logs" / f"{name}-profile.raw.txt")
                for name in PROFILED
                if options.profile
            }
            for profiler in profilers.values():
                await profiler.start()
            meter.start()
            threads.begin()
            seen_at = await send_batch(clearance, batch, options.rate)
            profiles = {name: await profiler.stop() for name, profiler in profilers.items()}
            counted_after = await counters.snapshot() if counted_before is not None else None
            counted_for = time.monotonic() - counted_from
            main_threads = threads.end()
            cpu = meter.stop()
            broker_cpu = broker_threads(broker_before, thread_ticks(broker_pid))
        finally:
            await counters.close()
            await reader.stop()
            await sender.stop()
    requests_and_records: dict[str, Any] = (
        census(counted_before, counted_after, len(batch), counted_for)
        if counted_before is not None and counted_after is not None and batch
        else {"unavailable": counters.problem or "no declarations"}
    )
    paths = await paths_of(bootstrap, topics, {p.reference for p in batch}, seen_at)
    rows = hop_table(paths)
    ends = [p["seen"] - p["declaration"] for p in paths.values() if "seen" in p]
    first = min(p["declaration"] for p in paths.values() if "declaration" in p)
    return {
        "declarations": len(batch),
        "decided": len(seen_at),
        "offered_per_second": options.rate,
        "declarations_per_second": (
            round(len(ends) / (max(seen_at.values()) - first), 1) if seen_at else None
        ),
        "hops": rows,
        "stage_rates": stage_rates(paths),
        "cpu": cpu,
        "main_threads": main_threads,
        "broker_threads_s": broker_cpu,
        "broker_jit_cpus_while_warming": jit_busy,
        # Requests by type and records by topic the broker handled, per declaration.
        "census": requests_and_records,
        # Where each profiled process's CPU went (``--profile``), or why it was not taken.
        "profiles": {
            name: profile if profile is not None else {"unavailable": profilers[name].problem}
            for name, profile in profiles.items()
        },
        # Every declaration's stage times, for a closer look (periodic stalls, outliers).
        "paths": paths,
    }


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="./tasks bench-hops", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--declarations", type=int, default=Options.declarations,
        help="declarations in the traced batch (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--warm-up", type=int, default=Options.warm_up,
        help="declarations decided before the traced batch (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--rate", type=float, default=None,
        help="offer the batch at this many declarations/s (default: all at once)",
    )  # fmt: skip
    parser.add_argument(
        "--cold-broker", action="store_true",
        help="measure right after the warm-up, the broker's JIT compiler still busy",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=Options.seed, help="the mix's seed")
    parser.add_argument("--out", type=Path, help="the JSON file (default benchmarks/results/)")
    parser.add_argument(
        "--view-in-hub", action="store_true",
        help="the hub worker keeps the operations view (no gun-hub view process)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="sample the CPU of the hub worker and the DGAL adapter with py-spy during the "
        "batch and print where it goes",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return Options(
        args.declarations,
        args.warm_up,
        args.rate,
        not args.cold_broker,
        args.seed,
        args.out,
        args.view_in_hub,
        args.profile,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    result, out = run_on_own_broker(
        "hops",
        {
            "declarations": options.declarations,
            "warm_up": options.warm_up,
            "rate": options.rate,
            "warm_broker": options.warm_broker,
            "view_in_hub": options.view_in_hub,
        },
        options.out,
        lambda work, broker: run(options, work, broker),
        jmx=True,
    )
    figures = result
    print()
    print(
        f"{figures['decided']}/{figures['declarations']} decided, "
        f"{figures['declarations_per_second']} declarations/s "
        f"({'offered ' + str(options.rate) + '/s' if options.rate else 'all at once'})"
    )
    print(render(figures["hops"], figures["stage_rates"]))
    print()
    if "unavailable" in figures["census"]:
        print(f"broker census not taken: {figures['census']['unavailable']}")
    else:
        print(render_census(figures["census"]))
    print()
    cpu = figures["cpu"]
    print(f"cpu: {json.dumps(cpu)}")
    print(f"broker JIT while warming (CPUs per round): {figures['broker_jit_cpus_while_warming']}")
    print(f"broker cpu s by thread: {json.dumps(figures['broker_threads_s'])}")
    print("main threads (share of the time: running / waiting for a CPU / asleep):")
    for name, share in figures["main_threads"].items():
        print(
            f"  {name:<20} {share['running']:6.0%} {share['waiting_for_cpu']:6.0%} "
            f"{share['asleep']:6.0%}"
        )
    for name, profile in figures["profiles"].items():
        print(
            render_profile(name, profile)
            if "unavailable" not in profile
            else f"{name} profile not taken: {profile['unavailable']}"
        )
    print_machine(result, out)
    return 0 if figures["decided"] == figures["declarations"] else 1


if __name__ == "__main__":
    # A SIGTERM or SIGHUP stops the broker and components it started, as Ctrl-C does.
    with stopping_what_it_started_on_termination():
        sys.exit(main())
