"""The benchmark users can trust (issue 12): one run, one broker of its own, every figure.

On a local broker started for the run, with the real hub, the three real adapters and
their simulated partner systems as processes, and a stand-in clearance system in this
process (it seals every declaration: signed by it, encrypted to the hub; it reads and
opens every decision from ``gun.decisions``):

1. **Saturation**: a seeded, realistic mix (``benchmarks/mix.py``: 1 to 5 documents per
   declaration over DGAL, CITES and DGA, a line of its own for every goods item) sent at
   once; declarations/s from the first submission to the last decision, and the steady
   rate between the 10th and 90th percentile of arrivals.
2. **Latency**: fresh declarations of the same mix offered at half the saturation rate,
   paced on a fixed schedule; for each, the time from its scheduled submission (so a
   sender that falls behind adds to the latency rather than hiding it) to its decision
   being opened; p50, p95, p99.
3. Both again with **two hub workers** (a second ``gun-hub hub`` process in the group).
   The operations view runs as a process of its own (``gun-hub view``, the workers with
   ``GUN_HUB_OPS__VIEW_ENABLED=false``; ADR 0015), so its cost shows as its own line and
   not inside the hub's; ``--view-in-hub`` measures the first worker keeping it instead.
4. **The raw pipe**: the same broker, plain aiokafka records of the same sizes as the
   sealed declarations through three hop processes (``benchmarks/raw_hop.py``), and the
   ratio hub ÷ raw.
5. **Resident memory** (VmRSS) of every process at start and end.
6. **None twice**: once the last phase is over and the decisions topic has settled, it is
   read again from its beginning to its end offsets (``benchmarks/decision_books.py``)
   and every (reference, version) decided more than once over the whole run is counted:
   a late duplicate, after the last read of a phase, is counted too.

A table is printed; everything is saved as JSON (``benchmarks/results/``, or ``--out``).
The machine's load average is recorded before and after: other work on a 2-core machine
moves the figures.

Run: ./tasks bench [--declarations N] [--duration S] [--raw-records N] [--seed N] [--out F]
                   [--view-in-hub]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.cpu import CpuMeter, broker_threads, thread_ticks
from benchmarks.decision_books import books_of_the_run, summary
from benchmarks.metrics_scrape import scrape
from benchmarks.mix import Mix, PlannedDeclaration, describe
from benchmarks.report import (
    backlog_grew,
    latency_summary,
    render_result,
    steady_rate,
    timeline,
    window_percentiles,
)
from gun_contract.kafka.admin import ensure_topics
from gun_contract.kafka.client import consumer_options, producer_options
from gun_contract.model.verdicts import Outcome
from gun_contract.resources import config_path
from gun_contract.security.entitlements import CLEARANCE_PARTY, parties
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.security.replay import MemoryReplayGuard, NoReplayMemory
from gun_contract.settings import BrokerSettings, SecuritySettings
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.cli.progress import progress_bar
from gun_hub.domain.routing import load_routing_table
from gun_hub.gateway.sender import DeclarationSender
from gun_hub.security.factory import build_envelope
from gun_tools.clearance_stand_in import DecisionReader
from gun_tools.local_broker import LocalBroker
from gun_tools.processes import (
    ProcessGroup,
    free_port,
    partner_health_url,
    ready_url,
    start_adapter,
    start_partner_system,
    start_view,
    stopping_what_it_started_on_termination,
    wait_all_ready,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = "bench"
PARTITIONS = 4
WARM_UP = 60  # declarations: group joins, first connections, imports paid before timing
READY_WITHIN_S = 180.0
RAW_HOPS = 3
RAW_WARM_UP = 200
# A fresh broker's JIT compiler takes a large share of a 2-core machine for minutes (it
# used as much CPU as the hub during a saturation run right after the usual warm-up,
# docs/benchmark.md): rounds of declarations are decided until it is at most this busy
# twice in a row, after a minimum: a round or two at moderate load looked quiet, and the
# saturation run that followed still had the compiler busy for seconds (new hot paths).
JIT_QUIET_CPUS = 0.1
BROKER_WARM_ROUND = 250
BROKER_WARM_MIN_ROUNDS = 4
BROKER_WARM_MAX_ROUNDS = 12
CONTROLS = frozenset({Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL})


@dataclass
class Options:
    declarations: int = 3000
    duration_s: float = 120.0
    raw_records: int = 20000
    seed: int = 1
    out: Path | None = None
    view_in_hub: bool = False  # the first worker keeps the view, no `gun-hub view`


# -- processes ----------------------------------------------------------------------------


def rss_mib(pid: int, proc: Path = Path("/proc")) -> float | None:
    """Resident memory of a process (VmRSS in /proc/PID/status), None once it is gone."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)  # reported in kB
    return None


