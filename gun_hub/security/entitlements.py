"""Who may send on which topic, and to whom each topic's messages are addressed.

Derived from the topic registry, so adding an authority adds its rules: the clearance
system alone writes declarations; the hub alone writes requests and decisions; an
authority alone answers on its own response topic. The operations health topic has many
writers, each for its own component only: an authority's adapter beats in the name of its
authority id, signed with that authority's key (``heartbeats``: component -> party).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gun_hub.topics import TopicRegistry

HUB_PARTY = "hub"
CLEARANCE_PARTY = "clearance"


@dataclass(frozen=True, slots=True)
class Entitlements:
    senders: dict[str, str]
    recipients: dict[str, str]
    # Who may send a heartbeat in the name of each component on ``ops.health``.
    heartbeats: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_registry(cls, topics: TopicRegistry) -> Entitlements:
        senders = {
            topics.declarations: CLEARANCE_PARTY,
            topics.decisions: HUB_PARTY,
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
            senders[topics.requests(authority)] = HUB_PARTY
            recipients[topics.requests(authority)] = authority
            senders[topics.responses(authority)] = authority
            recipients[topics.responses(authority)] = HUB_PARTY
            heartbeats[authority] = authority  # the adapter, named after its authority
        return cls(senders, recipients, heartbeats)

    def may_send(self, party: str, topic: str) -> bool:
        return self.senders.get(topic) == party

    def recipient_of(self, topic: str) -> str | None:
        return self.recipients.get(topic)

    def heartbeat_sender_of(self, component: str) -> str | None:
        """The party whose key signs ``component``'s heartbeats (None: no such component)."""
        return self.heartbeats.get(component)


def parties(topics: TopicRegistry) -> list[str]:
    """Every party that holds keys: the hub, the clearance system, each authority."""
    return [HUB_PARTY, CLEARANCE_PARTY, *topics.authorities]
