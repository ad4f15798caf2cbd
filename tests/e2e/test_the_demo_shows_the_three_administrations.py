"""``gun-hub demo``, the main job, run as a user runs it, on the session's broker.

Issue 13, item 1: the demo starts the DGAL, CITES and DGA partner systems and adapters;
its samples reach each authority, one declaration quotes documents of two, a war-material
export is decided, an amendment and a cancellation are decided after the versions they
follow; the printout groups the decisions by outcome and authority. The export licence is
confidential: it never appears in clear in anything a trader could be shown (the printout,
the status events) nor in any log, nor anywhere on the broker.

Outcomes are the partners' answers plus the shipped risk rules; random sampling may send
a release to a documentary check (2 % of DGAL, 5 % of CITES releases), which the
printout then says with a SAMPLING reason.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from gun_contract.kafka.admin import partitions_of
from gun_contract.model.verdicts import Outcome
from gun_contract.topics import topic_registry
from gun_hub.domain.risk import CONTROLS
from gun_hub.domain.routing import load_routing_table
from gun_hub.domain.status_events import StatusEvent, StatusKind
from tests.conftest import REPO, KafkaEnv

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

LICENCE = "EXP-2026-0042"
MASKED_LICENCE = "EXP-****-0042"
NONE = "none"  # the table's column for decisions no authority took part in

# Sample -> (outcome, authorities whose documents its decision reports).
EXPECTED = {
    "01-release-salmon.xml": (Outcome.RELEASE, {"dgal"}),
    "02-refuse-unknown-ched.xml": (Outcome.REFUSE, {"dgal"}),
    "03-refuse-quantity.xml": (Outcome.REFUSE, {"dgal"}),
    "04-refuse-cancelled-ched.xml": (Outcome.REFUSE, {"dgal"}),
    "05-advice-prelodged.xml": (Outcome.ADVICE, {"dgal"}),
    "06-release-exempt.xml": (Outcome.RELEASE, set()),
    "07-control-unrouted.xml": (Outcome.CONTROL_DOCUMENTARY, set()),
    "08-refuse-negative-quantity.xml": (Outcome.REFUSE, set()),
    "09-release-cites-handbags.xml": (Outcome.RELEASE, {"cites"}),
    "10-release-caviar-dgal-and-cites.xml": (Outcome.RELEASE, {"dgal", "cites"}),
    "11-control-war-material-export.xml": (Outcome.CONTROL_DOCUMENTARY, {"dga"}),
    "12-refuse-war-material-destination.xml": (Outcome.REFUSE, {"dga"}),
    "13a-refuse-fillets-beyond-ched.xml": (Outcome.REFUSE, {"dgal"}),
    "13b-release-fillets-amended.xml": (Outcome.RELEASE, {"dgal"}),
    "14a-control-live-parrots.xml": (Outcome.CONTROL_PHYSICAL, {"cites"}),
    "14b-cancelled-live-parrots.xml": (Outcome.CANCELLED, {"cites"}),
}

_HEADING = re.compile(r"^(?P<ref>\S+) v(?P<version>\d+)  (?P<sample>\S+\.xml): (?P<outcome>\w+)$")
_REASON = re.compile(r"^    reason (?P<code>\S+): ")
_DOCUMENT = re.compile(
    r"^    item \d+ (?P<code>\w+) (?P<ref>\S+): (?P<verdict>\w+)(?: \((?P<authority>\w+)\))?"
)


@dataclass
class Printed:
    """One decision as the demo printed it."""

    reference: str
    version: int
    outcome: Outcome
    reasons: list[str] = field(default_factory=list)
    # (code, reference, verdict, authority or NONE)
    documents: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def authorities(self) -> set[str]:
        return {authority for *_, authority in self.documents if authority != NONE}


def printed_decisions(stdout: str) -> dict[str, Printed]:
    """Sample name -> its decision, read from the printout."""
    found: dict[str, Printed] = {}
    current: Printed | None = None
    for line in stdout.splitlines():
        if heading := _HEADING.match(line):
            current = found[heading["sample"]] = Printed(
                heading["ref"], int(heading["version"]), Outcome(heading["outcome"])
            )
        elif current is not None and (reason := _REASON.match(line)):
            current.reasons.append(reason["code"])
        elif current is not None and (document := _DOCUMENT.match(line)):
            current.documents.append(
                (
                    document["code"],
                    document["ref"],
                    document["verdict"],
                    document["authority"] or NONE,
                )
            )
    return found


def printed_table(stdout: str) -> dict[str, dict[str, int]]:
    """The table under its title: outcome -> column -> count."""
    lines = stdout.splitlines()
    start = lines.index("decisions by outcome and authority")
    columns = lines[start + 1].split()[1:]
    table = {}
    for row in lines[start + 2 :]:
        if not row.strip():
            break
        outcome, *counts = row.split()
        table[outcome] = dict(zip(columns, map(int, counts), strict=True))
    return table


def release_or_sampled(decision: Printed, expected: Outcome) -> Outcome:
    """The outcome expected of ``decision``: a release that random sampling picked is a
    documentary check, and says so. A draw is made for every declaration whose documents
    all pass, so it may also be named beside a risk rule's control."""
    sampled = any(code.startswith("SAMPLING.") for code in decision.reasons)
    if sampled:
        assert expected in (Outcome.RELEASE, *CONTROLS), "sampling never touches the rest"
    return Outcome.CONTROL_DOCUMENTARY if expected is Outcome.RELEASE and sampled else expected


