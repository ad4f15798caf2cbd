"""Least-privilege ACLs of every principal, derived from the topic registry.

* an authority's adapter: read its request topic (with its consumer group), write its
  response topic, dead letters and its heartbeat (``ops.health``);
* the hub: read declarations, every response topic and dead letters (with its group),
  decisions (the publisher reads what it already published when it starts), the audit
  trail (each chain goes on from its last records) and the requests (the lag monitor
  dates the oldest unread one: sealed for the adapters, and the hub's own writing);
  write requests, decisions, status, audit and dead letters; everything on its own
  internal topics (faust changelogs, prefixed with its app id); read the status, facts,
  health and lag topics for the operations views; describe the other groups (lag);
  write declarations and responses too, for one purpose: a redrive, the original of a
  dead letter republished on its topic (ADR 0010). It cannot sign as the clearance
  system or an adapter, so what it writes there is acted on only as a redrive: a record
  already in the log, read again;
* the clearance system: write declarations; read decisions (with its group); write dead
  letters;
* the intake gateway (HTTP and file drop, ADR 0011): write declarations, nothing else
  (it answers whoever lodged with it directly, so it has nothing to dead-letter);
* the hub, each adapter and the gateway: DescribeConfigs on the topics they use, which
  their start-up reads to refuse settings that break the contract (review stop 37, K1).

Dead letters are the one addition to "its own topics only": every hop must be able to
dead-letter what fails verification (contract section 5), so each may write ``gun.dlq``.
A cluster gets the grants from its KafkaUser manifests (``gun_tools.deploy_manifests``);
the local broker with Kafka's own ``AclCommand`` (``gun_tools.local_broker.apply_acls``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gun_contract.topics import TopicRegistry


@dataclass(frozen=True, slots=True)
class Grant:
    """Allow ``principal`` ``operations`` on every listed topic and group."""

    principal: str
    operations: tuple[str, ...]
    topics: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    transactional_ids: tuple[str, ...] = ()
    prefixed: bool = False

    def arguments(self) -> list[str]:
        args = ["--add", "--allow-principal", f"User:{self.principal}"]
        for operation in self.operations:
            args += ["--operation", operation]
        for topic in self.topics:
            args += ["--topic", topic]
        for group in self.groups:
            args += ["--group", group]
        for transactional_id in self.transactional_ids:
            args += ["--transactional-id", transactional_id]
        if self.prefixed:
            args += ["--resource-pattern-type", "prefixed"]
        return args


def adapter_group(topics: TopicRegistry, authority: str) -> str:
    """An authority's adapters' consumer group, named after the topic prefix (``gun``:
    ``gun-adapter-dgal``, the name it always had), so that a second deployment on the
    cluster, with a prefix of its own, shares no group with the first (review stop 39-O,
    O5)."""
    return f"{topics.prefix}-adapter-{authority}"


def adapter_topics(topics: TopicRegistry, authority: str) -> tuple[str, ...]:
    """The topics an authority's adapter reads or writes: those whose settings it checks
    at start-up on a secured cluster (cli/components.py, prepare_cluster)."""
    return (topics.requests(authority), topics.responses(authority), topics.dlq, topics.ops_health)


def gateway_topics(topics: TopicRegistry) -> tuple[str, ...]:
    """The one topic the intake gateway writes, whose settings it checks at start-up."""
    return (topics.declarations,)


def acl_plan(topics: TopicRegistry, hub_app_id: str, clearance_group: str) -> list[Grant]:
    grants: list[Grant] = []
    for authority in topics.authorities:
        grants += [
            Grant(
                authority,
                ("Read", "Describe"),
                (topics.requests(authority),),
                (adapter_group(topics, authority),),
            ),
            Grant(
                authority,
                ("Write", "Describe"),
                (topics.responses(authority), topics.dlq, topics.ops_health),
            ),
            # The start-up reads its topics' settings (never changes them) and refuses
            # those that break the contract (admin.py, check_topic_configs).
            Grant(authority, ("DescribeConfigs",), adapter_topics(topics, authority)),
        ]
    grants += [
        Grant(
            "hub",
            ("Read", "Describe"),
            (
                topics.declarations,
                *topics.all_responses(),
                topics.dlq,
                topics.deadlines,
                topics.claims,
                topics.decision_outbox,
                topics.operator_actions,
                topics.rollout,
                # The decision publisher reads what it already published at start-up
                # (publisher.py, _remember_published).
                topics.decisions,
                # Each audit chain goes on from the audit topic's last records, read
                # without a group at each assignment (runtime/audit_resync.py).
                topics.audit,
                # The operations views (ops/view.py) read these without a group; the lag
                # monitor reads gun.ops.lag back at its start (what was counted lost).
                topics.status,
                topics.facts,
                topics.ops_health,
                topics.ops_lag,
                # The lag monitor dates each group's oldest unread record, the adapters'
                # requests too (ops/first_records.py): sealed for the adapters, and
                # written by the hub itself.
                *(topics.requests(a) for a in topics.authorities),
            ),
            (hub_app_id,),
        ),
        Grant(
            "hub",
            ("Write", "Describe"),
            (
                *(topics.requests(a) for a in topics.authorities),
                topics.decisions,
                topics.status,
                topics.audit,
                topics.dlq,
                topics.deadlines,
                topics.claims,
                topics.decision_outbox,
                topics.operator_actions,
                topics.rollout,
                topics.facts,
                topics.ops_lag,
                # Redrives (ADR 0010): a dead letter's original, republished as it was.
                topics.declarations,
                *topics.all_responses(),
            ),
        ),
        # The lag monitor reads (never joins) the other groups' committed offsets.
        Grant(
            "hub",
            ("Describe",),
            groups=(*(adapter_group(topics, a) for a in topics.authorities), clearance_group),
        ),
        # The start-up reads every topic's settings (never changes them) and refuses those
        # that break the contract (admin.py, check_topic_configs).
        Grant("hub", ("DescribeConfigs",), tuple(topics.names())),
        # faust's own topics (changelogs, leader election) and group prefix.
        Grant("hub", ("All",), (f"{hub_app_id}-",), (hub_app_id,), prefixed=True),
        # The decision publisher's transactions (publisher.py).
        Grant("hub", ("Write", "Describe"), transactional_ids=(hub_app_id,), prefixed=True),
        Grant("clearance", ("Write", "Describe"), (topics.declarations, topics.dlq)),
        # A clearance system may publish in transactions (the hub reads committed records
        # only): its transactional ids begin with its group's name.
        Grant(
            "clearance",
            ("Write", "Describe"),
            transactional_ids=(clearance_group,),
            prefixed=True,
        ),
        Grant("clearance", ("Read", "Describe"), (topics.decisions,), (clearance_group,)),
        Grant("gateway", ("Write", "Describe"), (topics.declarations,)),
        Grant("gateway", ("DescribeConfigs",), gateway_topics(topics)),
    ]
    return grants
