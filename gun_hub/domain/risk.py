"""Risk targeting as data: rules on declaration fields, and random sampling per authority.

Evaluated once, at intake, into the case; applied by :func:`gun_hub.domain.decide.decide`, which
raises a RELEASE, or a control degraded mode or the override asked for, to the strongest
control any hit asks for and names each hit; a REFUSE stays one.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gun_contract.model.declaration import Declaration
from gun_contract.model.verdicts import Outcome

CONTROLS = (Outcome.CONTROL_DOCUMENTARY, Outcome.CONTROL_PHYSICAL)
DESCRIPTION_MAX_CHARS = 1024


class RiskRulesError(ValueError):
    """The risk rules cannot be used; the message names the fault."""


class RiskRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_-]{1,40}$")
    # Quoted in the reason of every decision it raises ("risk rule <id>: <description>"),
    # which decision.xsd bounds to 2048 characters: refused at load rather than cut on
    # every hit (found by review, stop 36).
    description: str = Field(min_length=1, max_length=DESCRIPTION_MAX_CHARS)
    action: Outcome
    origin: tuple[str, ...] = ()
    commodity_prefix: tuple[str, ...] = ()
    declarant: tuple[str, ...] = ()
    procedure: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()

    @field_validator("action")
    @classmethod
    def _is_a_control(cls, action: Outcome) -> Outcome:
        if action not in CONTROLS:
            raise ValueError(f"action must be one of {[c.value for c in CONTROLS]}")
        return action

    def conditions(self) -> int:
        return sum(
            bool(c)
            for c in (
                self.origin,
                self.commodity_prefix,
                self.declarant,
                self.procedure,
                self.authority,
            )
        )


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: str = "gun-hub"
    rates: dict[str, float] = Field(default_factory=dict)

    @field_validator("rates")
    @classmethod
    def _rates_are_shares(cls, rates: dict[str, float]) -> dict[str, float]:
        bad = {a: r for a, r in rates.items() if not 0 <= r <= 1}
        if bad:
            raise ValueError(f"sampling rates must be between 0 and 1: {bad}")
        return rates


class RiskRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[RiskRule, ...] = ()
    sampling: Sampling = Field(default_factory=Sampling)


@dataclass(frozen=True, slots=True)
class RiskHit:
    """A rule or a sampling draw that asks for a control."""

    code: str  # RISK.<rule id> or SAMPLING.<authority>
    action: Outcome
    text: str


def load_risk_rules(path: Path, authorities: Iterable[str]) -> RiskRules:
    try:
        rules = RiskRules.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as err:
        raise RiskRulesError(f"risk rules {path} are invalid: {err}") from None
    known = set(authorities)
    for rule in rules.rules:
        if rule.conditions() == 0:
            raise RiskRulesError(f"rule {rule.id} has no condition: it would fire on everything")
        unknown = set(rule.authority) - known
        if unknown:
            raise RiskRulesError(f"rule {rule.id} names unknown authorities {sorted(unknown)}")
    unknown = set(rules.sampling.rates) - known
    if unknown:
        raise RiskRulesError(f"sampling names unknown authorities {sorted(unknown)}")
    ids = [rule.id for rule in rules.rules]
    if len(ids) != len(set(ids)):
        raise RiskRulesError("rule ids must be unique")
    return rules


def _fires(rule: RiskRule, declaration: Declaration, authorities: set[str]) -> bool:
    items = declaration.goods_items
    checks = [
        not rule.origin or any(i.country_of_origin in rule.origin for i in items),
        not rule.commodity_prefix
        or any(i.commodity_code.startswith(rule.commodity_prefix) for i in items),
        not rule.declarant or declaration.declarant.eori in rule.declarant,
        not rule.procedure or declaration.procedure in rule.procedure,
        not rule.authority or bool(authorities & set(rule.authority)),
    ]
    return all(checks)


def sampling_draw(seed: str, reference: str, version: int, authority: str) -> float:
    """A uniform number in [0, 1), the same every time for the same inputs."""
    digest = hashlib.sha256(f"{seed}|{reference}|{version}|{authority}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assess_risk(
    declaration: Declaration, authorities: Iterable[str], rules: RiskRules
) -> list[RiskHit]:
    concerned = set(authorities)
    hits = [
        RiskHit(f"RISK.{rule.id}", rule.action, f"risk rule {rule.id}: {rule.description}")
        for rule in rules.rules
        if _fires(rule, declaration, concerned)
    ]
    rates: Mapping[str, float] = rules.sampling.rates
    for authority in sorted(concerned):
        rate = rates.get(authority, 0.0)
        draw = sampling_draw(
            rules.sampling.seed, declaration.reference, declaration.version, authority
        )
        if draw < rate:
            hits.append(
                RiskHit(
                    f"SAMPLING.{authority.upper()}",
                    Outcome.CONTROL_DOCUMENTARY,
                    f"random sampling of {authority} declarations ({rate:.1%})",
                )
            )
    return hits
