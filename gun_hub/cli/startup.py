"""The start-up path every command shares: the settings read, the cluster reached, the
listeners bound. A fault there is the configuration's, not a bug: it is said in one
sentence, ``cannot start: <reason>`` naming the setting at fault, with exit code 2, never
a traceback (review stop 37, H5).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar, get_origin

import typer
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from gun_contract.kafka.admin import PartitionCountMismatch
from gun_contract.kafka.refusals import NOT_AUTHORISED, ClusterRefused, refused_resource
from gun_contract.kafka.topic_settings import TopicSettingsError
from gun_contract.listening import PortNotBound
from gun_contract.settings import Settings, load_settings
from gun_contract.stop_deadline import STOPPED_SHORT

CANNOT_START = 2
_MOST_FAULTS = 5

log = logging.getLogger(__name__)
_T = TypeVar("_T")


def error_text(err: BaseException) -> str:
    """``err`` as one line: its type and its text (aiokafka's errors already begin with
    their type)."""
    name = type(err).__name__
    text = " ".join(str(err).split())
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def cannot_start(reason: str) -> NoReturn:
    typer.echo(f"cannot start: {reason}", err=True)
    raise typer.Exit(CANNOT_START)


def settings_or_exit() -> Settings:
    """The settings from the environment; a value that does not fit its setting stops the
    command with the variable's name and what it wants."""
    try:
        return load_settings()
    except ValidationError as err:
        cannot_start(settings_fault(err))
    except SettingsError as err:  # a JSON value that does not read (pydantic-settings)
        cannot_start(json_settings_fault(os.environ) or str(err))
    except ValueError as err:  # a refusal of the settings' own (names what it refuses)
        cannot_start(str(err))


def json_settings_fault(environ: Mapping[str, str]) -> str:
    """Each variable of a setting read as JSON (a list, a mapping) whose value is not JSON,
    named with where it stops reading: pydantic-settings says only 'error parsing value for
    field "hub"' (operator review of stop 48); '' when none is found."""
    config = Settings.model_config
    prefix = str(config.get("env_prefix") or "").upper()
    nested = str(config.get("env_nested_delimiter") or "__")
    faults = []
    for section_name, section in Settings.model_fields.items():
        model = section.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name, field in model.model_fields.items():
            kind = _JSON_KIND.get(get_origin(field.annotation))
            if kind is None:
                continue
            variable = f"{prefix}{section_name.upper()}{nested}{name.upper()}"
            value = environ.get(variable)
            if value is None:
                continue
            try:
                json.loads(value)
            except json.JSONDecodeError as err:
                faults.append(
                    f"{variable}: not valid JSON ({err.msg} at column {err.colno}); it holds {kind}"
                )
    return "; ".join(faults)


_JSON_KIND: dict[object, str] = {
    list: "a JSON list ([...])",
    set: "a JSON list ([...])",
    tuple: "a JSON list ([...])",
    dict: "a JSON object ({...})",
}


def settings_fault(err: ValidationError) -> str:
    """Each wrong setting as ``GUN_HUB_HUB__WEB_PORT: Input should be a valid integer``,
    without the value given (it may be a secret, and the operator has it at hand)."""
    config = Settings.model_config
    prefix = str(config.get("env_prefix") or "")
    nested = str(config.get("env_nested_delimiter") or "__")
    faults = []
    for problem in err.errors(include_url=False, include_input=False):
        steps = [str(step) for step in problem["loc"]]
        variable = (prefix + nested.join(steps)).upper() if steps else "the settings"
        faults.append(f"{variable}: {problem['msg']}")
    more = len(faults) - _MOST_FAULTS
    return "; ".join(faults[:_MOST_FAULTS]) + (f"; and {more} more" if more > 0 else "")


@contextmanager
def aiokafka_quiet() -> Iterator[None]:
    """aiokafka's own errors held back: while a start waits for the cluster, it logs each
    failed connection (four a second); the wait says once in a while what it waits for."""
    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


