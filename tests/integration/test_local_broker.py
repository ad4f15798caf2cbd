"""The embedded broker: started from Maven jars, once, with clear errors when it cannot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gun_contract.settings import BrokerSettings
from gun_tools.local_broker import BrokerError, LocalBroker
from gun_tools.processes import free_port
from tests.conftest import REPO

pytestmark = pytest.mark.broker


def _session_broker(local_broker: LocalBroker | None) -> LocalBroker:
    if local_broker is None:
        pytest.fail("these tests check the project's own broker; unset GUN_HUB_TEST_BOOTSTRAP")
    return local_broker


def test_a_second_start_finds_the_running_broker_and_starts_nothing(
    local_broker: LocalBroker | None,
) -> None:
    broker = _session_broker(local_broker)
    pid = broker.running_pid()
    assert pid is not None
    again = broker.start()
    assert again.running
    assert again.pid == pid
    assert broker.log_file.is_file()


def test_the_broker_logs_its_garbage_collections_beside_its_server_log(
    local_broker: LocalBroker | None,
) -> None:
    """A pause of the broker's JVM stalls every client at once: its GC log is where an
    operator (or a benchmark's kept logs) tells such a stall from a rebalance."""
    gc_log = _session_broker(local_broker).logs_dir / "gc.log"
    assert gc_log.is_file()
    assert "Using G1" in gc_log.read_text()


def test_a_taken_port_is_reported_before_anything_starts(
    local_broker: LocalBroker | None, tmp_path: Path
) -> None:
    taken = int(_session_broker(local_broker).bootstrap_servers.rsplit(":", 1)[1])
    other = LocalBroker(
        BrokerSettings(home=tmp_path, port=taken, controller_port=free_port(), jars_cache=tmp_path)
    )
    with pytest.raises(BrokerError, match=f"port {taken} .* is taken"):
        other.start()
    assert other.running_pid() is None


def test_without_java_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    broker = LocalBroker(
        BrokerSettings(home=tmp_path, port=free_port(), controller_port=free_port())
    )
    with pytest.raises(BrokerError, match="Java 17"):
        broker.start()


def test_the_cli_starts_reports_and_stops_a_broker(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GUN_HUB_BROKER__HOME": str(tmp_path / "kafka"),
        "GUN_HUB_BROKER__JARS_CACHE": str(REPO / ".gun-hub" / "cache"),
        "GUN_HUB_BROKER__PORT": str(free_port()),
        "GUN_HUB_BROKER__CONTROLLER_PORT": str(free_port()),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gun_hub", "kafka", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    started = cli("start")
    assert started.returncode == 0, started.stderr
    assert "started in" in started.stdout
    try:
        assert "already running" in cli("start").stdout
        status = cli("status")
        assert status.returncode == 0
        assert "running (pid" in status.stdout
    finally:
        assert "Kafka stopped" in cli("stop").stdout
    stopped = cli("status")
    assert stopped.returncode == 3
    assert "not running" in stopped.stdout