def our_pids(group: ProcessGroup, broker: LocalBroker) -> dict[str, int]:
    """This process (the clearance system), the broker and every component, by name."""
    broker_pid = broker.running_pid()
    return {
        "clearance (this process)": os.getpid(),
        **({"broker": broker_pid} if broker_pid else {}),
        **{name: child.process.pid for name, child in group.children.items()},
    }


def rss_of(group: ProcessGroup) -> dict[str, float | None]:
    return {name: rss_mib(child.process.pid) for name, child in group.children.items()}


def hub_env(work: Path, name: str, port: int, *, first: bool, view: bool) -> dict[str, str]:
    """A worker's settings: the lag monitor on the first only (one is enough), the view
    on it only if ``view`` (else on no worker: ``gun-hub view`` keeps it)."""
    env = {"GUN_HUB_HUB__DATA_DIR": str(work / name), "GUN_HUB_HUB__WEB_PORT": str(port)}
    if not (first and view):
        # One operations view is enough; it follows the topics, not the worker (as in
        # tests/e2e/test_several_hub_workers.py).
        env["GUN_HUB_OPS__VIEW_ENABLED"] = "false"
    if not first:
        env["GUN_HUB_OPS__LAG_MONITOR_ENABLED"] = "false"
    return env


def start_hub(
    group: ProcessGroup, work: Path, name: str, *, first: bool, view_in_hub: bool = False
) -> str:
    """Start a hub worker; the URL it is ready at (ready once it holds its partitions)."""
    port = free_port()
    group.start(name, ["hub"], hub_env(work, name, port, first=first, view=view_in_hub))
    return ready_url(port)


def start_operations_view(group: ProcessGroup, work: Path, *, view_in_hub: bool) -> dict[str, str]:
    """Unless a hub worker keeps the view, start ``gun-hub view`` (the feed and view only:
    no listener is asked during a run); the readiness URL to wait for, by name."""
    if view_in_hub:
        return {}
    return {"view": ready_url(start_view(group, work / "view", wait=False))}


def stack_env(bootstrap: str, security: SecuritySettings) -> dict[str, str]:
    """The environment every process of a benchmark's stack reads its settings from."""
    return {
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "GUN_HUB_KAFKA__TOPIC_PREFIX": PREFIX,
        "GUN_HUB_KAFKA__PARTITIONS": str(PARTITIONS),
        "GUN_HUB_SECURITY__KEYS_DIR": str(security.keys_dir),
        "GUN_HUB_SECURITY__STATE_DIR": str(security.state_dir),
        "GUN_HUB_LOG_LEVEL": "WARNING",
        "GUN_HUB_LOG_FORMAT": "text",
        "NO_COLOR": "1",
    }


async def start_stack(
    group: ProcessGroup,
    work: Path,
    authorities: Iterable[str],
    files: Mapping[str, Path],
    *,
    view_in_hub: bool,
) -> tuple[dict[str, str], dict[str, int]]:
    """Each authority's simulated partner and adapter, the first hub worker and the
    operations view, all ready: their readiness URLs by name, and the partners' ports."""
    readiness: dict[str, str] = {}
    partner_ports: dict[str, int] = {}
    for authority in authorities:
        port = start_partner_system(
            group, authority, files[authority], work / f"{authority}.sqlite", wait=False
        )
        partner_ports[authority] = port
        readiness[f"partner-sim-{authority}"] = partner_health_url(port)
        readiness[f"adapter-{authority}"] = ready_url(
            start_adapter(group, authority, port, wait=False)
        )
    readiness["hub"] = start_hub(group, work, "hub", first=True, view_in_hub=view_in_hub)
    readiness.update(start_operations_view(group, work, view_in_hub=view_in_hub))
    await asyncio.to_thread(wait_all_ready, readiness, READY_WITHIN_S, group)
    return readiness, partner_ports


