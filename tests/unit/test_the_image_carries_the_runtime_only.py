"""The production image installs the runtime lock (issue 14): the versions the tests ran
with, and no test or lint tool. What the image installs is read from the Dockerfile and
the lock it names (there is no container engine on the project's machines)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

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
