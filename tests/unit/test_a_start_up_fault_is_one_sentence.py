"""A start-up fault of the configuration is one sentence, ``cannot start: <reason>`` naming
the setting at fault, and exit 2: never a traceback (review stop 37, H5).

A wrong value type ended every command in a 47-line pydantic traceback; a wrong broker
address in 239 aiokafka error lines and a ``TimeoutError`` traceback a minute later;
``topics create`` in a traceback whatever went wrong; a listener port already taken in a
traceback too.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from aiohttp import web
from typer.testing import CliRunner

import gun_hub.cli.kafka as kafka_command
from gun_contract.kafka.admin import PartitionCountMismatch, wait_for_cluster
from gun_contract.kafka.client import ClientConfig
from gun_contract.listening import PortNotBound
from gun_contract.settings import KafkaSettings, Settings
from gun_hub.cli import app
from gun_hub.cli.components import prepare_cluster
from gun_hub.cli.startup import reach_cluster
from gun_hub.web.listeners import Listener
from gun_tools.processes import free_port
from tests.conftest import REPO

COMMANDS = [
    ["lag"],
    ["hub"],
    ["view"],
    ["adapter", "dgal"],
    ["intake", "serve"],
    ["topics", "create"],
    ["audit", "verify"],
    ["submit", "--plain", __file__],
    ["decisions"],
]


@pytest.fixture(autouse=True)
def no_settings_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("GUN_HUB_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_setting_of_the_wrong_type_stops_with_one_line(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUN_HUB_HUB__WEB_PORT", "abc")
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, repr(result.exception)
    assert result.output.strip().splitlines() == [
        "cannot start: GUN_HUB_HUB__WEB_PORT: Input should be a valid integer, unable to "
        "parse string as an integer"
    ]


@pytest.mark.parametrize(
    ("variable", "value", "holds"),
    [
        ("GUN_HUB_HUB__EXTRA_ROUTES", "{bad", "a JSON object"),
        ("GUN_HUB_BROKER__CLUSTER_PORTS", "29092,29093,29094", "a JSON list"),
    ],
)
def test_a_setting_read_as_json_that_is_not_names_its_variable(
    variable: str, value: str, holds: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pydantic-settings said only 'error parsing value for field "hub" from source
    "EnvSettingsSource"' (operator review of stop 48)."""
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["topics", "list"])
    assert result.exit_code == 2, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"cannot start: {variable}: not valid JSON ("), line
    assert f"it holds {holds}" in line


def test_a_setting_that_does_not_match_its_pattern_is_named_with_the_pattern(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GUN_HUB_KAFKA__TOPIC_PREFIX", "gun.prod")
    monkeypatch.setenv("GUN_HUB_KAFKA__PARTITIONS", "-1")
    result = CliRunner().invoke(app, ["lag"])
    assert result.exit_code == 2, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith("cannot start: GUN_HUB_KAFKA__TOPIC_PREFIX: String should match")
    assert "; GUN_HUB_KAFKA__PARTITIONS: Input should be greater than 0" in line
    assert "gun.prod" not in line  # the value is the operator's, and may be a secret


def settings_at(bootstrap: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap))


