"""Statistics never stall the hub's event loop, and never grow without bound.

The attack (or just a busy morning): officers ask heavy questions of a view of 200,000
decisions, several at once: the quantities written off over its 1,600,000 write-off lines
(grouped and summed over every line for each page). The statistics themselves come from
counters since issue 12 and are quick; a question over every line is not. Asked on the
event loop, each question held it for a second or more, and with it every agent and
``/livez`` (a liveness probe that times out gets the hub restarted). Asked off the loop,
``/livez`` on the same loop keeps answering (nine probes in ten within 100 ms and all
within a second of what they took before the questions) while the questions run; too
many questions at once are refused as busy, and one that runs past its limit is stopped.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from gun_contract.settings import WebSettings
from gun_hub.ops.lag_metrics import OpsState
from gun_hub.ops.view import FeedTopics, OpsView, ViewQueries
from gun_hub.security.web_auth import add_officer, basic_authorization
from gun_hub.web import build_web
from gun_hub.web.queries import QueryTooSlow, ViewReader
from gun_tools.processes import free_port

DECISIONS = 200_000
# The heavy question: one page of the quantities written off, grouped over every line.
HEAVY = "/stats/written-off"
# A page deep in the written-off lines (the first pages read an index and answer fast since
# stop 37, every page by cursor since stop 57): the question every line before it is read
# for, over half a second here (800,000 lines took 0.3 s once indexed in their order).
DEEP_PAGE = 1_598_999
LIVEZ_BUDGET_S = 0.1
# Probes taken before the questions: what the machine adds to each, questions or not.
QUIET_PROBES = 40
PASSWORD = secrets.token_urlsafe(16)  # made at test time, never committed


def seed_view(path: Path, decisions: int = DECISIONS) -> Path:
    """A view holding ``decisions`` decisions of the last 20 days, two documents each, eight
    write-off lines each, and 5,000 dead letters of as many kinds; written straight into
    its tables, then counted as a view made before its counters is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    OpsView(path, FeedTopics(status="s", facts="f", dlq="d", health="h")).close()
    today = datetime.now(UTC)
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    f"26FRBIG{n:011d}",
                    1,
                    f"FR{n % 500:014d}",
                    "LODGED",
                    ("RELEASE", "REFUSE", "CONTROL_DOCUMENTARY")[n % 3],
                    (today - timedelta(days=n % 20)).date().isoformat(),
                    (today - timedelta(days=n % 20)).timestamp(),
                )
                for n in range(decisions)
            ),
        )
        db.executemany(
            "INSERT INTO decision_documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (f"26FRBIG{n:011d}", 1, item, code, f"DOC.{n}.{item}", authority, "VALID", item)
                for n in range(decisions)
                for item, code, authority in ((1, "N853", "dgal"), (2, "C638", "cites"))
            ),
        )
        db.executemany(
            "INSERT INTO dead_letters (dlq_partition, dlq_offset, at, kind, class, component, "
            "reason, reference, source_topic, source_partition, source_offset, truncated) "
            "VALUES (?, ?, 0.0, ?, 'permanent', 'test', '', '', 'd', ?, ?, 0)",
            ((n % 4, n, f"KIND_{n}", n % 4, n) for n in range(5_000)),
        )
        db.executemany(
            "INSERT INTO write_offs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                (f"26FRBIG{n:011d}", 1, "dgal", "N853", f"DOC.{n}.1", line, "1.5", "KGM", "", 1)
                for n in range(decisions)
                for line in range(1, 9)
            ),
        )
        for table in ("decision_counts", "authority_counts", "code_counts", "dead_letter_counts"):
            db.execute(f"DROP TABLE {table}")
    db.close()
    OpsView(path, FeedTopics(status="s", facts="f", dlq="d", health="h")).close()  # counts
    return path


