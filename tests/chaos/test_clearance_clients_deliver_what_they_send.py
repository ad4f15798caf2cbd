"""The chaos run's librdkafka client: a record held back past its timeout is sent again
through a fresh client instance, and the run is not quiet while a record is unacknowledged.

CI once lost 130 declarations in the short chaos run because the confluent-kafka client
kept every record after the broker restart queued, with no delivery report, until the run
gave up flushing it. The records never reached the broker, so the hub never saw them.

Here the client first reaches the real broker through a proxy that swallows every byte
(a broker that accepts and never answers); its record times out. The proxy then opens,
and the record sent again is delivered through a new client instance.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from chaos.producers import ConfluentProducer
from tests.integration.seeded_topics import fresh_topic

pytestmark = [pytest.mark.chaos, pytest.mark.broker]


class SwallowingProxy:
    """A TCP proxy to the broker that, until opened, accepts connections and answers nothing."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self.open = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if not self.open.is_set():
            await reader.read(-1)  # swallow until the client or stop() ends the connection
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self._writers), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def _send(producer: ConfluentProducer, topic: str) -> tuple[int | None, str | None]:
    outcome: asyncio.Future[tuple[int | None, str | None]] = (
        asyncio.get_running_loop().create_future()
    )

    def delivered(partition: int | None, offset: int | None, error: str | None) -> None:
        if not outcome.done():
            outcome.set_result((partition, error))

    await producer.send(topic, b"26FRCH0001", b"<declaration/>", delivered, compressed=False)
    return await asyncio.wait_for(outcome, timeout=60)


async def test_a_record_held_back_past_the_timeout_is_delivered_by_a_new_client(
    kafka_bootstrap: str,
) -> None:
    topic = await fresh_topic(kafka_bootstrap, "chaos.clients", partitions=3)
    proxy = SwallowingProxy(kafka_bootstrap)
    producer = ConfluentProducer(await proxy.start(), delivery_timeout_s=3)
    await producer.start()
    try:
        partition, error = await _send(producer, topic)
        assert partition is None
        assert error is not None
        assert "timed out" in error.lower()
        assert producer.replaced == 1

        proxy.open.set()
        partition, error = await _send(producer, topic)
        assert error is None
        assert partition in (0, 1, 2)
        assert producer.replaced == 1
    finally:
        await producer.stop()
        await proxy.stop()
