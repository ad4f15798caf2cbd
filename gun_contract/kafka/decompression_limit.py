"""A compressed record batch is read only up to a bounded size, never inflated whole.

The broker bounds a batch by its size *as sent* (``max.message.bytes``): a producer may
compress it with any codec Kafka knows, and a value of zeros shrinks a thousandfold
(zstd: 350 MiB in a few kilobytes). aiokafka inflates a whole batch in memory before
anyone sees a record, so one such record, written by any party allowed on a topic, drove
the hub to 1.2 GiB and an adapter to 387 MiB (outside audit, stop 50), over the memory
limits the deployment sets (``deploy/k8s``): killed before it commits, a worker restarted
reads the same batch again, for ever.

:func:`install` gives aiokafka's parsers (the fast one and its Python fallback, record
formats 0 to 2) decoders that stop at ``MAX_DECOMPRESSED_BATCH_BYTES`` (four of the
largest records any hub topic takes: the hub's producers send uncompressed, and a sealed
record compresses by a third at most), and each fetched partition hands over batches only
until they have inflated to twice that (:class:`InflationBudget`). A batch that would
inflate beyond the limit, or whose records do not inflate at all (aiokafka raised at the
same offset at every fetch), is *withheld*:
the consumer is handed one record in its place, at the batch's last offset, with no key,
the ``gun.withheld`` header and a value saying which offsets were withheld and why; every
consumer dead-letters it as it does any unreadable record and reads on after it
(``bounded`` wraps each batch the fetcher reads, ``lenient_headers.py``). Written against
aiokafka 0.14 and its codecs (cramjam, pinned in the lock files);
``tests/unit/test_a_compressed_batch_is_inflated_only_so_far.py`` fails if a new version
moves what this relies on.
"""

from __future__ import annotations

import gzip
import io
import logging
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cramjam
from aiokafka import codec
from aiokafka.errors import UnsupportedCodecError
from aiokafka.record import default_records, legacy_records
from aiokafka.record._crecords import default_records as fast_default_records
from aiokafka.record._crecords import legacy_records as fast_legacy_records

from gun_contract.limits import MAX_RECORD_BYTES

log = logging.getLogger(__name__)

MAX_DECOMPRESSED_BATCH_BYTES = 4 * MAX_RECORD_BYTES
"""The most one record batch is inflated to; beyond it the batch is withheld."""

WITHHELD_HEADER = "gun.withheld"
"""Header of the record handed over in place of a withheld batch (why, in words)."""

# cramjam's message when the output buffer it was given is too small for the whole.
_BUFFER_TOO_SMALL = "failed to write whole buffer"
_FIRST_GUESS_BYTES = 64 * 1024


class DecompressedTooLarge(Exception):
    """A batch whose records would inflate beyond the limit."""

    def __init__(self, codec: str, limit: int) -> None:
        super().__init__(f"its {codec} records inflate beyond {limit} bytes")


_limit = MAX_DECOMPRESSED_BATCH_BYTES
_installed = False


class InflationBudget:
    """What the batches of one fetched partition have inflated to: once it reaches twice
    the limit, the fetch hands over no more batches, and the consumer fetches the rest
    from there when it asks again. Without it, thousands of batches of a few bytes, each
    under the limit, inflated one fetch to gigabytes (review of this change); with it, a
    fetch holds at most three limits' worth, whatever its batches compress to (records
    that compress a thousandfold, a long repetitive key, are read, not withheld)."""

    __slots__ = ("inflated",)

    def __init__(self) -> None:
        self.inflated = 0

    def spent(self) -> bool:
        return self.inflated >= 2 * _limit


_charged = threading.local()  # the budget of the batch being inflated on this thread


def _charge(inflated: int) -> None:
    budget: InflationBudget | None = getattr(_charged, "budget", None)
    if budget is not None:
        budget.inflated += inflated


def _into_growing_buffer(
    decompress_into: Callable[[Any, Any], int], codec: str, payload: Any
) -> bytearray:
    """Inflate into a buffer grown fourfold at each try, up to the bound: a batch that
    needs more fails at the bound without a larger buffer ever being allocated."""
    data = bytes(payload)
    bound = _limit
    size = min(bound, max(_FIRST_GUESS_BYTES, 4 * len(data)))
    while True:
        out = bytearray(size)
        try:
            written = decompress_into(data, out)
        except cramjam.DecompressionError as error:
            if _BUFFER_TOO_SMALL not in str(error):
                raise
            if size >= bound:
                raise DecompressedTooLarge(codec, bound) from None
            size = min(bound, size * 4)
            continue
        del out[written:]
        _charge(written)
        return out


def zstd_decode(payload: Any) -> bytearray:
    return _into_growing_buffer(cramjam.zstd.decompress_into, "zstd", payload)


def lz4_decode(payload: Any) -> bytearray:
    return _into_growing_buffer(cramjam.lz4.decompress_into, "lz4", payload)