@pytest.fixture(scope="module")
def big_view(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed_view(tmp_path_factory.mktemp("view") / "view.sqlite3")


@dataclass
class Stack:
    officer_url: str
    livez_url: str
    authorization: str


@pytest.fixture
async def stack(
    big_view: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Stack]:
    """The officer listener over the big view, and a /livez on the same event loop (as
    faust's web server is)."""
    officers = tmp_path / "officers"
    add_officer(officers, "alice", PASSWORD)
    # A generous time limit: two cores shared with other work make a question slow.
    changes = {"query_timeout_s": 120.0, **getattr(request, "param", {})}
    settings = WebSettings(officer_port=free_port(), officers_file=officers, **changes)
    hub_web = build_web(settings, big_view, OpsState(), {"dga"})
    assert hub_web is not None

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    probes = web.Application()
    probes.router.add_get("/livez", livez)
    runner = web.AppRunner(probes, access_log=None)
    await runner.setup()
    probe_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", probe_port).start()
    await hub_web.start()
    try:
        yield Stack(
            f"http://127.0.0.1:{settings.officer_port}",
            f"http://127.0.0.1:{probe_port}/livez",
            basic_authorization("alice", PASSWORD),
        )
    finally:
        await hub_web.stop()
        await runner.cleanup()


async def timed_get(
    session: aiohttp.ClientSession, url: str, authorization: str | None = None
) -> tuple[int, float, dict[str, str]]:
    headers = {"Authorization": authorization} if authorization else {}
    started = time.perf_counter()
    async with session.get(url, headers=headers) as response:
        await response.read()
        return response.status, time.perf_counter() - started, dict(response.headers)


async def probe(
    session: aiohttp.ClientSession, url: str, until: Callable[[], bool], at_least: int = 0
) -> list[float]:
    """``url``'s answer times, one probe every 20 ms until ``until()`` holds (and at least
    ``at_least`` probes)."""
    probes: list[float] = []
    while len(probes) < at_least or not until():
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            assert response.status == 200
        probes.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)
    return probes


def assert_probes_kept_answering(
    quiet: list[float], probes: list[float], question_s: float, meanwhile: str
) -> str:
    """While the questions ran (the slowest for ``question_s``), nine probes in ten
    within the budget of what they took before, and none anywhere near a question's
    duration.

    A loop held by a question holds every probe sent meanwhile for the whole question
    (seconds). The odd probe waits for a CPU on a shared two-core machine (CI runs the
    end-to-end tests beside the unit tests), not for the question: with some 40 probes a
    "99th percentile" is the single slowest one, and one 0.4-s wait for a CPU failed CI.
    What the machine adds to every probe shows in the ``quiet`` ones, taken just before
    the questions on the same loops: a noisy machine once made nine probes in ten take
    181 ms during the questions (stop 44's CI) when the questions had nothing to do with
    it. The budget is what the questions add: 100 ms, or a twentieth of the question's
    own time when the machine makes that longer (a question of 1.3 s alone took 7.1 s in
    stop 45's CI, beside the unit tests, and nine probes in ten 112 ms): a loop the
    question held would hold the probes for all of it. Returns the summary, for the
    run's log.
    """
    assert len(probes) >= 5, f"only {len(probes)} probes: the loop was held"
    before, during = sorted(quiet), sorted(probes)
    p90_before, worst_before = before[int(len(before) * 0.9)], before[-1]
    p90, worst = during[int(len(during) * 0.9)], during[-1]
    summary = (
        f"/livez: 90% within {p90 * 1000:.0f} ms (before: {p90_before * 1000:.0f} ms), max "
        f"{worst * 1000:.0f} ms (before: {worst_before * 1000:.0f} ms), median "
        f"{during[len(during) // 2] * 1000:.0f} ms over {len(during)} probes, while "
        f"{meanwhile} ran"
    )
    assert p90 < p90_before + max(LIVEZ_BUDGET_S, question_s / 20), summary
    # From the quiet probes' p90, not their slowest: one stall among them (the hub still
    # starting) would otherwise lift the ceiling past a question holding the loop.
    assert worst < p90_before + 10 * LIVEZ_BUDGET_S, summary
    return summary


def test_the_question_alone_would_hold_the_loop_far_beyond_the_probe_budget(
    big_view: Path,
) -> None:
    """What the test below guards against: the same question asked on the loop."""
    view = OpsView(big_view, FeedTopics(status="s", facts="f", dlq="d", health="h"))
    try:
        started = time.perf_counter()
        lines = view.written_off(limit=1001, offset=DEEP_PAGE)
        took = time.perf_counter() - started
        assert view.statistics()["decisions"]["total"] == DECISIONS  # from the counters
    finally:
        view.close()
    assert len(lines) == 1001
    assert took > 3 * LIVEZ_BUDGET_S, f"{took:.2f}s: too fast to tell anything"


