"""The topic settings the contract relies on, and what a topic's configuration breaks of them.

A topic made by an admin, by Strimzi from an edited manifest, or by hand on "a cluster of
your own" can carry the broker's defaults instead of the registry's settings
(``TopicSpec.broker_config``). Some of them break the contract silently (review stop 37,
K1): on ``CreateTime`` an envelope read more than the clock skew after it was sealed is
refused and dead-lettered; a size limit below the contract's refuses large decisions and
stops the partition writing them; a compacted log topic keeps one record per key and
refuses records without one; an audit topic with a finite retention deletes evidence, a
rollout topic compacted or deleting loses the officers' modes (ADR 0023).

Pure logic: what is wrong with one topic's described configuration, and the line that
says so. Reading the configuration and acting on it is ``admin.py``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gun_contract.topics import TopicSpec

MAX_MESSAGE_BYTES = "max.message.bytes"
TIMESTAMP_TYPE = "message.timestamp.type"
CLEANUP_POLICY = "cleanup.policy"
RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"

# What the plaintext start-up may set itself: both only widen what a topic accepts and
# how its records are stamped. A cleanup policy or a retention is the operator's to
# change: compaction may already have removed records, and retention is lengthened on
# purpose during a partner's outage (docs/operations.md). The one exception is a
# retention shorter than the hub relies on (``TopicSpec.retention_relied_on``):
# lengthening it only keeps records longer (``Deviation.lengthens``).
ALIGNABLE = frozenset({MAX_MESSAGE_BYTES, TIMESTAMP_TYPE})

_WHY_TIMESTAMP = (
    "freshness is judged against the broker's log-append time; on CreateTime a record "
    "read more than the allowed clock skew after it was sealed is refused and dead-lettered"
)
_WHY_SIZE = (
    "a smaller limit refuses records the contract allows and stops the partition writing them"
)
_WHY_DELETE = (
    "compaction keeps only each key's latest record, whatever it holds, and refuses records "
    "without a key"
)
_WHY_COMPACT = "each key's latest record must be kept however old it is"
_WHY_READ_LATE = (
    "the hub reads each record of it up to that age (a partition's worker down for a while "
    "reads its takeover notices late); deleted sooner, a later version's notice is lost"
)
_WHY_KEPT = (
    "its records are never deleted (the audit trail is evidence; a rollout setting is in "
    "force until a newer one)"
)


@dataclass(frozen=True, slots=True)
class Deviation:
    """One setting of a topic that is not what the contract needs."""

    setting: str
    value: str | None  # as the broker describes it (None: not described)
    wanted: str  # what the contract needs, as said to an operator
    fix: str  # the value to set
    why: str
    lengthens: bool = False  # a retention made longer: nothing is lost by setting it

    @property
    def alignable(self) -> bool:
        return self.setting in ALIGNABLE or self.lengthens


def deviations(spec: TopicSpec, config: Mapping[str, str | None]) -> list[Deviation]:
    """What ``config`` (a topic's effective configuration, every source) breaks of what
    ``spec`` needs; empty when nothing. Settings the contract does not rely on (a longer
    retention, a larger size limit, compression, min.insync.replicas) are not looked at."""
    wanted = spec.broker_config()
    found: list[Deviation] = []
    limit = wanted[MAX_MESSAGE_BYTES]
    if not _at_least(config.get(MAX_MESSAGE_BYTES), int(limit)):
        found.append(
            Deviation(
                MAX_MESSAGE_BYTES,
                config.get(MAX_MESSAGE_BYTES),
                f"at least {limit}",
                limit,
                _WHY_SIZE,
            )
        )
    if TIMESTAMP_TYPE in wanted and config.get(TIMESTAMP_TYPE) != wanted[TIMESTAMP_TYPE]:
        found.append(
            Deviation(
                TIMESTAMP_TYPE,
                config.get(TIMESTAMP_TYPE),
                wanted[TIMESTAMP_TYPE],
                wanted[TIMESTAMP_TYPE],
                _WHY_TIMESTAMP,
            )
        )
    policy = wanted[CLEANUP_POLICY]
    if _policies(config.get(CLEANUP_POLICY)) != {policy}:
        why = _WHY_COMPACT if spec.compacted else _WHY_DELETE
        found.append(Deviation(CLEANUP_POLICY, config.get(CLEANUP_POLICY), policy, policy, why))
    if spec.retention_relied_on and spec.retention_ms is not None and spec.retention_ms > 0:
        kept_ms = deleted_after_ms(config)
        if kept_ms is not None and kept_ms < spec.retention_ms:
            found.append(
                Deviation(
                    RETENTION_MS,
                    config.get(RETENTION_MS),
                    f"at least {spec.retention_ms}",
                    str(spec.retention_ms),
                    _WHY_READ_LATE,
                    lengthens=True,
                )
            )
    if spec.retention_ms == -1 and not spec.compacted:
        # Kept for ever: neither age nor size may delete a segment.
        for setting in (RETENTION_MS, RETENTION_BYTES):
            if config.get(setting) != "-1":
                found.append(Deviation(setting, config.get(setting), "-1", "-1", _WHY_KEPT))
    return found


def deleted_after_ms(config: Mapping[str, str | None]) -> int | None:
    """After how long (ms) the topic's retention may delete a record, from its effective
    configuration; None: never by age (``retention.ms`` -1, a compacted-only topic) or not
    said. ``retention.bytes`` may delete sooner: not judged here (-1 on every topic of
    the contract)."""
    if "delete" not in _policies(config.get(CLEANUP_POLICY) or "delete"):
        return None
    try:
        retention = int(config.get(RETENTION_MS) or "")
    except ValueError:
        return None
    return retention if retention >= 0 else None


def lengthening_apart(
    found: Mapping[str, Sequence[Deviation]],
) -> tuple[dict[str, list[Deviation]], dict[str, list[Deviation]]]:
    """``found`` split into the topics whose settings break the contract and those whose
    only fault is a retention shorter than the hub relies on: the secured start-up, which
    sets nothing itself, refuses the first and warns of the second."""
    refused: dict[str, list[Deviation]] = {}
    to_lengthen: dict[str, list[Deviation]] = {}
    for topic, deviations_of_topic in found.items():
        if all(d.lengthens for d in deviations_of_topic):
            to_lengthen[topic] = list(deviations_of_topic)
        else:
            refused[topic] = list(deviations_of_topic)
    return refused, to_lengthen


def _at_least(value: str | None, minimum: int) -> bool:
    try:
        return value is not None and int(value) >= minimum
    except ValueError:
        return False


def _policies(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def refusal_line(topic: str, found: Sequence[Deviation], bootstrap_servers: str) -> str:
    """One line naming each wrong setting of ``topic``, its value, the value wanted and why,
    and the command that sets them all."""
    settings = "; ".join(
        f"{d.setting} is {d.value if d.value is not None else '(not set)'}, wanted {d.wanted} "
        f"({d.why})"
        for d in found
    )
    # None of the fixes holds a comma (kafka-configs would need [...] around it).
    fixes = ",".join(f"{d.setting}={d.fix}" for d in found)
    return (
        f"{topic}: {settings}; fix: kafka-configs.sh --bootstrap-server {bootstrap_servers} "
        "--command-config <admin client properties> --alter --entity-type topics "
        f"--entity-name {topic} --add-config {fixes}"
    )


class TopicSettingsError(RuntimeError):
    """Existing topics the start-up cannot run on, as it found or left them."""


class TopicSettingsRefused(TopicSettingsError):
    """Topics whose settings break the contract: one line per topic."""

    def __init__(self, found: Mapping[str, Sequence[Deviation]], bootstrap_servers: str) -> None:
        self.found = dict(found)
        lines = [refusal_line(t, d, bootstrap_servers) for t, d in sorted(found.items())]
        super().__init__(
            "topics whose settings break the contract (on Strimzi, set them in the topic's "
            "KafkaTopic spec.config; docs/deployment.md, 'Topic settings'):\n" + "\n".join(lines)
        )


class TopicAlignmentRefused(TopicSettingsError):
    """The broker refused to set a topic's settings (a create-topic policy, a limit)."""


def aligned_overrides(overrides: Mapping[str, str], found: Sequence[Deviation]) -> dict[str, str]:
    """The whole set of topic-level overrides to send so that the alignable deviations
    are fixed and nothing else changes.

    A (non-incremental) AlterConfigs replaces every override of a topic, and the broker
    offers no other way to aiokafka 0.14 (it has no IncrementalAlterConfigs): the
    operator's own overrides (a lengthened retention, compression, min.insync.replicas)
    are sent back as they are, the two aligned keys with them (review stop 37, K2)."""
    aligned = dict(overrides)
    aligned.update({d.setting: d.fix for d in found if d.alignable})
    return aligned
