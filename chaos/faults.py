"""The fault schedule: which fault, when (a fraction of the submission window), for how long.

The order is fixed per profile; each time is jittered by the run's seed, so a seed
reproduces a schedule. Every kind the issue names is there at least once in both
profiles: SIGKILL of the hub (several times), SIGKILL of each adapter, a partner outage
longer than the request deadline, partner timeouts, garbage answers, calls still in
progress at the partner when the adapter gave up on them, a broker restart,
poisoned records on every party-writable topic; the held-back clearance reader runs at
the end (``clearance_held_back``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

HUB_KILL = "hub_kill"
ADAPTER_KILL = "adapter_kill"
PARTNER_OUTAGE = "partner_outage"
PARTNER_TIMEOUTS = "partner_timeouts"
PARTNER_GARBAGE = "partner_garbage"
# Calls held by the partner past the adapter's timeout and applied later, a repeat of the
# key answered 409 "being processed" meanwhile (the simulator's ``in_progress_next``): a
# reservation applied after its refused declaration's deletion would stay held (review
# stop 39, P1; the checker's "no reservation left held").
PARTNER_IN_PROGRESS = "partner_in_progress"
BROKER_RESTART = "broker_restart"
POISON = "poison"
CLEARANCE_HELD_BACK = "clearance_held_back"


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds after the first declaration is sent
    kind: str
    target: str = ""
    duration_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}" if self.kind == ADAPTER_KILL else self.kind


# (fraction of the window, kind, target, duration: "outage" = deadline + margin, or seconds)
SHORT = [
    (0.05, POISON, "", 0.0),
    (0.10, PARTNER_TIMEOUTS, "dgal", 8.0),
    (0.18, HUB_KILL, "", 0.0),
    (0.28, ADAPTER_KILL, "dgal", 0.0),
    (0.33, PARTNER_GARBAGE, "cites", 5.0),
    (0.40, PARTNER_OUTAGE, "dga", -1.0),
    (0.46, ADAPTER_KILL, "cites", 0.0),
    (0.56, BROKER_RESTART, "", 0.0),
    (0.62, PARTNER_IN_PROGRESS, "cites", 8.0),
    (0.72, HUB_KILL, "", 0.0),
    (0.80, ADAPTER_KILL, "dga", 0.0),
    (0.86, POISON, "", 0.0),
]
FULL = [
    *SHORT,
    (0.13, PARTNER_GARBAGE, "dgal", 5.0),
    (0.24, PARTNER_OUTAGE, "cites", -1.0),
    (0.50, HUB_KILL, "", 0.0),
    (0.64, ADAPTER_KILL, "dgal", 0.0),
    (0.66, PARTNER_TIMEOUTS, "cites", 8.0),
    (0.92, HUB_KILL, "", 0.0),
    (0.95, POISON, "", 0.0),
]


def schedule(profile: str, window_s: float, outage_s: float, seed: int) -> list[Fault]:
    rng = random.Random(seed * 7919 + 17)
    plan = FULL if profile == "full" else SHORT
    faults = []
    for fraction, kind, target, duration in plan:
        jitter = rng.uniform(-0.02, 0.02)
        faults.append(
            Fault(
                max(1.0, (fraction + jitter) * window_s),
                kind,
                target,
                outage_s if duration < 0 else duration,
            )
        )
    return sorted(faults, key=lambda f: f.at)


def required(faults: list[Fault]) -> list[str]:
    """The fault names the checker must find injected."""
    return sorted({f.name for f in faults} | {CLEARANCE_HELD_BACK})