async def test_livez_answers_within_100_ms_while_statistics_run(stack: Stack) -> None:
    officer = stack.authorization
    async with aiohttp.ClientSession() as session:
        # Sign in once (scrypt runs off the loop too), then measure.
        assert (await timed_get(session, f"{stack.officer_url}/api/dashboard", officer))[0] == 200
        quiet = await probe(session, stack.livez_url, lambda: True, at_least=QUIET_PROBES)
        questions = [  # different questions (none shares another's answer), one per thread
            asyncio.create_task(
                timed_get(session, f"{stack.officer_url}{HEAVY}?offset={DEEP_PAGE + n}", officer)
            )
            for n in range(2)
        ]
        probes = await probe(session, stack.livez_url, lambda: all(q.done() for q in questions))
        answers = [q.result() for q in questions]
    assert [code for code, _, _ in answers] == [200, 200]
    slowest = max(took for _, took, _ in answers)
    assert slowest > 3 * LIVEZ_BUDGET_S  # the questions did take their time
    assert_probes_kept_answering(
        quiet, probes, slowest, f"statistics over {DECISIONS} decisions ({slowest:.1f} s)"
    )


@pytest.mark.parametrize("stack", [{"query_max_waiting": 2, "query_threads": 1}], indirect=True)
async def test_too_many_questions_at_once_are_refused_as_busy(stack: Stack) -> None:
    officer = stack.authorization
    async with aiohttp.ClientSession() as session:
        await timed_get(session, f"{stack.officer_url}/api/dashboard", officer)
        # Deep pages, each over half a second: the first pages are read through an index
        # since stop 57 and end in milliseconds, so on a loaded machine a question could
        # end before the last one arrived and three or four were answered (a helper's run).
        answers = await asyncio.gather(
            *(
                timed_get(session, f"{stack.officer_url}{HEAVY}?offset={DEEP_PAGE - n}", officer)
                for n in range(4)
            )
        )
        # The same question asked five times at once is answered once, for all five.
        same = await asyncio.gather(
            *(timed_get(session, f"{stack.officer_url}/stats", officer) for _ in range(5))
        )
    codes = sorted(code for code, _, _ in answers)
    assert codes.count(200) == 2
    assert codes.count(503) == 2
    assert all(h.get("Retry-After") == "1" for code, _, h in answers if code == 503)
    assert [code for code, _, _ in same] == [200] * 5


QUERY_TIMEOUT_S = 0.05


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("gun_hub_view_queries_refused_total", {"reason": reason}) or 0


@pytest.mark.parametrize("stack", [{"query_timeout_s": QUERY_TIMEOUT_S}], indirect=True)
async def test_a_question_past_its_time_limit_is_stopped(stack: Stack) -> None:
    slow_before, busy_before = refused("slow"), refused("busy")
    async with aiohttp.ClientSession() as session:
        code, took, _ = await timed_get(
            session, f"{stack.officer_url}{HEAVY}?offset={DEEP_PAGE}", stack.authorization
        )
    assert code == 503
    # Stopped by its time limit (interrupted in its thread), not refused as busy.
    assert (refused("slow") - slow_before, refused("busy") - busy_before) == (1, 0)
    # Answered soon after the limit; the margin is for a CPU shared with other work (a
    # bound of 1 s flaked there), not part of what is shown.
    assert took < QUERY_TIMEOUT_S + 2.0


async def test_a_list_answer_never_holds_more_than_a_page(stack: Stack) -> None:
    url = f"{stack.officer_url}/stats/declarants/FR00000000000001/documents"
    async with aiohttp.ClientSession() as session:
        headers = {"Authorization": stack.authorization}
        async with session.get(url, headers=headers) as response:
            first = await response.json()
        async with session.get(f"{url}?limit=1000", headers=headers) as response:
            everything = await response.json()
        async with session.get(f"{url}?limit=1001", headers=headers) as response:
            assert response.status == 400
    assert len(first["documents"]) == 100  # the default page
    assert first["next_offset"] == 100
    assert len(everything["documents"]) == 800  # 400 declarations x 2 documents
    assert everything["next_offset"] is None


