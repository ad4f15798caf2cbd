"""The main job on one machine: broker, partner system, adapter, hub, sample declarations.

Each run gives the sample declarations fresh references and the simulated partner a fresh
ledger, so runs never collide with what earlier runs left on the broker.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gun_hub.clearance import DecisionReader, ReceivedDecision, submit_declarations
from gun_hub.kafka.admin import ensure_topics
from gun_hub.kafka.local_broker import LocalBroker
from gun_hub.processes import ProcessGroup, free_port, start_adapter, start_partner_system
from gun_hub.progress import progress_bar
from gun_hub.routing import load_routing_table
from gun_hub.security.entitlements import CLEARANCE_PARTY, parties
from gun_hub.security.factory import build_envelope
from gun_hub.security.keystore import KeystoreFolder
from gun_hub.security.replay import MemoryReplayGuard
from gun_hub.settings import SecuritySettings, Settings
from gun_hub.topics import TopicRegistry, topic_registry

_FIRST_REFERENCE = re.compile(rb"<Reference>[^<]*</Reference>")


@dataclass(frozen=True, slots=True)
class DemoResult:
    decisions: list[ReceivedDecision]
    expected: int
    elapsed_s: float


def samples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "samples"


def with_reference(declaration: bytes, reference: str) -> bytes:
    """The same declaration under another reference (its first ``<Reference>``)."""
    return _FIRST_REFERENCE.sub(
        b"<Reference>" + reference.encode() + b"</Reference>", declaration, count=1
    )


def run_demo(
    settings: Settings, work_dir: Path, say: Callable[[str], None], *, keep_broker: bool
) -> DemoResult:
    began = time.monotonic()
    broker = LocalBroker(settings.broker, settings.kafka.partitions)
    broker_was_running = broker.running_pid() is not None
    say("starting the local Kafka broker..." if not broker_was_running else "Kafka is running")
    broker.start()
    bootstrap = broker.bootstrap_servers
    routing = load_routing_table(settings.hub.routing_table, settings.hub.extra_routes)
    topics = topic_registry(settings.kafka.topic_prefix, routing.authorities)
    asyncio.run(
        ensure_topics(
            bootstrap, topics, settings.kafka.partitions, settings.kafka.replication_factor
        )
    )
    run_id = time.strftime("%H%M%S")
    # Keys are made for this run only: nothing secret is shipped or reused.
    security = SecuritySettings(keys_dir=work_dir / "keys", state_dir=work_dir / "state")
    KeystoreFolder(security.keys_dir).init(parties(topics))
    say(f"generated signing and encryption keys for {', '.join(parties(topics))}")
    base_env = {
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "GUN_HUB_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "GUN_HUB_SECURITY__KEYS_DIR": str(security.keys_dir),
        "GUN_HUB_SECURITY__STATE_DIR": str(security.state_dir),
    }
    try:
        with ProcessGroup(work_dir / "logs", base_env) as group:
            say("starting the simulated DGAL partner system...")
            partner_port = start_partner_system(
                group,
                "dgal",
                samples_dir() / "partners" / "dgal-documents.json",
                work_dir / "dgal-ledger.sqlite",
            )
            say("starting the DGAL adapter and the hub worker...")
            start_adapter(group, "dgal", partner_port)
            group.start(
                "hub",
                ["hub"],
                {
                    "GUN_HUB_HUB__DATA_DIR": str(work_dir / "hub"),
                    "GUN_HUB_HUB__WEB_PORT": str(free_port()),
                },
            )
            files = sorted((samples_dir() / "declarations").glob("*.xml"))
            declarations = [
                with_reference(path.read_bytes(), f"26FRDEMO{run_id}{index:04d}")
                for index, path in enumerate(files, start=1)
            ]
            say(f"submitting {len(declarations)} sample declarations...")
            decisions = asyncio.run(_exchange(bootstrap, topics, security, declarations, group))
            ordered = sorted(decisions, key=lambda d: d.decision.reference)
            return DemoResult(ordered, len(declarations), time.monotonic() - began)
    finally:
        if not broker_was_running and not keep_broker:
            broker.stop()


async def _exchange(
    bootstrap: str,
    topics: TopicRegistry,
    security: SecuritySettings,
    declarations: list[bytes],
    group: ProcessGroup,
) -> list[ReceivedDecision]:
    envelope = build_envelope(security, CLEARANCE_PARTY, topics, MemoryReplayGuard())
    reader = DecisionReader(bootstrap, topics.decisions, envelope)
    await reader.start(from_beginning=False)
    try:
        # Sealed as a clearance system must: signed by it, encrypted to the hub.
        references = set(
            await submit_declarations(bootstrap, topics.declarations, declarations, envelope)
        )
        received: list[ReceivedDecision] = []
        deadline = time.monotonic() + 120
        with progress_bar(
            "waiting for decisions", total=len(declarations), unit="decisions"
        ) as bar:
            while len(received) < len(declarations) and time.monotonic() < deadline:
                group.check_alive()
                # Short rounds: the bar moves as decisions arrive, not once a second.
                arrived = await reader.collect(
                    expected=len(declarations) - len(received),
                    timeout_s=0.25,
                    references=references,
                )
                bar.advance(len(arrived))
                received += arrived
        return received
    finally:
        await reader.stop()