def gzip_decode(payload: Any) -> bytes:
    """As aiokafka reads gzip (``gzip.GzipFile``: every member, zero padding after one
    skipped), read in pieces up to one byte past the bound."""
    data = bytes(payload)
    bound = _limit
    with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as inflating:
        out = inflating.read(bound + 1)
    if len(out) > bound:
        raise DecompressedTooLarge("gzip", bound)
    _charge(len(out))
    return out


_XERIAL_HEADER_BYTES = 16


def snappy_decode(payload: Any) -> bytes:
    """Snappy states each block's inflated length up front: the total is checked before
    anything is inflated (the raw form, or the blocks of xerial's framing)."""
    data = bytes(payload)
    bound = _limit
    if codec._detect_xerial_stream(data):
        total, cursor = 0, _XERIAL_HEADER_BYTES
        while cursor < len(data):
            block_size = int.from_bytes(data[cursor : cursor + 4], "big", signed=True)
            cursor += 4
            if block_size < 0 or cursor + block_size > len(data):
                raise cramjam.DecompressionError(f"a snappy block of {block_size} bytes")
            total += cramjam.snappy.decompress_raw_len(data[cursor : cursor + block_size])
            cursor += block_size
    else:
        total = cramjam.snappy.decompress_raw_len(data)
    if total > bound:
        raise DecompressedTooLarge("snappy", bound)
    _charge(total)
    return bytes(codec.snappy_decode(data))


_DECODERS = {
    "gzip_decode": gzip_decode,
    "snappy_decode": snappy_decode,
    "lz4_decode": lz4_decode,
    "zstd_decode": zstd_decode,
}


@dataclass(frozen=True, slots=True)
class WithheldRecord:
    """What the consumer is handed in place of a withheld batch (aiokafka reads these
    attributes of a record)."""

    offset: int
    timestamp: int
    timestamp_type: int
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    key: None = None
    checksum: None = None


# What inflating a batch raises when its records cannot be read (beyond the bound, or a
# compressed stream that is not one): withheld too, or aiokafka raised it at the same
# offset at every fetch and the consumer stopped there for ever.
_NOT_INFLATING = (
    DecompressedTooLarge,
    cramjam.DecompressionError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    UnsupportedCodecError,
)


class _BoundedBatch:
    """One batch as the fetcher reads it; inflating it beyond the limit gives one
    :class:`WithheldRecord` instead of its records."""

    __slots__ = ("_batch", "_budget")

    def __init__(self, batch: Any, budget: InflationBudget | None) -> None:
        self._batch = batch
        self._budget = budget

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def __next__(self) -> Any:
        return next(self._batch)  # a control batch's marker, read without ``iter``

    def __iter__(self) -> Iterator[Any]:
        _charged.budget = self._budget
        try:
            records: Iterator[Any] = iter(self._batch)  # format 2 inflates here, at once
        except UnicodeDecodeError:
            raise  # a header name: lenient_headers.py reads the batch again
        except _NOT_INFLATING as error:
            return iter((self._withheld(error),))
        finally:
            _charged.budget = None
        inflated = records is self._batch  # format 2 (its ``__iter__`` returns itself)
        return records if inflated else self._lazily(records)

    def _lazily(self, records: Iterator[Any]) -> Iterator[Any]:
        """Formats 0 and 1 inflate a wrapper message when its first record is read."""
        try:
            _charged.budget = self._budget
            first = next(records, None)  # inflates the wrapper message
        except UnicodeDecodeError:
            raise
        except _NOT_INFLATING as error:
            yield self._withheld(error)
            return
        finally:
            _charged.budget = None
        if first is not None:
            yield first
            yield from records

    def _withheld(self, error: Exception) -> WithheldRecord:
        batch = self._batch
        last = batch.next_offset - 1
        first = getattr(batch, "base_offset", last)  # formats 0 and 1 state only the last
        why = error if isinstance(error, DecompressedTooLarge) else f"they do not inflate: {error}"
        reason = (
            f"offsets {first} to {last} withheld unread: {why} "
            f"(gun_contract/kafka/decompression_limit.py)"
        )
        log.warning("a record batch at offsets %d to %d is withheld: %s", first, last, why)
        return WithheldRecord(
            offset=last,
            timestamp=getattr(batch, "max_timestamp", -1),
            timestamp_type=getattr(batch, "timestamp_type", 0),
            value=reason.encode(),
            headers=[(WITHHELD_HEADER, reason.encode())],
        )


def bounded(batch: Any, budget: InflationBudget | None = None) -> Any:
    """``batch`` as the fetcher should read it: withheld if it would inflate too far,
    what it inflates to charged to its fetch's ``budget``."""
    return None if batch is None else _BoundedBatch(batch, budget)


def install(limit: int = MAX_DECOMPRESSED_BATCH_BYTES) -> None:
    """Bound the inflating of every aiokafka consumer of this process (``limit``: tests)."""
    global _installed, _limit
    _limit = limit
    if _installed:
        return
    for module in (default_records, legacy_records, fast_default_records, fast_legacy_records):
        for name, decoder in _DECODERS.items():
            if hasattr(module, name):
                setattr(module, name, decoder)
    _installed = True
