"""Every dead letter a process writes is counted in its ``*_dead_letters_total{kind}``,
which ``GunHubDeadLetters`` and ``GunHubAdapterDeadLetters`` read: a kind written without
being counted is one no alert ever shows (review stop 39-O, O1: the hub's
``INPUT_AGED_OUT_OF_THE_LOG`` were not)."""

from __future__ import annotations

import ast

import pytest
from faust.types import TP
from prometheus_client import REGISTRY

from gun_contract.effects import OutgoingRecord
from gun_hub.runtime.aged_out import INPUT_AGED_OUT, InputsAgedOut
from tests.conftest import REPO

MAKERS = {"add_dead_letter", "dead_letter_record", "unhandled_dead_letter"}
COUNTERS = {"gun_hub": "DEAD_LETTERS", "adapters": "DEAD_LETTERS"}


def functions_writing_uncounted_dead_letters(package: str, counter: str) -> list[str]:
    """``path:function`` of each function of ``package`` that makes a dead letter without
    naming ``counter`` in its body."""
    uncounted = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            names = {
                node.id if isinstance(node, ast.Name) else node.attr
                for node in ast.walk(function)
                if isinstance(node, ast.Name | ast.Attribute)
            }
            called = {
                node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                for node in ast.walk(function)
                if isinstance(node, ast.Call)
            }
            if called & MAKERS and counter not in names:
                uncounted.append(f"{path.relative_to(REPO)}:{function.name}")
    return uncounted


@pytest.mark.parametrize("package", sorted(COUNTERS))
def test_each_function_that_writes_a_dead_letter_counts_it(package: str) -> None:
    assert functions_writing_uncounted_dead_letters(package, COUNTERS[package]) == []


def test_the_check_finds_a_dead_letter_written_uncounted() -> None:
    # gun_contract makes dead letters for the components and counts none itself
    assert functions_writing_uncounted_dead_letters("gun_contract", "DEAD_LETTERS") != []


def dead_letters_of(kind: str) -> float:
    return REGISTRY.get_sample_value("gun_hub_dead_letters_total", {"kind": kind}) or 0.0


@pytest.mark.asyncio
async def test_an_input_gap_is_counted_as_a_dead_letter_once_the_broker_has_it() -> None:
    sent: list[OutgoingRecord] = []

    async def send(record: OutgoingRecord) -> None:
        sent.append(record)

    named = InputsAgedOut({"gun.declarations": "declarations never decided"}, "gun.dlq", send)
    before = dead_letters_of(INPUT_AGED_OUT)
    await named.deleted_unread(TP("gun.declarations", 1), [range(0, 3), range(7, 9)])
    assert len(sent) == 2
    assert dead_letters_of(INPUT_AGED_OUT) - before == 2
