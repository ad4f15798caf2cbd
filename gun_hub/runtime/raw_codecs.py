"""faust's serializer registry, with bytes under the raw codec handed back as they are.

Everything the hub keeps in its tables, and every record its topics carry, is bytes under
faust's ``raw`` codec (ADR 0002; a table's values sealed by the hub's state cipher). faust
still puts each key and value through its registry: the codec looked up by name
(``get_codec``: a ``|`` chain parsed, an extension lookup), a Record looked for
(``isinstance`` against faust's model ABC, ``Model._maybe_reconstruct``), and
``want_bytes`` at the end, for every table read and write, every changelog record and
every record consumed: about a third of a table read's time (docs/benchmark.md, stops 40 and 41).

``RawBytesRegistry`` answers at once only where faust's own answer is the value itself:

* encoding (``dumps_key``/``dumps_value``) a ``bytes`` object, whatever the codec: faust
  skips the codec for bytes (its ``skip=(bytes,)``) and returns them;
* decoding (``loads_key``/``loads_value``) ``bytes`` under the ``raw`` codec (named so,
  explicitly or by default) with no type or ``bytes`` asked: faust's raw codec returns
  them, and no Record is made from bytes.

Anything else (another codec, a type, a ``str``, a ``None``, a model) is faust's own path,
unchanged. The ``raw`` codec is faust's own here (checked when the registry is made: an
extension may register another under that name, and then every call is faust's).
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs
from faust.serializers.registry import Registry

_RAW = "raw"


class RawBytesRegistry(Registry):  # type: ignore[misc]
    """faust's ``Registry``, bytes under the raw codec handed back as they are."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._raw_is_fausts = type(codecs.get_codec(_RAW)) is codecs.raw

    def loads_key(self, typ: Any, key: bytes | None, *, serializer: Any = None) -> Any:
        if (
            type(key) is bytes
            and (typ is None or typ is bytes)
            and (serializer or self.key_serializer) == _RAW
            and self._raw_is_fausts
        ):
            return key
        return super().loads_key(typ, key, serializer=serializer)

    def loads_value(self, typ: Any, value: bytes | None, *, serializer: Any = None) -> Any:
        if (
            type(value) is bytes
            and (typ is None or typ is bytes)
            and (serializer or self.value_serializer) == _RAW
            and self._raw_is_fausts
        ):
            return value
        return super().loads_value(typ, value, serializer=serializer)

    def dumps_key(
        self,
        typ: Any,
        key: Any,
        *,
        serializer: Any = None,
        skip: tuple[type, ...] = (bytes,),
    ) -> bytes | None:
        if type(key) is bytes and bytes in skip:
            return key
        encoded: bytes | None = super().dumps_key(typ, key, serializer=serializer, skip=skip)
        return encoded

    def dumps_value(
        self,
        typ: Any,
        value: Any,
        *,
        serializer: Any = None,
        skip: tuple[type, ...] = (bytes,),
    ) -> bytes | None:
        if type(value) is bytes and bytes in skip:
            return value
        encoded: bytes | None = super().dumps_value(typ, value, serializer=serializer, skip=skip)
        return encoded
