"""One hop of the benchmark's raw pipe: consume a topic, produce every record unchanged to
the next, no processing. ``python -m benchmarks.raw_hop BOOTSTRAP SOURCE SINK GROUP``.

Plain aiokafka as a careful client uses it, the same guarantees the hub asks for on its
own hops: a consumer group with manual commits, an idempotent producer with acks=all, and
a batch's offsets committed only once the broker has every record it produced. Runs
until it is terminated (SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def forward(bootstrap: str, source: str, sink: str, group: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=500)
            deliveries = [
                await producer.send(sink, record.value, key=record.key)
                for records in batches.values()
                for record in records
            ]
            if deliveries:
                await asyncio.gather(*deliveries)
                await consumer.commit()
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        await producer.stop()


def main() -> int:
    bootstrap, source, sink, group = sys.argv[1:5]
    asyncio.run(forward(bootstrap, source, sink, group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
