"""What each part of the repository may import (issue 14), checked on every module's
source, imports inside functions included.

* The partner simulator stands for another administration's system: it imports nothing of
  the hub or the adapters.
* The message models are the contract's leaf: they import no other part of the hub.
* The decision logic is pure: no Kafka client, stream framework or web server in it.
* The adapters use the contract every party shares (models, envelope and keys, topics,
  dead letters, Kafka client settings, health), never the hub's own processing.
* The hub imports no adapter, simulator, test, benchmark or chaos code, except its
  command line: one entry point starts every process (``gun-hub adapter dgal``,
  ``gun-hub partner ...``) and so composes them all.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PURE = (
    "gun_hub/domain/decide.py",
    "gun_hub/domain/routing.py",
    "gun_hub/domain/override.py",
    "gun_hub/domain/rollout.py",
    "gun_hub/domain/risk.py",
    "gun_hub/domain/reasons.py",
    "gun_hub/domain/case.py",
    "gun_contract/model",
    "gun_hub/domain/lifecycle.py",
    "gun_hub/domain/shadow.py",
)
RUNTIME_LIBRARIES = ("faust", "mode", "aiokafka", "aiohttp", "confluent_kafka")
SHARED_WITH_THE_ADAPTERS = (
    "gun_contract.model",
    "gun_contract.envelope",
    "gun_hub.security",
    "gun_contract.topics",
    "gun_contract.dead_letter",
    "gun_contract.effects",
    "gun_contract.kafka",
    "gun_contract.settings",
    "gun_contract.trace",
    "gun_contract.health",
    "gun_contract.heartbeats",
    "gun_contract.limits",
    "gun_contract.logs",
)
ENTRY_POINT = "gun_hub/cli/"


def modules(under: str) -> Iterator[Path]:
    path = REPO / under
    yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offending(
    under: str, allowed: Callable[[str], bool], forbidden: Callable[[str], bool]
) -> dict[str, list[str]]:
    """Per module under ``under``, what it imports that is ``forbidden`` and not ``allowed``."""
    found = {}
    for path in modules(under):
        bad = sorted(n for n in imported(path) if forbidden(n) and not allowed(n))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_partner_simulator_imports_nothing_of_the_hub_or_the_adapters() -> None:
    assert (
        offending("partner_sim", lambda n: False, lambda n: within(n, "gun_hub", "adapters")) == {}
    )


def test_the_message_models_import_no_other_part_of_the_hub() -> None:
    assert (
        offending(
            "gun_contract/model",
            lambda n: within(n, "gun_contract.model"),
            lambda n: within(n, "gun_hub"),
        )
        == {}
    )


@pytest.mark.parametrize("module", PURE)
def test_the_decision_logic_is_pure(module: str) -> None:
    assert offending(module, lambda n: False, lambda n: within(n, *RUNTIME_LIBRARIES)) == {}


def test_the_adapters_use_only_the_contract_shared_by_every_party() -> None:
    assert (
        offending(
            "adapters",
            lambda n: within(n, *SHARED_WITH_THE_ADAPTERS),
            lambda n: within(n, "gun_hub"),
        )
        == {}
    )


def test_the_hub_imports_no_adapter_simulator_test_or_benchmark() -> None:
    found = offending(
        "gun_hub",
        lambda n: False,
        lambda n: within(n, "adapters", "partner_sim", "tests", "benchmarks", "chaos"),
    )
    assert {m: names for m, names in found.items() if not m.startswith(ENTRY_POINT)} == {}
