"""The embedded default broker: Apache Kafka from Maven Central jars, KRaft, one node.

No Docker is needed: the jars are resolved once with Maven into ``<home>/libs-<version>``,
storage is formatted once, and the broker runs as a detached JVM whose pid and log are
kept under ``<home>``. Ports, heap and folder come from :class:`BrokerSettings`, so a
test broker never collides with one a user already runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from gun_hub.kafka.admin import wait_for_cluster
from gun_hub.kafka.client import ClientConfig
from gun_hub.kafka.tls import BrokerTls, make_broker_tls
from gun_hub.resources import kafka_launcher_path
from gun_hub.settings import BrokerSettings

_LOG_TAIL_LINES = 25
# Secrets of the secured profile that are not SCRAM users: the keystore's password and
# the one of the KRaft controller listener (SASL PLAIN, known only to this node).
_NOT_SCRAM_USERS = ("keystore", "controller")


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped; the message says why."""


@dataclass(frozen=True, slots=True)
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap_servers: str
    log_file: Path

    def describe(self) -> str:
        if self.running:
            return f"running (pid {self.pid}) on {self.bootstrap_servers}; log {self.log_file}"
        return f"not running (would listen on {self.bootstrap_servers})"


class LocalBroker:
    """Start, stop and inspect one local single-node broker."""

    def __init__(
        self,
        settings: BrokerSettings,
        partitions: int = 4,
        principals: Sequence[str] = ("hub", "clearance"),
    ) -> None:
        self._settings = settings
        self._partitions = partitions
        self._principals = tuple(principals)
        self.home = settings.home.resolve()
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
        # A recycled pid must never be mistaken for our broker (and then killed).
        if b"kafka.Kafka" not in cmdline or str(self.home).encode() not in cmdline:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def status(self) -> BrokerStatus:
        pid = self.running_pid()
        return BrokerStatus(pid is not None, pid, self.bootstrap_servers, self.log_file)

    # -- start --------------------------------------------------------------------------

    def start(self) -> BrokerStatus:
        """Start the broker and wait until it answers; return at once if it already runs."""
        if (pid := self.running_pid()) is not None:
            return BrokerStatus(True, pid, self.bootstrap_servers, self.log_file)
        java = shutil.which("java")
        if java is None:
            raise BrokerError(
                "Java 17 or later is needed to run the local Kafka broker and was not found "
                "on PATH (Debian: apt-get install openjdk-17-jre-headless)"
            )
        self._check_ports_free()
        self.fetch_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_configuration()
        self._format_storage(java, properties)
        process = self._spawn(java, properties)
        self._process = process
        self.pid_file.write_text(f"{process.pid}\n")
        try:
            self._wait_ready(process)
        except BrokerError:
            self._terminate(process.pid)
            process.wait()
            self._process = None
            self.pid_file.unlink(missing_ok=True)
            raise
        return BrokerStatus(True, process.pid, self.bootstrap_servers, self.log_file)

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

    def _check_ports_free(self) -> None:
        for port in (self._settings.port, self._settings.controller_port):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self._settings.host, port))
                except OSError as err:
                    raise BrokerError(
                        f"port {port} on {self._settings.host} is taken ({err.strerror}); "
                        "stop what uses it or choose other ports with "
                        "GUN_HUB_BROKER__PORT / GUN_HUB_BROKER__CONTROLLER_PORT"
                    ) from None

    def _write_configuration(self) -> Path:
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
        template = Template(kafka_launcher_path(name).read_text())
        properties = self.home / "server.properties"
        descriptor = os.open(properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(template.substitute(values))
        return properties

    def _classpath(self) -> str:
        return f"{self.libs_dir}/*"

    def _format_storage(self, java: str, properties: Path) -> None:
        cluster_id_file = self.home / "cluster.id"
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

    def _spawn(self, java: str, properties: Path) -> subprocess.Popen[bytes]:
        heap = self._settings.heap
        command = [
            java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{kafka_launcher_path('log4j.properties')}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            self._classpath(),
            "kafka.Kafka",
            str(properties),
        ]
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
        except TimeoutError as err:
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
        self.pid_file.unlink(missing_ok=True)
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
