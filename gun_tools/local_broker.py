"""The embedded broker: Apache Kafka from Maven Central jars, KRaft, one node or a cluster.

No Docker is needed: the jars are resolved once with Maven into ``<home>/libs-<version>``,
storage is formatted once, and the broker runs as a detached JVM whose pid and log are
kept under ``<home>``. Ports, heap and folder come from :class:`BrokerSettings`, so a
test broker never collides with one a user already runs.

:class:`LocalBroker` is the default single node. :class:`LocalCluster` runs three (or
more) nodes from the same jars, each broker and KRaft controller with ports and a folder
of its own (``<home>/cluster-<n>/node-<id>``), one controller quorum, replication factor
3 and ``min.insync.replicas`` 2: what a lost broker does to the project can be seen here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from gun_contract.kafka.acls import Grant
from gun_contract.kafka.admin import wait_for_cluster
from gun_contract.kafka.client import ClientConfig, client_options
from gun_contract.kafka.quotas import Quota
from gun_contract.kafka.refusals import ClusterRefused
from gun_contract.kafka.tls import BrokerTls, make_broker_tls
from gun_contract.private_files import make_own_folder_private
from gun_contract.settings import BrokerSettings

_LOG_TAIL_LINES = 25
# Secrets of the secured profile that are not SCRAM users: the keystore's password and
# the one of the KRaft controller listener (SASL PLAIN, known only to this node).
_NOT_SCRAM_USERS = ("keystore", "controller")
# A local cluster: replication and quorum as in the Compose cluster profile and Strimzi.
CLUSTER_REPLICATION_FACTOR = 3
CLUSTER_MIN_INSYNC_REPLICAS = 2
# Default ports of a cluster's nodes (node 1 first): the clients' are the Compose cluster's.
CLUSTER_FIRST_PORT = 29092
CLUSTER_FIRST_CONTROLLER_PORT = 29192


# The launcher's Maven POM, server.properties templates and log4j settings: in the
# checkout, as gun_tools itself is (development tooling is never installed from a wheel).
_LAUNCHER_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kafka"


def kafka_launcher_path(filename: str) -> Path:
    """Path of a file of the local broker launcher (``deploy/kafka/``)."""
    return _LAUNCHER_DIR / filename


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


class PortTaken(BrokerError):
    """A port the broker would listen on is taken (by another Kafka, often)."""


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    log_file: Path
    # The pid of a broker that stopped without ``kafka stop`` (its pid file left behind),
    # found by this look; None: none. Said once: the stale pid file is then removed.
    lost_pid: int | None = None

    def describe(self) -> str:
        if self.running:
            return f"running (pid {self.pid}) on {self.bootstrap_servers}; log {self.log_file}"
        if self.lost_pid is not None:
            # It said only "not running" after a crash (operator review of stop 48).
            return (
                f"not running: the broker (pid {self.lost_pid}) stopped without "
                f"`kafka stop`; see its log {self.log_file} "
                f"(would listen on {self.bootstrap_servers})"
            )
        return f"not running (would listen on {self.bootstrap_servers})"


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """Every node of a local cluster, node 1 first."""

    nodes: tuple[BrokerStatus, ...]
    bootstrap_servers: str

    @property
    def running(self) -> bool:
        """Every node runs."""
        return all(node.running for node in self.nodes)

    @property
    def running_nodes(self) -> int:
        return sum(node.running for node in self.nodes)

    def describe(self) -> str:
        count = len(self.nodes)
        if self.running:
            head = f"running ({count} nodes) on {self.bootstrap_servers}"
        elif self.running_nodes:
            head = f"partly running ({self.running_nodes} of {count} nodes)"
        else:
            head = f"not running (would listen on {self.bootstrap_servers})"
        lines = [head]
        if self.running_nodes:
            lines += [
                f"  node {node_id}: {node.describe()}"
                for node_id, node in enumerate(self.nodes, start=1)
            ]
        return "\n".join(lines)


class LocalBroker:
    """Start, stop and inspect one local single-node broker."""

    def __init__(
        self,
        settings: BrokerSettings,
        partitions: int = 4,
        principals: Sequence[str] = ("hub", "clearance"),
        jmx_port: int | None = None,
    ) -> None:
        self._settings = settings
        self._partitions = partitions
        self._principals = tuple(principals)
        # A benchmark's own broker only: JMX on 127.0.0.1, no authentication, no TLS (its
        # request and record counters, benchmarks/census.py). None: no JMX agent.
        self.jmx_port = jmx_port
        self.home = settings.home.resolve()
        # A broker found gone while its pid file said it ran (``running_pid``).
        self.lost_pid: int | None = None
        # Kept so that the child is reaped by whoever started it (no zombie, no warning).
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self._settings.host}:{self._settings.port}"

    @property
    def libs_dir(self) -> Path:
        return self._settings.jars_cache.resolve() / f"kafka-{self._settings.kafka_version}"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def log_file(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    @property
    def secure(self) -> bool:
        return self._settings.secure

    @property
    def secure_dir(self) -> Path:
        return self.home / "secure"

    # -- secured profile: credentials and TLS, generated here, never in the repository ---

    def credentials(self) -> dict[str, str]:
        """Every secret of the secured profile (generated once, mode 0600): the SCRAM
        password of ``admin`` and of every principal, the keystore password, and the
        ``controller`` password the node's KRaft controller listener asks for."""
        path = self.secure_dir / "credentials.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        wanted = {"admin", *_NOT_SCRAM_USERS, *self._principals}
        if not wanted <= set(known):
            for name in sorted(wanted - set(known)):
                known[name] = secrets.token_urlsafe(24)
            self.secure_dir.mkdir(parents=True, exist_ok=True)
            self.secure_dir.chmod(0o700)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                json.dump(known, handle, indent=2)
        return known

    def tls(self) -> BrokerTls:
        return make_broker_tls(self.secure_dir, self._settings.host, self.credentials()["keystore"])

    def client_config(self, principal: str = "admin") -> ClientConfig:
        """How ``principal`` connects to this broker (plain when the profile is not secure)."""
        if not self.secure:
            return ClientConfig(self.bootstrap_servers)
        return ClientConfig(
            self.bootstrap_servers,
            principal,
            self.credentials()[principal],
            self.tls().ca_file,
        )

    def admin_properties(self) -> Path:
        """Client properties for Kafka's own admin tools (AclCommand), as ``admin``."""
        path = self.secure_dir / "admin.properties"
        password = self.credentials()["admin"]
        text = (
            "security.protocol=SASL_SSL\n"
            "sasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
            f'required username="admin" password="{password}";\n'
            "ssl.truststore.type=PEM\n"
            f"ssl.truststore.location={self.tls().ca_file}\n"
        )
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
        return path

    def java_classpath(self) -> str:
        return self._classpath()

    # -- status -------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The pid of our broker if it is alive; a stale pid file is removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            cmdline = b""
        # A recycled pid must never be mistaken for our broker (and then killed): it is
        # ours only if it runs kafka.Kafka with this very configuration file (another
        # broker's folder may lie under this one, as a cluster's nodes do).
        arguments = cmdline.split(b"\0")
        if b"kafka.Kafka" not in arguments or str(self.properties_file).encode() not in arguments:
            self.pid_file.unlink(missing_ok=True)
            self.lost_pid = pid
            return None
        return pid

    def status(self) -> BrokerStatus:
        self.lost_pid = None
        pid = self.running_pid()
        return BrokerStatus(
            pid is not None, pid, self.bootstrap_servers, self.log_file, self.lost_pid
        )

    # -- start --------------------------------------------------------------------------

    def start(self) -> BrokerStatus:
        """Start the broker and wait until it answers; return at once if it already runs."""
        if (pid := self.running_pid()) is not None:
            return BrokerStatus(True, pid, self.bootstrap_servers, self.log_file)
        java = _java()
        self._check_ports_free()
        self.fetch_jars()
        process = self._launch(java)
        try:
            self._wait_ready(process)
        except BrokerError:
            self._abandon(process)
            raise
        return BrokerStatus(True, process.pid, self.bootstrap_servers, self.log_file)

    def _launch(self, java: str) -> subprocess.Popen[bytes]:
        """Write the configuration, format storage (once) and spawn the JVM; no waiting."""
        self.home.mkdir(parents=True, exist_ok=True)
        # Kafka makes its partition folders and segments as the umask has them (0755,
        # 0644): these two shut every other local account out of the topics, the SCRAM
        # credential records included (security probe, stop 50).
        make_own_folder_private(self.data_dir)
        make_own_folder_private(self.logs_dir)
        properties = self._write_configuration()
        self._format_storage(java, properties)
        process = self._spawn(java, properties)
        self._process = process
        self.pid_file.write_text(f"{process.pid}\n")
        return process

    def _abandon(self, process: subprocess.Popen[bytes]) -> None:
        """Stop a JVM that did not become ready, and forget it."""
        self._terminate(process.pid)
        process.wait()
        self._process = None
        self.pid_file.unlink(missing_ok=True)

    def fetch_jars(self) -> Path:
        """Resolve the broker's runtime classpath from Maven Central, once."""
        marker = self.libs_dir / ".complete"
        if marker.exists():
            return self.libs_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven is needed once to fetch the Kafka jars and was not found on PATH "
                "(Debian: apt-get install maven)"
            )
        staging = self.libs_dir.with_name(self.libs_dir.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(kafka_launcher_path("pom.xml")),
            f"-Dkafka.version={self._settings.kafka_version}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            raise BrokerError(
                f"could not fetch Apache Kafka {self._settings.kafka_version} from Maven "
                f"Central (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}"
            )
        (staging / ".complete").write_text(self._settings.kafka_version)
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(self.libs_dir)
        return self.libs_dir

    # Where a taken port's message points the user.
    _PORT_SETTINGS = "GUN_HUB_BROKER__PORT / GUN_HUB_BROKER__CONTROLLER_PORT"

    def _check_ports_free(self) -> None:
        ports = [self._settings.port, self._settings.controller_port]
        for port in ports + ([self.jmx_port] if self.jmx_port is not None else []):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self._settings.host, port))
                except OSError as err:
                    raise PortTaken(
                        f"port {port} on {self._settings.host} is taken ({err.strerror}); "
                        f"stop what uses it or choose other ports with {self._PORT_SETTINGS}"
                    ) from None

    def _template(self) -> tuple[str, dict[str, object]]:
        """The properties template of this broker and the values it is filled with."""
        values: dict[str, object] = {
            "host": self._settings.host,
            "port": self._settings.port,
            "controller_port": self._settings.controller_port,
            "data_dir": self.data_dir,
            "partitions": self._partitions,
        }
        name = "server.properties.template"
        if self.secure:
            name = "server-secure.properties.template"
            tls = self.tls()
            values.update(
                admin_password=self.credentials()["admin"],
                controller_password=self.credentials()["controller"],
                keystore=tls.keystore,
                keystore_password=tls.keystore_password,
                ca_file=tls.ca_file,
            )
        return name, values

    def _write_configuration(self) -> Path:
        name, values = self._template()
        template = Template(kafka_launcher_path(name).read_text())
        properties = self.properties_file
        descriptor = os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(template.substitute(values))
        return properties

    def _classpath(self) -> str:
        return f"{self.libs_dir}/*"

    def _format_storage(self, java: str, properties: Path) -> None:
        cluster_id_file = self.cluster_id_file
        if not cluster_id_file.exists():
            result = subprocess.run(
                [java, "-cp", self._classpath(), "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise BrokerError(f"could not make a cluster id:\n{_tail(result.stderr)}")
            cluster_id_file.write_text(result.stdout.strip().splitlines()[-1])
        arguments = [
            "-XX:-UsePerfData",
            f"-Dlog4j.configuration=file:{kafka_launcher_path('log4j.properties')}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            self._classpath(),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id_file.read_text().strip(),
            "-c",
            str(properties),
            "--ignore-formatted",
        ]
        if not self.secure:
            result = subprocess.run([java, *arguments], capture_output=True, text=True, check=False)
        else:
            # SCRAM users are bootstrapped with the metadata (KRaft): admin and each party.
            # StorageTool takes them only as arguments, and a command line is readable by
            # every local user (/proc/<pid>/cmdline, ps): they go through an argument file
            # of the owner's (java @file), removed as soon as the tool has read it.
            for name, password in sorted(self.credentials().items()):
                if name not in _NOT_SCRAM_USERS:
                    arguments += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
            with self._argument_file(arguments) as argfile:
                result = subprocess.run(
                    [java, f"@{argfile}"], capture_output=True, text=True, check=False
                )
        if result.returncode != 0:
            raise BrokerError(
                f"could not format Kafka storage:\n{_tail(result.stdout + result.stderr)}"
            )

    @contextlib.contextmanager
    def _argument_file(self, arguments: Sequence[str]) -> Iterator[Path]:
        """A ``java @file`` argument file (mode 0600, in the 0700 secure folder) that
        exists only while the command runs."""
        self.secure_dir.mkdir(parents=True, exist_ok=True)
        self.secure_dir.chmod(0o700)
        path = self.secure_dir / f"java-args-{secrets.token_hex(8)}"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write("\n".join(_argfile_quote(argument) for argument in arguments) + "\n")
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _command(self, java: str, properties: Path) -> list[str]:
        """The broker's java command line."""
        heap = self._settings.heap
        return [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            # As Kafka's own start script does: each pause in a file beside server.log, so a
            # stall seen by the clients can be told from (or traced to) a collection.
            f"-Xlog:gc*:file={self.logs_dir / 'gc.log'}:time,uptime,level,tags"
            ":filecount=5,filesize=20M",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{kafka_launcher_path('log4j.properties')}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            *self._jmx_options(),
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(properties),
        ]

    def _jmx_options(self) -> list[str]:
        """The JMX agent's options: registry and RMI server on the one port, 127.0.0.1
        only, no authentication, no TLS; none without a JMX port."""
        if self.jmx_port is None:
            return []
        port = self.jmx_port
        return [
            f"-Dcom.sun.management.jmxremote.port={port}",
            f"-Dcom.sun.management.jmxremote.rmi.port={port}",
            "-Dcom.sun.management.jmxremote.authenticate=false",
            "-Dcom.sun.management.jmxremote.ssl=false",
            "-Dcom.sun.management.jmxremote.host=127.0.0.1",
            "-Djava.rmi.server.hostname=127.0.0.1",
        ]

    def _spawn(self, java: str, properties: Path) -> subprocess.Popen[bytes]:
        command = self._command(java, properties)
        stdout = (self.logs_dir / "stdout.log").open("ab")
        try:
            # A session of its own: the broker outlives the command that started it and
            # is not hit by the terminal's Ctrl-C.
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.home,
            )
        finally:
            stdout.close()

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self._settings.start_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {process.returncode} while starting; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                if probe.connect_ex((self._settings.host, self._settings.port)) == 0:
                    break
            time.sleep(0.1)
        else:
            raise BrokerError(
                f"the broker did not open port {self._settings.port} within "
                f"{self._settings.start_timeout_s:.0f}s; last lines of {self.log_file}:\n"
                f"{self.log_tail()}"
            )
        remaining = max(1.0, deadline - time.monotonic())
        try:
            asyncio.run(wait_for_cluster(self.client_config("admin"), remaining))
        except (TimeoutError, ClusterRefused) as err:
            raise BrokerError(f"{err}; last lines of the log:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        for candidate in (self.log_file, self.logs_dir / "stdout.log"):
            with contextlib.suppress(OSError):
                text = candidate.read_text(errors="replace")
                if text.strip():
                    return _tail(text, lines)
        return "(no log written)"

    # -- stop ---------------------------------------------------------------------------

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Controlled shutdown (SIGTERM), SIGKILL after ``timeout_s``; False if not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        self._terminate(pid, timeout_s)
        self._stopped(pid, timeout_s)
        return True

    def _stopped(self, pid: int, timeout_s: float = 30.0) -> None:
        """Forget a broker that was stopped: its pid file, and reap it if it is our child."""
        self.pid_file.unlink(missing_ok=True)
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout_s)
            self._process = None

    def kill(self, timeout_s: float = 30.0) -> bool:
        """SIGKILL: a crash, no controlled shutdown (the pid file stays, as after a real
        one); return once the process is gone. False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _alive(pid):
            if time.monotonic() > deadline:
                raise BrokerError(f"the broker (pid {pid}) outlived SIGKILL for {timeout_s:.0f}s")
            time.sleep(0.05)
        if self._process is not None and self._process.pid == pid:
            self._process.wait(timeout_s)
            self._process = None
        return True

    @staticmethod
    def _terminate(pid: int, timeout_s: float = 30.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class ClusterNode(LocalBroker):
    """One node of a :class:`LocalCluster`: broker and KRaft controller, with ports and a
    folder of its own and the cluster's id. Started, killed and stopped like a broker."""

    def __init__(
        self,
        settings: BrokerSettings,
        partitions: int,
        node_id: int,
        voters: str,
        cluster_home: Path,
    ) -> None:
        super().__init__(settings, partitions, principals=())
        self.node_id = node_id
        self._voters = voters
        self._cluster_home = cluster_home

    _PORT_SETTINGS = "GUN_HUB_BROKER__CLUSTER_PORTS / GUN_HUB_BROKER__CLUSTER_CONTROLLER_PORTS"

    @property
    def cluster_id_file(self) -> Path:
        return self._cluster_home / "cluster.id"

    @property
    def port(self) -> int:
        return self._settings.port

    @property
    def controller_port(self) -> int:
        return self._settings.controller_port

    def _template(self) -> tuple[str, dict[str, object]]:
        return "server-cluster.properties.template", {
            "node_id": self.node_id,
            "voters": self._voters,
            "host": self._settings.host,
            "port": self._settings.port,
            "controller_port": self._settings.controller_port,
            "data_dir": self.data_dir,
            "partitions": self._partitions,
            "replication_factor": CLUSTER_REPLICATION_FACTOR,
            "min_insync_replicas": CLUSTER_MIN_INSYNC_REPLICAS,
        }

    def _format_storage(self, java: str, properties: Path) -> None:
        # Formatted once: a restart (a node rejoining) spares a JVM run.
        if not (self.data_dir / "meta.properties").exists():
            super()._format_storage(java, properties)


class LocalCluster:
    """A local KRaft cluster of ``nodes`` nodes (3 by default), each broker and controller.

    Node ``i`` listens on the ``i``-th of ``cluster_ports`` and ``cluster_controller_ports``
    (default 29092... and 29192...), keeps its data, log, configuration and pid file in
    ``<home>/cluster-<nodes>/node-<i>``; all are formatted with one cluster id and form one
    controller quorum. Replication factor 3 and ``min.insync.replicas`` 2 by default, for
    the internal topics (consumer offsets, transaction state) too.
    """

    def __init__(
        self, settings: BrokerSettings, partitions: int = 4, nodes: int | None = None
    ) -> None:
        count = settings.nodes if nodes is None else nodes
        if count < CLUSTER_REPLICATION_FACTOR:
            raise BrokerError(
                f"a local cluster has {CLUSTER_REPLICATION_FACTOR} nodes or more ({count} "
                "asked): fewer could not keep 3 replicas, and a quorum of 2 controllers "
                "survives no failure; one node is the default broker (--nodes 1)"
            )
        if settings.secure:
            raise BrokerError(
                "the secured profile (GUN_HUB_BROKER__SECURE=true) runs one node only; "
                "start the cluster without it"
            )
        self._settings = settings
        self.home = settings.home.resolve() / f"cluster-{count}"
        host = settings.host
        ports = _node_ports(settings.cluster_ports, CLUSTER_FIRST_PORT, count, "CLUSTER_PORTS")
        controller_ports = _node_ports(
            settings.cluster_controller_ports,
            CLUSTER_FIRST_CONTROLLER_PORT,
            count,
            "CLUSTER_CONTROLLER_PORTS",
        )
        if len({*ports, *controller_ports}) != 2 * count:
            raise BrokerError(
                f"the nodes' ports must all differ: clients {ports}, controllers {controller_ports}"
            )
        voters = ",".join(
            f"{node_id}@{host}:{port}" for node_id, port in enumerate(controller_ports, start=1)
        )
        self.nodes = tuple(
            ClusterNode(
                settings.model_copy(
                    update={
                        "home": self.home / f"node-{node_id}",
                        "port": port,
                        "controller_port": controller_port,
                    }
                ),
                partitions,
                node_id,
                voters,
                self.home,
            )
            for node_id, (port, controller_port) in enumerate(
                zip(ports, controller_ports, strict=True), start=1
            )
        )

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        return CLUSTER_REPLICATION_FACTOR

    @property
    def cluster_id_file(self) -> Path:
        return self.home / "cluster.id"

    @property
    def client_env_file(self) -> Path:
        return self.home / "client.env"

    def node(self, node_id: int) -> ClusterNode:
        """Node ``node_id`` (1 to the number of nodes)."""
        if not 1 <= node_id <= len(self.nodes):
            raise BrokerError(f"no node {node_id} in a cluster of {len(self.nodes)}")
        return self.nodes[node_id - 1]

    def client_config(self) -> ClientConfig:
        return ClientConfig(self.bootstrap_servers)

    def status(self) -> ClusterStatus:
        return ClusterStatus(tuple(node.status() for node in self.nodes), self.bootstrap_servers)

    def ensure_cluster_id(self) -> str:
        """The id every node is formatted with: the one on file, else the one the nodes
        already formatted carry (the file lost: a new id would keep a node formatted again
        later, its disk replaced, out of the cluster for ever), else a new one. Nodes
        formatted with different ids stop the start here, naming them."""
        formatted = {
            node.node_id: found
            for node in self.nodes
            if (found := _formatted_cluster_id(node.data_dir)) is not None
        }
        on_file = (
            self.cluster_id_file.read_text().strip() if self.cluster_id_file.exists() else None
        )
        cluster_id = on_file or next(iter(formatted.values()), None) or _new_cluster_id()
        strangers = {node: found for node, found in formatted.items() if found != cluster_id}
        if strangers:
            named = ", ".join(f"node {node} has {found}" for node, found in strangers.items())
            raise BrokerError(
                f"the cluster's id is {cluster_id} ({self.cluster_id_file}), but {named} "
                "(meta.properties): remove that node's data folder to format it again, or "
                "write the id its peers share into the cluster's id file"
            )
        if on_file is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self.cluster_id_file.write_text(cluster_id)
        return cluster_id

    def start(self) -> ClusterStatus:
        """Start every node that is not running (all of them, or one that died and
        rejoins) and wait until each answers and the cluster counts all of them."""
        missing = [node for node in self.nodes if node.running_pid() is None]
        if not missing:
            return self.status()
        java = _java()
        for node in missing:
            node._check_ports_free()
        self.nodes[0].fetch_jars()  # one cache for every node
        self.home.mkdir(parents=True, exist_ok=True)
        self.ensure_cluster_id()
        # The nodes are prepared and spawned together: none answers before a quorum of
        # controllers runs, and formatting storage is a JVM run of its own each.
        launched: list[tuple[ClusterNode, subprocess.Popen[bytes]]] = []
        failure: BrokerError | None = None
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = [(node, pool.submit(node._launch, java)) for node in missing]
            for node, future in futures:
                try:
                    launched.append((node, future.result()))
                except (BrokerError, OSError) as err:
                    failure = failure or BrokerError(f"node {node.node_id}: {err}")
        try:
            if failure is not None:
                raise failure
            deadline = time.monotonic() + self._settings.start_timeout_s
            for node, process in launched:
                try:
                    node._wait_ready(process)
                except BrokerError as err:
                    raise BrokerError(f"node {node.node_id}: {err}") from None
            asyncio.run(self._wait_for_members(max(1.0, deadline - time.monotonic())))
        except BrokerError:
            for node, process in launched:
                node._abandon(process)
            raise
        self._write_client_env()
        return self.status()

    async def _wait_for_members(self, timeout_s: float) -> None:
        """Until every node is a live (registered, unfenced) broker of the cluster, as
        each node itself sees it: a node's metadata learns its peers a little after the
        controller does (seen under load: node 1 counting two brokers of three)."""
        deadline = time.monotonic() + timeout_s
        wanted = {node.node_id for node in self.nodes}
        views: dict[int, set[int]] = {}
        while time.monotonic() < deadline:
            for node in self.nodes:
                if views.get(node.node_id, set()) >= wanted:
                    continue
                views[node.node_id] = await self._brokers_seen_by(node.client_config())
            if all(views.get(node.node_id, set()) >= wanted for node in self.nodes):
                return
            await asyncio.sleep(0.2)
        short = {n: sorted(seen) for n, seen in views.items() if not seen >= wanted}
        raise BrokerError(
            f"not every node counted the {len(wanted)} brokers within {timeout_s:.0f}s: "
            f"brokers seen by node {short}"
        )

    async def _brokers_seen_by(self, connect: ClientConfig) -> set[int]:
        admin = AIOKafkaAdminClient(**client_options(connect), request_timeout_ms=3000)
        try:
            await admin.start()
            return {broker["node_id"] for broker in (await admin.describe_cluster())["brokers"]}
        except (KafkaError, OSError):
            return set()
        finally:
            await admin.close()

    def _write_client_env(self) -> None:
        self.client_env_file.write_text(
            f"GUN_HUB_KAFKA__BOOTSTRAP_SERVERS={self.bootstrap_servers}\n"
            f"GUN_HUB_KAFKA__REPLICATION_FACTOR={self.replication_factor}\n"
        )

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Controlled shutdown of every node at once (SIGTERM), SIGKILL for any still
        running after ``timeout_s``; False if no node was running."""
        running = [(node, pid) for node in self.nodes if (pid := node.running_pid()) is not None]
        if not running:
            return False
        # All at once: a node shutting down alone would wait on a quorum its peers,
        # already gone, no longer make.
        for _, pid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for node, pid in running:
            # By pid, not by asking the node again: one that already exited is a zombie
            # child here, which running_pid no longer recognises, and must still be reaped.
            remaining = max(0.1, deadline - time.monotonic())
            node._terminate(pid, remaining)
            node._stopped(pid, remaining)
        return True


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java 17 or later is needed to run the local Kafka broker and was not found "
            "on PATH (Debian: apt-get install openjdk-17-jre-headless)"
        )
    return java


def _node_ports(explicit: Sequence[int], first: int, count: int, setting: str) -> list[int]:
    if not explicit:
        return [first + index for index in range(count)]
    if len(explicit) < count:
        raise BrokerError(
            f"GUN_HUB_BROKER__{setting} names {len(explicit)} port(s) for {count} nodes"
        )
    return list(explicit[:count])


def _formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id a node's data folder was formatted with, if it was."""
    meta = data_dir / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "cluster.id" and value.strip():
            return value.strip()
    return None


def _new_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` makes one (16 random bytes, base64url
    without padding, never starting with a dash), without running a JVM for it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of this very process still answers kill(0): reap it.
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _argfile_quote(argument: str) -> str:
    """One argument of a ``java @file``: quoted, backslash and quote escaped."""
    if "\n" in argument or "\r" in argument:
        raise BrokerError("an argument for a java argument file spans lines")
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def apply_acls(broker: LocalBroker, grants: Sequence[Grant]) -> None:
    """Run ``kafka.admin.AclCommand`` for each grant."""
    run_admin_tool(
        broker,
        "kafka.admin.AclCommand",
        [(grant.principal, grant.arguments()) for grant in grants],
    )


def apply_quotas(broker: LocalBroker, quotas: Sequence[Quota]) -> None:
    """Set each principal's client quotas with ``kafka.admin.ConfigCommand``
    (gun_contract/kafka/quotas.py)."""
    run_admin_tool(
        broker,
        "kafka.admin.ConfigCommand",
        [
            (
                quota.principal,
                [
                    *("--alter", "--add-config", quota.config()),
                    *("--entity-type", "users", "--entity-name", quota.principal),
                ],
            )
            for quota in quotas
        ],
    )


def run_admin_tool(
    broker: LocalBroker, main_class: str, runs: Sequence[tuple[str, list[str]]]
) -> list[str]:
    """Run one of Kafka's admin tools as admin, once per ``(principal, arguments)``, two
    at a time (JVM start-up dominates); what each printed, or the first failure raised
    naming its principal."""
    java = shutil.which("java")
    if java is None:
        raise BrokerError(f"Java is needed to run Kafka's {main_class}")
    properties = broker.admin_properties()
    base = [
        java,
        "-cp",
        broker.java_classpath(),
        main_class,
        "--bootstrap-server",
        broker.bootstrap_servers,
        "--command-config",
        str(properties),
    ]

    def run(arguments: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            base + arguments, capture_output=True, text=True, check=False, timeout=120
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, [arguments for _, arguments in runs]))
    for (principal, _), result in zip(runs, results, strict=True):
        if result.returncode != 0:
            tool = main_class.rpartition(".")[2]
            raise BrokerError(
                f"{tool} failed for {principal}: {(result.stderr or result.stdout).strip()[-800:]}"
            )
    return [result.stdout for result in results]
