"""What the demo prints: each decision, then the decisions by outcome and authority.

The printout is what a trader could be shown, so a confidential authority's document
references are masked in it (:func:`gun_hub.domain.decision_text.masked`); every other line is
the decision as the clearance system received it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from itertools import pairwise

from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.decision_text import decision_lines, masked
from gun_tools.demo.run import DECISIONS_WITHIN_S, DemoResult
from gun_tools.demo.samples import SampleDeclaration

NO_AUTHORITY = "none"  # decided by the hub alone: exemptions, unrouted codes, rejections
TABLE_TITLE = "decisions by outcome and authority"


def authorities_of(decision: Decision) -> list[str]:
    """The authorities whose documents the decision reports, or :data:`NO_AUTHORITY`."""
    named = sorted({d.authority for d in decision.documents if d.authority})
    return named or [NO_AUTHORITY]


def decisions_text(
    decided: Sequence[tuple[SampleDeclaration, Decision]], confidential: Collection[str]
) -> list[str]:
    """Every decision, in the order given, each under the sample it answers."""
    lines: list[str] = []
    for sample, decision in decided:
        lines += decision_lines(masked(decision, confidential), sample.name)
    return lines


def outcome_table(decisions: Sequence[Decision], authorities: Sequence[str]) -> list[str]:
    """Rows: outcomes reached; columns: ``authorities`` (routing order), then decisions
    no authority took part in, then the row's total. A decision that quotes documents of
    two authorities counts under each, and once in the total."""
    columns = [*authorities, NO_AUTHORITY]
    counts = Counter(
        (decision.outcome, authority)
        for decision in decisions
        for authority in authorities_of(decision)
    )
    totals = Counter(decision.outcome for decision in decisions)
    width = max(len(column) for column in columns)
    header = f"{'outcome':<20}" + "".join(f"{c:>{width + 2}}" for c in [*columns, "total"])
    lines = [TABLE_TITLE, header]
    for outcome in Outcome:
        if totals[outcome]:
            lines.append(
                f"{outcome.value:<20}"
                + "".join(f"{counts[outcome, c]:>{width + 2}}" for c in columns)
                + f"{totals[outcome]:>{width + 2}}"
            )
    return lines


def report(result: DemoResult) -> list[str]:
    """The decisions, the table, and how many of them came in how long."""
    routing = result.routing
    confidential = [a for a in routing.authorities if routing.is_confidential(a)]
    decided = [(sample, received.decision) for sample, received in result.decided]
    return [
        "",
        *decisions_text(decided, confidential),
        "",
        *outcome_table([decision for _, decision in decided], list(routing.authorities)),
        "",
        f"{len(decided)} of {len(result.samples.declarations)} decisions in "
        f"{result.elapsed_s:.1f}s (component logs in {result.log_dir})",
    ]


def problems(result: DemoResult) -> list[str]:
    """What makes the run a failure: samples without a decision, decisions received
    twice; nothing when it went right."""
    lines = []
    missing = result.missing
    # A later version leaves only once the one before it is decided: one whose
    # predecessor has no decision was never sent (operator review of stop 48).
    undecided = {sample.key for sample in missing}
    waiting = {
        later.key
        for chain in result.samples.chains
        for earlier, later in pairwise(chain)
        if earlier.key in undecided
    }
    unsent = [s for s in missing if s.key in waiting]
    sent = [s for s in missing if s.key not in waiting]
    if sent:
        lines.append(f"no decision within {DECISIONS_WITHIN_S:.0f}s for:")
        lines += [f"    {sample.name} ({sample.reference} v{sample.version})" for sample in sent]
    if unsent:
        lines.append("not sent, each waiting for the decision on the version before it:")
        lines += [f"    {sample.name} ({sample.reference} v{sample.version})" for sample in unsent]
    for received in result.duplicates:
        decision = received.decision
        lines.append(
            f"a second decision for {decision.reference} v{decision.version} "
            f"({result.samples.named((decision.reference, decision.version))}): the contract "
            "allows one"
        )
    return lines
