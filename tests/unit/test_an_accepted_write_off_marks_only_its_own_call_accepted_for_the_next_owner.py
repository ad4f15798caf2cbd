"""Found by the review of the commit naming accepted follow-ups (``accepted:<d>=<i>``):

a commit names an accepted write-off's *document* (its position), not which of the
document's calls the partner answered 202, and the next owner marks all of them
accepted: the write-off's own key and the two keys of the reservation and write-off it
makes of what was never reserved (``CertexHttpPartner.sent_before`` over
``_keys_by_document``). The derived write-off was never sent, let alone accepted; a 409
to it is the partner refusing it (a conflict with its ledger) once past the window, as
the replica the partner answered would have read it. The next owner reads "still
processing" instead, however late: the write-off is queued and replayed for ever, its
give-back held behind it, where it should have ended FOLLOW_UP_FAILED (post-release
alert).

Scenario: the partner accepted (202) the release's write-off and, processing it, found
nothing reserved (``02``, remembered under the key); the next owner asks it again with
the commit's ``accepted:0=0``, reserves what left (answered), and the partner refuses
the derived write-off 409."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from gun_contract.model.exchange import AuthorityRequest, Operation
from gun_contract.model.verdicts import Verdict
from tests.adapter_fixtures import partner_request
from tests.partner_fixtures import partner_client, running_partner

DOC = "CHEDP.FR.2026.0001234"
DECL = "26FR000690I0000792"
WRITTEN = "/written-off-once-reserved"
WINDOW_S = 0.5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def write_off() -> AuthorityRequest:
    return partner_request(
        Operation.WRITE_OFF, reference=DECL, version=2, document=DOC, quantity="10"
    )


@web.middleware
async def refuses_the_derived_write_off(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """The partner's ledger conflicts with the derived write-off: refused 409 at once."""
    if request.headers.get("Idempotency-Key", "").endswith(WRITTEN):
        return web.json_response({"error": "conflict with the document's ledger"}, status=409)
    return await handler(request)


async def test_a_409_to_a_derived_write_off_never_sent_is_a_refusal_past_the_window(
    samples: Path, tmp_path: Path
) -> None:
    async with running_partner(
        samples / "partners" / "dgal-documents.json",
        tmp_path / "l.db",
        [refuses_the_derived_write_off],
    ) as sim:
        next_owner = partner_client(
            sim.url, retry_attempts=1, partner_in_progress_window_s=WINDOW_S
        )
        try:
            # As runner._ask passes the commit's accepted:0=0 (Replayer.ask, sent_before).
            next_owner.sent_before(write_off(), frozenset({0}))
            await asyncio.sleep(WINDOW_S + 0.2)
            [answer] = await next_owner.answer(write_off())
        finally:
            await next_owner.close()
    assert answer.verdict is not Verdict.UNAVAILABLE, (
        f"the partner's 409 to the derived write-off, a call nobody sent before nor the "
        f"partner accepted, read past the window as still processing: {answer.detail!r} "
        "(queued and replayed for ever, its give-back behind it)"
    )
