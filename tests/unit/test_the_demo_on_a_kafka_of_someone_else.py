"""``gun-hub demo --bootstrap HOST:PORT``, "on a Kafka you already run" (review stop 39-O,
O6): a Kafka that does not answer ended in a 56-line traceback where demo.md promises
``demo failed: ...``. (What it leaves on a Kafka that answers, its names of its own:
tests/e2e/test_the_demo_shows_the_three_administrations.py.)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gun_tools.demo.run as demo_run
from gun_contract.settings import BrokerSettings, KafkaSettings, Settings
from gun_hub.cli import app
from gun_tools.demo import DemoFailed
from gun_tools.demo.run import broker_for_the_run, demo_names, run_name
from gun_tools.local_broker import LocalBroker, PortTaken


@pytest.fixture(autouse=True)
def no_settings_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)


def test_a_kafka_that_does_not_answer_fails_the_demo_in_one_line_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(demo_run, "CLUSTER_WITHIN_S", 1.0)
    result = CliRunner().invoke(app, ["demo", "--bootstrap", "127.0.0.1:1"])
    assert result.exit_code == 1, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith("demo failed: Kafka at 127.0.0.1:1 did not answer within 1 s"), line
    # aiokafka's error for each attempt (on the terminal, without a handler) held back
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")] == []


def test_the_demos_names_are_its_own_and_this_runs_on_a_kafka_someone_runs() -> None:
    """Of this run alone: under names a later run takes again, a run cut short left
    records sealed with keys thrown away, on which the later run stopped (review of stop
    48's own commits)."""
    run = run_name(Path("work/gun-hub-demo-k3x_9q2z"))
    assert run == "k3x-9q2z"
    gun = Settings(kafka=KafkaSettings(topic_prefix="gun"))
    names = demo_names(gun, on_a_running_kafka=True, run=run)
    assert (names.topic_prefix, names.app_id, names.clearance_group) == (
        "gun-demo-k3x-9q2z",
        "gun-demo-k3x-9q2z-hub",
        "gun-demo-k3x-9q2z-clearance",
    )
    staging = Settings(kafka=KafkaSettings(topic_prefix="ro"))
    assert demo_names(staging, on_a_running_kafka=True, run=run).topic_prefix == "ro-demo-k3x-9q2z"
    other_run = demo_names(gun, on_a_running_kafka=True, run=run_name(Path("work/gun-hub-demo-a")))
    assert other_run.topic_prefix != names.topic_prefix


def test_on_its_embedded_broker_the_demo_uses_the_contracts_names() -> None:
    """The main job is where a newcomer, or another system, reads ``gun.decisions``."""
    settings = Settings()
    names = demo_names(settings, on_a_running_kafka=False)
    assert (names.topic_prefix, names.app_id, names.clearance_group) == (
        "gun",
        settings.hub.app_id,
        settings.ops.clearance_group,
    )


def test_the_broker_the_demo_starts_keeps_its_data_in_the_runs_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo cut short left records sealed with keys thrown away at its end in the broker's
    usual folder: every later demo, and a hub started on that broker, stopped on them
    (operator review of stop 48). Each run's broker starts empty."""
    monkeypatch.setattr(LocalBroker, "running_pid", lambda _broker: None)
    settings = Settings(broker=BrokerSettings(home=tmp_path / "usual"))
    broker, bootstrap = broker_for_the_run(settings, tmp_path / "run")
    assert broker is not None
    assert broker.home == (tmp_path / "run" / "kafka").resolve()
    assert bootstrap == "127.0.0.1:9092"  # where the contract's main job is read
    assert demo_names(settings, on_a_running_kafka=False).topic_prefix == "gun"


def test_a_broker_already_running_is_used_under_the_demos_own_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalBroker, "running_pid", lambda _broker: 4242)
    settings = Settings(broker=BrokerSettings(home=tmp_path / "usual", port=19092))
    broker, bootstrap = broker_for_the_run(settings, tmp_path / "run")
    assert (broker, bootstrap) == (None, "127.0.0.1:19092")


def test_a_port_taken_by_another_kafka_says_how_to_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo.md promises a demo on a Kafka already running; one not started from this
    folder (Compose, another checkout) got "port 9092 is taken" alone (operator review of
    stop 48)."""

    def taken(_broker: LocalBroker) -> None:
        raise PortTaken("port 9092 on 127.0.0.1 is taken (Address already in use)")

    monkeypatch.setattr(LocalBroker, "start", taken)
    broker = LocalBroker(BrokerSettings(home=tmp_path))
    with pytest.raises(DemoFailed) as failed:
        demo_run._start_broker(broker, lambda _line: None)
    assert "is taken" in str(failed.value)
    assert str(failed.value).endswith("./tasks demo --bootstrap 127.0.0.1:9092")