async def reach_cluster(
    settings: Settings,
    wait: Callable[[float], Awaitable[None]],
    *,
    timeout_s: float = 60.0,
    say_every_s: float = 10.0,
) -> None:
    """``wait(seconds)`` (a wait for the cluster that raises ``TimeoutError``) until the
    cluster answers, saying every ``say_every_s`` what it waits for; a cluster that has not
    answered within ``timeout_s`` stops the start naming the bootstrap servers, one that
    refused this client (``ClusterRefused``) at once, naming why and the setting to check."""
    servers = settings.kafka.bootstrap_servers
    waited = 0.0
    last = "no answer"
    with aiokafka_quiet():
        while True:
            step = min(say_every_s, timeout_s - waited)
            try:
                await wait(step)
            except ClusterRefused as err:
                cannot_start(str(err))
            except TimeoutError as err:
                waited += step
                cause = str(err).removeprefix(f"Kafka at {servers} did not answer: ")
                if cause not in ("", "None"):  # a step that ended before its first try
                    last = cause  # knows none: the cause an earlier step saw stands
                if waited >= timeout_s:
                    cannot_start(
                        f"Kafka at {servers} did not answer within {timeout_s:g} s "
                        f"(GUN_HUB_KAFKA__BOOTSTRAP_SERVERS): {last}"
                    )
                log.warning("waiting for Kafka at %s (%.0f s so far): %s", servers, waited, last)
            else:
                return


def not_authorised(settings: Settings, err: KafkaError) -> str:
    """A refusal of the principal's rights in one sentence: another party's credentials
    (its ``.env``) or ACLs not granted, never a traceback (review stop 39-O, O4)."""
    return (
        f"Kafka at {settings.kafka.bootstrap_servers} did not authorise user "
        f"{settings.kafka.sasl_username!r} on {refused_resource(err)}: "
        "check GUN_HUB_KAFKA__SASL_USERNAME and GUN_HUB_KAFKA__SASL_PASSWORD (another "
        "party's?) and that principal's ACLs (gun-hub kafka secure-setup)"
    )


class RefusalOnRecord:
    """The refusal of its principal's rights a component's run ended with, for its stop
    deadline's last words: a run that a refusal ended, and whose clients' cleanup then
    waits on the broker past the deadline, still says its sentence, exit 2, as the hub
    worker's does (stop 51's open item: it ended 1, saying nothing)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.refused: KafkaError | None = None

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Around the run: a refusal raised out of it is recorded, and goes on."""
        try:
            yield
        except NOT_AUTHORISED as err:
            self.refused = err
            raise

    def last_words(self) -> tuple[int, str | None]:
        """(exit code, sentence) for :class:`StopDeadline`."""
        if self.refused is None:
            return STOPPED_SHORT, None
        return CANNOT_START, f"cannot start: {not_authorised(self._settings, self.refused)}"


@contextmanager
def refused_rights_stop_the_start(settings: Settings) -> Iterator[None]:
    """Around a component's run: a refusal of its principal's rights is a fault of the
    configuration (it happens as its clients start), said in one sentence, exit 2."""
    try:
        yield
    except NOT_AUTHORISED as err:
        cannot_start(not_authorised(settings, err))


def run_on_the_cluster(settings: Settings, work: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(work)`` for a start-up step on the cluster: topics that do not fit the
    settings, or a cluster that fails meanwhile, stop the command in one sentence."""
    try:
        with aiokafka_quiet():  # what fails is said once, below
            return asyncio.run(work)
    except (PartitionCountMismatch, TopicSettingsError) as err:  # names topics and settings
        cannot_start(str(err))
    except NOT_AUTHORISED as err:
        cannot_start(not_authorised(settings, err))
    except (KafkaError, OSError) as err:  # OSError: refused, reset, TimeoutError
        cannot_start(f"Kafka at {settings.kafka.bootstrap_servers}: {error_text(err)}")


def ports_free(*listeners: tuple[str, str, int, str]) -> None:
    """Each listener's port, ``(what, host, port, setting)``, bound and let go at once: a
    port another process holds stops the start before the cluster is waited for, naming
    the port and its setting (a port of 0 is a listener that is off). The listener's own
    bind still says so if the port is taken in between."""
    for what, host, port, setting in listeners:
        if not port:
            continue
        try:
            addresses = socket.getaddrinfo(
                host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            for family, kind, protocol, _, address in addresses:
                with socket.socket(family, kind, protocol) as probe:
                    # as aiohttp binds: a port left in TIME_WAIT is free
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
        except OSError as err:
            cannot_start(str(PortNotBound(what, host, port, setting, err)))
