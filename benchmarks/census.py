"""The broker's request and record census for ``./tasks bench-hops``: how many Kafka
requests of each type, and how many records on each topic, the broker handled per
declaration of the traced batch.

The benchmark's own broker runs with its JMX agent on (127.0.0.1, a free port, no
authentication: ``LocalBroker(jmx_port=...)``). ``benchmarks/jmx/Census.java``, run once
for the whole batch as ``java Census.java PORT``, prints the broker's counters each time
it reads a line: every ``kafka.network:type=RequestMetrics,name=RequestsPerSec`` meter
(one per request type and version) and every
``kafka.server:type=BrokerTopicMetrics,name=MessagesInPerSec`` meter (one per topic, and
one without a topic for all of them). One snapshot before the batch is sent, one after
its last decision is seen; their difference, divided by the batch's declarations, is the
census. It is a diagnostic: when the counters cannot be read the benchmark says why and
carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

PROGRAM = Path(__file__).resolve().parent / "jmx" / "Census.java"
# A small, quick JVM: it only reads a few hundred counters now and then.
JAVA_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx64m", "-XX:-UsePerfData")
# Kafka meters these fetches twice: as Fetch, and again as the consumers' or the followers'
# share of Fetch. Reported, never added to the total.
FETCH_SUBSETS = frozenset({"FetchConsumer", "FetchFollower"})
TOP_REQUESTS = 15
TOP_TOPICS = 20


class CensusError(RuntimeError):
    """The counters could not be read or made sense of; the message says why."""


@dataclass(frozen=True)
class Snapshot:
    """The broker's counters at one moment, totals since it started."""

    requests: Mapping[str, int]  # per request type, its versions summed
    records: Mapping[str, int]  # per topic
    records_all: int | None  # the meter of all topics together (None: not printed)


# -- the figures (pure) -------------------------------------------------------------------


def parse_snapshot(text: str) -> Snapshot:
    """One snapshot as ``Census.java`` prints it (up to, not including, its ``end``)."""
    requests: dict[str, int] = {}
    records: dict[str, int] = {}
    records_all: int | None = None
    for line in text.splitlines():
        fields = line.split()
        try:
            match fields:
                case []:
                    continue
                case ["request", name, _version, count]:
                    requests[name] = requests.get(name, 0) + int(count)
                case ["records", topic, count]:
                    records[topic] = records.get(topic, 0) + int(count)
                case ["records-all", count]:
                    records_all = int(count)
                case ["end"]:
                    break
                case _:
                    raise CensusError(f"a census line not understood: {line!r}")
        except ValueError:
            raise CensusError(f"a census count that is not a number: {line!r}") from None
    return Snapshot(requests, records, records_all)


def difference(before: Snapshot, after: Snapshot) -> Snapshot:
    """What was counted between two snapshots. A meter first seen in ``after`` (a request
    type or topic the broker had not met yet) counted from zero; counts that did not move
    are left out."""

    def moved(first: Mapping[str, int], then: Mapping[str, int]) -> dict[str, int]:
        return {k: n for k, v in then.items() if (n := v - first.get(k, 0)) > 0}

    records_all = None
    if after.records_all is not None:
        records_all = after.records_all - (before.records_all or 0)
    return Snapshot(
        moved(before.requests, after.requests), moved(before.records, after.records), records_all
    )


