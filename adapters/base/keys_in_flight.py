"""The idempotency keys a partner client sent without learning what became of them.

A call whose attempt timed out, failed on the way or got a 5xx may still be running at the
partner. Sent again with the same key (a retry, or a replay of the queued operation), it
may meet a partner that answers **409 Conflict**: a request with this key is still being
processed. That is the IETF idempotency-key draft's answer (draft-ietf-httpapi-idempotency-
key-header), and Stripe's. It says nothing against the call: the first attempt is going
through. Taken for a rejection, the follow-up ended FOLLOW_UP_FAILED (for war material, a
post-release alert) while the partner applied it (found by review, stop 37, J3).

A 409 to the first attempt of a key stays what it was: the partner read the call and will
not apply it (a conflict with its ledger), a refusal. So the client remembers, per key,
how many attempts it sent and when the first went out, until an answer settles the key.
A 409 to a key already sent is "still in progress", an outage: the operation is queued
and replayed, and the replay gets the partner's remembered answer.

Bounded twice. A partner does not take minutes over one call, so past
:data:`IN_PROGRESS_AT_MOST_S` (the adapter's ``partner_in_progress_window_s``) since a
key's first attempt a 409 to a write-off, deletion or give-back is the partner's word
again (a partner that remembers a conflict under the key would otherwise be asked every
round for ever). Not to a reservation: taken for a rejection, its follow-ups went ahead
of a call the partner then applied (held for ever; review stop 39-SF, SF1). Its 409 stays
"still processing" past the window, which only makes the client say so once, at WARNING
(:meth:`KeysInFlight.newly_overdue`); the replayer's stuck-operation gauge and its alert
follow it from there. And at most :data:`KEYS_KEPT` keys are remembered that the partner is
not known to be applying (sent, no answer yet), the oldest dropped first, and ten times as
many that it may be applying (:meth:`KeysInFlight.unsettled`): counted together, a large
declaration's calls (a key per document, up to 5,994 a request) pushed out the keys of a
deletion that had timed out and waited queued, and the partner's 409 "still processing"
to its replay read as a rejection (review of stop 47). The memory is the process's:
after a restart a key's next attempt counts as its first, unless the caller says it was
sent before, and whether the partner accepted it (:meth:`KeysInFlight.sent_earlier`: the
commit's metadata carries both across a rebalance or a restart, ``ownership.py``).

Narrower, per key: whether the partner may be applying a call still
(:meth:`KeysInFlight.unsettled`): an attempt went out and got no answer at all (it timed
out, the connection was lost, or a gateway answered 502/504: it heard nothing from the
partner in time, review stop 39-SF, SF3), or a repeat met 409 "being processed". Another
5xx or a 429 is an answer (the partner, or its gateway, turned the attempt down), and a
failed connection sent nothing. A reservation in that state is kept queued by the
replayer, asked again with the same key, so that its declaration's deletion or write-off
does not overtake it (review stop 39, P1). Any answer that settles the key (a rejection
too) ends it.

Neither a 429 nor a refused connection counts as an attempt at all
(:meth:`KeysInFlight.not_taken`): counted, the genuine 409 that met the first call to
reach a partner back from an outage read as "still in progress", and a reservation so
refused was asked again for ever (ledger review, stop 45).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

IN_PROGRESS_AT_MOST_S = 600.0
"""How long after a key's first attempt a 409 to it is taken for "still processing"."""
KEYS_KEPT = 10_000
"""Keys sent and not answered yet remembered at most (the pending queue's default bound)."""
APPLYING_KEPT_FACTOR = 10
"""Keys the partner may be applying are remembered up to this many times ``KEYS_KEPT``
(100,000 keys, some 25 MB): the calls of queued operations that timed out."""


@dataclass(slots=True)
class _Sent:
    first_at: float
    attempts: int
    # An attempt got no answer, or a repeat met 409 "being processed": the partner may be
    # applying the call still.
    maybe_applying: bool = False
    # A warning said the partner still processes it past the window (reservations).
    said_overdue: bool = False
    # The partner answered an attempt 202: it took the call to apply it later.
    accepted: bool = False


