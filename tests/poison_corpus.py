"""Poisoned records: what a faulty or hostile party may write on a topic it can write.

One corpus for the unit tests of each consumer and for the end-to-end fuzz test
(``tests/e2e/test_every_consumer_survives_every_record.py``): the named bombs of issue 10
(defect 3), and seeded mutations of genuine sealed records (bytes flipped, truncated,
duplicated, parts spliced) so that a poison also looks like the real thing.
"""

from __future__ import annotations

import base64
import gc
import random
from collections.abc import Callable
from dataclasses import dataclass

FIVE_MB = 5 * 1024 * 1024


def compact(header: bytes, parts: int, body: bytes = b"AAAA") -> bytes:
    """A compact-JOSE-shaped value whose protected header is ``header``."""
    encoded = base64.urlsafe_b64encode(header).rstrip(b"=")
    return b".".join([encoded] + [body] * (parts - 1))


def settle_garbage() -> None:
    """Collect what earlier tests left before parsing nested bombs: a collection that
    starts deep inside such a parse runs other objects' finalizers with no stack left, so
    they raise RecursionError, an "unraisable" exception that pytest pins on whichever
    test is running (seen once in a full unit run, stop 37)."""
    gc.collect()


def named_bombs(seed: int = 10) -> dict[str, bytes]:
    """The values every consumer must survive, by name (small enough for any topic,
    except the 5 MB one, which is very compressible: send it gzip-compressed)."""
    settle_garbage()
    rng = random.Random(seed)
    return {
        "nested brackets": b"[" * 3000,
        "nested objects": b'{"a":' * 3000,
        "jwe header of nested brackets": compact(b"[" * 3000, 5),
        "jws header of nested brackets": compact(b"[" * 3000, 3),
        "jwe header not json": compact(b"\xff\xfe\xfd", 5),
        "jwe huge header": compact(b'{"alg":"' + b"A" * 60_000 + b'"}', 5),
        "random bytes": rng.randbytes(4096),
        "invalid utf-8": b"\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc",
        "empty": b"",
        "dots": b"....",
        "xml bomb": b"<a>" * 3000,
        "json null": b"null",
        "json of the wrong shape": b'{"not": "what you expect", "version": 1e999}',
        "5 MB": b"[" * FIVE_MB,
    }


@dataclass(frozen=True)
class Poison:
    name: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        position = rng.randrange(len(out))
        out[position] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _duplicate(rng: random.Random, data: bytes) -> bytes:
    start = rng.randrange(len(data))
    end = rng.randrange(start, len(data) + 1)
    return data[:end] + data[start:end] + data[end:]


def _splice_parts(rng: random.Random, data: bytes) -> bytes:
    """Shuffle, drop or repeat the dot-separated parts of a compact serialization."""
    parts = data.split(b".")
    choice = rng.randrange(3)
    if choice == 0:
        rng.shuffle(parts)
    elif choice == 1 and len(parts) > 1:
        del parts[rng.randrange(len(parts))]
    else:
        parts.insert(rng.randrange(len(parts) + 1), parts[rng.randrange(len(parts))])
    return b".".join(parts)


def _swap_header(rng: random.Random, data: bytes) -> bytes:
    """Replace the protected header with a bomb, keep the rest of a genuine record."""
    bombs = [b"[" * 3000, b'{"alg":' * 2000, b"\x00" * 64, b'{"alg":"none","kid":7}']
    _, _, rest = data.partition(b".")
    return base64.urlsafe_b64encode(rng.choice(bombs)).rstrip(b"=") + b"." + rest


MUTATIONS: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "flipped": _flip,
    "truncated": _truncate,
    "duplicated": _duplicate,
    "spliced": _splice_parts,
    "header swapped": _swap_header,
}


def mutants(rng: random.Random, genuine: list[bytes], count: int) -> list[tuple[str, bytes]]:
    """``count`` seeded mutations of genuine records, each named after how it was made.

    A mutant equal to a genuine record (a truncation to nothing is not, a flip of a bit
    and back could be) is dropped: it is no poison.
    """
    made: list[tuple[str, bytes]] = []
    names = sorted(MUTATIONS)
    originals = [g for g in genuine if g]
    while len(made) < count:
        name = rng.choice(names)
        value = MUTATIONS[name](rng, rng.choice(originals))
        if value not in genuine:
            made.append((name, value))
    return made


def hostile_headers(rng: random.Random) -> list[tuple[str, bytes]]:
    """Headers a foreign producer may attach: huge, undecodable, spliced from dead letters."""
    return [
        ("gun.error.class", b"security"),
        ("gun.error.kind", b"\xff" * 300),
        ("gun.error.reason", b"r" * 200_000),
        ("gun.component", rng.randbytes(64)),
        ("gun.source.partition", b"-99999999999999999999"),
        ("gun.source.offset", b"[" * 3000),
        ("gun.reference", b"\xed\xa0\x80" * 100),
        ("x-" + "h" * 1000, b""),
    ]


# -- header names that are not UTF-8 ----------------------------------------------------

NAME_NOT_UTF8 = b"\xff\xfe"
# As the Java client reads it, and gun_contract/kafka/lenient_headers.py.
NAME_AS_READ = "\ufffd\ufffd"


class _RawName(str):
    """A header name aiokafka's Python record builder writes as the bytes it stands for."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return NAME_NOT_UTF8


async def send_with_a_header_name_not_utf8(
    bootstrap: str, topic: str, partition: int, value: bytes
) -> tuple[int, int]:
    """One record whose header name is the bytes ``NAME_NOT_UTF8``, as kcat (``-H``) or
    any client in C may send; its (partition, offset). aiokafka writes header names from
    text, and librdkafka through confluent-kafka too (it writes ``str(b"...")``): its
    Python record builder is given a name that encodes to the bytes."""
    from unittest import mock

    from aiokafka import AIOKafkaProducer
    from aiokafka.producer import message_accumulator, producer
    from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

    python_builder = _DefaultRecordBatchBuilderPy
    with (
        mock.patch.object(message_accumulator, "DefaultRecordBatchBuilder", python_builder),
        mock.patch.object(producer, "DefaultRecordBatchBuilder", python_builder),
    ):
        sender = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await sender.start()
        try:
            metadata = await sender.send_and_wait(
                topic,
                value,
                partition=partition,
                headers=[(_RawName("xx"), b"x"), ("gun.trace.id", b"0af7651916cd43dd")],
            )
        finally:
            await sender.stop()
    return metadata.partition, metadata.offset
