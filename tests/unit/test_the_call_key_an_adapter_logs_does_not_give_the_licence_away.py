"""What an adapter's log names a partner call by does not give away the licence.

Each partner call carries a key of its own, ``<request id>/<16 hex digits of
SHA-256("code\\x1freference")>`` (``AuthorityRequest.idempotency_key_for``): the partner
needs it, and it knows the document anyway. The adapter logged that key where it would
otherwise name the document ("the partner is still processing ... (key %s)", "accepted
the call keyed %s ... has not applied it yet": adapters/base/certex.py). The digest is
unsalted and a war-material licence number is short and structured: whoever read the DGA
adapter's log got the licence back by hashing the numbers of its format, a few thousand
guesses (a confidentiality sweep of stop 56). docs/security.md: logs "are meant to hold
no document reference of a confidential authority". A log line now names the call by its
request id and a tag keyed by the process's own secret.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from adapters.base.certex import as_logged
from gun_contract.model.exchange import Operation, RequestedDocument, RequestedItem
from tests.adapter_fixtures import partner_request

LICENCE = "LEMG-FR-2026-0042"
REQUEST = partner_request(Operation.RESERVE, authority="dga").model_copy(
    update={
        "items": (
            RequestedItem(
                number=1,
                commodity_code="9301100000",
                documents=(
                    RequestedDocument(
                        code="LEMG", reference=LICENCE, line=1, quantity=Decimal("3"), unit="NAR"
                    ),
                ),
            ),
        )
    }
)


def _licences_found_again(logged: str) -> list[str]:
    """What a reader of the log can try: the licence format, one year, every number,
    against every run of 16 hex digits the line holds."""
    return [
        guess
        for number in range(10_000)
        if hashlib.sha256(
            f"LEMG\x1f{(guess := f'LEMG-FR-2026-{number:04d}')}".encode()
        ).hexdigest()[:16]
        in logged
    ]


def test_the_key_the_partner_gets_is_the_digest_a_log_must_not_show() -> None:
    """The premise: the key itself gives the licence back (which is why it is not logged)."""
    assert _licences_found_again(REQUEST.idempotency_key_for("LEMG", LICENCE)) == [LICENCE]


def test_a_log_reader_cannot_recover_the_licence_from_the_call_a_log_line_names() -> None:
    key = REQUEST.idempotency_key_for("LEMG", LICENCE)
    for call in (key, key + "/reserved-for-release", key + "/written-off-once-reserved"):
        logged = as_logged(call)
        assert _licences_found_again(logged) == [], f"{logged!r} names the licence"
        assert logged.startswith(f"{REQUEST.request_id}/call-")  # the partner is asked about it
    # One call's lines still match within the log; two calls' do not.
    assert as_logged(key) == as_logged(key)
    assert as_logged(key) != as_logged(key + "/reserved-for-release")
