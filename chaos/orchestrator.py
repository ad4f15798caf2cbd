"""The chaos run: the whole stack, a seeded workload through two clients, seeded faults,
then the independent checker's verdict (``docs/chaos.md``).

Steps: start a broker of the run's own, keys, topics, three partner simulators loaded
with the workload's documents, three adapters and the hub; send every story's first
version(s) at a steady rate through aiokafka or confluent-kafka (one client per
reference), while the clearance *office* reads the decisions and sends the next versions
(end of a control, invalidation, amendment...) and the fault schedule runs; then wait
until the stack is quiet (bounded), run the held-back clearance reader, and check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from chaos import faults
from chaos.checker.codecs import PayloadError, parse_decision
from chaos.checker.invariants import CheckReport
from chaos.checker.jose import EnvelopeError, EnvelopeOpener, KeyFolder
from chaos.checker.model import Event, Submission, write_jsonl
from chaos.checker.run import EVENTS, MANIFEST, PARTNERS, RUN_FILE, check_run
from chaos.poison import poison_batch, send_poison
from chaos.producers import AiokafkaProducer, ClearanceProducer, ConfluentProducer
from chaos.stack import AUTHORITIES, PARTITIONS, Stack
from chaos.workload import Story, Version, Workload
from gun_contract.envelope import ContentType
from gun_contract.kafka.admin import ensure_topics, topic_partitions
from gun_contract.resources import config_path
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY, Entitlements, parties
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreFolder, PartyKeys
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.domain.routing import load_routing_table

log = logging.getLogger("chaos")
PREFIX = "chaos"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    window_s: float  # how long the first versions take to send
    deadline_s: float  # the hub's request deadline
    partner_timeout_s: float  # an adapter's partner call deadline
    quiet_s: float  # no new record for this long: the stack is quiet
    drain_max_s: float  # give up waiting for quiet after this long

    @property
    def outage_s(self) -> float:
        return self.deadline_s + 5


def profile_for(name: str, declarations: int) -> Profile:
    if name == "auto":
        name = "full" if declarations >= 2000 else "short"
    if name == "full":
        return Profile("full", max(120.0, declarations / 40), 15, 3, 20, 900)
    return Profile("short", 70.0, 10, 2, 12, 120)


@dataclass
class Run:
    out: Path
    seed: int
    profile: Profile
    workload: Workload
    stack: Stack
    topics: TopicRegistry
    started: float = field(default_factory=time.monotonic)
    events: list[Event] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    partitions: dict[int, int] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    # Versions a send of which was reported failed (sent again): the failed send may be in
    # the log all the same, so where the version first arrived is not known.
    resent: set[int] = field(default_factory=set)
    producers: dict[str, ClearanceProducer] = field(default_factory=dict)
    stories: dict[str, Story] = field(default_factory=dict)
    office_backlog: int = 0
    retries: deque[tuple[Submission, bytes, int]] = field(default_factory=deque)
    # Versions handed to a client whose delivery report has not come yet: the run is not
    # quiet while a client still holds one (it may be resent, or reach the hub late).
    in_flight: set[int] = field(default_factory=set)
    # Kills per fault kind and target so far: several workers or replicas are killed in turn.
    kills: Counter[str] = field(default_factory=Counter)
    _clearance: JoseEnvelope | None = None

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def event(self, kind: str, name: str, **detail: Any) -> None:
        event = Event(self.now(), kind, name, detail)
        self.events.append(event)
        with (self.out / EVENTS).open("a") as handle:
            handle.write(event.to_json() + "\n")
        log.info("[%7.1fs] %s %s %s", event.t, kind, name, detail or "")

    # -- sending -----------------------------------------------------------------------

    async def send(self, version: Version, attempt: int = 0) -> None:
        sub = version.submission
        if attempt == 0:
            sub = dataclasses.replace(sub, seq=len(self.submissions), submitted_at=time.time())
            self.submissions.append(sub)
        seq = sub.seq

        def delivered(partition: int | None, offset: int | None, error: str | None) -> None:
            self.in_flight.discard(seq)
            if error is None and partition is not None:
                self.partitions[seq] = partition
                if offset is not None:
                    self.offsets[seq] = offset
                return
            self.resent.add(seq)
            if attempt < 5:
                self.event("note", "send_failed", reference=sub.reference, error=error)
                self.retries.append((sub, version.data, attempt + 1))
            else:
                self.event("note", "send_given_up", reference=sub.reference, error=error)

        self.in_flight.add(seq)

        await self.producers[sub.client].send(
            self.topics.declarations,
            sub.reference.encode(),
            self._sealed(version.data),
            delivered,
            compressed=sub.oversized,
        )

    def _sealed(self, declaration: bytes) -> bytes:
        """As a clearance system must send it: signed by it, encrypted to the hub."""
        if self._clearance is None:
            self._clearance = JoseEnvelope(
                PartyKeys.load(self.stack.keys_dir, CLEARANCE_PARTY),
                Entitlements.from_registry(self.topics),
                MemoryReplayGuard(),
            )
        return self._clearance.seal(
            declaration,
            recipient=HUB_PARTY,
            topic=self.topics.declarations,
            content_type=ContentType.XML,
        )

    async def resend_failed(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            while self.retries:
                sub, data, attempt = self.retries.popleft()
                await self.send(Version(sub, data), attempt)
            await asyncio.sleep(0.5)

    async def submit_all(self) -> None:
        stories = self.workload.stories
        interval = self.profile.window_s / max(1, len(stories))
        began = time.monotonic()
        for n, story in enumerate(stories):
            self.stories[story.reference] = story
            for version in story.first():
                await self.send(version)
            wait = began + (n + 1) * interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if n % 500 == 0:
                log.info("[%7.1fs] %d of %d declarations sent", self.now(), n, len(stories))

    # -- the clearance office: reacts to decisions --------------------------------------

    async def office(self, stop: asyncio.Event) -> None:
        opener = EnvelopeOpener(
            KeyFolder(self.stack.keys_dir),
            sender="hub",
            recipient="clearance",
            topic=self.topics.decisions,
        )
        partitions = [
            TopicPartition(self.topics.decisions, p)
            for p in await topic_partitions(self.stack.bootstrap, self.topics.decisions)
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.stack.bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        try:
            while not stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=500)
                except Exception:  # the broker restarts: keep reading
                    log.warning("office: read failed; retrying", exc_info=True)
                    await asyncio.sleep(1)
                    continue
                for records in batches.values():
                    for record in records:
                        await self._react(opener, record.value or b"")
        finally:
            await consumer.stop()

    async def _react(self, opener: EnvelopeOpener, value: bytes) -> None:
        try:
            decision = parse_decision(opener.open(value).payload)
        except (EnvelopeError, PayloadError):
            return  # the checker reports unreadable decisions
        story = self.stories.get(decision.reference)
        if story is None:
            return
        for version in story.react(decision):
            await self.send(version)

    # -- faults ------------------------------------------------------------------------

    async def run_schedule(self, schedule: list[faults.Fault], t0: float) -> None:
        tasks = []
        for fault in schedule:
            wait = t0 + fault.at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self.inject(fault)))
        await asyncio.gather(*tasks)

    async def inject(self, fault: faults.Fault) -> None:
        began = self.now()
        log.info("[%7.1fs] injecting %s", began, fault.name)
        try:
            detail = await self._inject(fault)
        except Exception as err:  # a fault that could not be injected is reported, not fatal
            log.exception("fault %s failed", fault.name)
            self.event("fault", fault.name, ok=False, began=began, error=repr(err))
        else:
            self.event("fault", fault.name, ok=True, began=began, **detail)

    async def _inject(self, fault: faults.Fault) -> dict[str, Any]:
        stack = self.stack
        if fault.kind in (faults.HUB_KILL, faults.ADAPTER_KILL):
            # With several workers or replicas, the kills go round them in turn.
            names = stack.hubs() if fault.kind == faults.HUB_KILL else stack.adapters(fault.target)
            self.kills[fault.kind + fault.target] += 1
            name = names[(self.kills[fault.kind + fault.target] - 1) % len(names)]
            code = await asyncio.to_thread(stack.kill, name, signal.SIGKILL)
            await asyncio.sleep(random.Random(self.seed + int(fault.at)).uniform(0.5, 3))
            stack.start(name)
            ready = await asyncio.to_thread(stack.wait_ready, name, 180)
            return {"process": name, "exit": code, "ready_after_s": round(ready, 1)}
        if fault.kind == faults.BROKER_RESTART:
            down = await asyncio.to_thread(stack.restart_broker)
            return {"down_s": round(down, 1)}
        if fault.kind == faults.POISON:
            live = [s.reference.encode() for s in self.submissions[-50:]]
            for attempt in range(12):  # the broker may be restarting: poison when it is back
                try:
                    batch = await poison_batch(
                        stack.bootstrap, self.topics, stack.keys_dir, random.Random(self.seed), live
                    )
                    return {"records": await send_poison(stack.bootstrap, batch)}
                except Exception:
                    if attempt == 11:
                        raise
                    log.info("poison: broker unavailable, retrying in 10 s")
                    await asyncio.sleep(10)
        settings: dict[str, dict[str, Any]] = {
            faults.PARTNER_OUTAGE: {"outage": True},
            faults.PARTNER_TIMEOUTS: {
                "timeout_rate": 0.3,
                "hang_s": self.profile.partner_timeout_s + 2,
            },
            faults.PARTNER_GARBAGE: {"garbage": True},
            # Held past the adapter's deadline and its retry (409), applied after: long
            # enough for the hub to decide and follow up meanwhile.
            faults.PARTNER_IN_PROGRESS: {
                "in_progress_next": 20,
                "hang_s": self.profile.partner_timeout_s + 8,
            },
        }
        switched = settings[fault.kind]
        url = stack.partner_urls[fault.target]
        began_at = time.time()
        await asyncio.to_thread(put_faults, url, switched)
        # Read back: the checker counts the fault only if the simulator holds the switch.
        held = await asyncio.to_thread(get_faults, url)
        applied = all(fault_switch_held(held, name, value) for name, value in switched.items())
        await asyncio.sleep(fault.duration_s)
        await asyncio.to_thread(put_faults, url, {})
        return {
            "target": fault.target,
            "for_s": fault.duration_s,
            **switched,
            "applied": applied,
            "from_epoch": round(began_at, 3),
            "until_epoch": round(time.time(), 3),
        }

    # -- quiet ---------------------------------------------------------------------------

    async def wait_quiet(self) -> bool:
        watched = [self.topics.declarations, self.topics.decisions]
        for authority in AUTHORITIES:
            watched += [self.topics.requests(authority), self.topics.responses(authority)]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap)
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p)
                for topic in watched
                for p in await topic_partitions(self.stack.bootstrap, topic)
            ]
            last: dict[TopicPartition, int] | None = None
            still_since = time.monotonic()
            deadline = time.monotonic() + self.profile.drain_max_s
            reported = time.monotonic()
            while time.monotonic() < deadline:
                ends = await consumer.end_offsets(partitions)
                if ends != last or self.retries or self.in_flight:
                    if last is not None and time.monotonic() - reported > 10:
                        moving = sorted({tp.topic for tp in ends if ends[tp] != last.get(tp)})
                        if self.in_flight or self.retries:
                            moving.append(
                                f"{len(self.in_flight)} sent and not yet acknowledged, "
                                f"{len(self.retries)} to send again"
                            )
                        log.info("[%7.1fs] not quiet yet: %s", self.now(), ", ".join(moving))
                        reported = time.monotonic()
                    last, still_since = ends, time.monotonic()
                elif time.monotonic() - still_since >= self.profile.quiet_s:
                    behind = await self._groups_behind(consumer, ends)
                    if not behind:
                        return True
                    # Nothing moved, yet a group has not committed everything: busy (a
                    # long commit, a recovery) or its commits are stuck. Wait a while;
                    # if nothing moves still, record the stall and check anyway (the
                    # invariants then show whether anything was left unprocessed).
                    if time.monotonic() - still_since >= 6 * self.profile.quiet_s:
                        self.event("note", "commits_stalled", groups=behind)
                        return True
                    if time.monotonic() - reported > 10:
                        log.info("[%7.1fs] still reading: %s", self.now(), ", ".join(behind))
                        reported = time.monotonic()
                await asyncio.sleep(2)
            return False
        finally:
            await consumer.stop()

    async def _groups_behind(
        self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]
    ) -> list[str]:
        """The stack's consumer groups that have not committed up to the end of what they
        read (hub, its publisher, the adapters): a stack is quiet only once none is."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.bootstrap)
        await admin.start()
        behind: list[str] = []
        try:
            for group, *_ in await admin.list_consumer_groups():
                if not isinstance(group, str) or group.endswith("clearance"):
                    continue
                committed = {
                    tp: meta.offset
                    for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                }
                if not committed:
                    continue
                latest = await consumer.end_offsets(list(committed))
                if uncommitted(committed, latest):
                    behind.append(group)
                elif group == f"{self.topics.prefix}-hub":
                    # Partitions with records the hub never committed on are unread.
                    unread = [
                        tp
                        for tp, end in ends.items()
                        if tp.topic == self.topics.declarations and end > 0 and tp not in committed
                    ]
                    if unread:
                        behind.append(group)
        finally:
            await admin.close()
        return behind


