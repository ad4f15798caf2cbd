"""The hub's faust worker, ended by a refusal of its principal's rights in one sentence,
and by a state key it lacks in another.

A hub started with another principal's credentials (an adapter's ``.env``), or with ACLs
not all granted, is let into the cluster and refused later, inside faust: creating its
leader topic or a changelog, initialising a transactional producer, taking a publisher's
partition. mode logged each with its traceback and exited 1 (carried from review stop
39-O, O4). :class:`HubWorker` keeps the refusal, :class:`ExpectedEndsWithoutTraceback`
logs it in one line, and ``gun-hub hub`` ends with ``cannot start:`` naming what was
refused and whom, exit 2, as for every fault of the configuration (startup.py).

A worker meeting a value sealed with a state key it does not hold (``StateKeyMissing``: a
rotation not deployed to it, ADR 0022) stops too, exit 1, after the agent or the decision
publisher said so in a line naming the key and what to do: an expected end of a
deployment left unfinished, logged without the traceback mode adds to its crash.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.errors import KafkaError
from faust.worker import Worker

from gun_contract.kafka.refusals import rights_refusal
from gun_contract.security.state_cipher import StateKeyMissing
from gun_contract.stop_deadline import STOPPED_SHORT, StopDeadline, waiting_in

log = logging.getLogger(__name__)


class HubWorker(Worker):  # type: ignore[misc]
    """faust's worker, which keeps a refusal of rights that ended its start or its run,
    and whose stop is bounded."""

    refused: KafkaError | None = None

    def __init__(self, *args: Any, deadline: StopDeadline | None = None, **kwargs: Any) -> None:
        """``deadline``: started as the stop begins (a signal, or the run ending)."""
        super().__init__(*args, **kwargs)
        self._deadline = deadline or StopDeadline("the hub worker")

    def _schedule_shutdown(self, signal: Any) -> None:
        self._deadline.start()
        super()._schedule_shutdown(signal)

    def stop_and_shutdown(self) -> None:
        """mode's, the stop bounded: a stop that waits on what never comes (after a
        crash, a commit through the consumer thread the crash had stopped: CI, stop 50;
        with the broker gone, faust's flush of its producer: the stop audit of stop 51)
        left the process running for ever. Two thirds of the deadline on, what it waits
        on is logged and the loop shut down (every task cancelled, the crash's reason
        raised as before: a refusal is said in its sentence); at the deadline the process
        ends whatever still runs (faust's consumer thread, a non-daemon thread that kept a
        worker whose loop was closed alive)."""
        self._deadline.start()
        self._deadline.watching(self.loop)
        stopping: asyncio.Future[Any] | None = None
        cut_short = False
        if self._signal_stop_future and not self._signal_stop_future.done():
            stopping = self._signal_stop_future
        elif not self._stopped.is_set():
            stopping = asyncio.ensure_future(self.stop(), loop=self.loop)
        if stopping is not None:
            within_s = self._deadline.within_s * 2 / 3
            done, _ = self.loop.run_until_complete(asyncio.wait({stopping}, timeout=within_s))
            if done:
                stopping.result()  # what the stop raised, raised as mode did
            else:
                cut_short = True
                log.error(
                    "the worker did not stop within %g s; its loop is shut down where it "
                    "waited: %s",
                    within_s,
                    waiting_in(self.loop),
                )
        self._shutdown_loop()  # raises a crash's reason, as mode does
        if cut_short:
            # Not a clean stop (mode would exit 0): what the loop held was cut.
            raise SystemExit(STOPPED_SHORT)

    async def start(self) -> None:
        # mode logs what ends the start with its traceback ("Error: ..."), then exits 1.
        try:
            await super().start()
        except Exception as err:
            refused = rights_refusal(err)
            if refused is None:
                raise
            self.refused = refused
            _EXPECTED_ENDS.ended = True  # its teardown's tracebacks are not logged either

    def _crash(self, reason: BaseException) -> None:
        """mode's, the first refusal of rights kept. A crash marks the service that
        crashed and every one above it, up to the worker, with its reason, the one before
        replaced: the app crashed refused marks its producer crashed, and faust's fetcher,
        still handing a backlog to the agents, found that producer's buffer over its size
        and not running ("Cannot flush: Producer not Running"), crashed in turn, and
        replaced the app's reason and the worker's (CI, 200 declarations waiting: exit 1,
        no sentence). The refusal is the cause; what failed after it, its consequence."""
        if self.refused is None:
            self.refused = rights_refusal(reason)
        super()._crash(reason)

    def refusal(self) -> KafkaError | None:
        """The refusal of rights that ended this worker (its start, or a crash), if any:
        the first a crash reached it with (``_crash``), its own crash's, or its app's
        (the worker's may be what failed after, stopping the crashed app: faust's fetcher
        flushing a producer the crash had stopped; the stop audit of stop 51, 200
        declarations waiting: exit 1, no sentence)."""
        return (
            self.refused
            or rights_refusal(self.crash_reason)
            or rights_refusal(getattr(self.app, "crash_reason", None))
        )


def _state_key_missing(err: BaseException | None) -> StateKeyMissing | None:
    """The missing state key that ``err`` is or was caused by, or None."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, StateKeyMissing):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def expected_end(err: BaseException | None) -> bool:
    """Whether ``err`` ends the worker for a reason said in a sentence already: a refusal
    of the principal's rights, or a state key it lacks (named by whoever met it)."""
    return rights_refusal(err) is not None or _state_key_missing(err) is not None


class ExpectedEndsWithoutTraceback(logging.Filter):
    """A record about an expected end (a refusal of rights, a state key missing) keeps its
    message, not its traceback: the reason is the configuration's or the deployment's,
    said once more, in a sentence, as the process ends. So does every record after it:
    the worker's teardown, which faust logs with tracebacks (each agent it cancels; mode
    stopping a thread whose loop it closed)."""

    def __init__(self) -> None:
        super().__init__()
        self.ended = False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.ended and record.exc_info:
            self.ended = expected_end(record.exc_info[1])
        if self.ended:
            record.exc_info = None
            record.exc_text = None
        return True


# One for every handler (what one saw, all saw) and for the worker, which tells it of a
# refusal that ended its start (nothing logs that one).
_EXPECTED_ENDS = ExpectedEndsWithoutTraceback()


def log_expected_ends_without_traceback() -> None:
    for handler in logging.getLogger().handlers:
        handler.addFilter(_EXPECTED_ENDS)
