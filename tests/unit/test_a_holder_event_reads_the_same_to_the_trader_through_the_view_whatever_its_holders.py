"""An event about what authorities hold reads the same to the trader, as the view hands it
to the trader listener, whether one authority alone holds it or several (one of them
maybe confidential).

Stop 56 (7ad081f) has the trader's redaction blank ``authority`` on the holder events
(an overdue control, a takeover, a follow-up): ``kept["authority"] = None``. But the view
the trader listener answers from (``ViewQueries._dated``, behind ``history_of_declarant``)
gives an event naming no authority no ``authority`` member at all. So an overdue control
DGAL alone holds reads ``{"authority": null, ...}`` and one DGAL and DGA hold (no single
holder: none named) reads with no ``authority`` member: the trader still tells that a
second authority took part, which is what the blanking was for (docs/security.md, "what
remains must read exactly as it would had the confidential authority never taken part").
"""

from __future__ import annotations

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import ViewQueries
from gun_hub.web.redaction import trader_history

CONFIDENTIAL = frozenset({"dga"})
AT = "2026-03-02T10:00:00+00:00"
DETAIL = "no control result within 7 days"


def as_the_view_gives_it(authority: str) -> list[dict[str, object]]:
    # The events table keeps '' for an event naming no authority (ops/view.py _status).
    rows = [
        (1, StatusKind.RECEIVED.value, AT, "", "", "", "L1"),
        (1, StatusKind.CONTROL_RESULT_OVERDUE.value, AT, DETAIL, authority, "", "L1"),
    ]
    return ViewQueries._dated(rows, {"L1": "FR123456789"})


def test_an_overdue_control_reads_the_same_whether_dgal_alone_or_dgal_and_dga_hold_it() -> None:
    alone = trader_history(as_the_view_gives_it("dgal"), CONFIDENTIAL)
    with_dga = trader_history(as_the_view_gives_it(""), CONFIDENTIAL)
    assert alone == with_dga, (
        "DGAL alone reads 'authority': null, DGAL and DGA read no 'authority' member: the "
        f"trader tells a second authority took part: {alone[-1]} against {with_dga[-1]}"
    )
