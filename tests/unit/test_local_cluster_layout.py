"""The local cluster's layout, without starting it: ports, folders, quorum, replication
(``gun-hub kafka start --nodes 3``; running: tests/integration/test_local_cluster.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiokafka.errors import InvalidReplicationFactorError
from typer.testing import CliRunner

from gun_contract.kafka.admin import _raise_topic_errors
from gun_contract.settings import BrokerSettings
from gun_hub.cli import app
from gun_tools.local_broker import (
    BrokerError,
    BrokerStatus,
    ClusterStatus,
    LocalBroker,
    LocalCluster,
    _new_cluster_id,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)


def properties(path: Path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and line[0] != "#"]
    return dict(line.split("=", 1) for line in lines)


def test_three_nodes_on_their_own_ports_and_folders_form_one_quorum(tmp_path: Path) -> None:
    cluster = LocalCluster(BrokerSettings(home=tmp_path), partitions=4, nodes=3)
    assert cluster.bootstrap_servers == "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"
    assert cluster.replication_factor == 3
    voters = "1@127.0.0.1:29192,2@127.0.0.1:29193,3@127.0.0.1:29194"
    for node_id, node in enumerate(cluster.nodes, start=1):
        assert node.node_id == node_id
        assert node.home == tmp_path.resolve() / "cluster-3" / f"node-{node_id}"
        assert node.cluster_id_file == cluster.cluster_id_file
        node.home.mkdir(parents=True)
        written = properties(node._write_configuration())
        assert written["node.id"] == str(node_id)
        assert written["controller.quorum.voters"] == voters
        assert written["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{29091 + node_id},CONTROLLER://127.0.0.1:{29191 + node_id}"
        )
        assert written["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{29091 + node_id}"
        assert written["log.dirs"] == str(node.data_dir)
        assert written["default.replication.factor"] == "3"
        assert written["min.insync.replicas"] == "2"
        assert written["offsets.topic.replication.factor"] == "3"
        assert written["transaction.state.log.replication.factor"] == "3"
        assert written["transaction.state.log.min.isr"] == "2"
        assert written["auto.create.topics.enable"] == "false"
        assert written["num.partitions"] == "4"


def test_ports_can_be_named_one_per_node(tmp_path: Path) -> None:
    settings = BrokerSettings(
        home=tmp_path,
        cluster_ports=[41001, 41003, 41005],
        cluster_controller_ports=[41002, 41004, 41006],
    )
    cluster = LocalCluster(settings, nodes=3)
    assert [node.port for node in cluster.nodes] == [41001, 41003, 41005]
    assert [node.controller_port for node in cluster.nodes] == [41002, 41004, 41006]


@pytest.mark.parametrize(
    ("settings", "nodes", "says"),
    [
        ({}, 2, "3 nodes or more"),
        ({"secure": True}, 3, "secured profile"),
        ({"cluster_ports": [41001, 41002]}, 3, "CLUSTER_PORTS names 2 port"),
        ({"cluster_ports": [41001, 41002, 29192]}, 3, "must all differ"),
    ],
)
def test_a_cluster_it_cannot_run_is_refused_with_the_reason(
    tmp_path: Path, settings: dict[str, object], nodes: int, says: str
) -> None:
    with pytest.raises(BrokerError, match=says):
        LocalCluster(BrokerSettings(home=tmp_path, **settings), nodes=nodes)


def test_the_single_node_default_is_unchanged(tmp_path: Path) -> None:
    broker = LocalBroker(BrokerSettings(home=tmp_path))
    written = properties(broker._write_configuration())
    assert written["node.id"] == "1"
    assert written["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert written["offsets.topic.replication.factor"] == "1"
    assert written["transaction.state.log.min.isr"] == "1"
    assert "default.replication.factor" not in written
    assert "min.insync.replicas" not in written
    assert broker.properties_file == tmp_path.resolve() / "server.properties"


def test_a_cluster_id_looks_like_kafka_s() -> None:
    ids = {_new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert set(cluster_id) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_a_topic_the_broker_refuses_is_an_error_and_one_that_exists_is_not() -> None:
    _raise_topic_errors(SimpleNamespace(topic_errors=[("a", 0, None), ("b", 36, "exists")]))
    refused = SimpleNamespace(
        topic_errors=[
            ("a", 0, None),
            ("gun.declarations", 38, "only 2 broker(s) are registered"),
        ]
    )
    with pytest.raises(InvalidReplicationFactorError, match=r"gun\.declarations: only 2"):
        _raise_topic_errors(refused)


def test_status_and_stop_of_a_cluster_that_does_not_run(tmp_path: Path) -> None:
    env = {"GUN_HUB_BROKER__HOME": str(tmp_path), "GUN_HUB_BROKER__NODES": "3"}
    status = CliRunner().invoke(app, ["kafka", "status"], env=env)
    assert status.exit_code == 3, status.output
    assert "Kafka cluster is not running (would listen on 127.0.0.1:29092," in status.output
    stop = CliRunner().invoke(app, ["kafka", "stop"], env=env)
    assert stop.exit_code == 0, stop.output
    assert "Kafka was not running" in stop.output
    refused = CliRunner().invoke(app, ["kafka", "start", "--nodes", "2"], env=env)
    assert refused.exit_code == 2
    assert "3 nodes or more" in refused.output


def formatted(node_dir: Path, cluster_id: str) -> None:
    """A node's data folder as `kafka-storage.sh format` leaves it."""
    node_dir.mkdir(parents=True)
    (node_dir / "meta.properties").write_text(
        f"#\n#Thu Dec 03 10:00:00 UTC 2026\nnode.id=1\nversion=1\ncluster.id={cluster_id}\n"
    )