class KeysInFlight:
    """Per idempotency key: the attempts sent since the partner last settled it."""

    def __init__(
        self,
        *,
        in_progress_at_most_s: float = IN_PROGRESS_AT_MOST_S,
        kept: int = KEYS_KEPT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = in_progress_at_most_s
        self._kept = kept
        self._clock = clock
        self._sent: dict[str, _Sent] = {}
        # The keys not known to be applying, in the order of their first attempt, and
        # those the partner may be applying, in the order they became so: each bounded
        # apart, the oldest dropped first.
        self._quiet: OrderedDict[str, None] = OrderedDict()
        self._applying: OrderedDict[str, None] = OrderedDict()

    def sending(self, key: str) -> None:
        """An attempt carrying ``key`` goes to the partner."""
        sent = self._sent.get(key)
        if sent is None:
            self._sent[key] = _Sent(self._clock(), 1)
            self._quiet[key] = None
            while len(self._quiet) > self._kept:
                self._drop(next(iter(self._quiet)))
        else:
            sent.attempts += 1

    def _drop(self, key: str) -> None:
        self._sent.pop(key, None)
        self._quiet.pop(key, None)
        self._applying.pop(key, None)

    def still_in_progress(self, key: str) -> bool:
        """Whether a 409 just answered to ``key`` means "an earlier attempt is still being
        processed": the key was sent before the attempt answered, not too long ago."""
        return self.repeated(key) and not self._overdue(key)

    def repeated(self, key: str) -> bool:
        """Whether the attempt just answered is not ``key``'s first: a 409 to it may be
        an earlier attempt still being processed, however long ago that one went."""
        sent = self._sent.get(key)
        return sent is not None and sent.attempts > 1

    def newly_overdue(self, key: str) -> bool:
        """Whether ``key`` has just passed the window since its first attempt: true once
        per key (a caller that keeps waiting on it says so once)."""
        sent = self._sent.get(key)
        if sent is None or sent.said_overdue or not self._overdue(key):
            return False
        sent.said_overdue = True
        return True

    def since_first_s(self, key: str) -> float:
        """Seconds since ``key``'s first attempt (0: not remembered)."""
        sent = self._sent.get(key)
        return 0.0 if sent is None else self._clock() - sent.first_at

    def _overdue(self, key: str) -> bool:
        sent = self._sent.get(key)
        return sent is not None and self._clock() - sent.first_at > self._window_s

    def unanswered(self, key: str) -> None:
        """The attempt carrying ``key`` went out and got no answer (timed out, connection
        lost), or a repeat met 409 "being processed": the partner may be applying it."""
        sent = self._sent.get(key)
        if sent is not None and not sent.maybe_applying:
            sent.maybe_applying = True
            self._quiet.pop(key, None)
            self._applying[key] = None
            while len(self._applying) > self._kept * APPLYING_KEPT_FACTOR:
                self._drop(next(iter(self._applying)))

    def taken_for_later(self, key: str) -> None:
        """The partner answered the attempt carrying ``key`` 202, accepted for
        processing: it may be applying it, and never refused it, so a 409 to a repeat is
        "still processing" however long after (:meth:`accepted`)."""
        self.unanswered(key)
        sent = self._sent.get(key)
        if sent is not None:
            sent.accepted = True

    def accepted(self, key: str) -> bool:
        """Whether the partner answered an attempt of ``key`` 202 since it last settled it."""
        sent = self._sent.get(key)
        return sent is not None and sent.accepted

    def sent_earlier(self, key: str, *, accepted: bool = False) -> None:
        """``key`` was sent before, by an earlier process or replica, and the partner may
        be applying it still (the pending queue or the commit's metadata says so): its
        next attempt is a repeat, and a 409 to it "still in progress". ``accepted``: the
        partner answered it 202 (the commit's metadata says so, :meth:`accepted`), and its
        409 is "still in progress" however late. Nothing else changes for a key already
        remembered."""
        if key not in self._sent:
            self.sending(key)
            self.unanswered(key)
        if accepted:
            self.taken_for_later(key)

    def unsettled(self, key: str) -> bool:
        """Whether the partner may be applying a call carrying ``key`` still: an attempt
        got no answer, or a repeat met 409, and nothing settled the key since."""
        sent = self._sent.get(key)
        return sent is not None and sent.maybe_applying

    def not_taken(self, key: str) -> None:
        """The attempt just counted never reached the partner (its connection was
        refused) or the partner did not take it (429: it asked the client to slow down):
        it does not count as one that may still be running."""
        sent = self._sent.get(key)
        if sent is not None:
            sent.attempts -= 1
            if sent.attempts <= 0:
                self._drop(key)

    def settled(self, key: str) -> None:
        """The partner answered ``key`` for good: its next attempt is a first one again."""
        self._drop(key)

    def __len__(self) -> int:
        return len(self._sent)
