"""The record key of a declaration's records: its reference, UTF-8 (contract section 2).

Every record about one declaration (the declaration itself, the requests it causes, the
authorities' answers) is keyed by the declaration reference, so that they share a
partition: the one where its case, its versions and its replay memory live. A record whose
key is not the reference inside it (another reference, none, bytes that are not UTF-8) is
refused by whoever reads it, with a reason that says what the key was without quoting it:
a key is arbitrary bytes from another party, so only its length and the hex of its first
bytes are shown.
"""

from __future__ import annotations

_HEX_PREFIX_BYTES = 8  # enough to tell two keys apart in a dead letter, too few to carry text


def keyed_by(key: bytes | None, reference: str) -> bool:
    """Whether a record keyed ``key`` is keyed by ``reference``, as the contract says."""
    return key is not None and key == reference.encode()


def describe_key(key: bytes | None) -> str:
    """What a record key was, for a dead letter's reason: never its bytes themselves."""
    if key is None:
        return "no record key (null)"
    if not key:
        return "an empty record key"
    try:
        key.decode("utf-8")
        encoding = "UTF-8"
    except UnicodeDecodeError:
        encoding = "not UTF-8"
    head = key[:_HEX_PREFIX_BYTES].hex()
    more = "..." if len(key) > _HEX_PREFIX_BYTES else ""
    return f"a record key of {len(key)} bytes ({encoding}, hex {head}{more})"


def not_keyed_by(what: str, key: bytes | None, reference: str) -> str:
    """The reason a record about ``reference`` (``what``: "declaration", "answer"...) was
    refused for its key."""
    return (
        f"{what} about {reference!r} came with {describe_key(key)}; its record key must "
        f"be its declaration reference, {len(reference.encode())} bytes of UTF-8 "
        "(contract section 2: every record of a declaration lands on one partition)"
    )