def test_a_broker_that_does_not_answer_stops_the_start_naming_its_address(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(typer.Exit) as stopped:
        prepare_cluster(settings_at("127.0.0.1:1"), wait_s=1.0)
    assert stopped.value.exit_code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(
        "cannot start: Kafka at 127.0.0.1:1 did not answer within 1 s "
        "(GUN_HUB_KAFKA__BOOTSTRAP_SERVERS): KafkaConnectionError"
    )
    # aiokafka's error for each failed connection (four a second) is held back
    assert [r for r in caplog.records if r.name.startswith("aiokafka")] == []


async def test_the_wait_for_the_cluster_says_now_and_then_what_it_waits_for(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    connect = ClientConfig("127.0.0.1:1")
    with pytest.raises(typer.Exit):
        await reach_cluster(
            settings_at("127.0.0.1:1"),
            lambda seconds: wait_for_cluster(connect, timeout_s=seconds),
            timeout_s=1.0,
            say_every_s=0.4,
        )
    assert [r.name for r in caplog.records if r.name.startswith("aiokafka")] == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert all(line.startswith("waiting for Kafka at 127.0.0.1:1 (") for line in said)


def test_topics_create_on_a_partition_mismatch_exits_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def mismatched(*_: object, **__: object) -> list[str]:
        raise PartitionCountMismatch(
            "gun.declarations has 4 partitions, GUN_HUB_KAFKA__PARTITIONS says 8"
        )

    monkeypatch.setattr(kafka_command, "ensure_topics", mismatched)
    result = CliRunner().invoke(app, ["topics", "create"])
    assert result.exit_code == 2, repr(result.exception)
    assert result.output.strip().splitlines() == [
        "cannot start: gun.declarations has 4 partitions, GUN_HUB_KAFKA__PARTITIONS says 8"
    ]


def test_topics_create_on_a_broker_that_cannot_be_reached_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    result = CliRunner().invoke(app, ["topics", "create"])
    assert result.exit_code == 2, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith("cannot start: Kafka at 127.0.0.1:1: KafkaConnectionError")


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


async def test_a_listener_whose_port_is_taken_names_the_port_and_its_setting(
    taken_port: int,
) -> None:
    listener = Listener(
        "officer", web.Application(), "127.0.0.1", taken_port, setting="GUN_HUB_WEB__OFFICER_PORT"
    )
    with pytest.raises(PortNotBound) as refused:
        await listener.start()
    assert str(refused.value).startswith(
        f"the officer listener cannot bind 127.0.0.1:{taken_port} (GUN_HUB_WEB__OFFICER_PORT): "
    )


PORT_SETTINGS = (
    "GUN_HUB_WEB__OFFICER_PORT",
    "GUN_HUB_OPS__VIEW_WEB_PORT",
    "GUN_HUB_HUB__WEB_PORT",
    "GUN_HUB_WEB__TRADER_PORT",
)


@pytest.mark.parametrize(
    ("command", "setting", "what"),
    [
        (["view"], "GUN_HUB_WEB__OFFICER_PORT", "officer listener"),
        (["view"], "GUN_HUB_OPS__VIEW_WEB_PORT", "probes listener"),
        (["hub"], "GUN_HUB_HUB__WEB_PORT", "hub's web server"),
        (["hub"], "GUN_HUB_WEB__TRADER_PORT", "trader listener"),
    ],
)
def test_a_port_already_in_use_stops_the_start_before_the_cluster_is_waited_for(
    command: list[str],
    setting: str,
    what: str,
    taken_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    # Every other port the command opens is free, whatever runs on this machine (a hub
    # on its default 6066 made the trader case fail: tests' review of stop 48).
    for port_setting in PORT_SETTINGS:
        monkeypatch.setenv(port_setting, str(free_port()))
    monkeypatch.setenv(setting, str(taken_port))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith(
        f"cannot start: the {what} cannot bind 127.0.0.1:{taken_port} ({setting}): "
    )
    assert line.endswith("in use")


@pytest.mark.parametrize("setting", ["GUN_HUB_WEB__TRADER_PORT", "GUN_HUB_WEB__OFFICER_PORT"])
def test_a_worker_with_the_view_off_starts_whoever_holds_the_views_ports(
    setting: str, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The view in a process of its own holds the trader and officer ports on the same
    host, with the same web settings as the workers (docs/deployment.md): a worker with
    the view off opens neither listener, so their ports are none of its business (review
    stop 39-O, O3)."""

    class ReachedTheCluster(Exception):
        """The start went past every port check."""

    def reached(*_: object, **__: object) -> None:
        raise ReachedTheCluster

    monkeypatch.setattr("gun_hub.cli.components.prepare_cluster", reached)
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("GUN_HUB_OPS__VIEW_ENABLED", "false")
    monkeypatch.setenv(setting, str(taken_port))
    result = CliRunner().invoke(app, ["hub"])
    assert isinstance(result.exception, ReachedTheCluster), result.output


@pytest.mark.parametrize("command", [["submit", __file__], ["decisions"]], ids=lambda c: c[0])
def test_the_clearance_commands_without_the_clearance_key_name_the_file_and_the_setting(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong copy of the clearance system's keys (deployment.md's Compose procedure) is
    a fault of the configuration: one sentence naming the key file and the setting, exit
    2, not a 56-line traceback (review stop 39-O, O7)."""
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(tmp_path))
    monkeypatch.setenv("GUN_HUB_SECURITY__STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"cannot start: {tmp_path / 'clearance.jwk'} does not exist")
    assert "GUN_HUB_SECURITY__KEYS_DIR" in line


SAMPLE = str(REPO / "samples" / "declarations" / "01-release-salmon.xml")


@pytest.mark.parametrize(
    "command", [["submit", SAMPLE], ["decisions", "--timeout", "5"]], ids=lambda c: c[0]
)
def test_the_clearance_commands_on_a_broker_that_cannot_be_reached_exit_2_naming_it(
    command: list[str], keys_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As every other command: a traceback ending in aiokafka's KafkaConnectionError and
    an "Unclosed AIOKafkaConsumer" was what an operator got (operator review of stop 48)."""
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("GUN_HUB_SECURITY__KEYS_DIR", str(keys_dir))
    monkeypatch.setenv("GUN_HUB_SECURITY__STATE_DIR", str(tmp_path / "state"))
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith("cannot start: Kafka at 127.0.0.1:1: KafkaConnectionError"), line


def test_lag_on_a_cluster_that_cannot_be_reached_says_one_sentence_without_aiokafkas_noise(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Exit 3 as documented, and nothing around it: aiokafka's "Unable connect to" lines
    and two "Unclosed AIOKafkaConsumer" blocks framed the sentence (review stop 39-O, O9)."""
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("GUN_HUB_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    result = CliRunner().invoke(app, ["lag"])
    gc.collect()  # a client left unclosed says so as it is collected
    assert result.exit_code == 3, repr(result.exception)
    [line] = result.output.strip().splitlines()
    assert line.startswith("cannot measure the lag at ")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")] == []
    assert [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()] == []


async def test_a_wait_step_that_ended_before_any_answer_keeps_the_cause_seen_before(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A step of the wait can end before its first try does (a TLS check slower than the
    step, on a loaded machine): it knows no cause, and the start's last sentence said
    ``...: None`` where an earlier step had named it (a helper's flake hunt, stop 57)."""
    causes = iter(["SSL handshake: wrong version number (GUN_HUB_KAFKA__SECURITY_PROTOCOL)"])

    async def wait(seconds: float) -> None:
        raise TimeoutError(f"Kafka at 127.0.0.1:1 did not answer: {next(causes, None)}")

    with pytest.raises(typer.Exit):
        await reach_cluster(settings_at("127.0.0.1:1"), wait, timeout_s=1.0, say_every_s=0.5)
    said = capsys.readouterr().err
    assert "wrong version number (GUN_HUB_KAFKA__SECURITY_PROTOCOL)" in said.splitlines()[-1]
    assert not said.rstrip().endswith(": None")
