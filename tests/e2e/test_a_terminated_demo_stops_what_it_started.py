"""``gun-hub demo`` ended by SIGTERM or SIGHUP stops every process it started.

The demo runs its components (three partner systems, three adapters, the hub) in
sessions of their own, so Ctrl-C in the terminal reaches the demo alone, which stops
them on its way out. A SIGTERM (``timeout``, a supervisor, ``kill``) or a SIGHUP (the
terminal closed) ended Python without unwinding: the seven components, and the embedded
broker when the demo had started it, were left running, holding their ports and state
(found in stop 38: ``timeout 15 ./tasks demo`` left eight processes behind).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

READY_LINE = "submitting "  # the demo prints it once every component is ready
WITHIN_S = 120.0


def children_of(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (from ``/proc``)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])
        if parent == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs: not gone, and not a zombie left for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@pytest.fixture
def started_demo(
    kafka_bootstrap: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[str], set[int]]]:
    """The demo on the session's broker, once every component of it is ready, and the
    processes it started; whatever the test leaves running is killed afterwards."""
    env = {
        **os.environ,
        "GUN_HUB_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "GUN_HUB_KAFKA__TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}",
        "TMPDIR": str(tmp_path),
    }
    demo = subprocess.Popen(
        [sys.executable, "-m", "gun_hub", "demo", "--bootstrap", kafka_bootstrap],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    started: set[int] = set()
    try:
        assert demo.stdout is not None
        printed: list[str] = []
        for line in demo.stdout:  # ends when the demo exits
            printed.append(line)
            if line.startswith(READY_LINE):
                break
        else:
            pytest.fail("the demo ended before its components were ready:\n" + "".join(printed))
        started = children_of(demo.pid)
        yield demo, started
    finally:
        for pid in [demo.pid, *started]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()


def test_a_demo_ended_by_sigterm_stops_every_component_it_started(
    started_demo: tuple[subprocess.Popen[str], set[int]],
) -> None:
    """SIGHUP takes the same way out: tests/unit/test_a_command_unwinds_on_termination.py."""
    demo, started = started_demo
    signum = signal.SIGTERM
    # Partner systems, adapters and the hub: seven with the three administrations.
    assert len(started) >= 7, f"the demo runs its components as its children: {started}"

    demo.send_signal(signum)
    demo.wait(timeout=WITHIN_S)
    assert demo.stdout is not None
    said_after = demo.stdout.read()  # what it printed on its way out, for a failure

    # The demo waits for what it stops: once it has exited, they are gone.
    left = {pid for pid in started if alive(pid)}
    assert not left, f"still running after the demo ended: {sorted(left)}\n{said_after}"
    assert demo.returncode == 128 + signum, (
        f"the exit status says which signal ended it; it printed:\n{said_after}"
    )
