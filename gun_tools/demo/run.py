"""The main job on one machine: broker, partner systems, adapters, hub, sample declarations.

Every authority of the routing table gets its simulated partner system (documents from
``samples/partners/<authority>-documents.json``, a fresh ledger) and its adapter; they and
the hub start together and the samples go out once all of them are ready. Each run gives
the samples fresh references, so runs never collide with what earlier runs left on the
broker. Nothing here sleeps for a guess: it waits for readiness, then for decisions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.errors import KafkaError

from gun_contract.kafka.admin import PartitionCountMismatch, ensure_topics, wait_for_cluster
from gun_contract.kafka.refusals import ClusterRefused
from gun_contract.security.entitlements import CLEARANCE_PARTY, parties
from gun_contract.security.keystore import KeystoreFolder
from gun_contract.security.replay import MemoryReplayGuard
from gun_contract.settings import SecuritySettings, Settings
from gun_contract.topics import TopicRegistry, topic_registry
from gun_hub.cli.progress import progress_bar
from gun_hub.cli.startup import aiokafka_quiet
from gun_hub.domain.routing import RoutingTable, RoutingTableError, load_routing_table
from gun_hub.security.factory import build_envelope
from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision, submit_declarations
from gun_tools.demo.samples import (
    SampleDeclaration,
    SampleRun,
    SamplesError,
    load_samples,
    samples_dir,
)
from gun_tools.local_broker import BrokerError, LocalBroker, PortTaken
from gun_tools.processes import (
    ChildExited,
    ProcessGroup,
    free_port,
    partner_health_url,
    ready_url,
    start_adapter,
    start_partner_system,
    wait_all_ready,
)

# Components start together; on a loaded two-core machine the hub takes the longest.
READY_WITHIN_S = 90.0
# From the first submission: far more than the demo needs, less than a user's patience.
DECISIONS_WITHIN_S = 120.0
# A Kafka given with --bootstrap is running already: it answers at once, or not at all.
CLUSTER_WITHIN_S = 15.0


class DemoFailed(RuntimeError):
    """The demo could not run to its end; the message says where it stopped."""


@dataclass
class DemoResult:
    samples: SampleRun
    routing: RoutingTable
    decisions: dict[tuple[str, int], ReceivedDecision]
    elapsed_s: float
    log_dir: Path
    # Decisions received again for a (reference, version) already decided: the contract
    # allows exactly one.
    duplicates: list[ReceivedDecision] = field(default_factory=list)

    @property
    def missing(self) -> list[SampleDeclaration]:
        return [s for s in self.samples.declarations if s.key not in self.decisions]

    @property
    def decided(self) -> list[tuple[SampleDeclaration, ReceivedDecision]]:
        """Each sample with its decision, in sample order."""
        return [
            (s, self.decisions[s.key]) for s in self.samples.declarations if s.key in self.decisions
        ]


@dataclass(frozen=True)
class DemoNames:
    """What the demo's records, groups and changelogs are named after: its own, beside
    the deployment whose settings are loaded. On a Kafka that holds a deployment, the
    demo's throw-away keys signed checkpoints on its audit trail (``audit verify`` failed
    for good), its decisions reached the real clearance reader, its workers joined the
    real groups (review stop 39-O, O6)."""

    topic_prefix: str
    app_id: str
    clearance_group: str

    def env(self) -> dict[str, str]:
        return {
            "GUN_HUB_KAFKA__TOPIC_PREFIX": self.topic_prefix,  # the adapters' groups too
            "GUN_HUB_HUB__APP_ID": self.app_id,
            "GUN_HUB_OPS__CLEARANCE_GROUP": self.clearance_group,
        }


def demo_names(settings: Settings, *, on_a_running_kafka: bool, run: str = "") -> DemoNames:
    """On a Kafka someone runs already (``--bootstrap``, ``kafka start``), names of the
    demo's own, of this run (``run``) alone: a run cut short leaves records sealed with
    keys thrown away at its end, on which the next run under the same names stopped
    (review of stop 48's own commits). On the demo's own broker, the contract's names
    (``gun.declarations``, ``gun.decisions``...): the main job is what a newcomer, or
    another system, reads the contract's topics on."""
    if not on_a_running_kafka:
        return DemoNames(
            settings.kafka.topic_prefix, settings.hub.app_id, settings.ops.clearance_group
        )
    prefix = f"{settings.kafka.topic_prefix}-demo" + (f"-{run}" if run else "")
    return DemoNames(prefix, f"{prefix}-hub", f"{prefix}-clearance")


def run_name(work_dir: Path) -> str:
    """This run's own part of its names: its work folder's (``gun-hub-demo-XXXXXXXX``)."""
    name = work_dir.name.removeprefix("gun-hub-demo-").lower()
    return "".join(c if c.isalnum() else "-" for c in name).strip("-") or "run"


def broker_for_the_run(settings: Settings, work_dir: Path) -> tuple[LocalBroker | None, str]:
    """The broker the demo starts, and where it listens; None: one runs there already
    (``gun-hub kafka start``), which the demo uses under names of its own.

    The demo's broker keeps its data in the run's work folder: with the broker's usual
    folder (``.gun-hub/kafka``) a demo cut short left records sealed with keys thrown away
    at its end, and every later demo, and any hub started on that broker, stopped on them
    ("sealed with state key ..., which is not among the state keys") while its audit trail
    read as broken (operator review of stop 48)."""
    usual = LocalBroker(settings.broker, settings.kafka.partitions)
    if usual.running_pid() is not None:
        return None, usual.bootstrap_servers
    own = settings.broker.model_copy(update={"home": work_dir / "kafka"})
    broker = LocalBroker(own, settings.kafka.partitions)
    return broker, broker.bootstrap_servers


def documents_file(authority: str) -> Path:
    return samples_dir() / "partners" / f"{authority}-documents.json"


def run_demo(
    settings: Settings,
    work_dir: Path,
    say: Callable[[str], None],
    *,
    keep_broker: bool,
    bootstrap: str | None = None,
) -> DemoResult:
    """The whole job; ``bootstrap``: use that running broker instead of the embedded one."""
    began = time.monotonic()
    routing, samples = _prepare(settings)
    broker = None
    if bootstrap is None:
        broker, bootstrap = broker_for_the_run(settings, work_dir)
    else:  # running already: nothing is started on a Kafka that does not answer
        _reach(bootstrap, CLUSTER_WITHIN_S)
    names = demo_names(settings, on_a_running_kafka=broker is None, run=run_name(work_dir))
    topics = topic_registry(names.topic_prefix, routing.authorities)
    say(
        f"Kafka at {bootstrap}: topics {names.topic_prefix}.*, the hub's app id {names.app_id}"
        + (" (no deployment's names are touched)" if broker is None else "")
    )
    # Keys are made for this run only: nothing secret is shipped or reused.
    security = SecuritySettings(keys_dir=work_dir / "keys", state_dir=work_dir / "state")
    KeystoreFolder(security.keys_dir).init(parties(topics))
    say(f"generated signing and encryption keys for {', '.join(parties(topics))}")
    base_env = {
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        **names.env(),
        "GUN_HUB_SECURITY__KEYS_DIR": str(security.keys_dir),
        "GUN_HUB_SECURITY__STATE_DIR": str(security.state_dir),
    }
    log_dir = work_dir / "logs"
    try:
        with ProcessGroup(log_dir, base_env, stop_together=True) as group:
            authorities = ", ".join(a.upper() for a in routing.authorities)
            say(
                f"starting the simulated partner systems and adapters ({authorities}) "
                "and the hub..."
            )
            # Started before the broker is up, so that their start-up (imports, keys)
            # overlaps the broker's: each waits for the cluster before using it.
            readiness = _start_components(group, routing, work_dir)
            if broker is not None:
                _start_broker(broker, say)
            _create_topics(bootstrap, topics, settings)
            wait_all_ready(readiness, READY_WITHIN_S, group)
            say(
                f"submitting {len(samples.declarations)} sample declarations (an amendment "
                "or a cancellation once the version before it is decided)..."
            )
            decisions, duplicates = asyncio.run(
                _exchange(bootstrap, topics, security, samples, group)
            )
    except (ChildExited, TimeoutError) as err:
        raise DemoFailed(f"{err}\n(component logs in {log_dir})") from err
    finally:
        # After the components (the group's exit) have left the broker.
        if broker is not None and not keep_broker:
            broker.stop()
        elif broker is not None and broker.running_pid() is not None:
            say(
                f"the broker keeps running (its data in {broker.home}); stop it with: "
                f"GUN_HUB_BROKER__HOME={broker.home} ./tasks kafka stop"
            )
    return DemoResult(samples, routing, decisions, time.monotonic() - began, log_dir, duplicates)


def _prepare(settings: Settings) -> tuple[RoutingTable, SampleRun]:
    """What the run needs from files, checked before anything starts."""
    try:
        routing = load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    except RoutingTableError as err:
        raise DemoFailed(str(err)) from err
    absent = [a for a in routing.authorities if not documents_file(a).is_file()]
    if absent:
        raise DemoFailed(f"no partner documents file for {', '.join(absent)} in {samples_dir()}")
    try:
        samples = load_samples(samples_dir() / "declarations", f"26FRDEMO{time.strftime('%H%M%S')}")
    except SamplesError as err:
        raise DemoFailed(str(err)) from err
    return routing, samples


def _reach(bootstrap: str, within_s: float) -> None:
    try:
        with aiokafka_quiet():  # its error for each attempt: the failure says it once
            asyncio.run(wait_for_cluster(bootstrap, timeout_s=within_s))
    except ClusterRefused as err:
        raise DemoFailed(str(err)) from err
    except TimeoutError as err:
        raise DemoFailed(f"Kafka at {bootstrap} did not answer within {within_s:g} s") from err


def _create_topics(bootstrap: str, topics: TopicRegistry, settings: Settings) -> None:
    """The demo's topics, created if missing; a cluster lost meanwhile, or topics of its
    names left with another partition count, fail the demo in one sentence."""
    try:
        asyncio.run(
            ensure_topics(
                bootstrap, topics, settings.kafka.partitions, settings.kafka.replication_factor
            )
        )
    except PartitionCountMismatch as err:
        raise DemoFailed(str(err)) from err
    except (KafkaError, OSError) as err:
        raise DemoFailed(f"Kafka at {bootstrap}: {type(err).__name__}: {err}") from err


def _start_broker(broker: LocalBroker, say: Callable[[str], None]) -> None:
    say("starting the local Kafka broker...")
    try:
        broker.start()
    except PortTaken as err:
        # Another Kafka (Compose, another checkout, a demo kept with --keep-broker): the
        # demo can use it (operator review of stop 48: demo.md promised it, it refused).
        raise DemoFailed(
            f"the local Kafka broker did not start: {err}. If a Kafka runs there, the "
            f"demo can use it: ./tasks demo --bootstrap {broker.bootstrap_servers}"
        ) from err
    except BrokerError as err:
        raise DemoFailed(f"the local Kafka broker did not start: {err}") from err


def _start_components(
    group: ProcessGroup, routing: RoutingTable, work_dir: Path
) -> Mapping[str, str]:
    """Start every partner system, adapter and the hub without waiting for any (an
    adapter needs its partner only once requests come); the URL each is ready at."""
    readiness: dict[str, str] = {}
    for authority in routing.authorities:
        partner_port = start_partner_system(
            group,
            authority,
            documents_file(authority),
            work_dir / f"{authority}-ledger.sqlite",
            wait=False,
        )
        readiness[f"partner-sim-{authority}"] = partner_health_url(partner_port)
        health_port = start_adapter(group, authority, partner_port, wait=False)
        readiness[f"adapter-{authority}"] = ready_url(health_port)
    hub_port = free_port()
    group.start(
        "hub",
        ["hub"],
        {"GUN_HUB_HUB__DATA_DIR": str(work_dir / "hub"), "GUN_HUB_HUB__WEB_PORT": str(hub_port)},
    )
    readiness["hub"] = ready_url(hub_port)
    return readiness


async def _exchange(
    bootstrap: str,
    topics: TopicRegistry,
    security: SecuritySettings,
    samples: SampleRun,
    group: ProcessGroup,
) -> tuple[dict[tuple[str, int], ReceivedDecision], list[ReceivedDecision]]:
    """Submit the first versions, then each later version as soon as the one before it
    is decided; every decision received, by (reference, version), and any duplicates."""
    envelope = build_envelope(security, CLEARANCE_PARTY, topics, MemoryReplayGuard())
    reader = DecisionReader(bootstrap, topics.decisions, envelope)
    await reader.start(from_beginning=False)
    expected = len(samples.declarations)
    references = {s.reference for s in samples.declarations}
    decided: dict[tuple[str, int], ReceivedDecision] = {}
    duplicates: list[ReceivedDecision] = []

    async def submit(batch: list[SampleDeclaration]) -> None:
        # Sealed as a clearance system must: signed by it, encrypted to the hub.
        await submit_declarations(bootstrap, topics.declarations, [s.xml for s in batch], envelope)

    try:
        await submit(samples.first_versions())
        deadline = time.monotonic() + DECISIONS_WITHIN_S
        with progress_bar("waiting for decisions", total=expected, unit="decisions") as bar:
            while len(decided) < expected and time.monotonic() < deadline:
                group.check_alive()
                # Short rounds: the bar moves, and a later version leaves, as decisions
                # arrive, not once a second.
                arrived = await reader.collect(
                    expected=expected - len(decided), timeout_s=0.25, references=references
                )
                following = []
                for received in arrived:
                    key = (received.decision.reference, received.decision.version)
                    if key in decided:
                        duplicates.append(received)
                        continue
                    decided[key] = received
                    bar.advance()
                    later = samples.next_after(*key)
                    if later is not None:
                        following.append(later)
                if following:
                    await submit(following)
        return decided, duplicates
    finally:
        await reader.stop()
