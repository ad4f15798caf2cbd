"""End-to-end fixtures: the hub (and the DGAL side) as real processes on the real broker."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from gun_contract.envelope import ContentType
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_hub.domain.status_events import StatusEvent
from gun_hub.security.web_auth import LocalAccess
from gun_tools.clearance_stand_in import DecisionReader, ReceivedDecision, submit_declarations
from gun_tools.processes import (
    ProcessGroup,
    free_port,
    start_adapter,
    start_partner_system,
    wait_http_ok,
)
from tests.conftest import KafkaEnv


@dataclass
class Pipeline:
    """Running components, and the clearance system's view of them."""

    kafka: KafkaEnv
    group: ProcessGroup
    hub_port: int
    hub_env: dict[str, str]
    partner_ports: dict[str, int] = field(default_factory=dict)

    @property
    def partner_port(self) -> int | None:
        """The DGAL partner system's port, when it runs."""
        return self.partner_ports.get("dgal")

    def partner_admin(self, path: str, body: object | None = None) -> Any:
        """The DGAL partner system's admin API: GET ``path``, or PUT ``body`` to it."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.partner_port}/admin/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.load(response)

    def start_hub(self) -> None:
        self.group.start("hub", ["hub"], self.hub_env)
        wait_http_ok(f"http://127.0.0.1:{self.hub_port}/livez", 60, self.group)
        # Ready: partitions assigned, tables recovered, producers up (web.py).
        wait_http_ok(f"http://127.0.0.1:{self.hub_port}/readyz", 60, self.group)

    def restart_hub(self, *, sig: int, wipe_local_state: bool) -> None:
        """Stop the hub (SIGTERM: clean; SIGKILL: a crash) and start it again; without
        its local state it must rebuild its tables from the changelog."""
        self.group.stop("hub", sig=sig)
        if wipe_local_state:
            shutil.rmtree(self.hub_env["GUN_HUB_HUB__DATA_DIR"], ignore_errors=True)
        self.start_hub()

    def hub_log(self) -> str:
        return (self.group.log_dir / "hub.log").read_text(errors="replace")

    async def submit(self, declarations: list[bytes]) -> list[str]:
        """Submit as the clearance system does: each declaration sealed by it."""
        return await submit_declarations(
            self.kafka.bootstrap,
            self.kafka.topics.declarations,
            declarations,
            self.kafka.envelope(CLEARANCE_PARTY),
        )

    async def send_sealed(self, records: list[tuple[bytes | None, bytes]]) -> None:
        """Produce (key, value) records already sealed, each acknowledged in turn."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.kafka.bootstrap, max_request_size=16 * 1024 * 1024
        )
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(self.kafka.topics.declarations, value, key=key)
        finally:
            await producer.stop()

    def seal(self, declaration: bytes) -> bytes:
        """``declaration`` as the clearance system sends it (for tests producing it
        through another client)."""
        return self.kafka.envelope(CLEARANCE_PARTY).seal(
            declaration,
            recipient=HUB_PARTY,
            topic=self.kafka.topics.declarations,
            content_type=ContentType.XML,
        )

    async def decisions(self, expected: int, *, settle_s: float = 2.0) -> list[ReceivedDecision]:
        """Every decision on the topic once ``expected`` are there, plus any that follow
        within ``settle_s`` (which would be duplicates)."""
        reader = DecisionReader(
            self.kafka.bootstrap, self.kafka.topics.decisions, self.kafka.envelope("clearance")
        )
        await reader.start(from_beginning=True)
        received: list[ReceivedDecision] = []
        try:
            async with asyncio.timeout(120):
                while len(received) < expected:
                    self.group.check_alive()
                    received += await reader.collect(expected=expected - len(received), timeout_s=1)
            received += await reader.collect(expected=1, timeout_s=settle_s)
        finally:
            await reader.stop()
        return received

    async def records(self, topic: str, expected: int = 0) -> list[ConsumerRecord[bytes, bytes]]:
        """All committed records of ``topic`` (as every reader of the hub's transactional
        topics reads them): waits for ``expected`` of them, then one idle second."""
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.kafka.bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        found: list[ConsumerRecord[bytes, bytes]] = []
        try:
            async with asyncio.timeout(120):
                while True:
                    batches = await consumer.getmany(timeout_ms=1000)
                    for records in batches.values():
                        found += records
                    if not batches and len(found) >= expected:
                        break
        finally:
            await consumer.stop()
        return found

    async def statuses(self, expected: int = 0) -> list[StatusEvent]:
        return [
            StatusEvent.model_validate_json(r.value or b"")
            for r in await self.records(self.kafka.topics.status, expected)
        ]

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.hub_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())


def start_partner(
    group: ProcessGroup, authority: str, samples: Path, work: Path, **adapter_env: str
) -> int:
    """Start ``authority``'s simulated partner system and its adapter; the partner's port."""
    port = start_partner_system(
        group,
        authority,
        samples / "partners" / f"{authority}-documents.json",
        work / f"ledger-{authority}.sqlite",
    )
    start_adapter(group, authority, port, adapter_env)
    return port


def start_pipeline(
    kafka_env: KafkaEnv,
    work: Path,
    samples: Path,
    *,
    partners: tuple[str, ...],
    hub_env: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Pipeline]:
    """``env`` goes to every process (hub, adapters, partner systems)."""
    hub_port = free_port()
    with ProcessGroup(work / "logs", {**kafka_env.env(), **(env or {})}) as group:
        ports = {name: start_partner(group, name, samples, work) for name in partners}
        pipeline = Pipeline(
            kafka_env,
            group,
            hub_port,
            {
                "GUN_HUB_HUB__DATA_DIR": str(work / "hub"),
                "GUN_HUB_HUB__WEB_PORT": str(hub_port),
                **(hub_env or {}),
            },
            ports,
        )
        pipeline.start_hub()
        yield pipeline