def put_faults(url: str, switched: dict[str, Any]) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback partner simulator
        f"{url}/admin/faults",
        data=json.dumps(switched).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


# Switches the simulator counts down as calls come in: read back, any value down to 0 is
# the switch taken (the calls between the switch and the read consumed the rest).
_COUNTERS = frozenset({"fail_next", "lose_next", "in_progress_next"})


def fault_switch_held(held: dict[str, Any], name: str, value: Any) -> bool:
    """Whether the simulator's read-back faults ``held`` show ``name`` switched to
    ``value``."""
    if name in _COUNTERS:
        return isinstance(held.get(name), int) and 0 <= held[name] <= value
    return bool(held.get(name) == value)


def get_faults(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/admin/faults", timeout=10) as response:  # noqa: S310
        held: dict[str, Any] = json.loads(response.read())
    return held


def held_back_reader(run: Run) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "chaos.clearance_reader", "--run", str(run.out)],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        env={**os.environ, **run.stack.base_env()},
    )
    (run.out / "logs" / "clearance-reader.log").write_text(done.stdout + done.stderr)
    try:
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {
            "opened": 0,
            "rejected": 0,
            "error": f"exit {done.returncode}",
            "kinds": {"reader crashed": 1},
        }
    return result


def prepare(out: Path, workload: Workload, topics: TopicRegistry) -> dict[str, Path]:
    """The output folder: partner documents files and the keys of every party."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in (EVENTS, MANIFEST):
        (out / stale).unlink(missing_ok=True)
    partner_dir = out / PARTNERS
    partner_dir.mkdir(exist_ok=True)
    documents = {}
    for authority, docs in workload.pool.by_authority().items():
        documents[authority] = partner_dir / f"{authority}.json"
        documents[authority].write_text(json.dumps({"documents": docs}, indent=1))
    KeystoreFolder(out / "keys").init(parties(topics), force=True)
    return documents


async def execute(
    out: Path,
    declarations: int,
    seed: int,
    profile_name: str,
    *,
    workers: int = 1,
    adapter_replicas: int = 1,
) -> CheckReport:
    profile = profile_for(profile_name, declarations)
    routing = load_routing_table(config_path("routing.toml"))
    topics = topic_registry(PREFIX, routing.authorities)
    workload = Workload(declarations, seed)
    documents = await asyncio.to_thread(prepare, out, workload, topics)

    run: Run

    def on_exit(name: str, code: int, during_broker_restart: bool) -> None:
        run.event(
            "process_exit",
            name,
            code=code,
            expected=False,
            during_broker_restart=during_broker_restart,
            log=str(out / "logs" / f"{name}.log"),
        )

    stack = Stack(
        out,
        PREFIX,
        hub_env={
            "GUN_HUB_HUB__REQUEST_DEADLINE_S": str(profile.deadline_s),
            "GUN_HUB_OPS__LAG_MONITOR_ENABLED": "false",
        },
        adapter_env={"GUN_HUB_ADAPTER__PARTNER_TIMEOUT_S": str(profile.partner_timeout_s)},
        on_exit=on_exit,
        workers=workers,
        adapter_replicas=adapter_replicas,
    )
    run = Run(out, seed, profile, workload, stack, topics)
    log.info(
        "chaos run: %d declarations, seed %d, profile %s, out %s",
        declarations,
        seed,
        profile.name,
        out,
    )
    try:
        await asyncio.to_thread(stack.start_broker)
        await ensure_topics(stack.bootstrap, topics, PARTITIONS, 1)
        stack.configure(documents)
        await asyncio.to_thread(stack.start_all)
        schedule = faults.schedule(profile.name, profile.window_s, profile.outage_s, seed)
        info = {
            "bootstrap": stack.bootstrap,
            "prefix": PREFIX,
            "keys_dir": str(stack.keys_dir),
            "partner_urls": stack.partner_urls,
            "required_faults": faults.required(schedule),
            "declarations": declarations,
            "seed": seed,
            "workers": workers,
            "adapter_replicas": adapter_replicas,
            "profile": dataclasses.asdict(profile),
            "schedule": [dataclasses.asdict(f) for f in schedule],
        }
        (out / RUN_FILE).write_text(json.dumps(info, indent=2))
        log.info("[%7.1fs] stack ready; submitting", run.now())
        run.producers = {
            "aiokafka": AiokafkaProducer(stack.bootstrap),
            "confluent": ConfluentProducer(stack.bootstrap),
        }
        for producer in run.producers.values():
            await producer.start()
        stop = asyncio.Event()
        background = [
            asyncio.create_task(stack.watch(stop)),
            asyncio.create_task(run.office(stop)),
            asyncio.create_task(run.resend_failed(stop)),
        ]
        t0 = time.monotonic()
        await asyncio.gather(run.submit_all(), run.run_schedule(schedule, t0))
        submitted = time.monotonic() - t0
        log.info("[%7.1fs] all sent and faults injected; waiting for quiet", run.now())
        for url in stack.partner_urls.values():
            await asyncio.to_thread(put_faults, url, {})
        quiet = await run.wait_quiet()
        run.event(
            "note",
            "quiet" if quiet else "not_quiet",
            after_s=round(time.monotonic() - t0 - submitted, 1),
        )
        stop.set()
        await asyncio.gather(*background, return_exceptions=True)
        for producer in run.producers.values():
            await producer.stop()
            if producer.replaced:
                run.event("note", "client_replaced", client=producer.name, times=producer.replaced)
        run.producers.clear()
        write_jsonl(
            out / MANIFEST,
            [
                dataclasses.replace(
                    s,
                    partition=run.partitions.get(s.seq),
                    offset=run.offsets.get(s.seq),
                    resent=s.seq in run.resent,
                )
                for s in run.submissions
            ],
        )
        result = await asyncio.to_thread(held_back_reader, run)
        run.event("fault", faults.CLEARANCE_HELD_BACK, ok="error" not in result, **result)
        run.event("clearance_reader", "held-back", **result)
        elapsed = time.monotonic() - run.started
        info["elapsed_s"] = round(elapsed, 1)
        (out / RUN_FILE).write_text(json.dumps(info, indent=2))
        return await asyncio.to_thread(
            check_run,
            out,
            elapsed_s=elapsed,
            extra={
                "seed": seed,
                "profile": profile.name,
                "submission_window_s": round(submitted, 1),
            },
        )
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(stack.stop_all)


def uncommitted(
    committed: dict[TopicPartition, int], ends: dict[TopicPartition, int]
) -> list[TopicPartition]:
    """The partitions a group has not committed up to their end, its tables' changelogs
    left out: faust leaves an offset of 0 in the hub's group for every changelog partition
    it restored, and never reads them through the group (each store keeps its own
    changelog offset), so counting them had every run wait six quiet times and note the
    hub's commits as stalled while every invariant held (stop 42, read on the run's own
    broker)."""
    return [
        tp
        for tp, offset in committed.items()
        if not tp.topic.endswith("-changelog") and offset < ends[tp]
    ]
