"""Declarations held from their own event until their decision (ADR 0009, admission.py).

A sealed declaration is decided once its message id is claimed: its record is held (on
its way, for the watchdog) from its own event until the verdict admits it, and is marked
handled by the settling of its decision. Its own event has effects too: the claim, a
redrive's audit link, its table writes. They were tracked with nothing to do once
delivered, so the mark came from the decision alone: ordered after them in practice (the
claim's round trip), never by rule; and a plain declaration (no claim, development only),
admitted within its own event, was marked by whichever settling finished first, its
empty own outbox before its decision (both found by review in stop 32).

Here the decision's settling waits for the record's own effects as well, and a record
whose own effects or decision fail for good is let go (read again). A verdict that
releases several declarations and fails on one lets go of that one and every one after
it, which nothing else would settle (found by the same review: held until a rebalance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Sequence

from gun_hub.pipeline.admission import Waiting
from gun_hub.runtime import ownership
from gun_hub.runtime.settling import Settling

Position = tuple[int, int]  # (partition, offset) of a declarations record
Settle = Callable[[int, int], None]


class OwnEffectsLost(RuntimeError):
    """A held declaration's own effects were not delivered: it is read again."""


class HeldDeclarations:
    def __init__(self, settling: Settling, mark: Settle, release: Settle) -> None:
        self._settling = settling
        self._mark = mark
        self._release = release
        self._own: dict[Position, asyncio.Future[bool]] = {}

    def __len__(self) -> int:
        return len(self._own)

    def own_effects(self, partition: int, offset: int, settled: Awaitable[None]) -> None:
        """The held record's own effects, on their way (tracked in its own event, where
        its table writes are found): its decision's settling waits for them."""
        own: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._own[(partition, offset)] = own

        def delivered() -> None:
            if not own.done():
                own.set_result(True)

        def lost() -> None:
            # Run in the record's own settling: a partition that changed hands since
            # dropped this hold at the revocation, and one taken since is the new
            # tenure's, not to be released (review of stop 35's diff; faust_app.let_go).
            if ownership.acts_for_its_partition():
                self._release(partition, offset)
            if not own.done():
                own.set_result(False)

        self._settling.track(settled, delivered, otherwise=lost)

    def decided(self, partition: int, offset: int, settled: Awaitable[None]) -> None:
        """Its decision, on its way (tracked in the context the decision was made in):
        the record is marked once the decision and its own effects are delivered."""
        own = self._own.pop((partition, offset), None)
        self._settling.track(
            _both(settled, own),
            lambda: self._mark(partition, offset),
            otherwise=lambda: self._release(partition, offset),
        )

    async def admit(
        self, released: Sequence[Waiting], decide: Callable[[Waiting], Awaitable[None]]
    ) -> None:
        """``decide`` each released declaration in log order (it calls ``decided``). If
        one fails, it and every one after it are let go, then the failure is raised:
        released from the admissions, nothing else would ever settle them."""
        for index, waiting in enumerate(released):
            try:
                await decide(waiting)
            except BaseException:
                for rest in released[index:]:
                    self._own.pop((rest.source.partition, rest.source.offset), None)
                    self._release(rest.source.partition, rest.source.offset)
                raise

    def forget(self, partitions: Collection[int]) -> None:
        """Partitions given up: their held records are the next owner's."""
        for position in [p for p in self._own if p[0] in partitions]:
            del self._own[position]


async def _both(settled: Awaitable[None], own: asyncio.Future[bool] | None) -> None:
    if own is None:
        await settled
        return
    _, delivered = await asyncio.gather(settled, asyncio.shield(own))
    if not delivered:
        raise OwnEffectsLost("the declaration's own effects were not delivered")
