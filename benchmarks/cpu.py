"""Who used the CPU during a measurement, and how fast the CPU was.

On a shared 2-core machine a figure means little without it: the machine's busy time
(``/proc/stat``) minus the CPU time of the run's processes (``/proc/PID/stat``: this
process, the broker, every component) is what other work took meanwhile.

That does not show a slower CPU. The machine is a virtual one: work of other machines on
the same host can make each instruction slower (shared caches, frequency) without
taking our CPUs, so no "others" and no steal time show it. Stop 28: two runs of the same
code, one after the other, each with "others" at 0.00, cost the clearance side (code the
change did not touch) 1.5 and 2.2 ms of CPU per declaration, and the hub 9.6 and 14.3.
:func:`calibration_ms` times a fixed piece of work before and after each measurement:
runs whose calibrations differ were taken on a machine of different speed.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def process_ticks(stat: str) -> int:
    """utime + stime of one ``/proc/PID/stat`` line (the name in parentheses may hold
    spaces, so fields are counted after its closing parenthesis)."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def busy_ticks(proc_stat: str) -> int:
    """Busy time of all CPUs from ``/proc/stat``: everything but idle and iowait
    (guest time is already counted in user time)."""
    values = [int(v) for v in proc_stat.splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return user + nice + system + irq + softirq + steal


def calibration_work() -> str:
    """A fixed piece of CPU work like the stack's (hashing, dictionaries, strings), about
    11 ms on this machine; its digest, so that nothing of it can be left out."""
    digest = hashlib.sha256()
    table: dict[str, int] = {}
    for n in range(20_000):
        key = f"26FRCAL{n:011d}"
        table[key] = len(key) + n % 7
        digest.update(key.encode())
    for chunk in range(64):
        digest.update(bytes(chunk for _ in range(4096)) if chunk % 8 == 0 else b"x" * 4096)
    return f"{digest.hexdigest()}:{sum(table.values())}"


def calibration_ms(rounds: int = 5) -> float:
    """The least CPU time (this thread's, so waiting for a CPU does not count) that
    :func:`calibration_work` took over ``rounds`` runs: higher means a slower machine."""
    times = []
    for _ in range(rounds):
        began = time.thread_time()
        calibration_work()
        times.append(time.thread_time() - began)
    return round(min(times) * 1000, 2)


def _process_seconds(pid: int) -> float:
    try:
        return process_ticks(Path(f"/proc/{pid}/stat").read_text()) / TICKS
    except (OSError, ValueError, IndexError):
        return 0.0  # gone: its time is no longer counted (and no longer grows)


def _machine_seconds() -> float:
    return busy_ticks(Path("/proc/stat").read_text()) / TICKS


@dataclass
class CpuMeter:
    """CPU seconds between :meth:`start` and :meth:`stop`, ours (by process name) and the
    machine's."""

    pids: Callable[[], Mapping[str, int]]
    _ours: dict[int, float] = field(default_factory=dict)
    _machine: float = 0.0
    _began: float = 0.0
    _calibration: float = 0.0

    def start(self) -> None:
        self._calibration = calibration_ms()  # before the measurement, not inside it
        self._ours = {pid: _process_seconds(pid) for pid in self.pids().values()}
        self._machine = _machine_seconds()
        self._began = time.monotonic()

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._began
        machine = _machine_seconds() - self._machine
        by_process = {
            name: round(_process_seconds(pid) - self._ours.get(pid, 0.0), 2)
            for name, pid in self.pids().items()
        }
        ours = sum(by_process.values())
        calibration = [self._calibration, calibration_ms()]
        return {
            "wall_s": round(wall, 1),
            "machine_busy_s": round(machine, 1),
            "ours_s": round(ours, 1),
            # Never below zero: ticks are sampled a moment apart.
            "others_s": round(max(0.0, machine - ours), 1),
            "cpus_busy": round(machine / wall, 2) if wall > 0 else 0.0,
            "by_process_s": by_process,
            # Before and after: the machine's speed (lower is faster).
            "calibration_ms": calibration,
        }


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU clock ticks of each thread of ``pid`` so far, summed by the kind of thread
    (its name with the digits left out: ``CN CompilerThreN``, ``data-plane-kafka...``)."""
    ticks: dict[str, int] = defaultdict(int)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        name = re.sub(r"\d+", "N", stat[stat.index("(") + 1 : stat.rindex(")")])
        fields = stat[stat.rindex(")") + 2 :].split()
        ticks[name] += int(fields[11]) + int(fields[12])  # utime + stime (proc(5))
    return dict(ticks)


def broker_threads(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds of the broker's threads between two ``thread_ticks``, grouped: the
    JIT compiler (a fresh JVM compiles for minutes: work a broker that has run for a
    while no longer does), the threads serving requests, the garbage collector, the
    rest."""
    groups: dict[str, float] = defaultdict(float)
    for name, ticks in after.items():
        spent = (ticks - before.get(name, 0)) / TICKS
        if "Compiler" in name:
            group = "jit compiler"
        elif name.startswith("data-plane-kafk"):  # names are cut at 15 characters
            group = "requests (network and handler threads)"
        elif "GC" in name or name.startswith("GN "):  # G1's threads: "GC Thread#N", "G1 ..."
            group = "garbage collector"
        else:
            group = "other"
        groups[group] += spent
    return {g: round(v, 2) for g, v in sorted(groups.items(), key=lambda kv: -kv[1])}
