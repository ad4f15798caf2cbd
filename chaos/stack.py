"""The stack under test as processes: broker, partner simulators, adapters, hub.

The broker is the project's embedded one (``LocalBroker``) on free ports with a data
folder of the run's own. The other components are ``python -m gun_hub ...`` processes in
sessions of their own (:mod:`gun_tools.processes`), each with its log file under
``<out>/logs``. A watcher notices any component that exits without being told to, records
it (the checker's "nothing crashed a component") and starts it again, as a supervisor
would: a crash-loop shows as many exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gun_contract.settings import BrokerSettings
from gun_tools.local_broker import LocalBroker
from gun_tools.processes import ProcessGroup, free_port, wait_http_ok

log = logging.getLogger("chaos.stack")
REPO = Path(__file__).resolve().parent.parent
AUTHORITIES = ("cites", "dga", "dgal")
PARTITIONS = 4
# An exit this soon after the broker came back is put down to the restart.
BROKER_GRACE_S = 30.0


@dataclass
class Component:
    name: str
    args: list[str]
    env: dict[str, str]
    ready_url: str | None
    starts: int = 0


@dataclass
class Stack:
    out: Path
    prefix: str
    hub_env: dict[str, str]
    adapter_env: dict[str, str]
    on_exit: Callable[[str, int, bool], None]
    broker: LocalBroker | None = None
    group: ProcessGroup | None = None
    components: dict[str, Component] = field(default_factory=dict)
    partner_urls: dict[str, str] = field(default_factory=dict)
    # Hub workers in one consumer group, and adapter replicas per authority (issue 12).
    workers: int = 1
    adapter_replicas: int = 1
    stopping: set[str] = field(default_factory=set)  # killed on purpose, not a crash
    broker_down_since: float | None = None
    broker_back_at: float = 0.0

    def _broker(self) -> LocalBroker:
        if self.broker is None:
            raise RuntimeError("the broker is not started")
        return self.broker

    @property
    def bootstrap(self) -> str:
        return self._broker().bootstrap_servers

    @property
    def keys_dir(self) -> Path:
        return self.out / "keys"

    def base_env(self) -> dict[str, str]:
        return {
            "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "GUN_HUB_KAFKA__TOPIC_PREFIX": self.prefix,
            "GUN_HUB_KAFKA__PARTITIONS": str(PARTITIONS),
            "GUN_HUB_HUB__APP_ID": f"{self.prefix}-hub",
            "GUN_HUB_SECURITY__KEYS_DIR": str(self.keys_dir),
            "GUN_HUB_SECURITY__STATE_DIR": str(self.out / "state"),
            "GUN_HUB_LOG_FORMAT": "text",
            "NO_COLOR": "1",
        }

    # -- broker -----------------------------------------------------------------------

    def start_broker(self) -> None:
        self.broker = LocalBroker(
            BrokerSettings(
                home=self.out / "kafka",
                jars_cache=REPO / ".gun-hub" / "cache",
                port=free_port(),
                controller_port=free_port(),
                heap="512m",
                start_timeout_s=120,
            ),
            partitions=PARTITIONS,
        )
        self.broker.start()

    def restart_broker(self) -> float:
        """Controlled shutdown and start on the same ports and data; seconds it was down."""
        broker = self._broker()
        began = time.monotonic()
        self.broker_down_since = time.time()
        broker.stop()
        for _ in range(50):  # the ports may linger a moment after the JVM exits
            try:
                broker.start()
                break
            except Exception as err:  # noqa: BLE001 - retried, reported if it never starts
                log.warning("broker restart: %s; retrying", err)
                time.sleep(1)
        else:
            raise RuntimeError("the broker did not come back")
        self.broker_down_since = None
        self.broker_back_at = time.time()
        return time.monotonic() - began

    # -- components -------------------------------------------------------------------

    def _group(self) -> ProcessGroup:
        if self.group is None:
            self.group = ProcessGroup(self.out / "logs", self.base_env())
        return self.group

    def add(self, name: str, args: list[str], env: dict[str, str], ready_url: str | None) -> None:
        self.components[name] = Component(name, args, env, ready_url)

    def start(self, name: str) -> None:
        component = self.components[name]
        component.starts += 1
        self.stopping.discard(name)
        self._group().start(name, component.args, component.env)

    def wait_ready(self, name: str, timeout_s: float = 120) -> float:
        began = time.monotonic()
        url = self.components[name].ready_url
        if url:
            wait_http_ok(url, timeout_s)
        return time.monotonic() - began

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        self.stopping.add(name)
        return self._group().stop(name, sig=sig)

    def configure(self, documents: dict[str, Path]) -> None:
        """Partner simulators, adapters and hub, with their ports and environments."""
        for authority in AUTHORITIES:
            port = free_port()
            self.partner_urls[authority] = f"http://127.0.0.1:{port}"
            self.add(
                f"partner-{authority}",
                [
                    "partner-sim",
                    authority,
                    "--documents",
                    str(documents[authority]),
                    "--port",
                    str(port),
                    "--db",
                    str(self.out / f"ledger-{authority}.sqlite"),
                ],
                {},
                f"http://127.0.0.1:{port}/health",
            )
        for authority in AUTHORITIES:
            for number, name in enumerate(self.adapters(authority), start=1):
                health = free_port()
                self.add(
                    name,
                    ["adapter", authority],
                    {
                        "GUN_HUB_ADAPTER__PARTNER_URL": self.partner_urls[authority],
                        "GUN_HUB_ADAPTER__METRICS_PORT": str(health),
                        # Each replica its own pending queue: it forgets the operations
                        # of the partitions it loses, never another replica's.
                        "GUN_HUB_ADAPTER__REPLICA_ID": "" if number == 1 else str(number),
                        **self.adapter_env,
                    },
                    f"http://127.0.0.1:{health}/readyz",
                )
        for number, name in enumerate(self.hubs(), start=1):
            port = free_port()
            self.add(
                name,
                ["hub"],
                {
                    # Each worker its own local state; they share the group and topics.
                    "GUN_HUB_HUB__DATA_DIR": str(self.out / ("hub" if number == 1 else name)),
                    "GUN_HUB_HUB__WEB_PORT": str(port),
                    **self.hub_env,
                },
                f"http://127.0.0.1:{port}/readyz",
            )

    def hubs(self) -> list[str]:
        """The hub workers' names: ``hub``, then ``hub-2``..."""
        return ["hub", *(f"hub-{n}" for n in range(2, self.workers + 1))]

    def adapters(self, authority: str) -> list[str]:
        """An authority's adapter replicas: ``adapter-dgal``, then ``adapter-dgal-2``..."""
        first = f"adapter-{authority}"
        return [first, *(f"{first}-{n}" for n in range(2, self.adapter_replicas + 1))]

    def start_all(self) -> None:
        for name in self.components:
            self.start(name)
        for name in self.components:
            self.wait_ready(name, 180)

    async def watch(self, stop: asyncio.Event) -> None:
        """Restart any component that exits on its own, and report it."""
        while not stop.is_set():
            group = self._group()
            for name, child in list(group.children.items()):
                code = child.process.poll()
                if code is None or name in self.stopping:
                    continue
                group.children.pop(name)
                during_broker_restart = (
                    self.broker_down_since is not None
                    or time.time() - self.broker_back_at < BROKER_GRACE_S
                )
                self.on_exit(name, code, during_broker_restart)
                log.warning("%s exited with code %s on its own; restarting it", name, code)
                await asyncio.sleep(1)
                self.start(name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    def stop_all(self) -> None:
        self.stopping |= set(self.components)
        if self.group is not None:
            self.group.stop_all()
        if self.broker is not None:
            self.broker.stop()
