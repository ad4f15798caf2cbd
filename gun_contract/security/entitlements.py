"""Who may send on which topic, and to whom each topic's messages are addressed.

Derived from the topic registry, so adding an authority adds its rules: the clearance
system writes declarations, and so does the single window's intake gateway (the HTTP and
file-drop channels, ADR 0011), each with its own keys; the hub alone writes requests and
decisions; an authority alone answers on its own response topic. The operations health
topic has many writers, each for its own component only: an authority's adapter beats in
the name of its authority id, signed with that authority's key (``heartbeats``:
component -> party).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gun_contract.topics import TopicRegistry

HUB_PARTY = "hub"
CLEARANCE_PARTY = "clearance"
# The single window's intake gateway: it lodges on the declarations topic what declarant
# systems send over HTTP or drop as files, after checking who sent it (gun_hub/gateway/).
GATEWAY_PARTY = "gateway"


@dataclass(frozen=True, slots=True)
class Entitlements:
    senders: dict[str, frozenset[str]]
    recipients: dict[str, str]
    # Who may send a heartbeat in the name of each component on ``ops.health``.
    heartbeats: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_registry(cls, topics: TopicRegistry) -> Entitlements:
        senders = {
            topics.declarations: frozenset({CLEARANCE_PARTY, GATEWAY_PARTY}),
            topics.decisions: frozenset({HUB_PARTY}),
        }
        # No envelope on the hub's decision outbox: its records are sealed with the
        # hub's state key, and the publisher seals each to the clearance system as it
        # publishes it (publisher.py).
        recipients = {
            topics.declarations: HUB_PARTY,
            topics.decisions: CLEARANCE_PARTY,
        }
        heartbeats = {}
        for authority in topics.authorities:
            senders[topics.requests(authority)] = frozenset({HUB_PARTY})
            recipients[topics.requests(authority)] = authority
            senders[topics.responses(authority)] = frozenset({authority})
            recipients[topics.responses(authority)] = HUB_PARTY
            heartbeats[authority] = authority  # the adapter, named after its authority
        return cls(senders, recipients, heartbeats)

    def may_send(self, party: str, topic: str) -> bool:
        return party in self.senders.get(topic, frozenset())

    def recipient_of(self, topic: str) -> str | None:
        return self.recipients.get(topic)

    def heartbeat_sender_of(self, component: str) -> str | None:
        """The party whose key signs ``component``'s heartbeats (None: no such component)."""
        return self.heartbeats.get(component)


def parties(topics: TopicRegistry) -> list[str]:
    """Every party that holds keys: the hub, the clearance system, the intake gateway,
    each authority."""
    return [HUB_PARTY, CLEARANCE_PARTY, GATEWAY_PARTY, *topics.authorities]