@pytest.fixture
def pipeline(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """Hub, DGAL adapter and simulated TRACES."""
    yield from start_pipeline(kafka_env, tmp_path, samples, partners=("dgal",))


@pytest.fixture
def hub_only(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """The hub alone: requests stay on their topics, unanswered."""
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=(),
        hub_env={"GUN_HUB_HUB__MAX_DECLARATION_BYTES": str(512 * 1024)},
    )


@pytest.fixture
def impatient_hub(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """Hub and the DGAL side, nobody for CITES or DGA, and a 2-second deadline."""
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env={"GUN_HUB_HUB__REQUEST_DEADLINE_S": "2", "GUN_HUB_HUB__DEADLINE_SWEEP_S": "0.5"},
    )


@pytest.fixture
def silent_hub(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pipeline]:
    """The hub alone, nobody answering, and a 20-second deadline: long enough for a
    test to stop or restart a worker before any case falls due."""
    yield from start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=(),
        hub_env={"GUN_HUB_HUB__REQUEST_DEADLINE_S": "20", "GUN_HUB_HUB__DEADLINE_SWEEP_S": "0.5"},
    )


@pytest.fixture
def officers_pipeline(
    kafka_env: KafkaEnv, samples: Path, tmp_path: Path
) -> Iterator[tuple[Pipeline, LocalAccess, int]]:
    """Hub, DGAL adapter and simulated TRACES; the hub's officer listener on."""
    access = LocalAccess.create(tmp_path / "access")
    trader_port, officer_port = free_port(), free_port()
    for pipeline in start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env=access.env(trader_port, officer_port),
    ):
        yield pipeline, access, officer_port


@dataclass
class Channels:
    """A pipeline whose hub serves the trader lookup, and the intake gateway's channels
    (``gun-hub intake serve`` and ``intake watch``) as processes beside it."""

    pipeline: Pipeline
    access: LocalAccess
    trader_port: int
    work: Path
    lodging_port: int = 0

    def _gateway_env(self, probes_port: int, **extra: str) -> dict[str, str]:
        """The portal's public keys and token policy, as the trader lookup has them."""
        return {
            "GUN_HUB_WEB__PORTAL_JWKS": str(self.access.portal_jwks),
            "GUN_HUB_WEB__PORTAL_ISSUER": self.access.issuer,
            "GUN_HUB_WEB__TOKEN_AUDIENCE": self.access.audience,
            "GUN_HUB_GATEWAY__PROBES_PORT": str(probes_port),
            **extra,
        }

    def start_http(self) -> None:
        """``gun-hub intake serve``, ready (its producer up) when this returns."""
        self.lodging_port, probes = free_port(), free_port()
        self.pipeline.group.start(
            "gateway-http",
            ["intake", "serve"],
            self._gateway_env(probes, GUN_HUB_GATEWAY__PORT=str(self.lodging_port)),
        )
        wait_http_ok(f"http://127.0.0.1:{probes}/readyz", 60, self.pipeline.group)

    def start_watcher(self, folder: Path, *options: str) -> None:
        """``gun-hub intake watch FOLDER``, ready when this returns."""
        probes = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.pipeline.group.start(
            "gateway-file",
            ["intake", "watch", str(folder), "--settle", "0", *options],
            self._gateway_env(probes, GUN_HUB_GATEWAY__DROP_POLL_S="0.1"),
        )
        wait_http_ok(f"http://127.0.0.1:{probes}/readyz", 60, self.pipeline.group)

    def post(self, declaration: bytes, eori: str, *, lodging: bool = True) -> tuple[int, Any]:
        """POST /declarations as the trader ``eori``: status and JSON body. The token
        grants the lodging scope unless ``lodging`` is False (a lookup token)."""
        authorization = (
            self.access.lodging_authorization(eori)
            if lodging
            else self.access.trader_authorization(eori)
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.lodging_port}/declarations",
            data=declaration,
            headers={"Content-Type": "application/xml", "Authorization": authorization},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)

    def lookup(self, reference: str, eori: str) -> tuple[int, Any]:
        """The trader lookup on the hub (0 while it does not listen yet)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.trader_port}/declarations/{reference}",
            headers={"Authorization": self.access.trader_authorization(eori)},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.load(response)
        except urllib.error.HTTPError as err:
            return err.code, json.load(err)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, None


@pytest.fixture
def channels(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Channels]:
    """Hub (trader lookup on), DGAL adapter and simulated TRACES; no risk targeting, so
    every outcome follows from the partner's answers (the random sampling draws by
    reference, and the channels' tests compare declarations that differ only by it)."""
    access = LocalAccess.create(tmp_path / "access")
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers only\n")
    trader_port = free_port()
    for pipeline in start_pipeline(
        kafka_env,
        tmp_path,
        samples,
        partners=("dgal",),
        hub_env={"GUN_HUB_HUB__RISK_RULES": str(rules), **access.env(trader_port, free_port())},
    ):
        yield Channels(pipeline, access, trader_port, tmp_path)


def officer_command(
    pipeline: Pipeline, access: LocalAccess, officer_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``gun-hub ARGS`` as an officer runs it against the hub's officer listener."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gun_hub",
            *args,
            "--credentials-file",
            str(access.credentials_file),
            "--hub-url",
            officer_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **pipeline.group.base_env},
    )
