"""Prometheus metrics of an adapter process (served on ``GUN_HUB_ADAPTER__METRICS_PORT``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("gun_adapter_requests_total", "Requests answered, by authority.", ["authority"])
DEAD_LETTERS = Counter(
    "gun_adapter_dead_letters_total",
    "Records dead-lettered by an adapter, by authority and kind.",
    ["authority", "kind"],
)
ENVELOPE_REJECTIONS = Counter(
    "gun_adapter_envelope_rejections_total",
    "Sealed requests that failed verification and were not acted on.",
    ["authority", "kind"],
)
PENDING = Gauge(
    "gun_adapter_pending_operations",
    "Write-offs and deletions waiting for a partner that was down.",
    ["authority"],
)
PENDING_FULL = Gauge(
    "gun_adapter_pending_queue_full",
    "1 while the pending queue is at adapter.pending_limit and the adapter fetches no "
    "request (backpressure: the hub's deadlines give degraded-mode decisions meanwhile).",
    ["authority"],
)
PENDING_FULL_TOTAL = Counter(
    "gun_adapter_pending_limit_reached_total",
    "Times the pending queue reached adapter.pending_limit.",
    ["authority"],
)
PARTNER_REJECTIONS = Counter(
    "gun_adapter_partner_rejections_total",
    "Write-offs, deletions and give-backs the partner rejected (an HTTP 4xx: never applied, "
    "never replayed; FOLLOW_UP_FAILED at the hub), by authority and operation.",
    ["authority", "operation"],
)
PARTNER_SECONDS = Histogram(
    "gun_adapter_partner_call_seconds",
    "Time to get every answer of one request from the partner system.",
    ["authority"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OLDEST_PENDING_AGE = Gauge(
    "gun_adapter_oldest_pending_age_seconds",
    "How long ago the request of the oldest operation pending on a down partner entered "
    "the log (its record timestamp; 0 when none is pending). The request topics keep 7 "
    "days: past that, retention deletes it and only the replica that queued it holds it.",
    ["authority"],
)
LONGEST_FAILING = Gauge(
    "gun_adapter_longest_failing_operation_seconds",
    "How long the queued operation failing longest has met an UNAVAILABLE partner at every "
    "attempt, since its first failed attempt in this process (0 when none fails). Rising "
    "while the partner's circuit is closed: the partner is up and fails that one call.",
    ["authority"],
)
EVENT_LOOP_HELD = Counter(
    "gun_adapter_event_loop_held_seconds_total",
    "Seconds the adapter's own event loop was held, from its first partner call (the sum of "
    "50-ms wake-ups late by more than 20 ms: a long garbage collection, a loaded machine; "
    "a loop slowed by less each time is not counted). Partner calls cannot be sent or read "
    "meanwhile; rising with the partner's timeouts: the adapter's host, not the partner.",
    ["authority"],
)
TIMEOUTS_EXCUSED = Counter(
    "gun_adapter_partner_timeouts_excused_total",
    "Partner calls that timed out while the adapter's own event loop was held for a quarter "
    "of adapter.partner_timeout_s or more: retried, and not counted against the partner "
    "(its circuit does not open for them).",
    ["authority"],
)
REQUESTS_AGED_OUT = Counter(
    "gun_adapter_requests_aged_out_total",
    "Requests the request topic's retention deleted before any replica of the adapter "
    "read them (dead-lettered as REQUEST_AGED_OUT_OF_THE_LOG: never sent to the partner).",
    ["authority"],
)
HEARTBEATS_UNSENT = Counter(
    "gun_adapter_heartbeats_unsent_total",
    "Heartbeats the broker refused or never acknowledged on gun.ops.health (logged at most "
    "once a minute): the hub sees the adapter silent (gun_contract/kafka/watched_sends.py).",
    ["authority"],
)
