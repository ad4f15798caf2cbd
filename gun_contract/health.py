"""Adapter heartbeats on ``gun.ops.health``: is each partner system reachable?"""

from __future__ import annotations

import re
import socket
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class CircuitStatus(StrEnum):
    """The adapter's circuit breaker towards its partner system (resilience.py)."""

    CLOSED = "closed"  # the partner answers
    HALF_OPEN = "half_open"  # trying again after an outage
    OPEN = "open"  # the partner is down: the adapter answers UNAVAILABLE


class PartnerHealth(BaseModel):
    """One adapter replica's heartbeat, keyed by authority and replica."""

    # No NaN or Infinity: the dashboard answers what it holds as JSON (review of stop 55).
    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    authority: str
    adapter: str  # the adapter process's client id
    # The replica that beats (:func:`replica_name`): each has a circuit and a pending
    # queue of its own. Empty: an adapter from before stop 54 that did not say (its
    # heartbeats still read).
    replica: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)] = ""
    circuit: CircuitStatus
    # Write-offs and deletions waiting for the partner; at most what a float (a gauge on
    # /metrics) holds exactly: 10**400 made every scrape fail (stop 34).
    pending_operations: Annotated[int, Field(ge=0, le=2**53)]
    at: datetime
    every_s: float  # heartbeat period: older than a few periods means the adapter is gone
    # When the reader believed it (its own clock, set by the heartbeat gate, whatever a
    # sender writes here): the heartbeat is as fresh as the earlier of the two. The
    # reader's, not the contract's: left out of the heartbeat's published schema.
    heard_at: SkipJsonSchema[datetime | None] = None

    @property
    def fresh_at(self) -> datetime:
        """How fresh the heartbeat is: when it was sent, but no later than it was heard.
        Judged by ``at`` alone, a replica whose clock ran minutes ahead read fresh, its
        circuit "closed", for minutes after it stopped (a review of degraded mode, stop
        57: the gate believes a heartbeat dated up to the envelope skew ahead)."""
        if self.heard_at is None or self.heard_at >= self.at:
            return self.at
        return self.heard_at

    @property
    def replica_key(self) -> tuple[str, str]:
        """Whose heartbeat this is: each replica of an authority's adapter beats its own."""
        return (self.authority, self.replica)

    def to_bytes(self) -> bytes:
        # A sender's heartbeat as the contract has it: without the reader's field.
        unheard = {"heard_at"} if self.heard_at is None else None
        return self.model_dump_json(exclude=unheard).encode()


def replica_name(replica_id: str) -> str:
    """How an adapter replica names itself in its heartbeats: its ``adapter.replica_id``,
    or without one its host name (a pod's name), as replicas with a volume each (a
    StatefulSet) need no replica id and would otherwise all be the nameless one."""
    if replica_id:
        return replica_id
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())[:64]
