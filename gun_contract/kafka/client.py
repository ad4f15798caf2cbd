"""How every Kafka client of the project connects: one place for address and security.

Plain (the local default) or SASL_SSL with SCRAM-SHA-512 against a broker whose CA the
client trusts (the secured profile and production). Producers, consumers, admin clients
and the faust app all take their options from :func:`client_options`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.helpers import create_ssl_context

from gun_contract.kafka import decompression_limit, lenient_headers
from gun_contract.settings import KafkaSettings
from gun_contract.topics import TOPIC_MAX_MESSAGE_BYTES

# Every process that talks to Kafka imports this module: from here on, none of its
# consumers stops at a header name that is not UTF-8 (lenient_headers.py), nor inflates
# a compressed batch beyond a bounded size (decompression_limit.py).
lenient_headers.install()
decompression_limit.install()

SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    bootstrap_servers: str
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None

    @property
    def secured(self) -> bool:
        return self.username is not None

    def options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.secured:
            options.update(
                security_protocol="SASL_SSL",
                sasl_mechanism=SCRAM,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
                ssl_context=create_ssl_context(cafile=str(self.ca_file) if self.ca_file else None),
            )
        return options

    def __repr__(self) -> str:  # never print the password
        return f"ClientConfig({self.bootstrap_servers!r}, user={self.username!r})"


Connect = ClientConfig | str


def client_config(connect: Connect) -> ClientConfig:
    return connect if isinstance(connect, ClientConfig) else ClientConfig(connect)


def from_settings(kafka: KafkaSettings) -> ClientConfig:
    if kafka.security_protocol == "SASL_SSL":
        return ClientConfig(
            kafka.bootstrap_servers,
            kafka.sasl_username,
            kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
            kafka.ssl_cafile,
        )
    return ClientConfig(kafka.bootstrap_servers)


def client_options(connect: Connect) -> dict[str, Any]:
    return client_config(connect).options()


def producer_options(connect: Connect) -> dict[str, Any]:
    """A producer's options: it may send every record the topics accept (limits.py)."""
    return {**client_options(connect), "max_request_size": TOPIC_MAX_MESSAGE_BYTES}


def consumer_options(connect: Connect) -> dict[str, Any]:
    """A consumer's options: it fetches every record the topics accept (limits.py)."""
    return {
        **client_options(connect),
        "max_partition_fetch_bytes": TOPIC_MAX_MESSAGE_BYTES,
        "fetch_max_bytes": 4 * TOPIC_MAX_MESSAGE_BYTES,
    }


class _Startable(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


async def start_or_close(client: _Startable) -> None:
    """Start an aiokafka producer or consumer; if the caller is cancelled meanwhile,
    close it before the cancellation goes on.

    aiokafka leaks its bootstrap connection when a cancellation lands while it asks for
    the first metadata (``AIOKafkaClient.bootstrap`` catches only Kafka and timeout
    errors around that request), so the start is shielded, allowed to finish, and the
    client stopped: nothing is left for the garbage collector.
    """
    starting = asyncio.ensure_future(client.start())
    try:
        await asyncio.shield(starting)
    except BaseException:
        with contextlib.suppress(BaseException):
            await starting
        await client.stop()
        raise


# What a gathering reader asks the broker to hold a fetch for: more than a moment's
# worth of records at any rate here, so that only the wait ends it, or a backlog.
GATHER_BYTES = 1024 * 1024


def reader_without_group(
    connect: ClientConfig, client_id: str, *, gather_ms: int = 0
) -> AIOKafkaConsumer:
    """A consumer that joins no group: it reads every partition it assigns itself, from
    where it seeks (an operations view, the rollout modes: every worker reads them all).

    ``gather_ms`` above 0: the broker holds each fetch until that long has passed (or a
    backlog of :data:`GATHER_BYTES` is there), so a reader that needs no record the
    moment it is written fetches a few times a second, not once per burst of records.
    Each fetch names every partition the reader follows, and both the broker and this
    client pay for each (docs/benchmark.md, "The cost per declaration depends on the
    load").

    It reads committed records only, as every consumer of the project does: a status event
    or a dead letter of a transaction then aborted (the publisher's, retried; a party's on
    ``gun.dlq``) never happened (review stop 40-F, F2). Its end offsets are then the last
    stable ones, so "caught up" waits at most for a transaction open at the start (the
    brokers let none run longer than a minute)."""
    gathering = (
        {"fetch_min_bytes": GATHER_BYTES, "fetch_max_wait_ms": gather_ms} if gather_ms else {}
    )
    return AIOKafkaConsumer(
        **connect.options(),
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **gathering,
    )


async def read_without_group(
    connect: ClientConfig,
    client_id: str,
    assign: Callable[[AIOKafkaConsumer], Awaitable[list[TopicPartition]]],
    follow: Callable[[AIOKafkaConsumer, list[TopicPartition]], Awaitable[None]],
    *,
    gather_ms: int = 0,
) -> None:
    """Start a reader without a group, let ``assign`` choose its partitions and ``follow``
    read them, and stop it whatever happens (``gather_ms``: :func:`reader_without_group`)."""
    consumer = reader_without_group(connect, client_id, gather_ms=gather_ms)
    await start_or_close(consumer)
    try:
        await follow(consumer, await assign(consumer))
    finally:
        await consumer.stop()


async def reached(consumer: Any, targets: dict[TopicPartition, int]) -> bool:
    """Whether ``consumer`` has read each partition up to its offset in ``targets``."""
    for tp, end in targets.items():
        if await consumer.position(tp) < end:
            return False
    return True
