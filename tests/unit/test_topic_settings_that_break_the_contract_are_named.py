"""Which of a topic's settings break the contract, and the line that says so (review stop
37, K1 and K2): the pure logic under the start-up's topic checks (gun_contract/kafka/
topic_settings.py); the broker side is tests/integration/test_topic_alignment.py and
tests/integration/test_cli_start_up_checks.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from gun_contract.kafka.admin import _align_configs
from gun_contract.kafka.topic_settings import (
    TopicAlignmentRefused,
    TopicSettingsRefused,
    aligned_overrides,
    deviations,
    lengthening_apart,
    refusal_line,
)
from gun_contract.topics import TOPIC_MAX_MESSAGE_BYTES, Payload, TopicSpec, topic_registry

TOPICS = topic_registry("gun", ["dgal"])
BY_NAME = {spec.name: spec for spec in TOPICS.specs()}
CHANGELOG = TopicSpec("gun-hub-cases-changelog", "hub", "hub", Payload.JSON, "", compacted=True)
LIMIT = str(TOPIC_MAX_MESSAGE_BYTES)
BROKER_DEFAULTS = {
    "max.message.bytes": "1048588",
    "message.timestamp.type": "CreateTime",
    "cleanup.policy": "delete",
    "retention.ms": "604800000",
    "retention.bytes": "-1",
}


def as_created(spec: TopicSpec, **changed: str) -> dict[str, str]:
    """What the broker describes for a topic made by ``ensure_topics``, with changes."""
    return {**BROKER_DEFAULTS, **spec.broker_config(), **changed}


def settings_of(found: list[Any]) -> list[str]:
    return [d.setting for d in found]


@pytest.mark.parametrize("spec", [*TOPICS.specs(), CHANGELOG], ids=lambda s: s.name)
def test_a_topic_made_from_the_registry_breaks_nothing(spec: TopicSpec) -> None:
    assert deviations(spec, as_created(spec)) == []


def test_an_envelope_topic_on_create_time_is_named_and_may_be_aligned() -> None:
    spec = BY_NAME["gun.declarations"]
    [found] = deviations(spec, as_created(spec, **{"message.timestamp.type": "CreateTime"}))
    assert (found.setting, found.value, found.wanted) == (
        "message.timestamp.type",
        "CreateTime",
        "LogAppendTime",
    )
    assert found.alignable


@pytest.mark.parametrize("topic", ["gun.dlq", "gun.ops.health"])
def test_a_topic_other_parties_write_is_dated_by_the_broker(topic: str) -> None:
    """Every party may write ``gun.dlq``, the adapters ``gun.ops.health``: on the
    producer's time, one record dated in the year 9000 kept its segment and every later
    one from retention for good, and records dated further and further ahead rolled a
    segment per batch until the broker ran out of files (found by review, stop 46). The
    broker's time, named and aligned like an envelope topic's."""
    spec = BY_NAME[topic]
    assert spec.broker_config()["message.timestamp.type"] == "LogAppendTime"
    [found] = deviations(spec, as_created(spec, **{"message.timestamp.type": "CreateTime"}))
    assert (found.setting, found.wanted, found.alignable) == (
        "message.timestamp.type",
        "LogAppendTime",
        True,
    )


def test_a_topic_that_is_not_an_envelope_topic_may_keep_create_time() -> None:
    spec = BY_NAME["gun.status"]
    assert deviations(spec, as_created(spec, **{"message.timestamp.type": "CreateTime"})) == []


def test_the_brokers_default_size_limit_is_named_and_a_larger_one_is_not() -> None:
    spec = BY_NAME["gun.decisions"]
    [found] = deviations(spec, as_created(spec, **{"max.message.bytes": "1048588"}))
    assert (found.setting, found.value, found.wanted, found.fix) == (
        "max.message.bytes",
        "1048588",
        f"at least {LIMIT}",
        LIMIT,
    )
    assert found.alignable
    larger = str(2 * TOPIC_MAX_MESSAGE_BYTES)
    assert deviations(spec, as_created(spec, **{"max.message.bytes": larger})) == []


@pytest.mark.parametrize("policy", ["compact", "compact,delete", "delete, compact"])
def test_a_compacted_log_topic_is_refused_not_aligned(policy: str) -> None:
    spec = BY_NAME["gun.declarations"]
    [found] = deviations(spec, as_created(spec, **{"cleanup.policy": policy}))
    assert (found.setting, found.value, found.wanted) == ("cleanup.policy", policy, "delete")
    assert not found.alignable


def test_a_compacted_topic_left_deleting_is_refused() -> None:
    [found] = deviations(CHANGELOG, as_created(CHANGELOG, **{"cleanup.policy": "delete"}))
    assert (found.setting, found.wanted, found.alignable) == ("cleanup.policy", "compact", False)


def test_an_audit_topic_that_deletes_by_age_or_size_is_refused() -> None:
    spec = BY_NAME["gun.audit"]
    by_age = deviations(spec, as_created(spec, **{"retention.ms": "604800000"}))
    assert settings_of(by_age) == ["retention.ms"]
    assert (by_age[0].value, by_age[0].wanted, by_age[0].alignable) == ("604800000", "-1", False)
    by_size = deviations(spec, as_created(spec, **{"retention.bytes": "1073741824"}))
    assert settings_of(by_size) == ["retention.bytes"]


def test_a_longer_retention_than_the_registrys_is_no_fault() -> None:
    spec = BY_NAME["gun.requests.dgal"]
    assert deviations(spec, as_created(spec, **{"retention.ms": str(30 * 86_400_000)})) == []


def test_the_line_names_each_setting_its_value_the_value_wanted_and_the_command() -> None:
    spec = BY_NAME["gun.decisions"]
    found = deviations(
        spec,
        as_created(
            spec, **{"max.message.bytes": "1048588", "message.timestamp.type": "CreateTime"}
        ),
    )
    line = refusal_line("gun.decisions", found, "kafka:9093")
    assert "\n" not in line
    assert line.startswith("gun.decisions: max.message.bytes is 1048588, wanted at least ")
    assert "message.timestamp.type is CreateTime, wanted LogAppendTime" in line
    assert (
        "kafka-configs.sh --bootstrap-server kafka:9093 --command-config <admin client "
        "properties> --alter --entity-type topics --entity-name gun.decisions --add-config "
        f"max.message.bytes={LIMIT},message.timestamp.type=LogAppendTime"
    ) in line


def test_the_refusal_has_one_line_per_topic() -> None:
    audit, declarations = BY_NAME["gun.audit"], BY_NAME["gun.declarations"]
    refused = TopicSettingsRefused(
        {
            "gun.audit": deviations(audit, as_created(audit, **{"retention.ms": "1"})),
            "gun.declarations": deviations(
                declarations,
                as_created(
                    declarations,
                    **{"cleanup.policy": "compact", "message.timestamp.type": "CreateTime"},
                ),
            ),
        },
        "kafka:9093",
    )
    header, *lines = str(refused).splitlines()
    assert "KafkaTopic" in header
    assert [line.split(":")[0] for line in lines] == ["gun.audit", "gun.declarations"]
    assert "cleanup.policy is compact, wanted delete" in lines[1]
    assert "message.timestamp.type is CreateTime, wanted LogAppendTime" in lines[1]


def test_alignment_sends_the_operators_overrides_back_with_the_two_aligned_keys() -> None:
    spec = BY_NAME["gun.requests.dgal"]
    overrides = {
        "retention.ms": str(30 * 86_400_000),
        "min.insync.replicas": "2",
        "compression.type": "zstd",
    }
    found = deviations(spec, {**BROKER_DEFAULTS, **overrides})
    assert aligned_overrides(overrides, found) == {
        **overrides,
        "max.message.bytes": LIMIT,
        "message.timestamp.type": "LogAppendTime",
    }


# ---- a refused alignment is reported (the broker's answer is read) -------------------------


@dataclass
class _Response:
    resources: list[tuple[Any, ...]]
    API_VERSION: int = 2


@dataclass
class _AdminRefusingAlterations:
    """Answers DescribeConfigs with a topic on CreateTime, and refuses every alteration as
    a broker with an alter-config policy would."""

    described: dict[str, dict[str, str]]
    altered: list[Any] = field(default_factory=list)

    async def describe_configs(self, resources: list[Any]) -> list[_Response]:
        return [
            _Response(
                [
                    (0, None, 2, r.name, [(k, v, False, 1, False, []) for k, v in cfg.items()])
                    for r in resources
                    if (cfg := self.described[r.name]) is not None
                ]
            )
        ]

    async def alter_configs(self, resources: list[Any]) -> list[_Response]:
        self.altered += resources
        return [_Response([(44, "refused by policy", 2, r.name) for r in resources])]


def test_a_refused_alignment_is_reported() -> None:
    spec = BY_NAME["gun.requests.dgal"]
    admin = _AdminRefusingAlterations(
        {spec.name: as_created(spec, **{"message.timestamp.type": "CreateTime"})}
    )
    with pytest.raises(TopicAlignmentRefused) as refused:
        asyncio.run(_align_configs(admin, [spec], "kafka:9092"))
    assert admin.altered, "nothing was sent"
    assert "gun.requests.dgal" in str(refused.value)
    assert "refused by policy" in str(refused.value)


def test_the_rollout_topic_keeps_every_setting_for_ever() -> None:
    """Review stop 40-F (ADR 0023): on a compacted rollout topic a record written after an
    officer's setting under its scope's key (garbage, a tombstone, an old setting copied)
    erased it at the next cleaning, for every worker starting after."""
    spec = BY_NAME["gun.hub.rollout"]
    config = spec.broker_config()
    assert (config["cleanup.policy"], config["retention.ms"]) == ("delete", "-1")
    assert settings_of(deviations(spec, as_created(spec, **{"cleanup.policy": "compact"}))) == [
        "cleanup.policy"
    ]
    assert settings_of(deviations(spec, as_created(spec, **{"retention.bytes": "1048576"}))) == [
        "retention.bytes"
    ]


SEVEN_DAYS_MS = 7 * 86_400_000


def test_the_deadlines_topic_keeps_a_takeover_notice_as_long_as_a_declaration() -> None:
    """A later version read on another partition sends a notice through the deadlines
    topic (pipeline/takeover.py); with 24 hours a partition unread for longer lost it, and
    the earlier version's control was reported overdue for ever (stop 51's open item). The
    declarations themselves are kept 7 days: the notice is kept as long."""
    deadlines, declarations = BY_NAME["gun.hub.deadlines"], BY_NAME["gun.declarations"]
    assert deadlines.retention_ms == declarations.retention_ms == SEVEN_DAYS_MS


def test_a_deadlines_topic_made_with_a_shorter_retention_is_lengthened() -> None:
    """A topic made by an earlier release (24 hours) or by hand: lengthening only keeps
    records longer, so the start-up aligns it as it does the size limit."""
    spec = BY_NAME["gun.hub.deadlines"]
    [found] = deviations(spec, as_created(spec, **{"retention.ms": "86400000"}))
    assert (found.setting, found.value, found.fix) == ("retention.ms", "86400000", "604800000")
    assert found.wanted == "at least 604800000"
    assert found.alignable
    overrides = {"retention.ms": "86400000", "min.insync.replicas": "2"}
    assert aligned_overrides(overrides, [found]) == {
        "retention.ms": str(SEVEN_DAYS_MS),
        "min.insync.replicas": "2",
    }
    longer = as_created(spec, **{"retention.ms": str(30 * 86_400_000)})
    assert deviations(spec, longer) == []
    assert deviations(spec, as_created(spec, **{"retention.ms": "-1"})) == []


def test_the_secured_start_up_refuses_a_broken_topic_and_only_warns_of_a_short_retention() -> None:
    """The secured start-up sets nothing itself: a deadlines topic made by an earlier
    release must not stop the upgraded hub (it runs, and loses only a notice read later
    than the topic keeps it); one that also breaks the contract is refused whole."""
    deadlines, declarations = BY_NAME["gun.hub.deadlines"], BY_NAME["gun.declarations"]
    short = deviations(deadlines, as_created(deadlines, **{"retention.ms": "86400000"}))
    short_and_compacted = deviations(
        deadlines,
        as_created(deadlines, **{"retention.ms": "86400000", "cleanup.policy": "compact"}),
    )
    on_create_time = deviations(
        declarations, as_created(declarations, **{"message.timestamp.type": "CreateTime"})
    )
    refused, to_lengthen = lengthening_apart(
        {"gun.hub.deadlines": short, "gun.declarations": on_create_time}
    )
    assert (set(refused), set(to_lengthen)) == ({"gun.declarations"}, {"gun.hub.deadlines"})
    refused, to_lengthen = lengthening_apart({"gun.hub.deadlines": short_and_compacted})
    assert (set(refused), to_lengthen) == ({"gun.hub.deadlines"}, {})
    # Compacted, nothing is deleted by age: the policy is the one fault named.
    assert settings_of(refused["gun.hub.deadlines"]) == ["cleanup.policy"]
