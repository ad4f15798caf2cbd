"""Kafka client quotas per principal: no party outside the hub can take the broker.

ACLs (acls.py) say what a principal may do, not how much of it: a clearance system, the
gateway or a partner's adapter stuck in a loop (or written to flood) could fill the
broker's network and request threads and stop every other component. Kafka throttles a
principal past its quota (it delays its responses and mutes its connection: the client
slows down, nothing is refused or lost), so each outside party gets one here: bytes
produced and fetched per second, and the share of one broker thread its requests may
take (``request_percentage``: 100 is one thread's time).

The rates carry the target load with room to spare: 1,000 declarations a second of a
few kilobytes each (sealed) is under 8 MiB/s from the clearance system or the gateway,
and an authority answers a fraction of that. The hub (the core, which must never be the
one slowed down) and admin have none. Applied by ``gun-hub kafka secure-setup``
(Kafka's ``ConfigCommand``) and by Strimzi from each ``KafkaUser`` (deploy/k8s).
"""

from __future__ import annotations

from dataclasses import dataclass

from gun_contract.security.entitlements import CLEARANCE_PARTY, GATEWAY_PARTY
from gun_contract.topics import TopicRegistry

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Quota:
    """What ``principal`` may take of each broker."""

    principal: str
    producer_byte_rate: int
    consumer_byte_rate: int
    request_percentage: int

    def config(self) -> str:
        """As Kafka's ``ConfigCommand --add-config`` takes it."""
        return (
            f"producer_byte_rate={self.producer_byte_rate},"
            f"consumer_byte_rate={self.consumer_byte_rate},"
            f"request_percentage={self.request_percentage}"
        )

    def strimzi(self) -> dict[str, int]:
        """As a Strimzi ``KafkaUser``'s ``spec.quotas``."""
        return {
            "producerByteRate": self.producer_byte_rate,
            "consumerByteRate": self.consumer_byte_rate,
            "requestPercentage": self.request_percentage,
        }


def quota_plan(topics: TopicRegistry) -> list[Quota]:
    """One quota per party outside the hub."""
    return [
        Quota(CLEARANCE_PARTY, 16 * MIB, 16 * MIB, 100),
        # The gateway only writes declarations (ADR 0011).
        Quota(GATEWAY_PARTY, 16 * MIB, 1 * MIB, 100),
        *(Quota(authority, 4 * MIB, 4 * MIB, 50) for authority in topics.authorities),
    ]