def _largest_first(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def census(
    before: Snapshot, after: Snapshot, declarations: int, seconds: float | None = None
) -> dict[str, Any]:
    """The census of a batch of ``declarations`` taken ``seconds`` apart: requests per
    declaration by type and records per declaration by topic (largest first), the totals,
    and the raw counts. The request total counts Fetch once (not its FetchConsumer and
    FetchFollower parts); the record total is the broker's all-topics meter."""
    if declarations <= 0:
        raise ValueError("a census is per declaration: the batch had none")
    moved = difference(before, after)
    requests = _largest_first(moved.requests)
    records = _largest_first(moved.records)
    all_requests = sum(n for name, n in requests if name not in FETCH_SUBSETS)
    all_records = moved.records_all if moved.records_all is not None else sum(n for _, n in records)

    def per(count: int) -> float:
        return round(count / declarations, 2)

    return {
        "declarations": declarations,
        "seconds": round(seconds, 1) if seconds is not None else None,
        "requests_per_declaration": {name: per(n) for name, n in requests},
        "records_per_declaration": {topic: per(n) for topic, n in records},
        "totals": {
            "requests": all_requests,
            "records": all_records,
            "requests_per_declaration": per(all_requests),
            "records_per_declaration": per(all_records),
        },
        "counts": {"requests": dict(requests), "records": dict(records)},
    }


def render_census(
    figures: Mapping[str, Any], top_requests: int = TOP_REQUESTS, top_topics: int = TOP_TOPICS
) -> str:
    """The census as two short tables, largest first: request types, then topics."""
    totals = figures["totals"]
    requests: Mapping[str, float] = figures["requests_per_declaration"]
    records: Mapping[str, float] = figures["records_per_declaration"]
    lines = [
        f"broker census, per declaration of the batch ({figures['declarations']:,}): "
        f"{totals['requests_per_declaration']:,.2f} requests, "
        f"{totals['records_per_declaration']:,.2f} records",
        "",
        "| request | per declaration |",
        "|---|---:|",
    ]
    for name, per in list(requests.items())[:top_requests]:
        label = f"{name} (part of Fetch)" if name in FETCH_SUBSETS else name
        lines.append(f"| {label} | {per:,.2f} |")
    if len(requests) > top_requests:
        lines.append(f"| ({_more(len(requests) - top_requests, 'type')}) | |")
    lines.append(f"| all requests | {totals['requests_per_declaration']:,.2f} |")
    lines += ["", "| topic | records per declaration |", "|---|---:|"]
    for topic, per in list(records.items())[:top_topics]:
        lines.append(f"| {topic} | {per:,.2f} |")
    if len(records) > top_topics:
        lines.append(f"| ({_more(len(records) - top_topics, 'topic')}) | |")
    lines.append(f"| all topics | {totals['records_per_declaration']:,.2f} |")
    return "\n".join(lines)


def _more(count: int, what: str) -> str:
    return f"{count} more {what}{'s' if count != 1 else ''}"


# -- reading the counters -----------------------------------------------------------------


def census_command(jmx_port: int | None, java: str | None = None) -> list[str]:
    """How ``Census.java`` is run against the JMX agent on ``jmx_port``."""
    if jmx_port is None:
        raise CensusError("the broker runs without JMX")
    java = java or shutil.which("java")
    if java is None:
        raise CensusError("no java on PATH to read the broker's JMX counters")
    return [java, *JAVA_OPTIONS, str(PROGRAM), str(jmx_port)]


class CensusReader:
    """One census program for a whole run: :meth:`snapshot` asks it for the counters,
    :meth:`close` ends it. Never raises: the first failure is kept in :attr:`problem`,
    and every snapshot from then on is None."""

    def __init__(self, command: Sequence[str] | None, timeout_s: float = 60.0) -> None:
        self._command = list(command) if command is not None else None
        self._timeout_s = timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._errors: IO[bytes] | None = None
        self.problem: str | None = None if command is not None else "no census program"

    @classmethod
    def for_port(cls, jmx_port: int | None, java: str | None = None) -> CensusReader:
        try:
            return cls(census_command(jmx_port, java))
        except CensusError as err:
            reader = cls(None)
            reader.problem = str(err)
            return reader

    async def snapshot(self) -> Snapshot | None:
        """The counters now, or None (and :attr:`problem` says why)."""
        if self.problem is not None:
            return None
        try:
            return await asyncio.wait_for(self._ask(), self._timeout_s)
        except TimeoutError:
            self.problem = f"no snapshot within {self._timeout_s:g}s"
        except (CensusError, OSError) as err:
            self.problem = str(err) or type(err).__name__
        await self.close(patience_s=0)
        return None

    async def _ask(self) -> Snapshot:
        if self._process is None and self._command is not None:
            # Its standard error goes to a file: read only when it has failed.
            self._errors = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            self._process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=self._errors,
            )
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise CensusError("the census program is not running")
        try:
            process.stdin.write(b"\n")
            await process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            raise CensusError(await self._why_gone()) from None
        lines: list[str] = []
        while (line := await process.stdout.readline()) != b"":
            text = line.decode(errors="replace").rstrip("\n")
            if text == "end":
                return parse_snapshot("\n".join(lines))
            lines.append(text)
        raise CensusError(await self._why_gone())

    async def _why_gone(self) -> str:
        """The program's own last words (one line on its standard error), or its exit code."""
        code = None
        if self._process is not None:
            with contextlib.suppress(TimeoutError):
                code = await asyncio.wait_for(self._process.wait(), 10)
        said = ""
        if self._errors is not None:
            self._errors.seek(0)
            said = self._errors.read().decode(errors="replace").strip()
        last = said.splitlines()[-1] if said else ""
        return last or f"the census program ended (exit {code})"

    async def close(self, patience_s: float = 10.0) -> None:
        """End the program: its input closed, killed if still there after ``patience_s``."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), patience_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._errors is not None:
            self._errors.close()
            self._errors = None
