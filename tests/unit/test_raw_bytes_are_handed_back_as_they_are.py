"""A hub table's bytes, and every record's, skip faust's codecs (runtime/raw_codecs.py).

faust put every key and value through its serializer registry (a codec looked up by name,
a Record looked for, ``want_bytes``), about a third of a table read's time, though under
the raw codec its answer for bytes is the bytes themselves. ``RawBytesRegistry`` answers
so at once, and only there: everywhere else its answer is faust's, exception included.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import faust.serializers.registry as fausts_registry
import pytest
from faust.exceptions import ValueDecodeError
from faust.serializers import codecs as fausts_codecs
from faust.serializers.registry import Registry
from faust.types import Message

from gun_contract.settings import Settings
from gun_hub.runtime import table_writes
from gun_hub.runtime.app import _raw_table
from gun_hub.runtime.faust_app import HubApp, as_if_handling
from gun_hub.runtime.raw_codecs import RawBytesRegistry

DECLARATIONS = "gun.declarations"


class _Point(faust.Record, serializer="json"):  # type: ignore[misc,call-arg]  # faust: untyped
    x: int


_KEYS_AND_VALUES: list[Any] = [
    b"FR-2026-1",
    b"",
    b"\x00\xff sealed",
    b'{"__faust": {"ns": "nowhere"}}',
    "FR-2026-2",
    None,
    17,
    {"a": 1},
    _Point(x=3),
    bytearray(b"FR-2026-3"),
]
_ENCODED: list[Any] = [b"FR-2026-1", b"", b"\x00\xff", b"17", b'{"a": 1}', "text", None, 17]
_TYPES: list[Any] = [None, bytes, str, int, _Point]
_CODECS: list[Any] = [None, "raw", "json", "binary", "raw|binary"]


@pytest.fixture(autouse=True)
def _one_app_per_test() -> Iterator[None]:
    yield
    table_writes._WITH_REFUSED_WRITES.clear()
    table_writes._SENT_AGAIN.clear()


def _answer(registry: Registry, name: str, typ: Any, data: Any, codec: Any) -> tuple[Any, ...]:
    """What ``registry.name`` gives (its type too: b"1" is not "1"), or the kind of failure."""
    try:
        answer = getattr(registry, name)(typ, data, serializer=codec)
    except Exception as failure:  # noqa: BLE001 - the kind of failure is compared
        return ("raises", type(failure))
    return ("gives", type(answer), answer)


@pytest.mark.parametrize("defaults", [("raw", "json"), (None, "raw"), ("json", None)])
def test_every_answer_is_fausts_own(defaults: tuple[Any, Any]) -> None:
    key_default, value_default = defaults
    ours = RawBytesRegistry(key_serializer=key_default, value_serializer=value_default)
    fausts = Registry(key_serializer=key_default, value_serializer=value_default)
    asked = [
        (name, typ, codec, data)
        for typ in _TYPES
        for codec in _CODECS
        for name, inputs in (
            ("loads_key", _ENCODED),
            ("loads_value", _ENCODED),
            ("dumps_key", _KEYS_AND_VALUES),
            ("dumps_value", _KEYS_AND_VALUES),
        )
        for data in inputs
    ]
    for name, typ, codec, data in asked:
        mine = _answer(ours, name, typ, data, codec)
        theirs = _answer(fausts, name, typ, data, codec)
        assert mine == theirs, (name, typ, codec, data)
    # Both kinds of answer among them, the bytes handed back at once included.
    answers = {_answer(fausts, *question)[0] for question in asked}
    assert answers == {"gives", "raises"}


def test_raw_bytes_are_handed_back_without_a_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bytes object, faust's codec never asked (it would raise here)."""

    def no_codec(*_: object) -> Any:
        raise AssertionError("faust's codec was asked")

    monkeypatch.setattr(fausts_registry, "loads", no_codec)
    monkeypatch.setattr(fausts_registry, "dumps", no_codec)
    registry = RawBytesRegistry(key_serializer="raw", value_serializer="json")
    sealed = b"\x00sealed case"
    assert registry.loads_key(None, sealed) is sealed  # the app's default key codec
    assert registry.loads_value(None, sealed, serializer="raw") is sealed
    assert registry.loads_value(bytes, sealed, serializer="raw") is sealed
    assert registry.dumps_key(None, sealed, serializer="raw") is sealed
    assert registry.dumps_value(None, sealed, serializer="json") is sealed  # faust skips bytes
    with pytest.raises(ValueDecodeError, match="codec was asked"):
        registry.loads_value(None, sealed)  # the app's default value codec is JSON


def test_an_app_whose_raw_codec_is_another_s_is_fausts_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``raw`` codec registered by an extension is asked, as faust would."""

    class Reversed(fausts_codecs.Codec):  # type: ignore[misc]
        def _loads(self, s: bytes) -> bytes:
            return s[::-1]

    monkeypatch.setitem(fausts_codecs.codecs, "raw", Reversed())
    registry = RawBytesRegistry(key_serializer="raw", value_serializer="raw")
    assert registry.loads_value(None, b"abc") == b"cba"
    assert registry.loads_key(None, b"abc") == b"cba"


def test_the_hubs_app_uses_it() -> None:
    app = HubApp("raw-codecs-test", broker="kafka://127.0.0.1:9", store="memory://")
    assert isinstance(app.serializers, RawBytesRegistry)


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_a_hub_table_stores_and_logs_the_same_bytes(store: str, tmp_path: Path) -> None:
    app = HubApp(
        "raw-codecs-test", broker="kafka://127.0.0.1:9", store=store, datadir=str(tmp_path)
    )
    table = _raw_table(app, Settings(), "cases")
    table._verified_source_topics_for_partitions.add(DECLARATIONS)
    sealed = bytes(range(256)) * 8
    with as_if_handling(DECLARATIONS, 2, 7):
        table[b"FR-2026-4"] = sealed
        table[b"FR-2026-5"] = b""
        assert table.get(b"FR-2026-4") == sealed
        assert table.get(b"FR-2026-5") == b""
        assert table.get(b"FR-2026-6") is None
        del table[b"FR-2026-4"]
        assert table.get(b"FR-2026-4") is None
    pending = app.producer.buffer.pending
    sent = [pending.get_nowait().message for _ in range(pending.qsize())]
    assert [(m.key, m.value, m.partition) for m in sent] == [
        (b"FR-2026-4", sealed, 2),
        (b"FR-2026-5", b"", 2),
        (b"FR-2026-4", None, 2),  # a tombstone
    ]


def test_a_record_the_hub_reads_is_the_bytes_it_carries() -> None:
    """How faust decodes each record consumed from the hub's topics (its topic's schema)."""
    app = HubApp("raw-codecs-test", broker="kafka://127.0.0.1:9", store="memory://")
    declarations = app.topic(DECLARATIONS, key_serializer="raw", value_serializer="raw")
    sealed = b"\x00\x01 an envelope"
    record = Message(DECLARATIONS, 0, 41, 0.0, 0, None, b"FR-2026-7", sealed, None)
    assert declarations.schema.loads_key(app, record) == b"FR-2026-7"
    assert declarations.schema.loads_value(app, record) is sealed
