"""What each package of the repository may import (issue 14), checked on every module's
source, imports inside functions included.

* ``gun_contract``, the contract every party shares (models, topics, envelope and keys,
  dead letters, Kafka client settings and ACL plan), imports none of the other packages;
  its message models import nothing else of it.
* The adapters and the partner simulator (another administration's system) use only the
  contract: never the hub's own processing, never each other.
* The hub's decision logic (``gun_hub/domain``) is pure: no Kafka client, stream
  framework or web server in it, and nothing of the hub's steps, runtime or edges.
* The flow goes one way: the runtime drives the pipeline, never the reverse.
* The hub imports no adapter, simulator, test, benchmark or chaos code, except its
  command line: one entry point starts every process (``gun-hub adapter dgal``,
  ``gun-hub partner ...``) and so composes them all.
* Development tooling (``gun_tools``: demo, local broker, generators, the clearance
  stand-in) is not in the image: nothing in the contract or the hub imports it, except
  the commands that run it, inside the command (or for annotations only), so that the
  image's ``gun-hub`` starts without it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PURE = ("gun_hub/domain", "gun_contract/model")
RUNTIME_LIBRARIES = ("faust", "mode", "aiokafka", "aiohttp", "confluent_kafka")
NOT_THE_HUB = ("adapters", "partner_sim", "tests", "benchmarks", "chaos")
ENTRY_POINT = "gun_hub/cli/"


def modules(under: str) -> Iterator[Path]:
    path = REPO / under
    yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


@cache  # each rule reads the same few hundred modules
def imported(path: Path, *, at_module_level_only: bool = False) -> frozenset[str]:
    """What ``path`` imports; with ``at_module_level_only``, what importing it imports
    (not what its functions import when they run, nor ``if TYPE_CHECKING:`` imports)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = module_level(tree.body) if at_module_level_only else ast.walk(tree)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return frozenset(names)


def module_level(body: list[ast.stmt]) -> Iterator[ast.AST]:
    for statement in body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if isinstance(statement, ast.If) and ast.unparse(statement.test) in {
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        }:
            yield from module_level(statement.orelse)
            continue
        if isinstance(statement, ast.ClassDef):
            yield from module_level(statement.body)
            continue
        yield from ast.walk(statement)


def offending(
    under: str,
    allowed: Callable[[str], bool],
    forbidden: Callable[[str], bool],
    *,
    at_module_level_only: bool = False,
) -> dict[str, list[str]]:
    """Per module under ``under``, what it imports that is ``forbidden`` and not ``allowed``."""
    found = {}
    for path in modules(under):
        names = imported(path, at_module_level_only=at_module_level_only)
        bad = sorted(n for n in names if forbidden(n) and not allowed(n))
        if bad:
            found[str(path.relative_to(REPO))] = bad
    return found


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def nothing(name: str) -> bool:
    return False


def test_the_packages_are_where_the_rules_look() -> None:
    for folder in ("gun_contract", "gun_contract/model", "gun_hub", "gun_tools", *PURE):
        assert (REPO / folder / "__init__.py").is_file(), folder


PACKAGES = ("gun_contract", "gun_hub", "gun_tools", "adapters", "partner_sim")


@pytest.mark.parametrize(
    "package",
    sorted(
        str(init.parent.relative_to(REPO))
        for top in PACKAGES
        for init in (REPO / top).rglob("__init__.py")
    ),
)
def test_each_package_opens_with_what_it_owns_and_what_it_may_import(package: str) -> None:
    tree = ast.parse((REPO / package / "__init__.py").read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree) or ""
    owns, may_import, *_ = [*docstring.splitlines(), "", ""]
    assert owns.strip()
    assert may_import.startswith("May import: ")


def test_the_contract_imports_none_of_the_other_packages() -> None:
    others = ("gun_hub", "gun_tools", *NOT_THE_HUB)
    assert offending("gun_contract", nothing, lambda n: within(n, *others)) == {}


def test_the_message_models_import_nothing_else_of_the_contract() -> None:
    assert (
        offending(
            "gun_contract/model",
            lambda n: within(n, "gun_contract.model"),
            lambda n: within(n, "gun_contract", "gun_hub", "gun_tools", *NOT_THE_HUB),
        )
        == {}
    )


@pytest.mark.parametrize("package", ["adapters", "partner_sim"])
def test_the_adapters_and_the_partner_simulator_use_only_the_contract(package: str) -> None:
    others = {"adapters", "partner_sim"} - {package}
    assert (
        offending(package, nothing, lambda n: within(n, "gun_hub", "gun_tools", "tests", *others))
        == {}
    )


@pytest.mark.parametrize("module", PURE)
def test_the_decision_logic_is_pure(module: str) -> None:
    assert offending(module, nothing, lambda n: within(n, *RUNTIME_LIBRARIES)) == {}


def test_the_decision_logic_uses_none_of_the_hubs_steps_runtime_or_edges() -> None:
    edges = ("pipeline", "runtime", "web", "gateway", "cli", "security", "xml")
    assert (
        offending("gun_hub/domain", nothing, lambda n: within(n, *(f"gun_hub.{e}" for e in edges)))
        == {}
    )


def test_the_pipeline_never_drives_the_runtime() -> None:
    assert offending("gun_hub/pipeline", nothing, lambda n: within(n, "gun_hub.runtime")) == {}


def test_the_hub_imports_no_adapter_simulator_test_or_benchmark() -> None:
    found = offending("gun_hub", nothing, lambda n: within(n, *NOT_THE_HUB))
    assert {m: names for m, names in found.items() if not m.startswith(ENTRY_POINT)} == {}


def test_the_contract_and_the_hub_never_import_the_development_tooling() -> None:
    found = {
        **offending("gun_contract", nothing, lambda n: within(n, "gun_tools")),
        **offending("gun_hub", nothing, lambda n: within(n, "gun_tools")),
    }
    assert {m: names for m, names in found.items() if not m.startswith(ENTRY_POINT)} == {}


def test_the_command_line_imports_the_tooling_only_when_a_command_runs_it() -> None:
    assert (
        offending(
            ENTRY_POINT,
            nothing,
            lambda n: within(n, "gun_tools"),
            at_module_level_only=True,
        )
        == {}
    )


def test_the_tooling_is_development_code_not_test_code() -> None:
    assert (
        offending("gun_tools", nothing, lambda n: within(n, "tests", "benchmarks", "chaos")) == {}
    )


def test_the_rules_see_an_import_inside_a_function_and_tell_it_from_one_at_import(
    tmp_path: Path,
) -> None:
    module = tmp_path / "example.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "import gun_contract.topics\n"
        "if TYPE_CHECKING:\n"
        "    from gun_tools.demo import DemoResult\n"
        "def demo() -> None:\n"
        "    from gun_tools.demo import run_demo\n",
        encoding="utf-8",
    )
    assert imported(module) == {"typing", "gun_contract.topics", "gun_tools.demo"}
    assert imported(module, at_module_level_only=True) == {"typing", "gun_contract.topics"}
