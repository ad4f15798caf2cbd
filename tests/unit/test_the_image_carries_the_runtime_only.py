"""The production image installs the runtime lock (issue 14): the versions the tests ran
with, and no test or lint tool; and of the project, the runtime packages without the
development tooling (gun_tools), whose commands then say so. What the image installs is
read from the Dockerfile, the lock it names and pyproject.toml (there is no container
engine on the project's machines)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gun_hub.cli import app

REPO = Path(__file__).resolve().parents[2]
_PINNED = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", re.MULTILINE)
DEVELOPMENT_ONLY = {"pytest", "mypy", "ruff", "hypothesis", "jwcrypto", "confluent-kafka"}


def pins(lock: str) -> dict[str, str]:
    text = (REPO / lock).read_text(encoding="utf-8")
    return {name.lower().replace("_", "-"): version for name, version in _PINNED.findall(text)}


def installed_by_the_image() -> dict[str, str]:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    [lock] = re.findall(r"pip install --require-hashes -r /src/(\S+)", dockerfile)
    assert f"COPY {lock} /src/{lock}" in dockerfile
    return pins(lock)


def test_the_image_lists_no_test_or_lint_tool() -> None:
    installed = installed_by_the_image()
    assert installed, "the image installs nothing?"
    assert sorted(DEVELOPMENT_ONLY & set(installed)) == []
    assert not [name for name in installed if name.startswith(("pytest", "types-"))]


def test_the_image_runs_the_versions_the_tests_ran_with() -> None:
    tested = pins("requirements.lock")
    differing = {
        name: (version, tested.get(name))
        for name, version in installed_by_the_image().items()
        if tested.get(name) != version
    }
    assert differing == {}


def test_the_image_has_every_runtime_dependency() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        for requirement in project["dependencies"]
    }
    assert sorted(declared - set(installed_by_the_image())) == []


# ---- the project's own packages: no development tooling ------------------------------------

TOOLING = "gun_tools"
RUNTIME_PACKAGES = {"gun_contract", "gun_hub", "adapters", "partner_sim"}


def copied_by_the_image() -> set[str]:
    """What the build stage copies from the repository into the project it installs."""
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    return {
        source
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE)
        for source in line.split()
    }


def test_the_wheel_carries_the_runtime_packages_and_not_the_tooling() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert set(wheel["packages"]) == RUNTIME_PACKAGES
    assert not [target for target in wheel["force-include"].values() if TOOLING in target]


def test_the_image_copies_no_tooling() -> None:
    copied = copied_by_the_image()
    assert copied >= RUNTIME_PACKAGES
    assert not [source for source in copied if source.split("/")[0] == TOOLING]
    ignore = (REPO / "deploy" / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert f"!{TOOLING}" not in ignore


@pytest.mark.parametrize(
    "command",
    [["demo"], ["kafka", "start"], ["submit", "README.md"], ["decisions"], ["asyncapi"]],
)
def test_a_tooling_command_in_the_image_says_so_and_exits_2(
    command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the image's Python does on `import gun_tools` (None: "not found", even when
    # this test run has imported it already).
    monkeypatch.setitem(sys.modules, TOOLING, None)

    outcome = CliRunner().invoke(app, command)

    assert outcome.exit_code == 2, outcome.output
    assert outcome.stderr.strip() == (
        f"gun-hub {command[0]}: development tooling: not installed in this image"
    )


def test_every_module_of_the_image_loads_without_the_tooling() -> None:
    # A fresh interpreter that cannot import gun_tools, as in the image: every module of
    # the runtime packages imports, and the command line shows its help.
    script = f"""
import importlib, pkgutil, sys
class NoTooling:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == {TOOLING!r}:
            raise ModuleNotFoundError(name=name)
sys.meta_path.insert(0, NoTooling())
loaded = 0
for package in {sorted(RUNTIME_PACKAGES)!r}:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if not module.name.endswith(".__main__"):  # that one runs the command line
            importlib.import_module(module.name)
            loaded += 1
print("loaded", loaded)
sys.argv = ["gun-hub", "--help"]
from gun_hub.cli import main
main()
"""
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert int(re.findall(r"^loaded (\d+)$", ran.stdout, re.MULTILINE)[0]) > 100
    assert "Integration hub for a customs single window" in ran.stdout