async def open_clearance(
    security: SecuritySettings, topics: TopicRegistry, bootstrap: str
) -> tuple[DeclarationSender, DecisionReader]:
    """The clearance stand-in's sender and reader, started (decisions from now on)."""
    envelope = build_envelope(security, CLEARANCE_PARTY, topics, MemoryReplayGuard())
    sender = DeclarationSender(bootstrap, topics.declarations, envelope)
    reader = DecisionReader(bootstrap, topics.decisions, envelope)
    await sender.start()
    await reader.start(from_beginning=False)
    return sender, reader


def write_documents(
    work: Path, documents: Mapping[str, list[dict[str, object]]]
) -> dict[str, Path]:
    files = {}
    for authority, listed in documents.items():
        files[authority] = work / f"{authority}-documents.json"
        files[authority].write_text(json.dumps({"documents": listed}))
    return files


async def load_documents(
    http: aiohttp.ClientSession,
    partner_ports: Mapping[str, int],
    mix: Mix,
    batch: list[PlannedDeclaration],
) -> None:
    """Give the running partner systems the documents ``batch`` quotes (added; the lines
    already held keep their positions), a few hundred per request: a long run's documents
    exceed what one request to a partner system may carry (1 MiB)."""
    quoted = {d.reference for p in batch for d in p.documents}
    for authority, documents in mix.documents_by_authority(quoted).items():
        url = f"http://127.0.0.1:{partner_ports[authority]}/admin/documents"
        for start in range(0, len(documents), _DOCUMENTS_PER_REQUEST):
            chunk = documents[start : start + _DOCUMENTS_PER_REQUEST]
            async with http.put(url, json={"documents": chunk}) as response:
                response.raise_for_status()


_DOCUMENTS_PER_REQUEST = 500


# -- the clearance system's side ---------------------------------------------------------


