"""Starting gun-hub components as child processes (demo, end-to-end tests, benchmarks).

Each child is ``python -m gun_hub <command>`` with its own environment and log file, in a
session of its own so that stopping it stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HANDED_OUT: set[int] = set()


# Where listeners' ports are looked for: below the range the OS takes the local ports of
# outgoing connections from (``ip_local_port_range``, 32768 on Linux by default), above
# the usual registered services, below the local cluster's fixed ports (29092 up:
# local_broker.py, the Compose profile).
_LISTENERS_FROM = 20000
_LISTENERS_BELOW = 29000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; IANA's (49152) is higher still


def _listenable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port nobody listens on right now, below the range the OS takes outgoing
    connections' local ports from, and not one this process handed out before.

    Picked by the OS, from that range, a port could be taken as the local port of any
    outgoing connection (a Kafka client of a component starting meanwhile) before the
    child bound it: "the hub's web server cannot bind 127.0.0.1:45439: Address already
    in use" (clean-clone CI, stop 49). Two ports asked for in a row, before either is
    listened on, could otherwise be the same (a hub refused to start with its trader and
    officer ports equal)."""
    below = min(_ephemeral_start(), _LISTENERS_BELOW)
    if below - _LISTENERS_FROM >= 1000:
        for _ in range(200):
            port = random.randrange(_LISTENERS_FROM, below)  # noqa: S311 - not a secret
            if port not in _HANDED_OUT and _listenable(port):
                return _hand_out(port)
    while True:  # no room below the range: the OS picks, as a last resort
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            picked: int = probe.getsockname()[1]
        if picked not in _HANDED_OUT:
            return _hand_out(picked)


def _hand_out(port: int) -> int:
    if len(_HANDED_OUT) >= 10_000:  # far more than a run keeps open; never all
        _HANDED_OUT.clear()
    _HANDED_OUT.add(port)
    return port


# The signals that end a command from outside: a supervisor or ``timeout`` (SIGTERM), the
# terminal closed (SIGHUP). Ctrl-C (SIGINT) already unwinds as KeyboardInterrupt.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(SystemExit):
    """A SIGTERM or SIGHUP, raised where the main thread was; its exit status is the
    shell's for that signal (128 + its number)."""


