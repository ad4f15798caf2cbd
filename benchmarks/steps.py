"""Where a declaration's CPU time goes in the hub's own code, without Kafka.

Runs declarations through the intake and correlation steps in one process (the unit
tests' harness: one DGAL document each, answered VALID) under cProfile, and sums the
time spent per library (XML, JOSE and cryptography, pydantic, JSON, the hub itself). The
figure per declaration is an upper bound on what the hub could do on one core before any
Kafka or faust cost (issue 12: measure what each step costs before cutting it).

Run: ./tasks bench-steps [N]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.common import save
from gun_contract.dead_letter import SourcePosition
from gun_contract.envelope import ContentType
from gun_contract.model.exchange import AuthorityRequest
from gun_contract.model.verdicts import Verdict
from gun_contract.security.entitlements import CLEARANCE_PARTY, HUB_PARTY
from gun_contract.security.jose_envelope import JoseEnvelope
from gun_contract.security.keystore import KeystoreFolder
from gun_hub.domain.routing import load_routing_table
from tests.builders import answer_to, declaration_xml, document, goods_item
from tests.conftest import envelope_of
from tests.unit.test_pipeline import Hub

REPO = Path(__file__).resolve().parent.parent
GROUPS = {
    "xml (lxml, xmlschema)": ("lxml", "xmlschema", "elementpath"),
    # The envelope's own JOSE code (ADR 0016) and the libraries under it; the C calls of
    # cryptography (sign, verify, exchange) still count as "other".
    "jose and crypto (jose_*, joserfc, cryptography)": (
        "jose_envelope",
        "jose_compact",
        "joserfc",
        "cryptography",
    ),
    "pydantic": ("pydantic",),
    "json": ("json",),
    "hub (gun_hub)": ("gun_hub",),
}


# CPU time of this process: what the hub's steps cost, whatever else the shared machine
# runs meanwhile (the wall clock counted the waits for a core too).
_cpu_clock = time.process_time


def _group(filename: str) -> str:
    for group, markers in GROUPS.items():
        if any(f"/{marker}/" in filename or f"{marker}." in filename for marker in markers):
            return group
    return "other"


def reference_of(n: int) -> str:
    return f"26FRSTEP{n:010d}"


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        keys = Path(folder)
        KeystoreFolder(keys).init(["hub", "clearance", "cites", "dga", "dgal"])
        hub = Hub(load_routing_table(REPO / "config" / "routing.toml"), keys)
        topics = hub.topics
        # The other parties' work (the clearance system sealing, the adapter answering,
        # the publisher) is done outside the profile, with envelopes made once.
        clearance = envelope_of(CLEARANCE_PARTY, topics, keys)
        dgal = envelope_of("dgal", topics, keys)
        publisher = envelope_of(HUB_PARTY, topics, keys)
        sealed = [
            clearance.seal(
                declaration_xml(
                    reference=reference_of(n),
                    items=(goods_item(1, (document("N853", f"CHEDP.FR.2026.{n}", 1, "10"),)),),
                ),
                recipient=HUB_PARTY,
                topic=topics.declarations,
                content_type=ContentType.XML,
            )
            for n in range(count)
        ]
        parties = (dgal, publisher)
        # Unprofiled first: the rate; then profiled, on a fresh hub: where it goes.
        elapsed = _run(hub, sealed, parties, None)
        hub = Hub(load_routing_table(REPO / "config" / "routing.toml"), keys)
        profile = cProfile.Profile()
        _run(hub, sealed, parties, profile)
    stats = pstats.Stats(profile)
    by_group: defaultdict[str, float] = defaultdict(float)
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_group[_group(filename)] += tottime
    total = sum(by_group.values())
    per_declaration_ms = elapsed / count * 1000
    print(
        f"{count} sealed declarations, intake + one answer + publishing each: "
        f"{per_declaration_ms:.2f} ms of hub CPU each"
    )
    print(f"(about {1000 / per_declaration_ms:.0f} declarations/s on one core, before Kafka)")
    print("shares of the profiled run (C functions of any library count as 'other'):")
    for group, seconds in sorted(by_group.items(), key=lambda item: -item[1]):
        print(f"  {group:42s} {seconds / total:6.1%}  {seconds / count * 1000:6.2f} ms")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(15)
    save(
        "steps",
        {
            "declarations": count,
            "ms_hub_cpu_per_declaration": round(per_declaration_ms, 3),
            "share": {group: round(seconds / total, 4) for group, seconds in by_group.items()},
        },
    )


def _run(
    hub: Hub,
    sealed: list[bytes],
    parties: tuple[JoseEnvelope, JoseEnvelope],
    profile: cProfile.Profile | None,
) -> float:
    """Seconds of hub CPU for ``sealed`` (intake, one answer, publishing each)."""
    dgal, publisher = parties
    topics = hub.topics
    hub_seconds = 0.0
    for n, declaration in enumerate(sealed):
        started = _cpu_clock()
        profile.enable() if profile else None
        # Keyed by its reference, as the contract asks (another key is refused).
        source = SourcePosition(topics.declarations, 0, n, reference_of(n).encode())
        requests = hub.intake.handle(declaration, source)
        profile.disable() if profile else None
        hub_seconds += _cpu_clock() - started
        [record] = requests.to(topics.requests("dgal"))
        request = AuthorityRequest.model_validate_json(
            dgal.open(record.value, topic=topics.requests("dgal")).payload
        )
        answer = dgal.seal(
            answer_to(request, Verdict.VALID).model_dump_json().encode(),
            recipient=HUB_PARTY,
            topic=topics.responses("dgal"),
            content_type=ContentType.JSON,
        )
        started = _cpu_clock()
        profile.enable() if profile else None
        # Keyed by its reference too: an answer under another key (or none) is refused.
        decided = hub.correlation.handle(
            answer, SourcePosition(topics.responses("dgal"), 0, n, reference_of(n).encode())
        )
        outgoing_decisions = decided.to(topics.decision_outbox)
        if not outgoing_decisions:
            # Measuring a refusal instead of a decision would go unnoticed (stop 38's key
            # rule refused every answer here): stop, saying what came out instead.
            raise RuntimeError(
                f"declaration {reference_of(n)} was not decided by its answer: "
                f"{sorted({record.topic for record in decided.records})}"
            )
        # The publisher's share: open the decision from the outbox, seal it on.
        for outgoing in outgoing_decisions:
            publisher.seal(
                hub.outbox_document(outgoing),
                recipient=CLEARANCE_PARTY,
                topic=topics.decisions,
                content_type=ContentType.XML,
            )
        profile.disable() if profile else None
        hub_seconds += _cpu_clock() - started
    return hub_seconds


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
