"""A partner system that speaks the CERTEX-style quantity API of :mod:`partner_sim`.

One call per quoted document (a declaration's position on a document is restated as a
whole, summing its goods items), mapped to the hub's verdicts. Partner failures become
UNAVAILABLE, never a pass; an answer the adapter does not understand is a failure too.

Every call carries the declaration version (``declaration_version`` in its JSON body)
and its own idempotency key (``Idempotency-Key``: the request id and a digest of the
document, one key per call): a retried or replayed call is applied once, and an operation
older than the newest version the partner has seen is refused ``STALE_VERSION``. It also
carries the declaration version's trace (W3C ``traceparent``, gun_contract/trace.py) when the
adapter handles one.

Each call waits for its turn at the partner connections (:mod:`adapters.base.call_turns`:
``adapter.partner_connections``, at most ``adapter.partner_calls_per_request`` of one
request's, the others' calls in between), and only then goes out: its deadline
(``adapter.partner_timeout_s``) is the partner's time. A call whose turn has not come
``adapter.partner_queue_wait_s`` after its request began is not sent (:class:`CallNotSent`):
UNAVAILABLE, saying so, with no failure counted against the partner and nothing it may
still apply (review stop 40, W2). A call that times out while the adapter's own event loop
was held for a quarter of its deadline or more is retried and counts nothing against the
partner (:mod:`adapters.base.loop_stalls`, stop 44).

While the circuit is not closed after calls that got no answer (no connection, a timeout),
the client tries the partner itself whenever a trial is due and no call holds it
(:mod:`adapters.base.circuit_probe`): ``GET`` of a document no declaration can quote
(:data:`TRIAL_REFERENCE`), read-only, with no idempotency key; the partner's ``NOT_FOUND``
(or the document) closes the circuit, no connection keeps it open, a 5xx or 429 ends the
adapter's trials, an answer that may concern the lookup alone leaves the trial to the next
call (review stop 41). A circuit whose last failure was an answer (a 5xx, a 429, an answer
unusable) is not tried so: a lookup answered proves the partner reachable, not that it
applies the calls that failed; its next real call is the trial (review stop 41, G2).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from adapters.base.call_turns import CallTurns, NoTurnInTime, RequestTurns
from adapters.base.circuit_probe import CircuitProbe
from adapters.base.keys_in_flight import KeysInFlight
from adapters.base.loop_stalls import LoopStalls
from adapters.base.metrics import EVENT_LOOP_HELD, TIMEOUTS_EXCUSED
from adapters.base.resilience import Backoff, CircuitBreaker, CircuitState, retry_after_s
from gun_contract.health import CircuitStatus
from gun_contract.model.exchange import (
    AuthorityRequest,
    DocumentAnswer,
    Operation,
    RequestedDocument,
    RequestedItem,
    rejected_call_code,
)
from gun_contract.model.partner_codes import STALE_VERSION
from gun_contract.model.verdicts import Verdict
from gun_contract.settings import AdapterSettings
from gun_contract.trace import TRACEPARENT, current_trace, traceparent
from gun_contract.untrusted_json import parse_untrusted
from gun_contract.validation import fault_without_text

log = logging.getLogger(__name__)

# CERTEX reservation refusal reasons (domain.md) to the hub's verdicts.
REFUSAL_VERDICTS: dict[str, Verdict] = {
    "01": Verdict.MISMATCH,  # document cannot be used as a base for this operation
    "02": Verdict.ALREADY_USED,
    "03": Verdict.MISMATCH,  # commodity code
    "04": Verdict.INVALID_STATUS,
    "05": Verdict.QUANTITY_INSUFFICIENT,
    "06": Verdict.ALREADY_USED,  # a write-off for this declaration already exists
    "07": Verdict.MISMATCH,  # line number
    "08": Verdict.MISMATCH,  # country of destination
    "09": Verdict.MISMATCH,  # licence holder
    "10": Verdict.MISMATCH,  # measurement unit
    "11": Verdict.MISMATCH,  # quantities cannot be validated
}
# Write-off and deletion outcomes. 02 on a deletion and 03 on a write-off are what a
# redelivered request finds once the first delivery went through: success, not failure.
CLEARANCE_VERDICTS: dict[Operation, dict[str, Verdict]] = {
    Operation.WRITE_OFF: {
        "01": Verdict.VALID,
        "02": Verdict.MISMATCH,
        "03": Verdict.VALID,
        "04": Verdict.VALID,
        "05": Verdict.MISMATCH,
    },
    Operation.DELETE: {
        "01": Verdict.VALID,
        "02": Verdict.VALID,
        "03": Verdict.ALREADY_USED,
        "04": Verdict.VALID,
        "05": Verdict.MISMATCH,
    },
    # Give a write-off back (invalidated after release). 03 (given back already) is what a
    # redelivery finds; 02 (no write-off) and 05 (never written off, still reserved) mean
    # the partner's ledger disagrees with the hub: operations must look.
    Operation.GIVE_BACK: {
        "01": Verdict.VALID,
        "02": Verdict.MISMATCH,
        "03": Verdict.VALID,
        "04": Verdict.VALID,
        "05": Verdict.MISMATCH,
    },
}
# Refusals of the hub's contract rather than CERTEX's, for any operation, by the code the
# partner answers, to a verdict and the code the decision carries (decision.xsd allows
# [0-9A-Za-z]{1,8}: partner_codes.py). STALE_VERSION: the partner has seen a newer version
# of the declaration on this document, so this operation is superseded and changed
# nothing; a refusal, never a pass.
CONTRACT_REFUSALS: dict[str, tuple[Verdict, str]] = {
    "STALE_VERSION": (Verdict.MISMATCH, STALE_VERSION)
}
IDEMPOTENCY_HEADER = "Idempotency-Key"
# A write-off's "no reservation for this declaration": what a release finds when the
# reservation never reached the partner (degraded mode), reserved then written off.
WRITE_OFF_NO_RECORD = "02"
NEVER_RESERVED = "nothing was reserved for the declaration at the partner"
_RESERVED_KEY = "/reserved-for-release"
_WRITTEN_KEY = "/written-off-once-reserved"

# A call's key names its document by an unsalted digest (``idempotency_key_for``): a
# war-material licence number, short and structured, is found again by hashing the few
# thousand of a year (a confidentiality sweep of stop 56). Logs name a call by its
# request id and a tag keyed by this process's own secret: one call's lines still match
# within the log, and the partner's administration is asked about the request's call.
_LOG_TAG_SECRET = os.urandom(32)


def as_logged(key: str) -> str:
    """``key`` as a log line names it: the request id, then a tag no digest of a
    document's reference finds again."""
    call = key.removesuffix(_RESERVED_KEY).removesuffix(_WRITTEN_KEY)
    request_id = call.rpartition("/")[0] or "?"
    tag = hmac.new(_LOG_TAG_SECRET, key.encode(), hashlib.sha256).hexdigest()[:12]
    return f"{request_id}/call-{tag}"


