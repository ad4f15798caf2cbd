"""Prometheus metrics of the hub process: counts in ``_total``, durations in seconds.

Labels are low-cardinality by rule: an outcome, an error kind, an authority; never a
reference or a document number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from gun_contract.counters import export_at_zero
from gun_contract.envelope import EnvelopeRejectionKind
from gun_contract.model.verdicts import Outcome

DECLARATIONS_RECEIVED = Counter(
    "gun_hub_declarations_received_total", "Declarations read from the declarations topic."
)
DECLARATIONS_REJECTED = Counter(
    "gun_hub_declarations_rejected_total",
    "Declarations refused before routing (malformed, hostile, invalid), by reason kind.",
    ["kind"],
)
STALE_VERSIONS = Counter(
    "gun_hub_stale_versions_total",
    "Declaration versions ignored because an equal or higher version was already known.",
)
DEAD_LETTERS = Counter(
    "gun_hub_dead_letters_total", "Records sent to the dead-letter topic.", ["kind"]
)
ENVELOPE_REJECTIONS = Counter(
    "gun_hub_envelope_rejections_total",
    "Sealed messages that failed verification and were not acted on.",
    ["kind"],
)
HEARTBEATS_REFUSED = Counter(
    "gun_hub_heartbeats_refused_total",
    "Heartbeats on the operations health topic not believed (unsigned, forged, in another "
    "component's name, replayed), by reason (ops/heartbeats.py).",
    ["reason"],
)
DECISIONS = Counter("gun_hub_decisions_total", "Decisions emitted, by outcome.", ["outcome"])
LATE_ANSWERS = Counter(
    "gun_hub_late_answers_total",
    "Authority answers that arrived for a decided or superseded version.",
    ["authority"],
)
CONTROLS_OVERDUE = Counter(
    "gun_hub_controls_overdue_total",
    "Reservations kept for a control that had no result within the configured period.",
)
DEADLINES = Counter(
    "gun_hub_deadlines_passed_total",
    "Cases whose deadline passed with an authority silent (several joined by commas): "
    "decided in degraded mode for an enforced one; a shadow or advisory one's silence is "
    "counted too and holds nothing (gun_hub_degraded_decisions_total counts degraded "
    "decisions).",
    ["authority"],
)
DEGRADED_DECISIONS = Counter(
    "gun_hub_degraded_decisions_total",
    "Decisions made in degraded mode, once for each authority whose answer they lack "
    "(UNAVAILABLE): its adapter answered UNAVAILABLE (its circuit to a partner that is down "
    "is open, the partner failed every attempt) or its deadline passed (review stop 40-PR); "
    "once per decision, authorities in advice mode left out.",
    ["authority"],
)
OVERRIDES = Counter(
    "gun_hub_overrides_total",
    "Decisions on which the declarant's override (mention 73000) covered or was refused "
    "something, by outcome (CONTROL_DOCUMENTARY: applied; REFUSE: not accepted).",
    ["outcome"],
)
POST_RELEASE_ALERTS = Counter(
    "gun_hub_post_release_alerts_total",
    "Negative answers to a post-release check (war material), for post-clearance control.",
    ["authority"],
)
DECISIONS_NOT_PUBLISHED = Counter(
    "gun_hub_decisions_not_published_total",
    "Decisions of the outbox the publisher did not publish, by reason: duplicate (the "
    "same reference and version was published: announced again after a crash, or "
    "decided by the reference's case on another partition too), superseded (a higher "
    "version of the reference was published; also a status event IGNORED_STALE_VERSION) "
    "or declarant_changed (decided for another declarant than the reference's decisions "
    "published; also a security dead letter DECLARANT_CHANGED).",
    ["reason"],
)
DECISIONS_ANNOUNCED_AGAIN = Counter(
    "gun_hub_decisions_announced_again_total",
    "Decisions emitted again because a worker died before the broker confirmed them.",
)
RECORDS_READ_AGAIN = Counter(
    "gun_hub_records_read_again_total",
    "Records faust read but never handed to an agent, read again by the offset watchdog "
    "(runtime/watchdog.py). Any rise is worth a look at the hub's log around it.",
    ["topic"],
)
INPUTS_AGED_OUT = Counter(
    "gun_hub_inputs_aged_out_total",
    "Records of the hub's inputs (declarations, partners' answers) the topic's retention "
    "deleted before any worker read them (dead-lettered as INPUT_AGED_OUT_OF_THE_LOG: "
    "never decided, never correlated; runtime/aged_out.py).",
    ["topic"],
)
RECORDS_LOST_TO_RETENTION = Counter(
    "gun_hub_consumergroup_lost_to_retention_total",
    "Records the topic's retention deleted before the consumer group read them, counted "
    "by the lag monitor as it finds them (ops/lag_monitor.py): a commit first found below "
    "a partition's log start counts log start minus commit, the log start moving on while "
    "the commit stays what it moved by; once (a monitor started again reads back what the "
    "snapshots on gun.ops.lag show counted). Each measuring worker counts every loss: "
    "take the max over instances, never the sum. Every group of the topology: the "
    "clearance system's reader of decisions, the publisher's outbox, the adapters, the "
    "hub. At 0 from the monitor's start for each group and the topics it reads; another "
    "topic a group committed on at its first loss.",
    ["consumergroup", "topic"],
)
GC_PAUSE_SECONDS = Histogram(
    "gun_hub_gc_pause_seconds",
    "Time the cyclic garbage collector stopped the process, per generation collected "
    "(runtime/gc_pauses.py).",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
DECISION_SECONDS = Histogram(
    "gun_hub_decision_latency_seconds",
    "Time from receiving a declaration to emitting its decision.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

DECLARATIONS_HELD = Gauge(
    "gun_hub_declarations_held",
    "Declarations opened and held while their message ids are claimed "
    "(pipeline/admission.py): a few in steady flow; a plateau at hub.admission_limit means "
    "the claims take longer than the intake.",
)
DECLARATION_FETCH_THROTTLED = Counter(
    "gun_hub_declaration_fetch_throttled_total",
    "Times the worker stopped fetching declarations because it held hub.admission_limit of "
    "them (it fetches again once half are admitted).",
)
ROLLOUT_MODE = Gauge(
    "gun_hub_rollout_mode",
    "1 for the rollout mode in force of each authority, everywhere (office '*') or at one "
    "office; 0 for the other modes (rollout.py).",
    ["authority", "office", "mode"],
)
ROLLOUT_SETTINGS_REFUSED = Counter(
    "gun_hub_rollout_settings_refused_total",
    "Records of the rollout topic that did not open as a hub-sealed setting of their "
    "key, or were older than their scope's setting in force: ignored (ADR 0023).",
)

VIEW_RECORDS_PARKED = Counter(
    "gun_hub_view_records_parked_total",
    "Status events and facts of a kind the operations view does not know (a newer hub's, "
    "during a rolling upgrade): kept, applied once a view that knows the kind starts "
    "(ops/view.py).",
    ["topic"],
)

CASES_RETIRED = Counter(
    "gun_hub_cases_retired_total",
    "Finalised cases deleted from the cases table after hub.case_retention_s, each replaced "
    "by a small marker (pipeline/retention.py).",
)
CASE_MARKERS_FORGOTTEN = Counter(
    "gun_hub_case_markers_forgotten_total",
    "Markers of retired cases deleted after hub.decided_marker_s (pipeline/retention.py).",
)
CASES_RETAINED = Gauge(
    "gun_hub_case_retention_entries",
    "Rows of the retention index on this worker's disk (retained cases and markers in due "
    "order): an entry has one, and for a while a second when it is scheduled again or its "
    "tick was sent (the old row leaves when it comes due). Flat under a steady load.",
)
SECURITY_REPORTS_LEFT_OUT = Counter(
    "gun_hub_security_reports_left_out_total",
    "Security dead letters not chained one by one into the audit trail: beyond "
    "REPORTS_CHAINED_A_MINUTE a minute on a partition (a flood), each flood chained as its "
    "start and its count (pipeline/audit_keeper.py).",
)
RETENTION_ENTRIES_UNREADABLE = Gauge(
    "gun_hub_case_retention_entries_unreadable",
    "Entries of the case-retention table that did not read at its last whole read (a "
    "start, a rebalance): left alone, their cases never retired; the first few are named in "
    "the worker's log (pipeline/retention.py).",
)
ROCKSDB_MEMORY = Gauge(
    "gun_hub_rocksdb_memory_bytes",
    "Memory of the worker's RocksDB tables: their shared read cache with the write "
    "buffers charged to it, capped near hub.rocksdb_memory_mib (runtime/table_store.py).",
)
TIMER_FAILURES = Counter(
    "gun_hub_timer_failures_total",
    "Runs of a periodic task (the deadline and retention sweeps, the admission recheck) that "
    "failed and were logged; the next run tries again.",
    ["timer"],
)
LAG_SNAPSHOTS_UNSENT = Counter(
    "gun_hub_lag_snapshots_unsent_total",
    "Lag snapshots the broker refused or never acknowledged on gun.ops.lag (logged at most "
    "once a minute): the view process and the other workers miss them "
    "(gun_contract/kafka/watched_sends.py).",
)
CLOCK_OFFSET = Gauge(
    "gun_hub_clock_offset_seconds",
    "This worker's wall clock minus the broker's, estimated as the least (read time - "
    "log-append time) of the records read at the end of their partitions over the last 5 "
    "minutes: a fetch's delay above the true offset; negative, the worker runs behind "
    "(runtime/clock_check.py). NaN until estimated.",
)
CLOCK_OFFSET.set(math.nan)


def export_at_start(authorities: Iterable[str]) -> None:
    """The hub's counters an alert reads, at 0 for every label value a worker knows at
    start-up (gun_contract/counters.py): each outcome, each routed authority (a case with
    several silent authorities counts under their names joined, a value the alert covers
    by its first appearance), each envelope rejection kind (also a dead-letter kind). The
    timers, the watched topics and the aged-out inputs are made where they are set up."""
    rejections = [kind.value for kind in EnvelopeRejectionKind]
    export_at_zero(DECISIONS, outcome=[outcome.value for outcome in Outcome])
    export_at_zero(DEADLINES, authority=authorities)
    export_at_zero(DEGRADED_DECISIONS, authority=authorities)
    export_at_zero(ENVELOPE_REJECTIONS, kind=rejections)
    export_at_zero(DEAD_LETTERS, kind=rejections)