def test_a_lost_cluster_id_is_read_back_from_a_formatted_node(tmp_path: Path) -> None:
    # Found by review, stop 37 (K5): a new id was written, and a node formatted again
    # later (its disk replaced) could never rejoin the others.
    cluster = LocalCluster(BrokerSettings(home=tmp_path), nodes=3)
    formatted(cluster.nodes[1].data_dir, "Kept1dOfTheClusterXYZ")
    assert not cluster.cluster_id_file.exists()
    assert cluster.ensure_cluster_id() == "Kept1dOfTheClusterXYZ"
    assert cluster.cluster_id_file.read_text().strip() == "Kept1dOfTheClusterXYZ"


def test_a_new_cluster_gets_a_new_id_once(tmp_path: Path) -> None:
    cluster = LocalCluster(BrokerSettings(home=tmp_path), nodes=3)
    first = cluster.ensure_cluster_id()
    assert first == cluster.cluster_id_file.read_text().strip()
    assert cluster.ensure_cluster_id() == first


def test_nodes_formatted_with_another_id_stop_the_start_naming_both(tmp_path: Path) -> None:
    cluster = LocalCluster(BrokerSettings(home=tmp_path), nodes=3)
    formatted(cluster.nodes[0].data_dir, "FirstIdOfTheCluster12")
    formatted(cluster.nodes[2].data_dir, "OtherIdOfTheCluster34")
    with pytest.raises(BrokerError) as refused:
        cluster.ensure_cluster_id()
    assert "FirstIdOfTheCluster12" in str(refused.value)
    assert "OtherIdOfTheCluster34" in str(refused.value)
    assert "node 3" in str(refused.value)


def test_start_alone_starts_again_a_cluster_of_the_home_with_a_node_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kafka start`` without ``--nodes`` ran a single broker beside a cluster whose node
    2 had died, while ``status`` and ``stop`` looked at the cluster (operator review of
    stop 48): it starts the cluster's dead nodes instead."""
    (tmp_path / "cluster-3").mkdir()

    def node(running: bool) -> BrokerStatus:
        return BrokerStatus(running, 7 if running else None, "127.0.0.1:29092", tmp_path / "log")

    partly = ClusterStatus((node(True), node(False), node(True)), "127.0.0.1:29092")
    started: list[int] = []
    monkeypatch.setattr(LocalCluster, "status", lambda _cluster: partly)

    def start(cluster: LocalCluster) -> ClusterStatus:
        started.append(len(cluster.nodes))
        return ClusterStatus((node(True),) * 3, "127.0.0.1:29092")

    monkeypatch.setattr(LocalCluster, "start", start)
    monkeypatch.setattr(LocalBroker, "start", lambda _broker: pytest.fail("a single broker"))
    result = CliRunner().invoke(
        app, ["kafka", "start"], env={"GUN_HUB_BROKER__HOME": str(tmp_path)}
    )
    assert result.exit_code == 0, result.output
    assert started == [3]
    assert "cluster started" in result.output


def test_status_after_a_crash_says_the_broker_stopped_without_kafka_stop(tmp_path: Path) -> None:
    """A broker killed (or crashed) leaves its pid file: ``status`` said only "not
    running" and removed it silently (operator review of stop 48). It says once that the
    broker stopped without ``kafka stop``, and where its log is."""
    broker = LocalBroker(BrokerSettings(home=tmp_path))
    broker.pid_file.parent.mkdir(parents=True, exist_ok=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    broker.pid_file.write_text(f"{gone.pid}\n")
    result = CliRunner().invoke(
        app, ["kafka", "status"], env={"GUN_HUB_BROKER__HOME": str(tmp_path)}
    )
    assert result.exit_code == 3, result.output
    assert f"the broker (pid {gone.pid}) stopped without `kafka stop`" in result.output
    assert str(broker.log_file) in result.output
    again = CliRunner().invoke(
        app, ["kafka", "status"], env={"GUN_HUB_BROKER__HOME": str(tmp_path)}
    )
    assert "stopped without" not in again.output  # said once


def test_status_says_when_another_kafka_listens_where_this_folders_would(tmp_path: Path) -> None:
    """ "Kafka is not running" while a Kafka of another folder answered on 9092 (Compose,
    another checkout) read as a free port, and the demo then failed on it (operator
    review of stop 48)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {"GUN_HUB_BROKER__HOME": str(tmp_path), "GUN_HUB_BROKER__PORT": str(port)}
        result = CliRunner().invoke(app, ["kafka", "status"], env=env)
    assert result.exit_code == 3, result.output
    assert f"but something listens on 127.0.0.1:{port}" in result.output
    free = CliRunner().invoke(app, ["kafka", "status"], env=env)
    assert "something listens" not in free.output