# A ledger conflict to a key's first attempt; to a repeat, "still being processed" (J3).
HTTP_CONFLICT = 409
# Operations that change the partner's ledger without a body of their own.
_CLEARANCE_PATHS = {
    Operation.WRITE_OFF: ("POST", "/write-off"),
    Operation.DELETE: ("DELETE", ""),
    Operation.GIVE_BACK: ("POST", "/give-back"),
}


# What the partner answers a call it read and will not apply as sent: malformed (400),
# in conflict with its ledger (409), gone (410), too large (413), not processable (422,
# an idempotency key reused for another body). Any other 4xx is an outage, replayed: a
# call it may take later (408, 423, 425, 429) or an access or a route to mend on the
# adapter's side (401, 403, 407 credentials expired or rotated, 404 without NOT_FOUND a
# wrong partner URL, 421): taken for rejections, every follow-up of a credentials
# rotation would have ended unapplied for good (found by review in stop 31).
_REJECTIONS = frozenset({400, 409, 410, 413, 422})
# The answers the circuit judges by the verdict they map to (_understood_for): a 200, and
# the rejections saying the partner could not read the call as sent (to a check or a
# reservation, answered UNAVAILABLE: counted against the circuit).
_JUDGED_BY_THEIR_VERDICT = frozenset({200, 400, 422})
# The document the adapter's own trial call looks up: "~" (unreserved in a URL, sent as
# is) is outside the contract's references (DOCUMENT_REFERENCE_PATTERN), so no declaration
# quotes it and the lookup reads no trader's document; the partner answers NOT_FOUND (or,
# checking its format, 400), either an answer.
TRIAL_REFERENCE = "GUN-HUB~CIRCUIT-TRIAL"
_REJECTION_TEXT_CHARS = 200


def _rejected(status: int) -> bool:
    """The partner read the call and will not apply it as sent."""
    return status in _REJECTIONS


class PartnerUnavailable(Exception):
    """The partner did not give a usable answer (down, slow, erroring, or nonsense)."""


class CallNotSent(PartnerUnavailable):
    """The call never went out: its turn at the partner connections did not come before its
    request's deadline (``adapter.partner_queue_wait_s``). Nothing is said of the partner:
    no failure is counted against it, and it has nothing of the call to apply."""


# Every legitimate answer is under 1 KiB; a longer one is a misbehaving partner or proxy (a
# debug dump, a looping gateway). Read whole, a 150 MB answer was believed, and 64
# concurrent ones could get the adapter OOM-killed into a crash loop (stop 37, J4).
ANSWER_LIMIT_BYTES = 64 * 1024
# Answers asking for a pause (Retry-After honoured): retried like a 5xx, not mapped.
HTTP_TOO_MANY_REQUESTS = 429
HTTP_NOT_IMPLEMENTED = 501
# Accepted for processing, not yet applied: asked again with its key for the outcome.
HTTP_ACCEPTED = 202
ACCEPTED_FOR_PROCESSING = (
    "partner accepted the call for processing (HTTP 202), not yet applied: asked again "
    "with the same idempotency key for its outcome"
)
# A call that timed out while the adapter's own event loop was held for at least this
# share of its deadline is no verdict on the partner: it had three quarters of its time
# at most (adapters/base/loop_stalls.py).
_STALL_SHARE = 0.25

_THROTTLED = frozenset({HTTP_TOO_MANY_REQUESTS, 503})
# A gateway or proxy answering for a partner it forwarded the call to and heard nothing
# (502 Bad Gateway, 504 Gateway Timeout, RFC 9110 §15.6.3, §15.6.5): it says nothing of
# what the partner does with the call, which may have reached it and be applied later,
# like a call that timed out. A 503, a 429 or a refused connection say "not taken".
_GATEWAY_GAVE_UP = frozenset({502, 504})


@dataclass(frozen=True, slots=True)
class _Quoted:
    item: RequestedItem
    document: RequestedDocument


