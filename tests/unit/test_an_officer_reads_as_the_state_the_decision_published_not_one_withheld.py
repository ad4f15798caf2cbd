"""An officer's lookup (``GET /declarations/{reference}``, ``OpsView.declaration``) states
the decision the clearance system received, never one the publisher withheld.

A's version 1 is released and published. B's version 2 of A's reference, decided REFUSE on
another partition, is withheld by the publisher (NOT_PUBLISHED_OTHER_DECLARANT): the
clearance system never got it, the statistics do not count it, the trader A reads version
1 RELEASE (web/redaction.py leaves the withheld version out before ``current_state``). The
officer's answer summarises the whole history, withheld version included: it says the
declaration stands at version 2, DECIDED, REFUSE (reason C085), which the hub never
published. An officer answering the trader's call ("my goods are released") reads the
opposite of what the clearance system holds.
"""

from __future__ import annotations

from pathlib import Path

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops.view import OpsView
from gun_hub.web.redaction import trader_status
from tests.unit.test_operations_view import TOPICS, Feed
from tests.unit.test_the_view_counts_only_the_decisions_the_publisher_published import (
    REF,
    A,
    _a_decided_b_withheld,
)


def test_the_officers_state_is_the_published_decision_not_the_withheld_one(
    tmp_path: Path,
) -> None:
    view, feed = OpsView(tmp_path / "view.sqlite3", TOPICS), Feed()
    facts_and_events, withheld = _a_decided_b_withheld(feed)
    view.apply([*facts_and_events, *withheld])

    # What the hub published, as the statistics and the trader read it.
    assert view.statistics()["decisions"]["by_outcome"] == {"RELEASE": 1}
    mine = view.history_of_declarant(REF, A)
    assert mine is not None
    trader = trader_status(REF, mine, confidential=())
    assert (trader["version"], trader["state"], trader["outcome"]) == (1, "DECIDED", "RELEASE")

    officers = view.declaration(REF)
    assert officers is not None
    # The withheld version stays in the history (officers see it) ...
    assert StatusKind.NOT_PUBLISHED_OTHER_DECLARANT.value in [
        e["kind"] for e in officers["history"]
    ]
    # ... but the state is the decision the clearance system received.
    assert (officers["version"], officers["state"], officers.get("outcome")) == (
        1,
        "DECIDED",
        "RELEASE",
    ), f"officers read {officers['version']}/{officers['state']}/{officers.get('outcome')}"


def test_the_officers_state_of_a_version_two_declarants_lodged_is_the_one_published(
    tmp_path: Path,
) -> None:
    """One version 1 lodged by A and by B (a reference reused on two partitions), B's
    decided and read first, A's published, B's withheld by a status naming B's receipt
    (stop 54): the statistics count A's RELEASE, A reads RELEASE; the officer's state is
    the first DECIDED event read, B's REFUSE."""
    view, feed = OpsView(tmp_path / "view.sqlite3", TOPICS), Feed()
    b = "FR99999999999999"
    view.apply(
        [
            feed.received(REF, declarant=b, lodging="b-receipt"),
            feed.received(REF, declarant=A, lodging="a-receipt"),
            feed.status(REF, StatusKind.RECEIVED, 0, lodging="b-receipt"),
            feed.status(REF, StatusKind.RECEIVED, 0, lodging="a-receipt"),
            feed.status(
                REF, StatusKind.DECIDED, 1, outcome="REFUSE", detail="C085", lodging="b-receipt"
            ),
            feed.status(REF, StatusKind.DECIDED, 2, outcome="RELEASE", lodging="a-receipt"),
            feed.status(
                REF,
                StatusKind.NOT_PUBLISHED_OTHER_DECLARANT,
                3,
                detail="decided but not published",
                lodging="b-receipt",
            ),
        ]
    )
    mine = view.history_of_declarant(REF, A)
    assert mine is not None
    assert trader_status(REF, mine, confidential=())["outcome"] == "RELEASE"

    officers = view.declaration(REF)
    assert officers is not None
    assert officers.get("outcome") == "RELEASE", (
        f"officers read {officers.get('outcome')} {officers.get('reasons')}, "
        "the decision withheld from the clearance system"
    )