@dataclass
class Clearance:
    """Submits sealed declarations and opens decisions, timing each declaration."""

    sender: DeclarationSender
    reader: DecisionReader
    group: ProcessGroup
    outcomes: Counter[str] = field(default_factory=Counter)
    decided: set[str] = field(default_factory=set)  # every phase's, to see late duplicates
    duplicates: int = 0
    # References decided with a control: their reservations wait for the control's result
    # (a later version), which ./tasks bench-steady sends so that their cases can retire.
    controlled: set[str] = field(default_factory=set)

    async def _decisions(
        self, references: set[str], timeout_s: float, label: str
    ) -> dict[str, float]:
        """When each of ``references`` was decided (monotonic seconds), until all are or
        ``timeout_s`` passes."""
        arrived: dict[str, float] = {}
        deadline = time.monotonic() + timeout_s
        with progress_bar(label, total=len(references), unit="decisions") as bar:
            while len(arrived) < len(references) and time.monotonic() < deadline:
                self.group.check_alive()
                # expected=1: back as soon as a fetch brought anything, so each
                # declaration's arrival is timed within one fetch, not one timeout.
                for received in await self.reader.collect(expected=1, timeout_s=0.2):
                    now = time.monotonic()
                    reference = received.decision.reference
                    if reference in self.decided:
                        self.duplicates += 1  # the contract: one decision per version
                    elif reference in references:
                        self.decided.add(reference)
                        arrived[reference] = now
                        self.outcomes[received.decision.outcome.value] += 1
                        if received.decision.outcome in CONTROLS:
                            self.controlled.add(reference)
                        bar.advance()
        return arrived

    async def warm_up(self, batch: list[PlannedDeclaration]) -> None:
        for planned in batch:
            await self.sender.publish(self.sender.seal(planned.xml), planned.reference)
        arrived = await self._decisions({p.reference for p in batch}, 180, "warming up")
        if len(arrived) < len(batch):
            raise TimeoutError(f"warm-up: {len(arrived)} of {len(batch)} decided in 180 s")

    async def saturate(self, batch: list[PlannedDeclaration]) -> tuple[dict[str, Any], list[bytes]]:
        """Everything sent at once; the figures and the sealed values (for the raw pipe)."""
        # Sealed before the clock starts: the saturation rate is the hub's, not how fast
        # this one process can sign and encrypt.
        values = [self.sender.seal(p.xml) for p in batch]
        began = time.monotonic()

        async def send() -> float:
            deliveries = [
                await self.sender.publish(v, p.reference)
                for v, p in zip(values, batch, strict=True)
            ]
            await asyncio.gather(*deliveries)
            return time.monotonic() - began

        sending = asyncio.create_task(send())
        arrived = await self._decisions(
            {p.reference for p in batch}, 120 + len(batch) / 10, "saturation"
        )
        submitted_s = await sending
        arrivals = sorted(t - began for t in arrived.values())
        elapsed = arrivals[-1] if arrivals else math.nan
        steady = steady_rate(arrivals)
        return {
            "declarations": len(batch),
            "decided": len(arrived),
            "submitted_in_s": round(submitted_s, 2),
            "seconds": round(elapsed, 2),
            "declarations_per_second": round(len(arrived) / elapsed, 1) if arrivals else None,
            "steady_per_second": round(steady, 1) if steady else None,
            "sealed_bytes_median": sorted(map(len, values))[len(values) // 2],
        }, values

    async def paced(self, batch: list[PlannedDeclaration], rate: float) -> dict[str, Any]:
        """``batch`` offered at ``rate`` per second on a fixed schedule; each latency is
        from its scheduled submission to its decision opened here."""
        scheduled: dict[str, float] = {}
        lateness: list[float] = []
        start = time.monotonic() + 0.1

        async def send() -> float:
            deliveries = []
            for n, planned in enumerate(batch):
                at = start + n / rate
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                lateness.append(time.monotonic() - at)
                scheduled[planned.reference] = at
                value = self.sender.seal(planned.xml)  # the clearance system's cost, timed
                deliveries.append(await self.sender.publish(value, planned.reference))
            await asyncio.gather(*deliveries)
            return time.monotonic() - start

        sending = asyncio.create_task(send())
        duration = len(batch) / rate
        arrived = await self._decisions(
            {p.reference for p in batch}, duration + 120, "latency at half rate"
        )
        sent_in = await sending
        latencies = [arrived[r] - scheduled[r] for r in arrived]
        by_second = [(scheduled[r] - start, arrived[r] - scheduled[r]) for r in arrived]
        return {
            "declarations": len(batch),
            "decided": len(arrived),
            "offered_per_second": round(rate, 1),
            "sent_per_second": round(len(batch) / sent_in, 1),
            "sender_late_max_ms": round(max(lateness) * 1000, 1) if lateness else None,
            "latency": latency_summary(latencies),
            # Stalls show as seconds whose worst latency stands out (and how often).
            "timeline": timeline(by_second),
            # How much p99 moves within the run: one run's p99 rests on its few slowest.
            "p99_ms_by_window": window_percentiles(by_second, 99),
        } | {"backlog_grew": backlog_grew(timeline(by_second))}


async def warm_broker(
    clearance: Clearance,
    mix: Mix,
    broker_pid: int,
    http: aiohttp.ClientSession,
    partner_ports: Mapping[str, int],
    prefix: str,
) -> list[float]:
    """Rounds of declarations decided until the broker's JIT compiler is quiet (at most
    ``JIT_QUIET_CPUS`` over two rounds in a row, after ``BROKER_WARM_MIN_ROUNDS``), so that
    the measurement is of the hub against a broker that has run for a while, as in
    production, not of the JVM compiling itself; how busy the compiler was in each round
    (CPUs)."""
    busy: list[float] = []
    for round_number in range(BROKER_WARM_MAX_ROUNDS):
        batch = mix.declarations(BROKER_WARM_ROUND, f"{prefix}{round_number:02d}X")
        await load_documents(http, partner_ports, mix, batch)
        before, began = thread_ticks(broker_pid), time.monotonic()
        await clearance.warm_up(batch)
        compiled_s = broker_threads(before, thread_ticks(broker_pid)).get("jit compiler", 0.0)
        busy.append(round(compiled_s / (time.monotonic() - began), 2))
        quiet = len(busy) >= 2 and max(busy[-2:]) <= JIT_QUIET_CPUS
        if quiet and len(busy) >= BROKER_WARM_MIN_ROUNDS:
            break
    return busy


# -- the raw pipe -----------------------------------------------------------------------


async def raw_pipe(
    broker: LocalBroker, values: list[bytes], count: int, work: Path
) -> dict[str, Any]:
    """``count`` records of the sealed declarations' sizes through three hop processes:
    producer -> raw.0 -> hop 1 -> raw.1 -> hop 2 -> raw.2 -> hop 3 -> raw.3 -> consumer."""
    bootstrap = broker.bootstrap_servers
    names = [f"{PREFIX}-raw.{n}" for n in range(RAW_HOPS + 1)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        **producer_options(bootstrap), acks="all", enable_idempotence=True, linger_ms=5
    )
    consumer = AIOKafkaConsumer(
        **consumer_options(bootstrap), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    # The hops import this package: found from any working directory.
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    with ProcessGroup(work / "logs", {"PYTHONPATH": path}, stop_together=True) as group:
        for hop in range(1, RAW_HOPS + 1):
            group.start(
                f"raw-hop-{hop}",
                [bootstrap, names[hop - 1], names[hop], f"{PREFIX}-raw-hop-{hop}"],
                module="benchmarks.raw_hop",
            )
        await producer.start()
        await consumer.start()
        try:
            # A probe on each partition of the last topic: once the broker took them, it
            # leads them all. Right after the topics are created it may not yet, and the
            # clients say so (NotLeaderForPartition, retried): expected, so not shown.
            # The consumer starts after the probes, before any record.
            tail = [TopicPartition(names[-1], p) for p in range(PARTITIONS)]
            with quiet("aiokafka"):
                for tp in tail:
                    await producer.send_and_wait(tp.topic, b"probe", partition=tp.partition)
            consumer.assign(tail)
            await consumer.seek_to_end(*tail)
            for tp in tail:
                await consumer.position(tp)

            async def through(total: int, label: str) -> float:
                began = time.monotonic()
                for n in range(total):
                    await producer.send(names[0], values[n % len(values)], key=b"%d" % n)
                seen = 0
                deadline = began + 120 + total / 100
                with progress_bar(label, total=total, unit="records") as bar:
                    while seen < total and time.monotonic() < deadline:
                        group.check_alive()
                        batches = await consumer.getmany(timeout_ms=200)
                        got = sum(len(r) for r in batches.values())
                        seen += got
                        bar.advance(got)
                if seen < total:
                    raise TimeoutError(f"raw pipe: {seen} of {total} records through")
                return time.monotonic() - began

            await through(RAW_WARM_UP, "raw pipe warming up")  # the hops have joined
            rss_start = rss_of(group)
            meter = CpuMeter(lambda: our_pids(group, broker))
            meter.start()
            seconds = await through(count, "raw 3-hop pipe")
            cpu = meter.stop()
            rss_end = rss_of(group)
        finally:
            await consumer.stop()
            await producer.stop()
    return {
        "hops": RAW_HOPS,
        "records": count,
        "seconds": round(seconds, 2),
        "records_per_second": round(count / seconds, 1),
        "record_bytes_median": sorted(map(len, values))[len(values) // 2],
        "cpu": cpu,
        "rss_mib": {n: {"start": rss_start.get(n), "end": rss_end.get(n)} for n in rss_start},
    }


@contextlib.contextmanager
def quiet(logger: str) -> Iterator[None]:
    """Only errors from ``logger`` meanwhile."""
    target = logging.getLogger(logger)
    level = target.level
    target.setLevel(logging.ERROR)
    try:
        yield
    finally:
        target.setLevel(level)


# -- the run ------------------------------------------------------------------------------


async def run(options: Options, work: Path, broker: LocalBroker) -> dict[str, Any]:
    bootstrap = broker.bootstrap_servers
    routing = load_routing_table(config_path("routing.toml"))
    topics = topic_registry(PREFIX, routing.authorities)
    await ensure_topics(bootstrap, topics, PARTITIONS, 1)
    security = SecuritySettings(keys_dir=work / "keys", state_dir=work / "state")
    KeystoreFolder(security.keys_dir).init(parties(topics))
    mix = Mix(options.seed)
    warm_ups = {w: mix.declarations(WARM_UP, f"26FRBENCHW{w}") for w in (1, 2)}
    files = write_documents(work, mix.documents_by_authority())
    env = stack_env(bootstrap, security)
    result: dict[str, Any] = {
        "hub": [],
        "mix": {},
        "operations_view": "first hub worker" if options.view_in_hub else "gun-hub view",
    }
    rss_start: dict[str, float | None] = {}
    with ProcessGroup(work / "logs", env, stop_together=True) as group:
        readiness, partner_ports = await start_stack(
            group, work, routing.authorities, files, view_in_hub=options.view_in_hub
        )
        rss_start.update(rss_of(group))
        sender, reader = await open_clearance(security, topics, bootstrap)
        clearance = Clearance(sender, reader, group)
        raw_values: list[bytes] = []
        watcher = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await watcher.start()
        try:
            async with aiohttp.ClientSession() as http:
                for workers in (1, 2):
                    if workers == 2:
                        second = start_hub(group, work, "hub-2", first=False)
                        await asyncio.to_thread(
                            wait_all_ready,
                            {"hub": readiness["hub"], "hub-2": second},
                            READY_WITHIN_S,
                            group,
                        )
                        rss_start["hub-2"] = rss_mib(group.children["hub-2"].process.pid)
                    await clearance.warm_up(warm_ups[workers])
                    if workers == 1:
                        result["broker_jit_cpus_while_warming"] = await warm_broker(
                            clearance,
                            mix,
                            broker.running_pid() or 0,
                            http,
                            partner_ports,
                            "26FRBENCHJ",
                        )
                    hubs = [readiness["hub"], *([second] if workers == 2 else [])]
                    repairs_before = await records_read_again(http, hubs)
                    batch = mix.declarations(options.declarations, f"26FRBENCHS{workers}")
                    await load_documents(http, partner_ports, mix, batch)
                    meter = CpuMeter(lambda: our_pids(group, broker))
                    meter.start()
                    saturation, values = await clearance.saturate(batch)
                    saturation["cpu"] = meter.stop()
                    raw_values = raw_values or values
                    phase: dict[str, Any] = {"workers": workers, "saturation": saturation}
                    result["mix"].setdefault("saturation", describe(batch))
                    rate = (saturation["declarations_per_second"] or 0) / 2
                    # The latency run measures the offered load, not the saturation
                    # run's follow-ups still under way.
                    phase["settled_s"] = await settle(lambda: follow_up_ends(watcher, topics))
                    if rate > 0:
                        paced = mix.declarations(
                            max(1, round(rate * options.duration_s)), f"26FRBENCHL{workers}"
                        )
                        await load_documents(http, partner_ports, mix, paced)
                        meter.start()
                        phase["latency"] = await clearance.paced(paced, rate)
                        phase["latency"]["cpu"] = meter.stop()
                    repairs_after = await records_read_again(http, hubs)
                    if repairs_before is not None and repairs_after is not None:
                        phase["records_read_again"] = int(repairs_after - repairs_before)
                    result["hub"].append(phase)
                    print_phase(phase)
            # Every phase over: the decisions of the whole run, read once the topic is
            # quiet, a late duplicate of the last phase included.
            result["decisions_settled_s"] = await settle(lambda: decision_ends(watcher, topics))
            result["decision_books"] = await books_of_the_run(
                bootstrap,
                topics.decisions,
                build_envelope(security, CLEARANCE_PARTY, topics, NoReplayMemory()),
            )
            rss_end = rss_of(group)
        finally:
            await watcher.stop()
            await reader.stop()
            await sender.stop()
    result["rss_mib"] = {
        name: {"start": rss_start.get(name), "end": rss_end.get(name)} for name in rss_end
    }
    result["decision_outcomes"] = dict(clearance.outcomes.most_common())
    result["duplicate_decisions"] = result["decision_books"]["duplicate_decisions"]
    result["duplicates_seen_while_reading"] = clearance.duplicates
    result["partner_documents"] = len(mix.documents)
    # Last, on a machine the stack has left: the broker alone with three plain hops.
    raw = await raw_pipe(broker, raw_values, options.raw_records, work)
    for name, figures in raw.pop("rss_mib").items():
        result["rss_mib"][name] = figures
    result["raw_pipe"] = raw
    result["hub_over_raw"] = {
        f"{phase['workers']} worker{'s' if phase['workers'] > 1 else ''}": round(
            phase["saturation"]["declarations_per_second"] / raw["records_per_second"], 4
        )
        for phase in result["hub"]
        if phase["saturation"]["declarations_per_second"]
    }
    return result


READ_AGAIN = "gun_hub_records_read_again_total"
# The stack is done with a run's work once the ends of its request and answer topics have
# not moved for this long (an adapter answers a request within a second or two).
SETTLED_AFTER_S = 2.0
SETTLE_WITHIN_S = 60.0
SETTLE_LOOK_S = 0.5


async def settle(
    ends: Callable[[], Coroutine[Any, Any, Mapping[Any, int]]],
    *,
    quiet_s: float = SETTLED_AFTER_S,
    max_s: float = SETTLE_WITHIN_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
) -> float | None:
    """Until the end offsets ``ends`` returns have not moved for ``quiet_s``: how long
    that took, or None if they still moved after ``max_s``. A broker's end offsets only
    move when a record is written, so nothing else tells when the stack is done."""
    started = clock()
    last = await ends()
    still_since = started
    while clock() - started < max_s:
        await sleep(SETTLE_LOOK_S)
        now = await ends()
        if now != last:
            last, still_since = now, clock()
        elif clock() - still_since >= quiet_s:
            return clock() - started
    return None


async def follow_up_ends(consumer: AIOKafkaConsumer, topics: TopicRegistry) -> dict[Any, int]:
    """End offsets of every request and answer partition: the follow-ups' traffic."""
    partitions = [
        TopicPartition(topic, partition)
        for authority in topics.authorities
        for topic in (topics.requests(authority), topics.responses(authority))
        for partition in range(PARTITIONS)
    ]
    return dict(await consumer.end_offsets(partitions))


async def decision_ends(consumer: AIOKafkaConsumer, topics: TopicRegistry) -> dict[Any, int]:
    """End offsets of every decisions partition: a late decision moves one."""
    partitions = [TopicPartition(topics.decisions, partition) for partition in range(PARTITIONS)]
    return dict(await consumer.end_offsets(partitions))


async def records_read_again(http: aiohttp.ClientSession, readiness: list[str]) -> float | None:
    """How many records the hub workers' offset watchdogs have read again so far (each a
    record handled twice and a late decision), from their /metrics; None if one did not
    answer."""
    total = 0.0
    for url in readiness:
        figures = await scrape(http, url.removesuffix("/readyz") + "/metrics", [READ_AGAIN])
        if figures is None:
            return None
        total += figures[READ_AGAIN]
    return total


def print_phase(phase: Mapping[str, Any]) -> None:
    saturation = phase["saturation"]
    line = (
        f"{phase['workers']} worker(s): {saturation['decided']}/{saturation['declarations']} "
        f"decided, {saturation['declarations_per_second']} declarations/s"
    )
    settled = phase.get("settled_s")
    line += "; stack settled " + (f"after {settled:.1f} s" if settled is not None else "NOT")
    latency = phase.get("latency", {}).get("latency", {})
    if latency.get("count"):
        line += f"; at half rate p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms"
    print(line, flush=True)


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="./tasks bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--declarations", type=int, default=Options.declarations,
        help="declarations per saturation run (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--duration", type=float, default=Options.duration_s,
        help="seconds of paced load per latency run (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--raw-records", type=int, default=Options.raw_records,
        help="records through the raw 3-hop pipe (default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=Options.seed, help="the mix's seed")
    parser.add_argument("--out", type=Path, help="the JSON file (default benchmarks/results/)")
    parser.add_argument(
        "--view-in-hub", action="store_true",
        help="the first hub worker keeps the operations view (no gun-hub view process)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    return Options(
        args.declarations, args.duration, args.raw_records, args.seed, args.out, args.view_in_hub
    )


@contextlib.contextmanager
def throwaway_broker(work: Path, jmx: bool = False) -> Iterator[LocalBroker]:
    """A broker of the benchmark's own, on free ports under ``work``, stopped after;
    with ``jmx``, its JMX agent on a free port of 127.0.0.1 too (``broker.jmx_port``)."""
    broker = LocalBroker(
        BrokerSettings(
            home=work / "kafka",
            jars_cache=REPO / ".gun-hub" / "cache",
            port=free_port(),
            controller_port=free_port(),
            start_timeout_s=120,
        ),
        PARTITIONS,
        jmx_port=free_port() if jmx else None,
    )
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def run_on_own_broker(
    name: str,
    options: Mapping[str, Any],
    out: Path | None,
    run_figures: Callable[[Path, LocalBroker], Coroutine[Any, Any, dict[str, Any]]],
    jmx: bool = False,
) -> tuple[dict[str, Any], Path]:
    """What every benchmark of the stack does around its run: a throw-away broker in a
    temporary folder (with ``jmx``, its JMX agent on), the machine and its load average
    before and after (other work on a 2-core machine moves the figures), the result saved
    as JSON; the result and where."""
    load_before = os.getloadavg()
    began = datetime.now(UTC)
    path = out or RESULTS / f"{name}-{began.strftime('%Y%m%dT%H%M%SZ')}.json"
    with tempfile.TemporaryDirectory(prefix=f"gun-hub-{name}-") as folder:
        work = Path(folder)
        try:
            with throwaway_broker(work, jmx) as broker:
                figures = asyncio.run(run_figures(work, broker))
        finally:
            keep_logs(work, path)
    result = {
        "benchmark": name,
        "at": began.isoformat(timespec="seconds"),
        "wall_seconds": round((datetime.now(UTC) - began).total_seconds(), 1),
        "options": dict(options),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        **figures,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result, path


def keep_logs(work: Path, result: Path) -> Path | None:
    """The components' logs of a run (their warnings: the stack runs at WARNING) and the
    broker's (its server log, where the group coordinator says why each group rebalanced,
    and its GC log) kept beside its JSON, ``<result>-logs/`` and ``<result>-logs/broker/``,
    before the run's folder goes: a late window or a watchdog repair in the figures can
    then be read about. None without logs."""
    sources = [(work / "logs", ""), (work / "kafka" / "logs", "broker")]
    present = [(folder, under) for folder, under in sources if folder.is_dir()]
    if not present:
        return None
    kept = result.with_name(f"{result.stem}-logs")
    result.parent.mkdir(parents=True, exist_ok=True)
    for folder, under in present:
        shutil.copytree(folder, kept / under, dirs_exist_ok=True)
    return kept


def print_machine(result: Mapping[str, Any], path: Path) -> None:
    machine = result["machine"]
    print(
        f"load average before {machine['load_average_before']}, "
        f"after {machine['load_average_after']} ({machine['cpus']} CPUs)"
    )
    print(f"saved {path}")


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    result, out = run_on_own_broker(
        "bench",
        {
            "declarations": options.declarations,
            "duration_s": options.duration_s,
            "raw_records": options.raw_records,
            "seed": options.seed,
            "view_in_hub": options.view_in_hub,
        },
        options.out,
        lambda work, broker: run(options, work, broker),
    )
    print()
    print(render_result(result))
    print()
    print(summary(result["decision_books"]))
    print_machine(result, out)
    verdict = untrustworthy(result)
    if verdict is not None:
        print(verdict, file=sys.stderr)
        return 1
    return 0


def untrustworthy(result: Mapping[str, Any]) -> str | None:
    """Why the figures of a run are not to be trusted (a pipeline that lost or doubled
    decisions, or whose decisions were not all read again), or None."""
    undecided = [
        f"{phase['workers']} worker(s) {run}: {figures['decided']} of {figures['declarations']}"
        for phase in result["hub"]
        for run, figures in phase.items()
        if isinstance(figures, dict) and figures["decided"] < figures["declarations"]
    ]
    books = result["decision_books"]
    if not undecided and not books["duplicate_decisions"] and books["read_to_end"]:
        return None
    unread = "" if books["read_to_end"] else "; the decisions topic was not read to its end"
    return (
        f"NOT TRUSTWORTHY: undecided {undecided or 'none'}, "
        f"{books['duplicate_decisions']} duplicate decision(s){unread}"
    )


if __name__ == "__main__":
    # A SIGTERM or SIGHUP stops the broker and components it started, as Ctrl-C does.
    with stopping_what_it_started_on_termination():
        sys.exit(main())
