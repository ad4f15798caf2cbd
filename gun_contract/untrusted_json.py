"""JSON another party wrote, parsed off the interpreter's stack.

``json.loads`` descends one C call per nesting level, counted against Python's recursion
limit: nested brackets are refused only once that limit is reached, and a garbage
collection starting down there runs other objects' finalizers with no stack left (they
fail as "unraisable" RecursionErrors: a transport's socket left open, a warning lost).
pydantic-core's parser (jiter, already a dependency through pydantic) keeps a depth limit
of its own and raises ``ValueError``; it also refuses a lone surrogate, which
``json.loads`` lets through into a string that cannot be encoded again.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json


def parse_untrusted(data: bytes | bytearray | str) -> Any:
    """The JSON value of ``data``; ``ValueError`` when it is not JSON, or nests deeper
    than the parser's limit (a few hundred levels: no contract document nests past ten)."""
    return from_json(data)
