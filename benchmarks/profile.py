"""A CPU profile of a process over a measured stretch (``./tasks bench-hops --profile``).

``py-spy record`` samples the process's threads while it runs (idle samples left out, so
the counts are CPU), writes the collapsed stacks (``--format raw``: one line per distinct
stack, ``frame;frame;...;frame COUNT``), and this module sums them two ways: by the code
that was running (a frame's *self* samples, grouped by where it lives: the hub's or an
adapter's own code, faust, aiokafka, the envelopes' cryptography, RocksDB, asyncio...) and
by the steps that were on the stack (*inclusive*: admission, correlation, the publisher,
an adapter's partner call...). Those say where a declaration's CPU goes at saturation,
which the hop table (time) cannot.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A frame of py-spy's raw format: ``function (path/to/file.py:LINE)``; the line is left out
# with ``--nolineno``, which the profile uses (fewer distinct stacks to sum).
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# Where a frame's code lives, first match wins: the file path's part to look for, and the
# name to count it under. Third-party code is named by its package.
_AREAS: tuple[tuple[str, str], ...] = (
    ("gun_hub/runtime/", "hub runtime (gun_hub/runtime)"),
    ("gun_hub/", "hub steps (gun_hub, not runtime)"),
    ("adapters/", "adapter code (adapters)"),
    # The calls into pyca's C code count in the Python frame that made them (no --native).
    ("gun_contract/security/jose", "envelopes (JOSE, their cryptography inside)"),
    ("gun_contract/envelope", "envelopes (JOSE, their cryptography inside)"),
    ("gun_contract/security/state_cipher", "state cipher (AES-GCM inside)"),
    ("gun_contract/", "contract code (gun_contract, not envelopes)"),
    ("cryptography/", "cryptography (pyca)"),
    ("faust/", "faust"),
    ("mode/", "mode (faust's services)"),
    ("aiokafka/", "aiokafka"),
    ("kafka/", "aiokafka"),
    ("aiohttp/", "aiohttp"),
    ("yarl/", "aiohttp"),
    ("multidict/", "aiohttp"),
    ("rocksdict", "RocksDB"),
    ("rocksdb", "RocksDB"),
    ("pydantic", "pydantic"),
    ("lxml", "XML (lxml, xmlschema)"),
    ("xmlschema", "XML (lxml, xmlschema)"),
    ("elementpath", "XML (lxml, xmlschema)"),
    ("asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("socket.py", "sockets"),
    ("json/", "json"),
    ("orjson", "json"),
    ("logging/", "logging"),
    ("prometheus_client", "prometheus_client"),
)

# The steps, recognised by a function on the stack (inclusive samples).
_STEPS: tuple[tuple[str, str], ...] = (
    ("gun_hub/pipeline/admission.py", "admission (claims, the verdict's admit)"),
    ("gun_hub/pipeline/intake.py", "intake (parse, route, open the case, seal requests)"),
    ("gun_hub/pipeline/correlation.py", "correlation (answers, decide)"),
    ("gun_hub/runtime/publisher.py", "decision publisher"),
    ("gun_hub/pipeline/audit_keeper.py", "audit keeper"),
    ("gun_hub/runtime/audit_lanes.py", "audit lanes"),
    ("gun_hub/ops/", "operations view feed"),
    ("gun_hub/runtime/settling.py", "settling (acknowledgements, after delivery)"),
    ("gun_contract/security/jose", "envelopes (seal, open)"),
    ("faust/transport/drivers/aiokafka.py", "faust's Kafka driver"),
    ("aiokafka/producer/", "aiokafka producer"),
    ("aiokafka/consumer/", "aiokafka consumer"),
    ("faust/tables/", "faust tables"),
    ("adapters/base/runner.py", "adapter runner"),
    ("adapters/base/resilience.py", "adapter's partner calls (resilience)"),
    ("aiohttp/client", "aiohttp client (partner calls)"),
)


@dataclass(frozen=True)
class Frame:
    function: str
    file: str

    @classmethod
    def parse(cls, text: str) -> Frame:
        match = _FRAME.match(text)
        if match is None:
            return cls(text, "")
        return cls(match["function"], match["file"])


def collapsed(lines: Iterable[str]) -> list[tuple[list[Frame], int]]:
    """The stacks of py-spy's raw output with their sample counts (root first)."""
    stacks = []
    for line in lines:
        line = line.rstrip("\n")
        if not line:
            continue
        stack_text, _, count = line.rpartition(" ")
        if not stack_text or not count.isdigit():
            continue
        stacks.append(([Frame.parse(f) for f in stack_text.split(";")], int(count)))
    return stacks


def area_of(frame: Frame) -> str:
    for part, area in _AREAS:
        if part in frame.file:
            return area
    return "other" if frame.file else f"other ({frame.function[:40]})"


def summary(stacks: list[tuple[list[Frame], int]]) -> dict[str, Any]:
    """Samples in all; by area of the running frame (self); by hub step on the stack
    (inclusive, a stack counted once per step however deep); the twenty costliest running
    functions."""
    total = sum(count for _, count in stacks)
    by_area: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    for frames, count in stacks:
        # The thread's own frame (``--threads``) has no file; the running frame is the last.
        running = frames[-1]
        by_area[area_of(running)] += count
        by_function[f"{running.function} ({running.file})"] += count
        steps = {step for part, step in _STEPS for f in frames if part in f.file}
        for step in steps:
            by_step[step] += count
    return {
        "samples": total,
        "self_by_area": _shares(by_area, total),
        "inclusive_by_step": _shares(by_step, total),
        "top_self_functions": _shares(Counter(dict(by_function.most_common(20))), total),
    }


def _shares(counter: Mapping[str, int], total: int) -> dict[str, float]:
    return {
        key: round(count / total, 4)
        for key, count in sorted(counter.items(), key=lambda kv: -kv[1])
        if total
    }


def render(name: str, figures: Mapping[str, Any]) -> str:
    lines = [f"{name} CPU profile ({figures['samples']} samples, py-spy):"]
    for title, key in (
        ("running code, by where it lives (self)", "self_by_area"),
        ("steps on the stack (inclusive)", "inclusive_by_step"),
        ("costliest running functions (self)", "top_self_functions"),
    ):
        shares = figures[key]
        lines.append(f"  {title}:")
        lines.extend(f"    {share:6.1%}  {name}" for name, share in shares.items())
    return "\n".join(lines)


class Profiler:
    """``py-spy record`` on one process, from :meth:`start` to :meth:`stop`."""

    def __init__(self, pid: int, raw: Path, rate: int = 250) -> None:
        self.pid = pid
        self.raw = raw
        self.rate = rate
        self._process: asyncio.subprocess.Process | None = None
        self.problem: str | None = None

    async def start(self) -> None:
        # The project's environment has it (the dev extra); ./tasks does not put it on PATH.
        beside = Path(sys.executable).parent / "py-spy"
        spy = str(beside) if beside.exists() else shutil.which("py-spy")
        if spy is None:
            self.problem = "py-spy is not installed (pip install py-spy)"
            return
        self._process = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self.raw),
            "--rate", str(self.rate), "--nonblocking", "--nolineno", "--threads",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def stop(self) -> dict[str, Any] | None:
        """The summary, or None (``problem`` says why)."""
        if self._process is None:
            return None
        # py-spy writes its output when interrupted, as on Ctrl-C.
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGINT)
        _, err = await self._process.communicate()
        if not self.raw.exists():
            self.problem = f"py-spy wrote nothing: {err.decode(errors='replace').strip()[:300]}"
            return None
        return summary(collapsed(self.raw.read_text().splitlines()))