async def every_record(bootstrap: str, prefix: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of every topic named with ``prefix`` (the hub's own included)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        partitions = await partitions_of(admin, names)
    finally:
        await admin.close()
    assigned = [TopicPartition(t, p) for t, numbers in partitions.items() for p in numbers]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord[bytes, bytes]] = []
    try:
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        async with asyncio.timeout(60):
            for tp in assigned:
                while await consumer.position(tp) < ends[tp]:
                    for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                        found += records
    finally:
        await consumer.stop()
    return found


@dataclass
class DemoRun:
    exit_code: int
    stdout: str
    stderr: str
    decisions: dict[str, Printed]
    log_dir: Path


@pytest.fixture(scope="module")
def deployment_env(
    kafka_bootstrap: str, keys_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> KafkaEnv:
    """The settings of a deployment of the user's (one prefix, its app id) on the Kafka the
    demo is pointed at; shared by this module's tests."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    routing = load_routing_table(REPO / "config" / "routing.toml")
    return KafkaEnv(
        kafka_bootstrap,
        prefix,
        topic_registry(prefix, routing.authorities),
        routing,
        keys_dir,
        tmp_path_factory.mktemp("state"),
    )


@pytest.fixture(scope="module")
def demo_env(deployment_env: KafkaEnv, demo_run: DemoRun) -> KafkaEnv:
    """The names the demo took beside that deployment's, as it said them: its run's own,
    ``<prefix>-demo-<run>``."""
    said = re.search(r"topics (\S+)\.\*", demo_run.stdout)
    assert said, demo_run.stdout
    prefix = said[1]
    assert prefix.startswith(f"{deployment_env.prefix}-demo-"), prefix
    routing = deployment_env.routing
    return KafkaEnv(
        deployment_env.bootstrap,
        prefix,
        topic_registry(prefix, routing.authorities),
        routing,
        deployment_env.keys_dir,
        deployment_env.state_dir,
    )


@pytest.fixture(scope="module")
def demo_run(deployment_env: KafkaEnv, tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """The demo, once for the module, as a user starts it with their deployment's settings
    loaded (the topics are its to create)."""
    work = tmp_path_factory.mktemp("demo")
    env = {**os.environ, **deployment_env.env(), "TMPDIR": str(work)}
    finished = subprocess.run(
        [sys.executable, "-m", "gun_hub", "demo", "--bootstrap", deployment_env.bootstrap],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    logs = re.search(r"\(component logs in (\S+)\)", finished.stdout)
    return DemoRun(
        finished.returncode,
        finished.stdout,
        finished.stderr,
        printed_decisions(finished.stdout),
        Path(logs[1]) if logs else work,
    )


def test_the_demo_decides_every_sample_for_the_three_administrations(
    demo_run: DemoRun, samples: Path
) -> None:
    assert demo_run.exit_code == 0, demo_run.stderr
    files = sorted(p.name for p in (samples / "declarations").glob("*.xml"))
    assert files == sorted(EXPECTED), "every sample has an expected outcome here"
    decided = demo_run.decisions
    assert sorted(decided) == files
    for name, (outcome, authorities) in EXPECTED.items():
        assert decided[name].outcome is release_or_sampled(decided[name], outcome), name
        assert decided[name].authorities == authorities, name
    assert f"{len(files)} of {len(files)} decisions in" in demo_run.stdout

    # One declaration, two administrations: its decision names the document of each.
    caviar = decided["10-release-caviar-dgal-and-cites.xml"]
    assert caviar.documents == [
        ("C638", "CITES.FR.2026.0733", "VALID", "cites"),
        ("N853", "CHEDP.FR.2026.0004410", "VALID", "dgal"),
    ]

    # The amendment and the cancellation: version 2 of a declaration, each decided after
    # version 1 was.
    for first, second in [("13a", "13b"), ("14a", "14b")]:
        [v1] = [d for n, d in decided.items() if n.startswith(first)]
        [v2] = [d for n, d in decided.items() if n.startswith(second)]
        assert (v1.reference, v1.version, v2.version) == (v2.reference, 1, 2)
    assert "QUANTITY_INSUFFICIENT" in decided["13a-refuse-fillets-beyond-ched.xml"].reasons

    # The table groups the printed decisions by outcome and authority.
    expected_table: Counter[tuple[str, str]] = Counter()
    for decision in decided.values():
        for authority in decision.authorities or {NONE}:
            expected_table[decision.outcome.value, authority] += 1
    table = printed_table(demo_run.stdout)
    assert list(next(iter(table.values()))) == ["dgal", "cites", "dga", NONE, "total"]
    for outcome_name, row in table.items():
        for column, count in row.items():
            if column != "total":
                assert count == expected_table[outcome_name, column], (outcome_name, column)
        assert row["total"] == sum(1 for d in decided.values() if d.outcome.value == outcome_name)
    assert table["CONTROL_DOCUMENTARY"]["dga"] == 1
    assert table["REFUSE"]["dga"] == 1
    assert table["CONTROL_PHYSICAL"]["cites"] == 1
    assert table["CANCELLED"]["cites"] == 1


async def test_the_war_material_licence_is_never_shown_in_clear(
    demo_run: DemoRun, demo_env: KafkaEnv
) -> None:
    assert demo_run.exit_code == 0, demo_run.stderr
    export = demo_run.decisions["11-control-war-material-export.xml"]
    refused = demo_run.decisions["12-refuse-war-material-destination.xml"]
    assert export.documents == [("LEMG", MASKED_LICENCE, "VALID", "dga")]
    assert refused.documents == [("LEMG", MASKED_LICENCE, "MISMATCH", "dga")]
    assert LICENCE not in demo_run.stdout + demo_run.stderr

    logs = sorted(demo_run.log_dir.glob("*.log"))
    assert {p.name for p in logs} >= {"hub.log", "adapter-dga.log", "partner-sim-dga.log"}
    for log in logs:
        assert LICENCE not in log.read_text(errors="replace"), log.name

    records = await every_record(demo_env.bootstrap, demo_env.prefix)
    statuses = [
        StatusEvent.model_validate_json(r.value or b"")
        for r in records
        if r.topic == demo_env.topics.status
    ]
    decided = {(s.reference, s.kind) for s in statuses}
    assert (export.reference, StatusKind.DECIDED) in decided  # the status check sees them
    assert (refused.reference, StatusKind.DECIDED) in decided
    # The licence did travel: sealed to the DGA, its answer sealed to the hub.
    assert any(r.topic == demo_env.topics.requests("dga") for r in records)
    for record in records:
        content = b"".join(
            [record.key or b"", record.value or b"", *(v for _, v in record.headers)]
        )
        assert LICENCE.encode() not in content, record.topic


async def test_the_demo_leaves_the_deployments_topics_groups_and_trail_alone(
    demo_run: DemoRun, deployment_env: KafkaEnv, demo_env: KafkaEnv
) -> None:
    """On a Kafka the user already runs, the demo wrote under the deployment's topic names
    and joined its groups (``gun-hub``, ``gun-hub-publisher``, the adapters'): its
    throw-away audit key's checkpoints on ``gun.audit`` made ``gun-hub audit verify`` fail
    for good, and the real clearance reader dead-lettered its decisions (review stop 39-O,
    O6). It takes names of its own instead, and says which."""
    assert demo_run.exit_code == 0, demo_run.stderr
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment_env.bootstrap)
    await admin.start()
    try:
        topics = await admin.list_topics()
        groups = {str(group[0]) for group in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    deployments = f"{deployment_env.prefix}."
    assert [t for t in topics if t.startswith(deployments)] == []
    assert demo_env.topics.audit in topics
    deployment_app = f"{deployment_env.prefix}-hub"  # GUN_HUB_HUB__APP_ID of its settings
    assert [t for t in topics if t.startswith(f"{deployment_app}-")] == []
    assert [g for g in groups if g == deployment_app or g.startswith(f"{deployment_app}-")] == []
    assert [g for g in groups if g.startswith(f"{deployment_env.prefix}-adapter-")] == []
    assert f"{demo_env.prefix}-hub" in groups
    assert f"{demo_env.prefix}-adapter-dgal" in groups
    assert f"topics {demo_env.prefix}.*" in demo_run.stdout  # and it says which
