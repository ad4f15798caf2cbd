"""What retention deleted from the hub's inputs before any worker read it is named.

The hub's consumer reads a partition from its committed offset; a hub away (or that far
behind) longer than an input topic keeps records finds that offset below the log's start,
and aiokafka reads on from the start (``auto_offset_reset="earliest"``). The offset
watchdog then steps the commit point over the offsets below the start: they hold no record
any more (``watchdog.py``). For the topics whose records someone waits on, that step is
never silent: declarations the clearance system waits for a decision on, and the
partners' answers (a write-off's confirmation deleted unread leaves FOLLOW_UP_PENDING for
ever). Each run of offsets deleted unread becomes one dead letter of kind
``INPUT_AGED_OUT_OF_THE_LOG`` (source = the first offset lost, the reason names the
range; nothing of the records is left to keep), an error line and
``gun_hub_inputs_aged_out_total{topic}`` (and ``gun_hub_dead_letters_total{kind}``, as every
dead letter of the hub), and the watchdog steps over it only once the
broker has the dead letter. Records a worker handled, or fetched and still has on their
way, before retention deleted them are not lost: the watchdog leaves them out, and never
commits past one on its way (review stop 38-g, G2). The adapters do the same for their
request topics (``REQUEST_AGED_OUT_OF_THE_LOG``, ADR 0014 addendum).

Once per gap, at least once: a worker names a gap once (remembered by partition); the
commit past it follows at the next commit, so only a worker dying or losing the partition
between the dead letter and that commit leaves the gap to the next owner, which names it
again (from the same first offset, up to the log start it then finds).

The hub's internal topics (claims, deadline ticks, operator actions, the dead letters
themselves) are stepped over in silence, as before: what they carry is derived again from
the inputs and the tables (a claim is made again when its declaration is read again,
deadlines are swept from the open cases), or it is only a ticker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from faust.types import TP

from gun_contract.counters import export_at_zero
from gun_contract.dead_letter import ErrorClass, SourcePosition, dead_letter_record
from gun_contract.effects import OutgoingRecord
from gun_hub import metrics

log = logging.getLogger(__name__)

INPUT_AGED_OUT = "INPUT_AGED_OUT_OF_THE_LOG"
"""The dead-letter kind of an input topic's records deleted by its retention before any
worker of the hub read them."""

COMPONENT = "hub.inputs"

Send = Callable[[OutgoingRecord], Awaitable[Any]]


class InputsAgedOut:
    """Names the runs of offsets of ``inputs`` deleted before they were read.

    ``inputs``: each watched topic, and what its records lost are (said in the log line).
    ``send`` returns once the broker has acknowledged the record (it raises otherwise:
    the gap is then neither named nor stepped over, and looked at again)."""

    def __init__(self, inputs: Mapping[str, str], dlq: str, send: Send) -> None:
        self.inputs = dict(inputs)
        export_at_zero(metrics.INPUTS_AGED_OUT, topic=self.inputs)
        export_at_zero(metrics.DEAD_LETTERS, kind=[INPUT_AGED_OUT])
        self._dlq = dlq
        self._send = send
        # Per partition, the offset up to which its gaps are named: the watchdog may find
        # the same log start twice before the commit moves past it.
        self._named_up_to: dict[TP, int] = {}

    async def deleted_unread(self, tp: TP, lost: Iterable[range]) -> None:
        """Dead-letter, log and count each run of ``lost`` offsets of ``tp`` not named
        yet (nothing for a topic not among the inputs)."""
        if tp.topic not in self.inputs:
            return
        named = self._named_up_to.get(tp, -1)
        for span in lost:
            unnamed = range(max(span.start, named), span.stop)
            if not unnamed:
                continue
            await self._name(tp, unnamed)
            named = unnamed.stop
            self._named_up_to[tp] = named

    async def _name(self, tp: TP, unread: range) -> None:
        last = unread[-1]
        await self._send(
            dead_letter_record(
                self._dlq,
                b"",
                error_class=ErrorClass.PERMANENT,
                kind=INPUT_AGED_OUT,
                reason=(
                    f"records {unread.start} to {last} of {tp.topic}/{tp.partition} "
                    f"({len(unread)} offsets) were deleted by the topic's retention before "
                    "the hub read them; reconcile with their sender"
                ),
                source=SourcePosition(tp.topic, tp.partition, unread.start),
                component=COMPONENT,
            )
        )
        metrics.INPUTS_AGED_OUT.labels(topic=tp.topic).inc(len(unread))
        metrics.DEAD_LETTERS.labels(kind=INPUT_AGED_OUT).inc()
        log.error(
            "records %d to %d of %s/%d were deleted by the topic's retention before any "
            "worker read them (the hub away or behind longer than the topic keeps "
            "records): %s (dead-lettered as %s)",
            unread.start,
            last,
            tp.topic,
            tp.partition,
            self.inputs[tp.topic],
            INPUT_AGED_OUT,
        )