async def test_closing_the_reader_interrupts_a_running_question(big_view: Path) -> None:
    """A hub that stops does not wait for a long question to finish."""
    reader = ViewReader(big_view, threads=1, timeout_s=120)

    running = threading.Event()
    rounds_done = 0

    def long_question(q: ViewQueries) -> list[list[dict[str, Any]]]:
        """The heavy question asked over and over (a second or more each)."""
        nonlocal rounds_done
        # Set from inside SQLite while a statement runs: an interrupt between two
        # statements would be lost (sqlite3_interrupt only stops running statements).
        q._db.set_progress_handler(running.set, 10_000)
        answers = []
        for _ in range(20):
            answers.append(q.written_off(limit=1001))
            rounds_done += 1
        return answers

    question = asyncio.create_task(reader.ask(long_question))
    assert await asyncio.to_thread(running.wait, 30), "the question never started"
    await asyncio.to_thread(reader.close)
    with pytest.raises(QueryTooSlow):  # interrupted, not answered
        await question
    assert rounds_done < 20


# A quick statement (one declaration's history, by its index) and the heavy question after
# it, asked twice: a question SQLite does not stop runs both to the end.
QUICK_REFERENCE = "26FRBIG00000000001"
HEAVY_ROUNDS = 2

# Where the interrupt lands: before the question's first statement, or between its first
# (quick) statement and the heavy ones. sqlite3_interrupt only stops the statements running
# when it is called: at either place there is none.
PLACES = ["before-the-first-statement", "between-two-statements"]


@pytest.mark.parametrize("place", PLACES)
async def test_closing_the_reader_when_no_statement_runs_stops_the_question_at_the_next(
    big_view: Path, monkeypatch: pytest.MonkeyPatch, place: str
) -> None:
    """A hub that stops while a question is between two statements does not wait for it."""
    reader = ViewReader(big_view, threads=1, timeout_s=120)
    # close() interrupts every connection, then waits for the threads: once it waits, its
    # interrupts have been sent.
    closing_sent_its_interrupts = threading.Event()
    shutdown = reader._executor.shutdown

    def shutdown_after_the_interrupts(wait: bool = True, *, cancel_futures: bool = False) -> None:
        closing_sent_its_interrupts.set()
        shutdown(wait=wait, cancel_futures=cancel_futures)

    monkeypatch.setattr(reader._executor, "shutdown", shutdown_after_the_interrupts)
    waiting = threading.Event()
    heavy_rounds_done = 0

    def question(q: ViewQueries) -> None:
        nonlocal heavy_rounds_done
        if place == "between-two-statements":
            q.history(QUICK_REFERENCE)
        waiting.set()
        assert closing_sent_its_interrupts.wait(30), "the reader was never closed"
        for _ in range(HEAVY_ROUNDS):
            q.written_off(limit=1001)
            heavy_rounds_done += 1

    asked = asyncio.create_task(reader.ask(question))
    assert await asyncio.to_thread(waiting.wait, 30), "the question never started"
    await asyncio.to_thread(reader.close)
    with pytest.raises(QueryTooSlow):  # stopped, not answered
        await asked
    assert heavy_rounds_done == 0


def time_limit_alarm(db: sqlite3.Connection) -> threading.Thread:
    """The timer that interrupts ``db`` at its question's time limit."""
    (alarm,) = (
        thread
        for thread in threading.enumerate()
        if isinstance(thread, threading.Timer) and thread.function == db.interrupt
    )
    return alarm


@pytest.mark.parametrize("place", PLACES)
async def test_a_question_past_its_time_limit_when_no_statement_runs_stops_at_the_next(
    big_view: Path, place: str
) -> None:
    """The limit is kept even when it falls between two statements of a question."""
    reader = ViewReader(big_view, threads=1, timeout_s=QUERY_TIMEOUT_S)
    heavy_rounds_done = 0

    def question(q: ViewQueries) -> None:
        nonlocal heavy_rounds_done
        if place == "between-two-statements":
            q.history(QUICK_REFERENCE)
        alarm = time_limit_alarm(q._db)
        alarm.join(30)  # the limit passes and its interrupt is sent
        assert not alarm.is_alive()
        for _ in range(HEAVY_ROUNDS):
            q.written_off(limit=1001)
            heavy_rounds_done += 1

    slow_before = refused("slow")
    try:
        with pytest.raises(QueryTooSlow):
            await reader.ask(question)
    finally:
        await asyncio.to_thread(reader.close)
    assert heavy_rounds_done == 0
    assert refused("slow") - slow_before == 1
