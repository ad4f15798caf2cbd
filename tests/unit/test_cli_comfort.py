"""Logs a shipper can parse, logs a person can read, and progress bars only on a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr, ValidationError
from rich.console import Console

from adapters.conformance.kit import selected_scenarios
from adapters.conformance.scenarios import scenarios
from gun_contract.kafka.client import from_settings
from gun_contract.logs import configure_logging
from gun_contract.settings import KafkaSettings, Settings, load_settings
from gun_hub.cli.progress import progress_bar


class TerminalStream(io.StringIO):
    """A stream that says it is a terminal, as stderr does in a developer's shell."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    noisy = {name: logging.getLogger(name).level for name in ("aiokafka", "kafka")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.fixture
def terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ordinary terminal: no environment variable overriding rich's detection."""
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_INTERACTIVE", "TTY_COMPATIBLE", "FORCE_COLOR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def log_lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_and_component() -> None:
    stream = io.StringIO()
    configure_logging("info", component="adapter.dgal", log_format="json", stream=stream)

    logging.getLogger("adapters.dgal").warning("partner slow: %d ms", 812)
    logging.getLogger("adapters.dgal").debug("below the level, not written")

    [line] = log_lines(stream)
    entry = json.loads(line)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "adapters.dgal"
    assert entry["message"] == "partner slow: 812 ms"
    assert entry["component"] == "adapter.dgal"
    assert entry["ts"].endswith("+00:00")  # UTC, ISO 8601
    assert "exception" not in entry


def correlate() -> None:
    raise LookupError("no case for 26FR000690I0000012")


def test_an_exception_is_one_json_line_with_its_traceback() -> None:
    stream = io.StringIO()
    configure_logging("info", component="hub", log_format="json", stream=stream)

    try:
        correlate()
    except LookupError:
        logging.getLogger("gun_hub.runtime.app").exception("could not correlate")

    [line] = log_lines(stream)  # the traceback's newlines stay inside the JSON string
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["message"] == "could not correlate"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert "LookupError: no case for 26FR000690I0000012" in entry["exception"]


def test_text_mode_writes_readable_lines_not_json() -> None:
    stream = io.StringIO()
    configure_logging("info", component="hub", log_format="text", stream=stream)

    logging.getLogger("gun_hub.runtime.app").info("worker ready")

    [line] = log_lines(stream)
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert line.endswith(" INFO    hub gun_hub.runtime.app: worker ready")
    assert "\033[" not in line  # not a terminal: no colour codes in a file or a pipe


def test_text_mode_colours_the_level_on_a_terminal_unless_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    coloured = TerminalStream()
    configure_logging("info", component="hub", log_format="text", stream=coloured)
    logging.getLogger("gun_hub.runtime.app").error("broken link")
    assert "\033[31mERROR" in coloured.getvalue()

    monkeypatch.setenv("NO_COLOR", "1")
    plain = TerminalStream()
    configure_logging("info", component="hub", log_format="text", stream=plain)
    logging.getLogger("gun_hub.runtime.app").error("broken link")
    assert "\033[" not in plain.getvalue()
    assert " ERROR   hub gun_hub.runtime.app: broken link" in plain.getvalue()


def test_auto_mode_is_text_on_a_terminal_and_json_elsewhere() -> None:
    terminal, pipe = TerminalStream(), io.StringIO()
    for stream in (terminal, pipe):
        configure_logging("info", component="hub", log_format="auto", stream=stream)
        logging.getLogger("gun_hub.runtime.app").info("worker ready")

    with pytest.raises(json.JSONDecodeError):
        json.loads(terminal.getvalue())
    assert json.loads(pipe.getvalue())["message"] == "worker ready"


def test_json_mode_is_json_even_on_a_terminal() -> None:
    terminal = TerminalStream()
    configure_logging("info", component="hub", log_format="json", stream=terminal)
    logging.getLogger("gun_hub.runtime.app").info("worker ready")
    assert json.loads(terminal.getvalue())["component"] == "hub"


def test_the_log_format_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUN_HUB_LOG_FORMAT", raising=False)
    assert load_settings().log_format == "auto"

    monkeypatch.setenv("GUN_HUB_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"

    monkeypatch.setenv("GUN_HUB_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        load_settings()


def test_logging_the_settings_or_the_client_config_never_shows_the_sasl_password() -> None:
    password = "s3cr3t-scram-password"  # noqa: S105 (a test value)
    kafka = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="hub", sasl_password=SecretStr(password)
    )
    stream = io.StringIO()
    configure_logging("info", component="hub", log_format="json", stream=stream)
    log = logging.getLogger("gun_hub.test")

    log.info("settings: %s", Settings(kafka=kafka))
    log.info("settings: %r", Settings(kafka=kafka).model_dump())
    log.info("client: %s", from_settings(kafka))

    assert len(log_lines(stream)) == 3
    assert "hub" in stream.getvalue()
    assert password not in stream.getvalue()


@pytest.mark.usefixtures("terminal_env")
def test_a_bar_is_drawn_on_a_terminal_with_count_total_rate_and_elapsed_time() -> None:
    screen = io.StringIO()
    console = Console(force_terminal=True, file=screen, width=100)

    with progress_bar("waiting for decisions", total=3, unit="decisions", console=console) as bar:
        assert bar.shown
        for _ in range(3):
            bar.advance()

    drawn = screen.getvalue()
    assert "waiting for decisions" in drawn
    assert "3/3" in drawn
    assert "decisions/s" in drawn
    assert "0:00:00" in drawn  # elapsed time
    assert "\033[" in drawn  # drawn with terminal control codes


@pytest.mark.usefixtures("terminal_env")
def test_a_bar_without_a_total_gets_one_when_it_is_known() -> None:
    screen = io.StringIO()
    console = Console(force_terminal=True, file=screen, width=100)

    with progress_bar("replaying gun.audit", unit="records", console=console) as bar:
        bar.set_total(None)
        bar.set_total(40)
        bar.set_completed(40)

    assert "40/40" in screen.getvalue()


@pytest.mark.usefixtures("terminal_env")
def test_nothing_is_written_when_the_output_is_not_a_terminal() -> None:
    pipe = io.StringIO()
    console = Console(file=pipe)  # rich asks the stream, which is no terminal

    with progress_bar("conformance dgal", total=2, console=console) as bar:
        bar.advance(2)
        bar.set_total(5)

    assert not bar.shown
    assert pipe.getvalue() == ""


@pytest.mark.usefixtures("terminal_env")
def test_force_color_does_not_turn_a_captured_stderr_into_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # CI sets it for colours; rich alone would draw

    with progress_bar("bench-parse", total=10) as bar:
        bar.advance(10)

    assert not bar.shown
    assert capsys.readouterr() == ("", "")


def test_the_conformance_bar_counts_the_scenarios_that_will_run() -> None:
    assert len(selected_scenarios()) == len(scenarios())
    [only] = selected_scenarios("refusal 04")
    assert only.name == "refusal 04: inappropriate status"
