"""A partner system that speaks the CERTEX-style quantity API of :mod:`partner_sim`.

One call per quoted document (a declaration's position on a document is restated as a
whole, summing its goods items), mapped to the hub's verdicts. Partner failures become
UNAVAILABLE, never a pass; an answer the adapter does not understand is a failure too.

Every call carries the declaration version (``declaration_version`` in its JSON body)
and the request's idempotency key (``Idempotency-Key`` header; the partner scopes it to
the document of the URL): a retried or replayed call is applied once, and an operation
older than the newest version the partner has seen is refused ``STALE_VERSION``. It also
carries the declaration version's trace (W3C ``traceparent``, gun_contract/trace.py) when the
adapter handles one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.base.resilience import Backoff, CircuitBreaker
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
_REJECTION_TEXT_CHARS = 200


def _rejected(status: int) -> bool:
    """The partner read the call and will not apply it as sent."""
    return status in _REJECTIONS


class PartnerUnavailable(Exception):
    """The partner did not give a usable answer (down, slow, erroring, or nonsense)."""


@dataclass(frozen=True, slots=True)
class _Quoted:
    item: RequestedItem
    document: RequestedDocument


class CertexHttpPartner:
    """HTTP client for one partner system; a single pooled session per adapter."""

    def __init__(self, settings: AdapterSettings) -> None:
        self._base = settings.partner_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=settings.partner_timeout_s)
        self._attempts = settings.retry_attempts
        self._session: aiohttp.ClientSession | None = None
        self.backoff = Backoff(
            base_s=settings.retry_backoff_base_s, cap_s=settings.retry_backoff_cap_s
        )
        self.circuit = CircuitBreaker(
            failure_threshold=settings.circuit_failure_threshold,
            reset_after_s=settings.circuit_reset_s,
            # A trial outlives one call's deadline only if its caller was lost.
            trial_timeout_s=2 * settings.partner_timeout_s + 1,
        )

    @property
    def circuit_state(self) -> CircuitStatus:
        return CircuitStatus(self.circuit.state.value)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=64),
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def answer(self, request: AuthorityRequest) -> tuple[DocumentAnswer, ...]:
        by_document: dict[tuple[str, str], list[_Quoted]] = defaultdict(list)
        for item in request.items:
            for document in item.documents:
                by_document[(document.code, document.reference)].append(_Quoted(item, document))
        results = await asyncio.gather(
            *(self._answer_document(request, quoted) for quoted in by_document.values())
        )
        return tuple(answer for answers in results for answer in answers)

    async def _answer_document(
        self, request: AuthorityRequest, quoted: list[_Quoted]
    ) -> list[DocumentAnswer]:
        document = quoted[0].document
        try:
            verdict, code, detail = await self._ask(request, quoted)
        except PartnerUnavailable as err:
            verdict, code, detail = Verdict.UNAVAILABLE, None, str(err)
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
        self, request: AuthorityRequest, quoted: list[_Quoted]
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
        headers = {IDEMPOTENCY_HEADER: request.idempotency_key}
        trace_id = current_trace.get()
        if trace_id is not None:
            # The declaration version's trace, for the partner's own logs (W3C format).
            headers[TRACEPARENT] = traceparent(trace_id)
        status, payload = await self._call(method, url, body, headers)
        return _map_answer(request.operation, status, payload)

    async def _call(
        self, method: str, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """One idempotent call, retried with exponential backoff and full jitter.

        Every attempt carries the same idempotency key, so the partner applies the call
        once even when an earlier attempt went through and only its answer was lost.
        """
        last_error = "no attempt made"
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self.backoff.delay(attempt))
            if not self.circuit.allow():
                raise PartnerUnavailable(f"circuit open: partner failing ({last_error})")
            try:
                async with self._client().request(
                    method, url, json=body, headers=headers
                ) as response:
                    if response.status >= 500:
                        last_error = f"partner answered HTTP {response.status}"
                        self.circuit.record_failure()
                        continue
                    payload = await response.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError) as err:
                last_error = f"partner unreachable: {type(err).__name__}"
                self.circuit.record_failure()
                continue
            except ValueError:
                self.circuit.record_failure()
                raise PartnerUnavailable("partner answer is not JSON") from None
            except BaseException:
                # Cancelled (the adapter stops, an outer deadline) or a bug: no verdict on
                # the partner, but the call must not keep the circuit's trial slot.
                self.circuit.release()
                raise
            if not isinstance(payload, dict):
                self.circuit.record_failure()
                raise PartnerUnavailable("partner answer is not a JSON object")
            self.circuit.record_success()
            return response.status, payload
        raise PartnerUnavailable(last_error)


def _map_answer(
    operation: Operation, status: int, payload: dict[str, Any]
) -> tuple[Verdict, str | None, str | None]:
    result = payload.get("result")
    message = payload.get("message")
    detail = str(message) if message is not None else None
    if status == 404 and result == "NOT_FOUND":
        return Verdict.NOT_FOUND, None, "unknown to the partner system"
    if _rejected(status):
        said = payload.get("error", message)
        why = f"partner rejected the call (HTTP {status})" + (
            f": {str(said)[:_REJECTION_TEXT_CHARS]}" if said is not None else ""
        )
        if operation in _CLEARANCE_PATHS:
            # Sent again it is rejected again: replayed as an outage it was asked every
            # round for ever, said FOLLOW_UP_PENDING and held its partition's commit (stop
            # 30, found by review). A refusal naming the rejection: FOLLOW_UP_FAILED.
            return Verdict.MISMATCH, rejected_call_code(status), why
        raise PartnerUnavailable(why)  # never refuse a declaration for a call not read
    if status != 200:
        raise PartnerUnavailable(f"partner answered HTTP {status}")
    if result == "REFUSED" and payload.get("code") in CONTRACT_REFUSALS:
        refused, contract_code = CONTRACT_REFUSALS[str(payload["code"])]
        return refused, contract_code, detail
    if operation in CLEARANCE_VERDICTS:
        code = str(payload.get("code"))
        verdict = CLEARANCE_VERDICTS[operation].get(code)
        if result != "DONE" or verdict is None:
            raise PartnerUnavailable(f"unknown {operation.value} outcome {code!r}")
        return verdict, code, detail
    if result == "ACCEPTED":
        return Verdict.VALID, None, None
    if result == "REFUSED":
        code = str(payload.get("code"))
        verdict = REFUSAL_VERDICTS.get(code)
        if verdict is None:
            raise PartnerUnavailable(f"unknown refusal code {code!r}")
        return verdict, code, detail
    raise PartnerUnavailable(f"unknown answer {result!r}")
