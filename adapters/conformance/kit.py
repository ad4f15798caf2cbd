"""Running the scenarios and reporting a pass/fail table."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from adapters.conformance.harness import Harness, ScenarioFailed
from adapters.conformance.scenarios import Scenario, scenarios


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    passed: bool
    seconds: float
    detail: str = ""


def selected_scenarios(only: str | None = None) -> list[Scenario]:
    """Every scenario, or those whose name contains ``only``, in the order they run."""
    return [s for s in scenarios() if only is None or only in s.name]


async def run_kit(
    harness: Harness,
    *,
    only: str | None = None,
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run every scenario (or those whose name contains ``only``), in order."""
    outcomes = []
    selected = selected_scenarios(only)
    await harness.start()
    try:
        for scenario in selected:
            began = time.monotonic()
            try:
                await scenario.run(harness)
            except ScenarioFailed as failure:
                outcome = Outcome(scenario.name, False, time.monotonic() - began, str(failure))
            else:
                outcome = Outcome(scenario.name, True, time.monotonic() - began)
            outcomes.append(outcome)
            if progress is not None:
                progress(outcome)
    finally:
        await harness.stop()
    return outcomes


# What certification needs and no scenario can show, printed under every table: a key
# lifetime takes days to observe (docs/partner-simulator.md).
UNTESTED = (
    "not tested, ask the partner: how long it remembers an idempotency key with its answer "
    "(at least its longest outage plus 7 days, and 30 days; shorter, a write-off sent again "
    "after a long outage is applied twice: docs/partner-simulator.md)",
)


def table(authority: str, outcomes: list[Outcome]) -> str:
    width = max((len(o.name) for o in outcomes), default=10)
    lines = [f"conformance of the {authority} adapter", f"{'scenario':<{width}}  result  time"]
    for o in outcomes:
        lines.append(f"{o.name:<{width}}  {'PASS' if o.passed else 'FAIL':<6}  {o.seconds:5.1f}s")
        if o.detail:
            lines.append(f"{'':<{width}}    {o.detail}")
    passed = sum(o.passed for o in outcomes)
    lines.append(f"{passed} passed, {len(outcomes) - passed} failed")
    lines.extend(UNTESTED)
    return "\n".join(lines)
