"""A command that starts processes unwinds on SIGTERM and SIGHUP as on Ctrl-C.

``gun_tools.processes.stopping_what_it_started_on_termination``: Python's default for
those signals ends the interpreter without running ``finally`` blocks, which is where the
demo, the benchmarks and the chaos run stop the components and broker they started
(tests/e2e/test_a_terminated_demo_stops_what_it_started.py shows it with the demo).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

COMMAND = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gun_tools.processes import stopping_what_it_started_on_termination

    unwound = Path(sys.argv[1])
    with stopping_what_it_started_on_termination():
        try:
            print("running", flush=True)
            while True:
                time.sleep(3600)
        finally:
            unwound.write_text("stopped what it started")
    """
)


def signalled_while_running(
    command_text: str, signum: signal.Signals, tmp_path: Path
) -> tuple[int, str, str]:
    """Run ``command_text``, signal it once it says "running" (its handlers are in place),
    and return its exit status, its stderr and what its ``finally`` block wrote."""
    unwound = tmp_path / "unwound"
    command = subprocess.Popen(
        [sys.executable, "-c", command_text, str(unwound)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert command.stdout is not None
    assert command.stdout.readline() == "running\n"

    command.send_signal(signum)
    _, err = command.communicate(timeout=30)
    return command.returncode, err, unwound.read_text() if unwound.exists() else ""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_command_runs_its_finally_blocks_and_exits_with_the_signals_status(
    tmp_path: Path, signum: signal.Signals
) -> None:
    status, err, unwound = signalled_while_running(COMMAND, signum, tmp_path)

    assert unwound == "stopped what it started"
    assert status == 128 + signum
    assert f"{signum.name}: stopping what this command started" in err


# Where the signal lands is chance. In a library that calls back into Python, the raised
# exit can be caught there: lxml turns an exception in a resolver (an xsd:include being
# read when the signal came) into its own parse error (the demo's exit status 1 in stop
# 43's CI). Other code may swallow it whole and carry on.
TURNED_INTO_A_LIBRARY_ERROR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from lxml import etree
    from gun_tools.processes import stopping_what_it_started_on_termination

    class SlowInclude(etree.Resolver):
        def resolve(self, url, pubid, context):
            print("running", flush=True)
            time.sleep(3600)

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(SlowInclude())
    schema = (
        b'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        b'<xs:include schemaLocation="slow:common.xsd"/></xs:schema>'
    )
    unwound = Path(sys.argv[1])
    with stopping_what_it_started_on_termination():
        try:
            etree.XMLSchema(etree.fromstring(schema, parser))
        finally:
            unwound.write_text("stopped what it started")
    """
)
SWALLOWED_AND_CARRIED_ON = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from gun_tools.processes import stopping_what_it_started_on_termination

    unwound = Path(sys.argv[1])
    with stopping_what_it_started_on_termination():
        try:
            try:
                print("running", flush=True)
                time.sleep(3600)
            except BaseException:
                pass  # a careless library: the command runs on to its end
        finally:
            unwound.write_text("stopped what it started")
    """
)


@pytest.mark.parametrize(
    "command_text",
    [TURNED_INTO_A_LIBRARY_ERROR, SWALLOWED_AND_CARRIED_ON],
    ids=["turned-into-a-library-error", "swallowed-and-carried-on"],
)
def test_the_exit_status_names_the_signal_wherever_it_landed(
    tmp_path: Path, command_text: str
) -> None:
    status, err, unwound = signalled_while_running(command_text, signal.SIGTERM, tmp_path)

    assert unwound == "stopped what it started"
    assert status == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopping what this command started" in err


def test_outside_the_main_thread_it_changes_nothing() -> None:
    import threading

    from gun_tools.processes import stopping_what_it_started_on_termination

    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def in_a_thread() -> None:
        with stopping_what_it_started_on_termination():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join()

    assert seen == [before]


# A Ctrl-C while the command stops its children (the demo's "stopping" phase, or a second
# Ctrl-C) cut the stopping short: the children not reaped yet were left running, the
# broker stopped under them, reconnecting at full speed and logging 64 MB in 40 s
# (operator review of stop 48).
STOPPING_TWO_CHILDREN = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from gun_tools.processes import ProcessGroup, stopping_what_it_started_on_termination

    # Ctrl-C unwinds as from a terminal, whatever the test run inherited: a run started in
    # the background of a script (CI's end-to-end half, `pytest ... &`) has SIGINT ignored,
    # and so had this command, which the first Ctrl-C then never reached.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    folder = Path(sys.argv[1])
    with stopping_what_it_started_on_termination():
        with ProcessGroup(folder / "logs") as group:
            for name, takes in (("first", "0"), ("slow", "3")):
                child = group.start(name, [str(folder), name, takes], module="tests.slow_to_stop")
                (folder / f"{name}.pid").write_text(str(child.process.pid))
            while not all((folder / f"{n}.running").exists() for n in ("first", "slow")):
                time.sleep(0.01)
            print("running", flush=True)
            time.sleep(3600)
    """
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(path: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never came"
        time.sleep(0.01)


def test_a_ctrl_c_while_the_children_stop_does_not_leave_one_running(tmp_path: Path) -> None:
    command = subprocess.Popen(
        [sys.executable, "-c", STOPPING_TWO_CHILDREN, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert command.stdout is not None
    assert command.stdout.readline() == "running\n"
    pids = [int((tmp_path / f"{name}.pid").read_text()) for name in ("first", "slow")]

    command.send_signal(signal.SIGINT)  # Ctrl-C: the group stops its children, last first
    _wait_for(tmp_path / "slow.asked", 10)  # the slow one takes 3 s to go
    command.send_signal(signal.SIGINT)  # a second Ctrl-C while it stops
    command.communicate(timeout=30)

    left_running = [pid for pid in pids if _alive(pid)]
    for pid in left_running:  # not left behind by a failing run (each its own session)
        os.killpg(pid, signal.SIGKILL)
    assert left_running == []
    assert (tmp_path / "first.asked").exists()  # asked to stop, not only killed