@contextlib.contextmanager
def stopping_what_it_started_on_termination() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind the command as Ctrl-C does, so that every ``finally`` and
    context manager on the way out runs and the processes it started are stopped.

    Python's default for those signals ends the interpreter at once, unwinding nothing;
    the components and broker a demo, a benchmark or a chaos run starts live in sessions of
    their own (so that a terminal's Ctrl-C reaches the command alone), and were left
    running, holding their ports and state. A second signal while unwinding is ignored, so
    the stopping is not cut short (SIGKILL still ends everything at once). Outside the main
    thread, where Python does not let handlers be set, this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    ended_by: list[int] = []  # the signal, once one came

    def unwind(signum: int, _frame: object) -> None:
        for ending in ENDING_SIGNALS:
            signal.signal(ending, signal.SIG_IGN)
        ended_by.append(signum)
        name = signal.Signals(signum).name
        print(f"{name}: stopping what this command started...", file=sys.stderr, flush=True)
        raise Terminated(128 + signum)

    previous = {ending: signal.signal(ending, unwind) for ending in ENDING_SIGNALS}
    try:
        yield
    except Terminated:
        raise
    except BaseException as unwinding:
        # The handler raises wherever the main thread was; a library that calls back into
        # Python may catch it there and raise its own error instead (lxml reading an
        # xsd:include: the demo exited 1, stop 43's CI). The signal still ends the command.
        if ended_by:
            raise Terminated(128 + ended_by[0]) from unwinding
        raise
    finally:
        for ending, handler in previous.items():
            signal.signal(ending, handler)
    if ended_by:  # caught and swallowed on the way: the command ran on to here
        raise Terminated(128 + ended_by[0])


_REASON_LINES = 3


def _logged_at(line: str, level: str) -> bool:
    """Whether ``line`` was logged at ``level``: the components' JSON lines, or the plain
    format of a library writing to the terminal."""
    return f'"level": "{level}"' in line or f"[{level}]" in line or f" {level} " in line


class ChildExited(RuntimeError):
    """A child process ended while it should have been running; the message holds the
    end of its log."""


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_file: Path

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` of the child's log, after the last lines that say why it
        stopped (logged CRITICAL, else ERROR) when they came before them: a worker's
        shutdown logs a screenful of "Stopping..." after the reason, which the tail alone
        left out (operator review of stop 48: "hub exited with code 1" and no reason)."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        every = text.splitlines()
        tail = every[-lines:]
        before = every[: len(every) - len(tail)]
        # The last of them: a start's passing errors (the broker not up yet) came first
        # and would hide the one that ended it (review of stop 48's own commits).
        why = [line for line in before if _logged_at(line, "CRITICAL")][-_REASON_LINES:]
        if not why and not any(_logged_at(line, "CRITICAL") for line in tail):
            why = [line for line in before if _logged_at(line, "ERROR")][-_REASON_LINES:]
        if not why:
            return "\n".join(tail)
        return "\n".join([*why, "...", *tail])


@dataclass
class ProcessGroup:
    """Children started together and stopped together (in reverse order)."""

    log_dir: Path
    base_env: Mapping[str, str] = field(default_factory=dict)
    children: dict[str, Child] = field(default_factory=dict)
    # Stop every child at once rather than one after the other (the demo: seven graceful
    # stops of one to six seconds each); for groups whose children need nothing from each
    # other on the way out.
    stop_together: bool = False

    def start(
        self,
        name: str,
        args: list[str],
        env: Mapping[str, str] | None = None,
        *,
        module: str = "gun_hub",
    ) -> Child:
        """Start ``python -m <module> <args>`` (a gun-hub command unless ``module`` says
        otherwise, as the benchmark's raw Kafka hops do)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_dir / f"{name}.log"
        full_env = {**os.environ, **self.base_env, **(env or {})}
        with log_file.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        child = Child(name, process, log_file)
        self.children[name] = child
        return child

    def check_alive(self) -> None:
        """Raise with the child's log if any child has died."""
        for child in self.children.values():
            if child.process.poll() is not None:
                raise ChildExited(
                    f"{child.name} exited with code {child.process.returncode}:\n{child.log_tail()}"
                )

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        """Signal one child (SIGTERM: graceful; SIGKILL: a crash) and reap it."""
        child = self.children.pop(name)
        _signal(child, sig)
        return _reap(child, timeout_s)

    def stop_all(self) -> None:
        """Stop every child (SIGTERM, then SIGKILL after 20 s). A Ctrl-C or an ending
        signal meanwhile is ignored: one that cut the stopping short left the children
        not reaped yet running, while the broker was stopped under them (operator review
        of stop 48: a second Ctrl-C during the demo's "stopping"). Whatever still runs
        if the stopping fails all the same is killed."""
        with _signals_held():
            # Taken from the group only once the signals are held: one landing between
            # left them stopped by nobody (review of stop 48's own commits).
            stopping = [self.children.pop(name) for name in reversed(list(self.children))]
            try:
                if self.stop_together:
                    for child in stopping:
                        _signal(child, signal.SIGTERM)
                    for child in stopping:
                        _reap(child, 20.0)
                    return
                for child in stopping:
                    _signal(child, signal.SIGTERM)
                    _reap(child, 20.0)
            finally:
                for child in stopping:
                    # Its whole session: what it started lives on when it exits first.
                    _signal(child, signal.SIGKILL)
                    if child.process.poll() is None:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            child.process.wait(5.0)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) and the ending signals ignored meanwhile, in the main thread (the
    only one where Python lets handlers be set); elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}
    try:
        for held in (signal.SIGINT, *ENDING_SIGNALS):
            previous[held] = signal.signal(held, signal.SIG_IGN)
        yield
    finally:
        for held, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(held, handler)


def _signal(child: Child, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, sig)


def _reap(child: Child, timeout_s: float) -> int:
    """Wait for ``child`` to exit; kill its session if it takes longer than ``timeout_s``."""
    try:
        return child.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _signal(child, signal.SIGKILL)
        return child.process.wait(timeout_s)


def _answers_ok(url: str) -> bool:
    with (
        contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
        urllib.request.urlopen(url, timeout=1) as response,  # noqa: S310 - loopback URL
    ):
        return bool(response.status == 200)
    return False


def wait_http_ok(url: str, timeout_s: float, group: ProcessGroup | None = None) -> None:
    """Poll ``url`` until it answers 200, failing early if a child of ``group`` died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if group is not None:
            group.check_alive()
        if _answers_ok(url):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def wait_all_ready(
    urls: Mapping[str, str], timeout_s: float, group: ProcessGroup | None = None
) -> None:
    """Poll each named component's URL until every one answers 200, within one deadline
    (components started together become ready together); fail early if a child died."""
    waiting = dict(urls)
    deadline = time.monotonic() + timeout_s
    while waiting:
        if group is not None:
            group.check_alive()
        waiting = {name: url for name, url in waiting.items() if not _answers_ok(url)}
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not ready within {timeout_s:.0f}s: {', '.join(waiting)}")
        time.sleep(0.1)


def start_partner_system(
    group: ProcessGroup, authority: str, documents: Path, ledger: Path, *, wait: bool = True
) -> int:
    """Start ``authority``'s simulated partner system and (unless ``wait`` is False) wait
    until it answers; its port (its health URL: :func:`partner_health_url`)."""
    port = free_port()
    group.start(
        f"partner-sim-{authority}",
        [
            "partner-sim",
            authority,
            "--documents",
            str(documents),
            "--port",
            str(port),
            "--db",
            str(ledger),
        ],
    )
    if wait:
        wait_http_ok(partner_health_url(port), 30, group)
    return port


def partner_health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health"


def start_adapter(
    group: ProcessGroup,
    authority: str,
    partner_port: int,
    env: Mapping[str, str] | None = None,
    *,
    wait: bool = True,
    replica: str = "",
) -> int:
    """Start ``authority``'s adapter and (unless ``wait`` is False) wait until it is
    ready; its health port (its readiness URL: :func:`ready_url`). ``replica``: another
    replica of it, ``adapter-<authority>-<replica>``, with a pending queue of its own."""
    health_port = free_port()
    group.start(
        f"adapter-{authority}-{replica}" if replica else f"adapter-{authority}",
        ["adapter", authority],
        {
            "GUN_HUB_ADAPTER__PARTNER_URL": f"http://127.0.0.1:{partner_port}",
            "GUN_HUB_ADAPTER__METRICS_PORT": str(health_port),
            "GUN_HUB_ADAPTER__REPLICA_ID": replica,
            **(env or {}),
        },
    )
    if wait:
        wait_http_ok(ready_url(health_port), 60, group)
    return health_port


def ready_url(port: int) -> str:
    """Readiness of an adapter, a hub worker or a view process serving its probes on
    ``port``."""
    return f"http://127.0.0.1:{port}/readyz"


def start_view(
    group: ProcessGroup,
    data_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    name: str = "view",
    wait: bool = True,
) -> int:
    """Start ``gun-hub view`` (the operations view and the trader and officer listeners
    ``env`` configures, beside hub workers run without the view; ADR 0015) keeping its
    view in ``data_dir``, and (unless ``wait`` is False) wait until it is ready: it has
    read the topics up to where they ended. Its probes port (:func:`ready_url`)."""
    probes_port = free_port()
    group.start(
        name,
        ["view"],
        {
            **(env or {}),
            "GUN_HUB_OPS__VIEW_DATA_DIR": str(data_dir),
            "GUN_HUB_OPS__VIEW_WEB_PORT": str(probes_port),
        },
    )
    if wait:
        wait_http_ok(ready_url(probes_port), 60, group)
    return probes_port
