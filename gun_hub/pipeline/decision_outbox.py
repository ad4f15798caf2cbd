"""The records of the hub's decision outbox (``gun.hub.decision-outbox``): what the
pipeline writes there and the decision publisher (:mod:`gun_hub.runtime.publisher`) reads."""

from __future__ import annotations

HEADER_VERSION = "gun.decision.version"
# What the outbox's records are sealed as (the hub's state key, AES-GCM).
OUTBOX_STATE = "decision-outbox"


def outbox_record_key(reference: bytes, version: bytes) -> bytes:
    """What an outbox record's seal is bound to: a record moved under another reference
    or version does not open."""
    return reference + b"|" + version
