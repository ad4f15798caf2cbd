"""Every record a broker holds can be read, whatever its header names.

Kafka header names are strings, but a broker keeps whatever bytes a producer sent (kcat
``-H $'\\xff=x'``, librdkafka, franz-go), and the Java client decodes them leniently.
aiokafka decodes them strictly, inside its record parser: one name that is not UTF-8
makes every fetch of that partition raise ``UnicodeDecodeError`` from ``getmany`` (its
Python parser wraps it in ``CorruptRecordException``), at the same offset, for ever.
Every consumer of the topic stops there: the hub's agents (``gun.declarations``,
``gun.responses.*``, ``gun.dlq``), the operations view, the offset watchdog, the audit
resync and ``gun-hub audit verify`` (found by review in stop 34: nothing any party can
write may stop another component).

:func:`install` makes aiokafka read such a partition's fetched records again, from the
same bytes, with its own Python parser and the names decoded as the Java client decodes
them (U+FFFD for what is not UTF-8), and hand on the records it had not handed on yet.
The fast path is untouched: the fetched bytes are kept beside aiokafka's parser, and
read again only when it fails. Written against aiokafka 0.14 (pinned in pyproject.toml);
``tests/unit/test_header_names_that_are_not_utf8.py`` fails if a new version moves what
this relies on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, SupportsIndex, overload

from aiokafka.consumer import fetcher
from aiokafka.errors import CorruptRecordException
from aiokafka.record.default_records import _DefaultRecordBatchPy
from aiokafka.record.memory_records import _MemoryRecordsPy

from gun_contract.kafka import decompression_limit

log = logging.getLogger(__name__)

_installed = False


class _LenientSlice(bytearray):
    """A slice of a record whose ``decode`` replaces what is not valid (header names)."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return super().decode(encoding, "replace")


class _LenientBuffer(bytearray):
    """A batch's bytes whose slices decode leniently; single bytes stay ints."""

    @overload
    def __getitem__(self, index: SupportsIndex) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> bytearray: ...

    def __getitem__(self, index: SupportsIndex | slice) -> int | bytearray:
        item = super().__getitem__(index)
        return _LenientSlice(item) if isinstance(item, bytearray) else item


class _LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
    """aiokafka's Python record batch over a lenient buffer (compressed or not)."""

    _buffer: bytearray

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        super().__init__(buffer)
        self._buffer = _LenientBuffer(self._buffer)

    def _maybe_uncompress(self) -> None:
        super()._maybe_uncompress()
        if not isinstance(self._buffer, _LenientBuffer):
            self._buffer = _LenientBuffer(self._buffer)


class LenientMemoryRecords(_MemoryRecordsPy):  # type: ignore[misc]
    """aiokafka's Python record set whose batches of format 2 (the only ones with
    headers) are :class:`_LenientBatch`."""

    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.budget = decompression_limit.InflationBudget()

    def has_next(self) -> bool:
        return bool(super().has_next()) and not self.budget.spent()

    def next_batch(self, *args: Any) -> Any:
        next_slice = self._next_slice
        if (
            next_slice is not None
            and len(next_slice) >= self.MIN_SLICE
            and next_slice[self.MAGIC_OFFSET] >= 2
        ):
            self._cache_next()
            return decompression_limit.bounded(_LenientBatch(next_slice), self.budget)
        return decompression_limit.bounded(super().next_batch(*args), self.budget)


class _KeptRecords:
    """aiokafka's (fast) record set, and the bytes it was made from."""

    __slots__ = ("_records", "budget", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._records = _FAST_RECORDS(raw)
        # What its batches inflate to: past it, the rest is fetched again from there.
        self.budget = decompression_limit.InflationBudget()

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next()) and not self.budget.spent()

    def next_batch(self) -> Any:
        return decompression_limit.bounded(self._records.next_batch(), self.budget)


_FAST_RECORDS = fetcher.MemoryRecords
_UNPACK = fetcher.PartitionRecords._unpack_records
_INIT = fetcher.PartitionRecords.__init__


def _init(
    self: Any,
    tp: Any,
    records: Any,
    aborted_transactions: Any,
    fetch_offset: int,
    *rest: Any,
) -> None:
    self._gun_start = (records, list(aborted_transactions or []), fetch_offset)
    _INIT(self, tp, records, aborted_transactions, fetch_offset, *rest)


def _a_header_name(error: BaseException) -> bool:
    """Whether ``error`` is aiokafka's parser refusing a name that is not UTF-8: the C
    parser raises the decoding error itself, the Python one wraps it."""
    return isinstance(error, UnicodeDecodeError) or (
        isinstance(error, CorruptRecordException)
        and isinstance(error.__cause__, UnicodeDecodeError)
    )


def _unpack_records(self: Any) -> Iterator[Any]:
    try:
        yield from _UNPACK(self)
    except (UnicodeDecodeError, CorruptRecordException) as error:
        records, aborted, fetch_offset = self._gun_start
        if not _a_header_name(error):
            raise
        if not isinstance(records, _KeptRecords):
            raise
        resume = self.next_fetch_offset  # the first record not handed on yet
        log.warning(
            "%s: a record from offset %d has a header name that is not UTF-8: the fetched "
            "records are read again, the name's invalid bytes replaced",
            self._tp,
            resume,
        )
        # From the start of what was fetched, as aiokafka reads it: its aborted
        # transactions and position, the records already handed on skipped.
        self._records = LenientMemoryRecords(records.raw)
        self._aborted_transactions = sorted(aborted, key=lambda x: x[1])
        self._aborted_producers = set()
        self.next_fetch_offset = fetch_offset
        for record in _UNPACK(self):
            if record.offset >= resume:
                yield record


def install() -> None:
    """Read header names leniently in every aiokafka consumer of this process (once)."""
    global _installed
    if _installed:
        return
    fetcher.MemoryRecords = _KeptRecords
    fetcher.PartitionRecords.__init__ = _init
    fetcher.PartitionRecords._unpack_records = _unpack_records
    _installed = True
