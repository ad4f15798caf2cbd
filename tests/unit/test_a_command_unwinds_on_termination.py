"""A command that starts processes unwinds on SIGTERM and SIGHUP as on Ctrl-C.

``gun_tools.processes.stopping_what_it_started_on_termination``: Python's default for
those signals ends the interpreter without running ``finally`` blocks, which is where the
demo, the benchmarks and the chaos run stop the components and broker they started
(tests/e2e/test_a_terminated_demo_stops_what_it_started.py shows it with the demo).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_the_command_runs_its_finally_blocks_and_exits_with_the_signals_status(
    tmp_path: Path, signum: signal.Signals
) -> None:
    unwound = tmp_path / "unwound"
    command = subprocess.Popen(
        [sys.executable, "-c", COMMAND, str(unwound)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert command.stdout is not None
    assert command.stdout.readline() == "running\n"  # the handlers are in place

    command.send_signal(signum)
    _, err = command.communicate(timeout=30)

    assert unwound.read_text() == "stopped what it started"
    assert command.returncode == 128 + signum
    assert f"{signum.name}: stopping what this command started" in err


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