async def _read_json(response: aiohttp.ClientResponse) -> Any:
    """The answer's JSON, read up to ``ANSWER_LIMIT_BYTES`` (stop 37, J4)."""
    too_large = f"answer too large (over {ANSWER_LIMIT_BYTES} bytes)"
    declared = response.content_length
    if declared is not None and declared > ANSWER_LIMIT_BYTES:
        raise PartnerUnavailable(too_large)  # refused before a byte of it is read
    raw = bytearray()
    while len(raw) <= ANSWER_LIMIT_BYTES:
        # read(n) returns what has arrived, up to n: one byte past the limit tells.
        chunk = await response.content.read(ANSWER_LIMIT_BYTES + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > ANSWER_LIMIT_BYTES:
        raise PartnerUnavailable(too_large)
    try:
        return parse_untrusted(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        raise PartnerUnavailable("partner answer is not JSON") from None


def _origin(location: str | None) -> str:
    """Where a redirect pointed, without its path (it may name a document or a licence)
    or any credentials: ``scheme://host[:port]``."""
    if not location:
        return "nowhere (no Location)"
    try:
        parts = urlsplit(location)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable Location"
    if not host:
        return "the partner's own origin"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _outage_answer(status: int, payload: dict[str, Any]) -> bool:
    """An answer neither about the document nor about the call: the partner is not
    serving this adapter (401, 403, 407 credentials, a 404 of a wrong URL, 408, 421...)."""
    if status == 200 or _rejected(status):
        return False
    return not (status == 404 and payload.get("result") == "NOT_FOUND")


Understood = Callable[[int, dict[str, Any]], bool | None]
"""Whether an answer (status, payload) says something of the call: one that does not
(False) counts against the circuit, as an outage's does; None: it says nothing of the
partner (the circuit neither counts it nor is closed by it)."""


def _any_answer(_status: int, _payload: dict[str, Any]) -> bool:
    return True


def _understood_for(
    operation: Operation, turns: RequestTurns | None = None, *, follow_up: bool = False
) -> Understood:
    """A 200 or a rejection is understood when it maps to a verdict for ``operation``
    (``follow_up``: as :func:`_map_answer`'s): a maintenance page in JSON, an unknown
    result or code, DONE to a check, each answered UNAVAILABLE, had counted as a success,
    and the circuit of a partner answering only those never opened (review of stop 47,
    twice: a first check of the shape alone missed most of them). So had a check or a
    reservation the partner could not read (400, 422: its API changed the body it reads,
    a validation layer in front of it): every declaration decided without the partner,
    and the circuit read closed (review of stop 54). A 409, 410 or 413 is about the call
    itself (a conflict with the ledger or a call still processing, a document gone, a
    body too large): understood. A rejection counts once per request (``turns``, its
    calls'): a declaration whose documents the partner cannot read counts as one failure,
    not one per document: five such documents opened the circuit of a partner that
    answers every other declaration, and the next ones were decided without it (review of
    this change). An answer of another status is judged by :func:`_outage_answer`."""

    def understood(status: int, payload: dict[str, Any]) -> bool | None:
        if status not in _JUDGED_BY_THEIR_VERDICT:
            return True
        try:
            _map_answer(operation, status, payload, follow_up=follow_up)
        except PartnerUnavailable:
            if status == 200 or turns is None:
                return False
            if turns.rejection_counted:
                return None
            turns.rejection_counted = True
            return False
        return True

    return understood


def _answers_the_lookup(status: int, payload: dict[str, Any]) -> bool:
    """Whether an answer to the adapter's own trial (``GET`` of :data:`TRIAL_REFERENCE`)
    is the partner's: its ``NOT_FOUND``, or a document. Any other 200 decided it too, so a
    maintenance front answering every path 200 in JSON closed a circuit that every real
    call's answer kept open (review of stop 54)."""
    if status == 404:
        return payload.get("result") == "NOT_FOUND"
    if _rejected(status):
        return True  # the lookup refused for its reference's format: the partner answers
    return status == 200 and isinstance(payload.get("reference"), str) and "status" in payload


class CertexHttpPartner:
    """HTTP client for one partner system; a single pooled session per adapter."""

    def __init__(self, settings: AdapterSettings, authority: str) -> None:
        """``authority``: the adapter's authority id, the label of this client's metrics
        (:meth:`AdapterSpec.partner` gives it)."""
        self._base = settings.partner_url.rstrip("/")
        # Counted once the call has its turn (below): the partner's time, not the wait
        # for a connection (review stop 40, W2).
        self._timeout = aiohttp.ClientTimeout(total=settings.partner_timeout_s)
        # A timeout while the adapter's own loop was held this long is not the partner's.
        self._stall_excuses_s = settings.partner_timeout_s * _STALL_SHARE
        self._stalls = LoopStalls(on_held=EVENT_LOOP_HELD.labels(authority).inc)
        self._timeouts_excused = TIMEOUTS_EXCUSED.labels(authority)
        self._stall_logged = 0.0  # the stall total when one was last logged
        self._connections = settings.partner_connections
        self._turns = CallTurns(settings.partner_connections, settings.partner_calls_per_request)
        self._queue_wait_s = settings.partner_queue_wait_s
        self._attempts = settings.retry_attempts
        self._session: aiohttp.ClientSession | None = None
        self._redirects_logged: set[str] = set()
        self.backoff = Backoff(
            base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_cap_s
        )
        self.circuit = CircuitBreaker(
            failure_threshold=settings.circuit_failure_threshold,
            reset_after_s=settings.circuit_reset_s,
            # A trial outlives one call's deadline only if its caller was lost.
            trial_timeout_s=2 * settings.partner_timeout_s + 1,
        )
        # With no call to make after an outage, the circuit would never close (stop 41).
        self._probe = CircuitProbe(self.circuit, self._trial_call)
        self._trial_undecided_logged = False
        # Keys sent with no answer yet: a 409 to one of them is "still in progress" (J3).
        self._keys_in_flight = KeysInFlight(
            in_progress_at_most_s=settings.partner_in_progress_window_s
        )

    @property
    def circuit_state(self) -> CircuitStatus:
        return CircuitStatus(self.circuit.state.value)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._stalls.watch()  # from the first call on, in the loop the calls run in
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                # As many as calls may have their turn at once: a call with its turn
                # finds a connection free, so its deadline counts no wait in the pool.
                connector=aiohttp.TCPConnector(limit=self._connections),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        await self._probe.close()
        await self._stalls.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        by_document: dict[tuple[str, str], list[_Quoted]] = defaultdict(list)
        for item in request.items:
            for document in item.documents:
                by_document[(document.code, document.reference)].append(_Quoted(item, document))
        # One call per document, each waiting for its turn (call_turns.py): a request of
        # thousands of documents holds a share of the connections, the others' calls go
        # in between (review stop 40, W2).
        turns = self._turns.request(self._queue_wait_s)
        results = await asyncio.gather(
            *(self._answer_document(request, quoted, turns) for quoted in by_document.values())
        )
        if turns.not_sent:
            log.warning(
                "%d call(s) of %s of %s version %d (of %d documents) not sent: their turn at "
                "the partner connections did not come within %g s (adapter."
                "partner_queue_wait_s); answered UNAVAILABLE. The adapter has more calls than "
                "partner_connections carry in that time at the partner's pace",
                turns.not_sent,
                request.operation.value,
                request.reference,
                request.version,
                len(by_document),
                self._queue_wait_s,
            )
        return tuple(answer for answers in results for answer in answers)

    async def _answer_document(
        self, request: AuthorityRequest, quoted: list[_Quoted], turns: RequestTurns
    ) -> list[DocumentAnswer]:
        document = quoted[0].document
        try:
            verdict, code, detail = await self._ask(request, quoted, turns)
        except PartnerUnavailable as err:
            verdict, code, detail = Verdict.UNAVAILABLE, None, str(err)
        except Exception as err:  # noqa: BLE001 - logged by kind and place, not text (C2)
            # An answer of a shape no check foresaw, or a bug: raised out of the client it
            # dead-lettered a live follow-up unanswered, blocked a queued one's replay for
            # ever, and threw away the other documents' answers (stop 37, J2). UNAVAILABLE,
            # so a follow-up is queued and replayed. Its kind and where it was raised, in
            # the answer and the log alike: its text (and so its traceback) may quote the
            # partner's answer, a licence the partner echoes (review stop 39, C2).
            log.warning(
                "answer of the partner to %s not understood: %s",
                request.request_id,
                fault_without_text(err),
            )
            verdict, code = Verdict.UNAVAILABLE, None
            detail = f"partner answer not understood ({type(err).__name__})"
        return [
            DocumentAnswer(
                goods_item=q.item.number,
                code=document.code,
                reference=document.reference,
                verdict=verdict,
                partner_code=code,
                detail=detail,
            )
            for q in quoted
        ]

    async def _ask(
        self,
        request: AuthorityRequest,
        quoted: list[_Quoted],
        turns: RequestTurns,
        *,
        key_suffix: str = "",
    ) -> tuple[Verdict, str | None, str | None]:
        answer = await self._call_for(request, quoted, turns, key_suffix)
        if (
            request.operation is Operation.WRITE_OFF
            and not key_suffix
            and answer[1] == WRITE_OFF_NO_RECORD
            and all(q.document.quantity is not None for q in quoted)
        ):
            return await self._write_off_what_was_never_reserved(request, quoted, turns)
        return answer

    async def _write_off_what_was_never_reserved(
        self, request: AuthorityRequest, quoted: list[_Quoted], turns: RequestTurns
    ) -> tuple[Verdict, str | None, str | None]:
        """Goods released with nothing reserved for them at the partner: reserved, then
        written off, under the release's version. A declaration decided in degraded mode
        (its partner down, or its call never sent) had its reservation answered
        UNAVAILABLE and never made; the office released the goods after checking the
        document by hand, and the partner, asked to write off, has nothing to consume
        (``02``): the certificate kept the quantity that left (review of stop 52; the
        contract: "the write-off is replayed when it is back"). A reservation that
        expired at the partner is the same case. Each call has a key of its own, derived
        from the write-off's, so a replay finds each answer again. A refused reservation
        (``05``: another declaration took the balance since) is the write-off's answer:
        the goods left without cover, which the hub reports (FOLLOW_UP_FAILED, or a
        post-release alert for war material)."""
        reserve = request.model_copy(update={"operation": Operation.RESERVE})
        verdict, code, detail = await self._ask(reserve, quoted, turns, key_suffix=_RESERVED_KEY)
        if verdict is not Verdict.VALID:
            said = f": {detail}" if detail else ""
            return verdict, code, f"{NEVER_RESERVED}; reserving what was released was refused{said}"
        verdict, code, detail = await self._ask(request, quoted, turns, key_suffix=_WRITTEN_KEY)
        if verdict is Verdict.VALID:
            return verdict, code, f"{NEVER_RESERVED}: reserved, then written off"
        return verdict, code, detail

    async def _call_for(
        self, request: AuthorityRequest, quoted: list[_Quoted], turns: RequestTurns, key_suffix: str
    ) -> tuple[Verdict, str | None, str | None]:
        document = quoted[0].document
        # References may hold "/" (the contract allows it): each is one path segment.
        url = f"{self._base}/api/v1/documents/{quote(document.reference, safe='')}"
        declaration = quote(request.reference, safe="")
        body: dict[str, Any] = {"declaration_version": request.version}
        if request.operation in _CLEARANCE_PATHS:
            method, suffix = _CLEARANCE_PATHS[request.operation]
            url = f"{url}/reservations/{declaration}{suffix}"
        else:
            body |= {
                "document_type": document.code,
                "declarant_eori": request.declarant_eori,
                "country_of_destination": request.country_of_destination,
                "lines": [
                    {
                        "goods_item": q.item.number,
                        "line": q.document.line,
                        "quantity": format(q.document.quantity, "f")
                        if q.document.quantity is not None
                        else None,
                        "unit": q.document.unit,
                        "commodity_code": q.item.commodity_code,
                    }
                    for q in quoted
                ],
            }
            if request.operation is Operation.CHECK:
                method, url = "POST", f"{url}/checks/{declaration}"
            else:
                method, url = "PUT", f"{url}/reservations/{declaration}"
        # One key per call, not per request: a partner may keep keys per client (J1).
        key = request.idempotency_key_for(document.code, document.reference) + key_suffix
        headers = {IDEMPOTENCY_HEADER: key}
        trace_id = current_trace.get()
        if trace_id is not None:
            # The declaration version's trace, for the partner's own logs (W3C format).
            headers[TRACEPARENT] = traceparent(trace_id)
        understood = _understood_for(request.operation, turns, follow_up=bool(key_suffix))
        try:
            status, payload = await self._call(method, url, body, headers, turns, understood)
        finally:
            if request.operation is Operation.CHECK:
                # A check changes nothing at the partner: nothing of it is left to apply,
                # whatever became of it. Kept, its key took a place among those the
                # partner may still apply, and checks answered 202 or timing out pushed
                # out a queued deletion's (review of stop 54; the shape of stop 47's).
                self._keys_in_flight.settled(key)
        if status == HTTP_CONFLICT and self._still_processing(request, key):
            # A repeat of a key the partner is still processing (IETF idempotency-key
            # draft), not a rejection: queued and replayed, the replay gets its answer.
            self._keys_in_flight.unanswered(key)
            raise PartnerUnavailable(
                "partner still processing an earlier attempt with this key (HTTP 409)"
            )
        try:
            # The reservation a release's write-off makes (key_suffix) is a follow-up: a
            # rejection of it ends the write-off, replayed it would be rejected for ever
            # (review of stop 53's change).
            answer = _map_answer(request.operation, status, payload, follow_up=bool(key_suffix))
        except PartnerUnavailable:
            if _rejected(status):
                # Read and refused (a reservation's too): the partner will not apply it,
                # so nothing of it is left to wait for (review stop 39, P1).
                self._keys_in_flight.settled(key)
            raise
        self._keys_in_flight.settled(key)  # a usable answer: the next attempt is a first
        return answer

    def _still_processing(self, request: AuthorityRequest, key: str) -> bool:
        """Whether a 409 to ``key`` (one of ``request``'s calls) is the partner still
        processing an earlier attempt. For a reservation, however long since its first:
        taken for a rejection past the window, its follow-ups overtook it and the partner
        applied it later, held for ever (review stop 39-SF, SF1). The window then only
        makes a warning name it, once; the stuck-operation gauge follows it."""
        keys = self._keys_in_flight
        if request.operation is not Operation.RESERVE and not keys.accepted(key):
            # A follow-up the partner answered 202 never was refused: its 409 is the
            # call still processing however late (review of stop 54: taken for a
            # rejection past the window, the write-off ended FOLLOW_UP_FAILED, the
            # give-back behind it went ahead, and the partner then wrote the goods off).
            return keys.still_in_progress(key)
        if not keys.repeated(key):
            return False
        if keys.newly_overdue(key):
            log.warning(
                # Not the document nor its key's digest: a licence stays out of logs.
                "the partner is still processing %s of %s version %d (call %s) %d s after "
                "its first attempt: kept queued, its follow-ups wait behind it; if it "
                "lasts, ask the partner's administration about this call",
                request.operation.value,
                request.reference,
                request.version,
                as_logged(key),
                keys.since_first_s(key),
            )
        return True

    def _keys(self, request: AuthorityRequest) -> set[str]:
        """The idempotency keys of ``request``'s calls (one per quoted document), and for
        a write-off those of the reservation and write-off it makes of what was never
        reserved (``_write_off_what_was_never_reserved``): one of them timed out is a
        call the partner may still apply too, and a 409 to its repeat "still processing"
        (review of stop 53's change: the base key alone was known)."""
        return set(self._calls(request))

    def _calls(self, request: AuthorityRequest) -> list[str]:
        """:meth:`_keys` in the order a commit's metadata names them by (their
        positions): the calls of the quoted documents (its items' order, then each
        item's documents'), then for a write-off the reservations of what was never
        reserved, then their write-offs. So the common case, every document's own call
        accepted, is one span of positions (``0-1999``)."""
        suffixes = (
            ("", _RESERVED_KEY, _WRITTEN_KEY) if request.operation is Operation.WRITE_OFF else ("",)
        )
        documents = [
            request.idempotency_key_for(document.code, document.reference)
            for item in request.items
            for document in item.documents
        ]
        return [key + suffix for suffix in suffixes for key in documents]

    def accepted_calls(self, request: AuthorityRequest) -> frozenset[int]:
        """The positions (:meth:`_calls`) of ``request``'s calls the partner answered
        202 and has not settled since: a commit names them, so that the next owner takes
        a 409 to them for "still processing" however late (:meth:`KeysInFlight.accepted`),
        and a 409 to any other call of the request as before (review of this change: by
        document, the next owner took a derived write-off nobody sent for accepted)."""
        accepted = self._keys_in_flight.accepted
        return frozenset(
            position for position, key in enumerate(self._calls(request)) if accepted(key)
        )

    def may_still_apply(self, request: AuthorityRequest) -> bool:
        """Whether the partner may still apply one of ``request``'s calls: an attempt got
        no answer (timed out, connection lost) or a repeat met 409 "being processed", and
        no answer settled it since (a 5xx or 429 is the partner turning it down). A
        reservation in that state is kept queued by the replayer, so that its
        declaration's follow-up does not overtake it at the partner (stop 39, P1)."""
        return any(self._keys_in_flight.unsettled(key) for key in self._keys(request))

    def sent_before(self, request: AuthorityRequest, accepted: Collection[int] = ()) -> None:
        """``request``'s calls were sent by an earlier process or replica and not settled:
        a 409 to the next attempt is the partner still processing one of those; to the
        calls at the positions ``accepted``, however late (the partner answered them 202:
        :meth:`accepted_calls`)."""
        for position, key in enumerate(self._calls(request)):
            self._keys_in_flight.sent_earlier(key, accepted=position in accepted)

    async def _call(
        self,
        method: str,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        turns: RequestTurns,
        understood: Understood = _any_answer,
    ) -> tuple[int, dict[str, Any]]:
        """One idempotent call, retried with exponential backoff and full jitter.
        ``understood``: whether an answer says something of the call (the circuit).

        Every attempt carries the same idempotency key, so the partner applies the call
        once even when an earlier attempt went through and only its answer was lost. Each
        attempt waits for its turn at the partner connections first (``turns``); its
        deadline counts from when it goes out.
        """
        last_error = "no attempt made"
        for attempt in range(self._attempts):
            delay = self.backoff.delay(attempt) if attempt else 0.0
            paused_s = self.circuit.paused_for_s()
            if paused_s <= self.backoff.cap_s:
                # The partner's Retry-After, waited out when no longer than a retry may
                # wait; a longer one ends the call at once (below), held for everyone.
                delay = max(delay, paused_s)
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with turns.turn():
                    if not self.circuit.allow():
                        raise PartnerUnavailable(self._not_calling(last_error))
                    answered = await self._attempt(
                        method, url, body, headers, understood=understood
                    )
            except NoTurnInTime:
                raise CallNotSent(self._not_sent(attempt, last_error)) from None
            if isinstance(answered, str):
                last_error = answered
                continue
            return answered
        raise PartnerUnavailable(last_error)

    def _not_sent(self, attempt: int, last_error: str) -> str:
        """Why a call (``attempt`` 0) or a retry did not go out."""
        why = (
            "its turn at the partner connections did not come within adapter."
            f"partner_queue_wait_s ({self._queue_wait_s:g} s) of the request's start: the "
            "adapter was busy with other calls"
        )
        if attempt == 0:
            return f"not sent: {why}; the partner was not asked"
        return f"{last_error}; retry not sent: {why}"

    async def _trial_call(self) -> None:
        """The adapter's own trial (circuit_probe.py): a lookup of :data:`TRIAL_REFERENCE`.
        It changes nothing at the partner and carries no idempotency key, so no key of a
        declaration's can meet it, and no count of a declaration's calls includes it.

        Judged as a call's answer, with one difference: an answer that may concern this
        lookup only (a 4xx other than NOT_FOUND or a rejection, a 501, a redirect, not
        JSON: a partner not serving the lookup, or authorising it apart) decides nothing.
        Taken for a failure, it reopened the circuit at every trial, and a partner whose
        calls go through but not the lookup would have had its circuit open for good;
        so the trial gives its slot back, for the next call to decide."""
        url = f"{self._base}/api/v1/documents/{quote(TRIAL_REFERENCE, safe='')}"
        with contextlib.suppress(PartnerUnavailable):  # recorded on the circuit
            answered = await self._attempt(
                "GET",
                url,
                None,
                {},
                answer_unusable=self.circuit.release,
                understood=_answers_the_lookup,
            )
            if not isinstance(answered, str) and self.circuit.state is CircuitState.CLOSED:
                log.info(
                    "partner %s answers again (the adapter's own trial, HTTP %d): circuit closed",
                    _origin(self._base),
                    answered[0],
                )
        if self.circuit.trial_in_s() == 0 and not self._trial_undecided_logged:
            self._trial_undecided_logged = True
            log.warning(
                "partner %s did not answer the adapter's own trial (GET of a document no "
                "declaration can quote) with NOT_FOUND: the trial decides nothing, and the "
                "circuit closes only at the next call that succeeds. Does the partner serve "
                "GET /api/v1/documents/{reference} to this adapter?",
                _origin(self._base),
            )

    async def _attempt(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        *,
        answer_unusable: Callable[[], None] | None = None,
        understood: Understood = _any_answer,
    ) -> tuple[int, dict[str, Any]] | str:
        """One attempt of a call the circuit allowed: the partner's status and answer, or
        why it is to be tried again. ``answer_unusable`` tells the circuit of an answer
        that is no answer about the call: a failure unless said otherwise. A circuit the
        attempt leaves not closed is tried from then on by the adapter itself, calls or
        none (circuit_probe.py)."""
        try:
            return await self._attempt_once(
                method,
                url,
                body,
                headers,
                answer_unusable or self._failed_with_an_answer,
                understood,
            )
        finally:
            self._probe.watch()

    async def _attempt_once(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        headers: dict[str, str],
        answer_unusable: Callable[[], None],
        understood: Understood,
    ) -> tuple[int, dict[str, Any]] | str:
        # A declaration's calls carry their key; the adapter's own trial none.
        key = headers.get(IDEMPOTENCY_HEADER)
        if key is not None:
            self._keys_in_flight.sending(key)
        held_before = self._stalls.stalled_s
        try:
            # Never followed: a redirect sent the body, the key, the trace and a
            # licence reference to another origin, and turned a POST into a GET (J5).
            async with self._client().request(
                method, url, json=body, headers=headers, allow_redirects=False
            ) as response:
                if response.status >= 500 or response.status in _THROTTLED:
                    if key is not None:
                        self._turned_down(key, response.status)
                    if response.status == HTTP_NOT_IMPLEMENTED:
                        answer_unusable()  # what is not implemented may be this call only
                    else:
                        # Answered, failing: no lookup answered closes it again (G2).
                        self.circuit.record_failure(answered=True)
                    self._pause_if_asked(response)
                    return f"partner answered HTTP {response.status}"
                self._refuse_a_redirect(response)
                if response.status == HTTP_ACCEPTED:
                    # Taken, to be applied later (RFC 9110 15.3.3): like a call that
                    # timed out, one the partner may be applying, so its reservation is
                    # kept and its follow-ups wait behind it (review of stop 52: a
                    # deletion answered 02 overtook it, and the partner then reserved for
                    # a refused declaration for ever).
                    self._accepted(key, answer_unusable)
                    return ACCEPTED_FOR_PROCESSING
                payload = await _read_json(response)
        except PartnerUnavailable:
            answer_unusable()  # an answer unusable as sent
            raise
        except aiohttp.ClientConnectorError as err:
            # No connection: the attempt never reached the partner, so it is no call
            # the partner may be applying (a reservation is not kept for it, P1), and
            # no attempt a later 409 could be the partner still processing.
            if key is not None:
                self._keys_in_flight.not_taken(key)
            self.circuit.record_failure(answered=False)
            return f"partner unreachable: {type(err).__name__}"
        except (TimeoutError, aiohttp.ClientError) as err:
            # Sent, and no answer: the partner may be applying it (P1).
            if key is not None:
                self._keys_in_flight.unanswered(key)
            held_s = self._stalls.since(held_before)
            if isinstance(err, TimeoutError) and held_s >= self._stall_excuses_s:
                # The adapter's own loop was held for much of the deadline: the partner
                # did not have its time. Retried; no verdict on the partner (stop 44).
                self.circuit.release()
                self._timeouts_excused.inc()
                self._log_stall(held_s)
                return f"no answer in time while the adapter itself was held {held_s:.1f} s"
            self.circuit.record_failure(answered=False)
            return f"partner unreachable: {type(err).__name__}"
        except BaseException:
            # Cancelled (the adapter stops, an outer deadline) or a bug: no verdict on
            # the partner, but the call must not keep the circuit's trial slot.
            self.circuit.release()
            raise
        if not isinstance(payload, dict):
            answer_unusable()
            raise PartnerUnavailable("partner answer is not a JSON object")
        judged = understood(response.status, payload)
        if _outage_answer(response.status, payload) or judged is False:
            # Expired credentials or a wrong URL answer every call so: the circuit
            # opens and the heartbeat says so, not "closed" (stop 37, J6). So does a
            # 200 outside the contract (a maintenance page in JSON: review of stop 47).
            answer_unusable()
        elif judged is None:
            self.circuit.release()
        else:
            self.circuit.record_success()
        return response.status, payload

    def _log_stall(self, held_s: float) -> None:
        """Once a stall, however many calls it timed out."""
        if self._stalls.stalled_s > self._stall_logged:
            self._stall_logged = self._stalls.stalled_s
            log.warning(
                "the adapter's event loop was held %.1f s during partner calls (a long "
                "collection, a loaded machine?): their timeouts are retried and not counted "
                "against the partner",
                held_s,
            )

    def _accepted(self, key: str | None, answer_unusable: Callable[[], None]) -> None:
        """What a 202 to the call keyed ``key`` (none: the adapter's own trial) tells the
        circuit. The partner took the call: it answers, so the circuit counts a success.
        A key still accepted past ``partner_in_progress_window_s`` since its first attempt
        is warned about once; it stays queued and asked again, and the replayer counts it
        failing, so ``GunHubAdapterOperationStuck`` pages for a partner that accepts calls
        and applies none (stop 53's open item). Counted against the circuit instead, one
        such key opened it, by its attempts in one replay round, for every declaration of
        a partner answering all others (review of this session's change). A lookup
        accepted for later says nothing of the partner applying calls: the trial decides
        nothing."""
        if key is None:
            answer_unusable()
            return
        keys = self._keys_in_flight
        keys.taken_for_later(key)
        self.circuit.record_success()
        if keys.repeated(key) and keys.newly_overdue(key):
            log.warning(
                "partner %s accepted the call %s for processing %d s ago and has not "
                "applied it yet (it still answers HTTP 202): kept queued and asked again; "
                "if it lasts, ask the partner's administration whether its processing is "
                "stopped",
                _origin(self._base),
                as_logged(key),
                keys.since_first_s(key),
            )

    def _failed_with_an_answer(self) -> None:
        """An answer unusable (not JSON, a redirect, 401, a wrong URL's 404, 501): the
        partner, or something in front of it, answers; a lookup answered would prove no
        more, so it does not close the circuit (G2)."""
        self.circuit.record_failure(answered=True)

    def _turned_down(self, key: str, status: int) -> None:
        """What a 5xx or 429 to the call keyed ``key`` says of the partner applying it."""
        if status == HTTP_TOO_MANY_REQUESTS:
            # Not taken: a 409 to the retry is no earlier attempt still running (a 503
            # may hide one, behind a proxy; review G4).
            self._keys_in_flight.not_taken(key)
        elif status in _GATEWAY_GAVE_UP:
            # A gateway's "no answer in time": the call may have reached the partner,
            # which goes on with it, as after a timeout (review stop 39-SF, SF3).
            self._keys_in_flight.unanswered(key)

    def _not_calling(self, last_error: str) -> str:
        paused_s = self.circuit.paused_for_s()
        if paused_s > 0:
            return f"partner asked for a pause (Retry-After): {paused_s:.0f} s left"
        return f"circuit open: partner failing ({last_error})"

    def _pause_if_asked(self, response: aiohttp.ClientResponse) -> None:
        if response.status in _THROTTLED:
            asked_s = retry_after_s(response.headers.get("Retry-After"))
            if asked_s is not None:
                self.circuit.pause(asked_s)

    def _refuse_a_redirect(self, response: aiohttp.ClientResponse) -> None:
        """A redirect ends the call UNAVAILABLE; logged once per origin it pointed to."""
        if not 300 <= response.status < 400:
            return
        origin = _origin(response.headers.get("Location"))
        # Bounded: a partner redirecting to ever new origins cannot grow it.
        if origin not in self._redirects_logged and len(self._redirects_logged) < 64:
            self._redirects_logged.add(origin)
            log.error(
                "partner %s redirected (HTTP %d) to %s: not followed; check partner_url",
                _origin(self._base),
                response.status,
                origin,
            )
        raise PartnerUnavailable(f"partner redirected (HTTP {response.status}): check partner_url")


def _map_answer(
    operation: Operation, status: int, payload: dict[str, Any], *, follow_up: bool = False
) -> tuple[Verdict, str | None, str | None]:
    """The verdict, partner code and detail of an answer. ``follow_up``: the call is part
    of a write-off, deletion or give-back whatever its operation (a rejection ends it)."""
    result = payload.get("result")
    message = payload.get("message")
    # Cut as a rejection's words are: copied into every document's answer, a partner's
    # long message made an answer too large for the response topic, and the producer's
    # refusal stopped every replica in turn (review of stop 47).
    detail = str(message)[:_REJECTION_TEXT_CHARS] if message is not None else None
    if status == 404 and result == "NOT_FOUND":
        return Verdict.NOT_FOUND, None, "unknown to the partner system"
    if _rejected(status):
        said = payload.get("error", message)
        why = f"partner rejected the call (HTTP {status})" + (
            f": {str(said)[:_REJECTION_TEXT_CHARS]}" if said is not None else ""
        )
        if operation in _CLEARANCE_PATHS or follow_up:
            # Sent again it is rejected again: replayed as an outage it was asked every
            # round for ever, said FOLLOW_UP_PENDING and held its partition's commit (stop
            # 30, found by review). A refusal naming the rejection: FOLLOW_UP_FAILED.
            return Verdict.MISMATCH, rejected_call_code(status), why
        raise PartnerUnavailable(why)  # never refuse a declaration for a call not read
    if status != 200:
        raise PartnerUnavailable(f"partner answered HTTP {status}")
    code = _partner_code(payload)
    if result == "REFUSED" and code in CONTRACT_REFUSALS:
        refused, contract_code = CONTRACT_REFUSALS[code]
        return refused, contract_code, detail
    if operation in CLEARANCE_VERDICTS:
        verdict = CLEARANCE_VERDICTS[operation].get(code or "")
        if result != "DONE" or verdict is None:
            raise PartnerUnavailable(f"unknown {operation.value} outcome {_said(code)}")
        return verdict, code, detail
    if result == "ACCEPTED":
        return Verdict.VALID, None, None
    if result == "REFUSED":
        verdict = REFUSAL_VERDICTS.get(code or "")
        if verdict is None:
            raise PartnerUnavailable(f"unknown refusal code {_said(code)}")
        return verdict, code, detail
    raise PartnerUnavailable(f"unknown answer {_said(result)}")


def _said(value: object) -> str:
    """A partner's own word in a message of ours, cut: it goes into every document's
    answer."""
    return repr(value)[:_SAID_CHARS]


_SAID_CHARS = 60


def _partner_code(payload: dict[str, Any]) -> str | None:
    """The answer's ``code`` when it is a string; a list or an object is no code (it raised
    ``TypeError: unhashable`` out of the client: stop 37, J2)."""
    code = payload.get("code")
    return code if isinstance(code, str) else None
