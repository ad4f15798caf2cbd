"""The admission limit: how many declarations one hub worker takes in at once.

A declaration is *taken in* from the moment the consumer hands it to the intake's queue
until its message id's claim is judged and it is admitted (``pipeline/admission.py``):
waiting in the queue, in the intake's hands, then held. ``hub.admission_limit`` bounds
the three together (ADR 0008, docs/bounded-state.md): the consumer asks
:meth:`AdmissionLimit.may_take` before it hands each fetched declaration over
(``StrictOffsetsConsumer``, the app's ``may_hand_over``), and a declaration refused is
left with its partition's records after it, the partition paused; :meth:`AdmissionLimit.keep`,
called after each record the intake and the claims agent handle, pauses every
declarations partition while the held alone reach the limit and fetches the paused ones
again once what is taken in is down to half of it.

A partition whose held declarations wait for a record the intake has not read (faust
skipped it; ``Admissions.blocked``) is exempt: paused, that record would never be fetched
again and what the partition holds would wait for good.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

from faust.types import TP

from gun_hub import metrics
from gun_hub.runtime.faust_app import InHand


class Held(Protocol):
    """The declarations held while their claims are judged (``Admissions``)."""

    def __len__(self) -> int: ...

    def blocked(self) -> dict[int, int]: ...


class Fetcher(Protocol):
    """The part of the worker's consumer (``StrictOffsetsConsumer``) the limit steers."""

    throttled: set[TP]

    def queued(self, topic: str) -> int: ...

    def assignment(self) -> Iterable[TP]: ...

    def throttle(self, tps: Iterable[TP]) -> None: ...

    async def unthrottle(self, only: Iterable[TP] | None = None) -> None: ...


class AdmissionLimit:
    """Keeps the declarations a worker has taken in within ``limit`` (module docstring)."""

    def __init__(
        self,
        held: Held,
        consumer: Callable[[], Fetcher | None],
        declarations_topic: str,
        limit: int,
        intake_in_hand: InHand,
    ) -> None:
        self._held = held
        self._consumer = consumer
        self._topic = declarations_topic
        self._limit = limit
        self._in_hand = intake_in_hand

    def taken_in(self, fetcher: Fetcher) -> int:
        """Declarations held, waiting in the intake's queue, and in its hands. One held
        while the intake still handles it is counted twice for that moment: one fewer is
        taken in then, the safe side."""
        return len(self._held) + fetcher.queued(self._topic) + self._in_hand.count

    def may_take(self, tp: TP) -> bool:
        """Whether a fetched record may be handed over: any of another topic; a
        declaration while what is taken in stays under the limit, or of a partition
        waiting for a record not yet read (that record is what would release it)."""
        if tp.topic != self._topic:
            return True
        fetcher = self._consumer()
        if fetcher is None:
            return True
        if self.taken_in(fetcher) < self._limit:
            return True
        if tp.partition in self._held.blocked():
            return True
        if not fetcher.throttled:
            metrics.DECLARATION_FETCH_THROTTLED.inc()
        return False

    async def keep(self) -> None:
        """Pauses the declarations partitions while the held reach the limit, fetches the
        paused ones again once what is taken in is down to half of it. Never waits for a
        verdict: the verdicts come through the same consumer."""
        fetcher = self._consumer()
        if fetcher is None:
            return
        metrics.DECLARATIONS_HELD.set(len(self._held))
        if not fetcher.throttled and len(self._held) < self._limit:
            return  # the usual case, per record: nothing to pause or resume
        blocked = {TP(self._topic, p) for p in self._held.blocked()}
        if blocked & fetcher.throttled:
            await fetcher.unthrottle(only=blocked)
        if len(self._held) >= self._limit:  # counted again: the unthrottle yielded
            if not fetcher.throttled:
                metrics.DECLARATION_FETCH_THROTTLED.inc()
            fetcher.throttle(
                tp for tp in fetcher.assignment() if tp.topic == self._topic and tp not in blocked
            )
        elif fetcher.throttled and self.taken_in(fetcher) <= self._limit // 2:
            # Judged on what ``may_take`` counts: judged on the held alone, a partition
            # was resumed and left again at its first record, one seek a declaration
            # (review of stop 49's change).
            await fetcher.unthrottle()
