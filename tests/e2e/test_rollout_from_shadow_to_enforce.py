"""Pilot, then generalise (issue 13, item 3; ADR 0012), on the real broker.

DGAL is piloted at office FR000690: in shadow mode first (asked to check, its answers
recorded, the declarations decided as if it were not connected), then switched to enforce
with `gun-hub rollout set` while declarations flow. Every decision must follow the mode
its version was received under, the pilot report must count exactly what was submitted,
the partner's ledger must hold nothing for a declaration decided in shadow, and both
changes must be in the audit trail with the officer who made them.

Hub, the DGAL adapter and the simulated TRACES run as processes; no risk targeting (an
empty rules file), so every outcome follows from the partner's answers and the mode. The
operator's commands run as subprocesses with officer credentials made at test time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gun_contract.model.decision import Decision
from gun_contract.model.verdicts import Outcome
from gun_hub.domain.rollout import AUTHORITY_NOT_CONNECTED
from gun_hub.security.web_auth import LocalAccess
from gun_tools.processes import free_port
from tests.builders import declaration_xml, document, goods_item
from tests.conftest import KafkaEnv
from tests.e2e.conftest import Pipeline, officer_command, start_pipeline
from tests.e2e.test_dead_letters_can_be_repaired import audit_records, until
from tests.e2e.test_override_and_reasons import partner_positions

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

OFFICE = "FR000690"  # the builders' office
CHED = "CHEDP.FR.2026.0001234"  # line 1: 5,000 KGM of 0302 (samples/partners)
PER_BATCH = 9

# Three kinds of declaration, and what each is decided under each mode.
VALID, UNKNOWN, PARTLY_UNROUTED = "valid", "unknown", "partly-unrouted"
KINDS = (VALID, UNKNOWN, PARTLY_UNROUTED)
ENFORCED = {
    VALID: Outcome.RELEASE,
    UNKNOWN: Outcome.REFUSE,
    PARTLY_UNROUTED: Outcome.CONTROL_DOCUMENTARY,  # the unrouted code: degraded mode
}
# In shadow every one is a documentary control (DGAL not connected); what DGAL would have
# decided is the enforced outcome, which agrees with the control only for the third kind.


def piloted(number: int) -> tuple[str, bytes]:
    kind = KINDS[number % 3]
    ched = document("N853", CHED if kind != UNKNOWN else "CHEDP.FR.2026.9999999", 1, "10", "KGM")
    documents = (ched, document("X999", f"LOCAL-{number}")) if kind == PARTLY_UNROUTED else (ched,)
    reference = f"26FRROLLOUT{number:07d}"
    return reference, declaration_xml(reference=reference, items=(goods_item(1, documents),))


@dataclass
class Pilot:
    pipeline: Pipeline
    access: LocalAccess
    officer_url: str

    def rollout(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``gun-hub rollout ...`` as the operator runs it."""
        return officer_command(self.pipeline, self.access, self.officer_url, "rollout", *args)

    def as_json(self, *args: str) -> Any:
        done = self.rollout(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def pilot(kafka_env: KafkaEnv, samples: Path, tmp_path: Path) -> Iterator[Pilot]:
    rules = tmp_path / "no-targeting.toml"
    rules.write_text("# outcomes from the partners' answers and the rollout modes only\n")
    access = LocalAccess.create(tmp_path / "access")
    trader_port, officer_port = free_port(), free_port()
    hub_env = {
        **access.env(trader_port, officer_port),
        "GUN_HUB_HUB__RISK_RULES": str(rules),
        "GUN_HUB_WEB__ROLLOUT_OPERATORS": access.officer,
    }
    for pipeline in start_pipeline(
        kafka_env, tmp_path, samples, partners=("dgal",), hub_env=hub_env
    ):
        yield Pilot(pipeline, access, f"http://127.0.0.1:{officer_port}")


def mode_of(decision: Decision) -> str:
    """The mode a decision was taken under, as its reasons tell the trader."""
    codes = {reason.code for reason in decision.reasons}
    return "shadow" if AUTHORITY_NOT_CONNECTED in codes else "enforce"


async def test_dgal_moves_from_shadow_to_enforce_while_declarations_flow(pilot: Pilot) -> None:
    pipeline = pilot.pipeline
    submitted: list[str] = []

    async def submit(number: int) -> None:
        reference, xml = piloted(number)
        await pipeline.submit([xml])
        submitted.append(reference)

    # The pilot starts at one office.
    started = pilot.rollout(
        "set", "dgal", "shadow", "--office", OFFICE, "--reason", "pilot at Le Havre"
    )
    assert started.returncode == 0, started.stderr
    assert "dgal at FR000690: enforce -> shadow" in started.stdout
    shown = pilot.as_json("show")["authorities"]["dgal"]
    assert shown["mode"] == "enforce"  # everywhere else
    assert shown["offices"][OFFICE]["mode"] == "shadow"
    assert shown["offices"][OFFICE]["set"]["by"] == pilot.access.officer

    for number in range(PER_BATCH + 1):
        await submit(number)
    shadowed_for_sure = list(submitted)
    first = [received.decision for received in await pipeline.decisions(len(submitted))]
    assert {mode_of(d) for d in first} == {"shadow"}
    assert {d.outcome for d in first} == {Outcome.CONTROL_DOCUMENTARY}

    # Generalised while declarations are submitted one by one: they go on until three
    # more were submitted after the change was in force.
    in_force = asyncio.Event()

    async def keep_submitting() -> list[str]:
        after: list[str] = []
        while len(after) < 3:
            was_in_force = in_force.is_set()
            await submit(len(submitted))
            if was_in_force:
                after.append(submitted[-1])
        return after

    flowing = asyncio.create_task(keep_submitting())
    generalised = await asyncio.to_thread(
        pilot.rollout, "set", "dgal", "enforce", "--office", OFFICE, "--reason", "pilot done"
    )
    in_force.set()
    enforced_for_sure = await flowing
    assert generalised.returncode == 0, generalised.stderr
    assert "dgal at FR000690: shadow -> enforce" in generalised.stdout
    for _ in range(PER_BATCH):
        await submit(len(submitted))
    enforced_for_sure += submitted[-PER_BATCH:]

    total = len(submitted)
    kind_of = {reference: KINDS[number % 3] for number, reference in enumerate(submitted)}
    decisions = {r.decision.reference: r.decision for r in await pipeline.decisions(total)}
    assert sorted(decisions) == sorted(submitted)  # one each, none lost or doubled
    modes = {reference: mode_of(decision) for reference, decision in decisions.items()}
    assert {modes[r] for r in shadowed_for_sure} == {"shadow"}
    assert {modes[r] for r in enforced_for_sure} == {"enforce"}
    for reference, decision in decisions.items():
        expected = (
            ENFORCED[kind_of[reference]]
            if modes[reference] == "enforce"
            else Outcome.CONTROL_DOCUMENTARY
        )
        assert decision.outcome is expected, (reference, modes[reference], decision.reasons)

    # The pilot report counts exactly what was submitted, under the mode it was decided in.
    shadowed = [r for r, mode in modes.items() if mode == "shadow"]
    enforced = [r for r, mode in modes.items() if mode == "enforce"]

    async def reported() -> list[dict[str, Any]] | None:
        rows: list[dict[str, Any]] = (await asyncio.to_thread(pilot.as_json, "report"))["report"]
        return rows if sum(row["declarations"] for row in rows) == total else None

    rows = {row["mode"]: row for row in await until("the report counts all", reported, pipeline)}
    assert set(rows) == {"shadow", "enforce"}
    shadow, enforce = rows["shadow"], rows["enforce"]
    assert (shadow["authority"], shadow["office"]) == ("dgal", OFFICE)
    assert shadow["declarations"] == len(shadowed)
    assert shadow["decided"] == {"CONTROL_DOCUMENTARY": len(shadowed)}
    would = Counter(ENFORCED[kind_of[r]].value for r in shadowed)
    assert shadow["would_decide"] == dict(sorted(would.items()))
    agreeing = sum(1 for r in shadowed if kind_of[r] == PARTLY_UNROUTED)
    assert (shadow["agreements"], shadow["disagreements"]) == (
        agreeing,
        len(shadowed) - agreeing,
    )
    unknown_in_shadow = sum(1 for r in shadowed if kind_of[r] == UNKNOWN)
    assert shadow["reasons"] == {"NOT_FOUND": unknown_in_shadow}
    assert enforce["declarations"] == len(enforced)
    assert enforce["decided"] == dict(
        sorted(Counter(ENFORCED[kind_of[r]].value for r in enforced).items())
    )
    assert (enforce["agreements"], enforce["disagreements"]) == (0, 0)  # nothing to compare

    table = pilot.rollout("report")  # as an operator reads it (shown with pytest -rP)
    assert table.returncode == 0, table.stderr
    assert f"dgal       {OFFICE}  shadow" in table.stdout
    print(table.stdout)

    # Shadow checks reserved nothing: the partner holds positions of enforced ones only.
    held = partner_positions(pipeline, CHED)
    assert held, "the enforced declarations reserved and wrote off on the CHED"
    assert held.isdisjoint(shadowed)
    assert held <= {r for r in enforced if kind_of[r] != UNKNOWN}

    # Both changes are in the audit trail, with who made them and why.
    async def rollout_actions() -> list[dict[str, Any]]:
        found = [r for r in await audit_records(pipeline) if r.get("action") == "ROLLOUT_SET"]
        return found if len(found) == 2 else []

    actions = await until("both changes are audited", rollout_actions, pipeline)
    assert [a["setting"] for a in actions] == [
        "dgal at FR000690: enforce -> shadow (pilot at Le Havre)",
        "dgal at FR000690: shadow -> enforce (pilot done)",
    ]
    assert {a["officer"] for a in actions} == {pilot.access.officer}
    assert pilot.as_json("show")["authorities"]["dgal"]["offices"][OFFICE]["mode"] == "enforce"


async def test_a_setting_for_no_such_authority_or_office_is_refused_and_changes_nothing(
    pilot: Pilot,
) -> None:
    unknown = pilot.rollout("set", "customs", "shadow", "--reason", "no such authority")
    assert unknown.returncode == 2
    assert "unknown authority" in unknown.stderr
    bad_office = pilot.rollout("set", "dgal", "off", "--office", "Le Havre", "--reason", "x")
    assert bad_office.returncode == 2
    assert "customs office reference" in bad_office.stderr
    assert pilot.as_json("show")["authorities"]["dgal"] == {
        "mode": "enforce",
        "set": None,
        "offices": {},
    }
