"""Size limits of everything that travels, stated once (contract section 5).

Every message the contract allows must travel and open at its receiver: a declaration up
to the intake limit (1 MiB, 999 goods items), the requests it causes and its decision. A
sealed message is about 16/9 of its payload (base64url twice: the JWS payload inside the
JWE ciphertext), and a decision lists every quoted document, so the record limit of the
hub's topics is set well above the declaration limit. What would still not fit is refused
at intake with a clear reason (``DECLARATION_TOO_LARGE_TO_DECIDE``), never lost later.

The same figures configure the topics (``max.message.bytes``), the producers
(``max_request_size``), the consumers (fetch sizes) and the envelope's size caps.
"""

from __future__ import annotations

MAX_DECLARATION_BYTES = 1024 * 1024
"""Default intake limit of one declaration (``GUN_HUB_HUB__MAX_DECLARATION_BYTES``)."""

MAX_RECORD_BYTES = 8 * 1024 * 1024
"""Largest record value on any hub topic (topic ``max.message.bytes`` and producers)."""

RECORD_OVERHEAD_BYTES = 64 * 1024
"""Room for a record's key, headers and batch framing above its value."""

SEALED_OVERHEAD_BYTES = 4096
"""JOSE headers, encrypted key, IV, tag and signature around a sealed payload."""

MAX_STATUS_EVENT_BYTES = 64 * 1024
"""Largest status event (a ``gun.status`` value) the view reads: the hub cuts each
event's free text to ``MAX_STATUS_DETAIL_CHARS`` so that every event of a declaration the
contract allows fits (review stop 40-W, W1: a write-off listing 6,000 documents did not)."""

MAX_STATUS_DETAIL_CHARS = 4 * 1024
"""Longest free text of a status event; what is longer is cut between two entries and
says how many are left (the decision and the facts list every document). Even if every
character took six bytes of JSON escaping, the event stays well under
``MAX_STATUS_EVENT_BYTES``."""

MAX_DEAD_LETTER_VALUE_BYTES = 512 * 1024
"""A dead letter keeps the original bytes up to this size, else a digest, the size and
the head (dead_letter.py): a dead letter must always fit."""


def sealed_size(payload_bytes: int) -> int:
    """Upper bound of the sealed size of a payload (base64url of base64url, plus headers)."""
    signed = 4 * ((payload_bytes + 2) // 3) + SEALED_OVERHEAD_BYTES
    return 4 * ((signed + 2) // 3) + SEALED_OVERHEAD_BYTES


def max_sealed_payload_bytes() -> int:
    """The largest payload whose sealed form fits in one record."""
    return (MAX_RECORD_BYTES - 3 * SEALED_OVERHEAD_BYTES) * 9 // 16


DATABLE_TIMESTAMPS_MS = range(-62_135_596_800_000 + 86_400_000, 253_402_300_799_000 - 86_400_000)
"""Record timestamps a calendar holds (year 1 to 9999 in milliseconds since the epoch, a
day inside each end): a producer's CreateTime can be anything, and ``datetime`` refuses
the rest (the view, the lag monitor)."""
