"""JSON another party wrote is parsed without recursing on the interpreter's stack.

``json.loads`` descends one C call per nesting level, counted against Python's recursion
limit: a bomb of nested brackets is refused only once the limit is reached, and a
garbage collection that starts down there runs other objects' finalizers with no stack
left, so they fail (an "unraisable" RecursionError: a transport's socket left open, a
warning lost; seen as a unit test failing at random in stop 37). The parser of
:mod:`gun_contract.untrusted_json` keeps its own bounded depth, off the Python stack.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gun_contract.untrusted_json import parse_untrusted

BOMBS = [b"[" * 3000, b'{"a":' * 3000, b"[" * 100_000]


def _descend(levels: int) -> int:
    return 0 if levels == 0 else 1 + _descend(levels - 1)


@contextmanager
def finalizers_watched() -> Iterator[list[str]]:
    """Every garbage collection during the block runs a little Python (as a finalizer
    does); what it could not run is listed."""
    starved: list[str] = []

    def on_collection(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            try:
                _descend(40)
            except RecursionError:
                starved.append("a finalizer found no stack to run on")

    thresholds = gc.get_threshold()
    gc.callbacks.append(on_collection)
    gc.set_threshold(1)  # a collection at nearly every allocation
    try:
        yield starved
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(on_collection)


def refuses(parse: Callable[[bytes], Any], bomb: bytes) -> None:
    with pytest.raises((ValueError, RecursionError)):
        parse(bomb)


@pytest.mark.parametrize("bomb", BOMBS, ids=["brackets", "objects", "100k brackets"])
def test_a_nested_bomb_is_refused_and_every_finalizer_keeps_its_stack(bomb: bytes) -> None:
    with finalizers_watched() as starved, pytest.raises(ValueError, match="recursion limit"):
        parse_untrusted(bomb)
    assert starved == []


def test_the_standard_parser_starves_finalizers_on_the_same_bomb() -> None:
    """What the module is for: the same watch sees json.loads leave no stack."""
    with finalizers_watched() as starved:
        refuses(json.loads, BOMBS[0])
    assert starved


@pytest.mark.parametrize(
    "text",
    [
        b'{"alg":"ES256","kid":"hub-sig-1","iat":1764900000,"aud":["hub"],"x":1.5}',
        b'[1, "two", null, true, {"n": 123456789012345678901234567890}]',
        '{"name": "Société Générale"}',
    ],
)
def test_what_json_loads_reads_it_reads_alike(text: bytes | str) -> None:
    assert parse_untrusted(text) == json.loads(text)


@pytest.mark.parametrize("text", [b"", b"{", b'{"a":}', b"\xff\xfe", b'"\\ud800"'])
def test_what_is_not_json_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError, match=r"at line \d+ column \d+"):
        parse_untrusted(text)
