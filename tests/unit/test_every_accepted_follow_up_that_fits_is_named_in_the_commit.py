"""Found by the review of the commit that names accepted follow-ups in the commit
(``accepted:<d>=<i>.<i>``, adapters/base/ownership.py ``_accepted_part``):

the part is budgeted by ``_joined_within``, which stops at the first entry that does not
fit and leaves out every entry after it. An entry names each accepted document by its
position, so a write-off the partner answered 202 on its many documents (a declaration
quotes up to 5,994) is some thousands of characters: it never fits, and then no other
accepted follow-up of the partition is named either, however short. Their next owner
takes the partner's 409 to them for a refusal once past the window: the write-off ends
FOLLOW_UP_FAILED and the give-back behind it goes ahead of it (the very defect the commit
fixes, back for every declaration sharing a partition with one large write-off).

The large one itself is never named as accepted either: positions one by one exhaust the
4,000 characters at some 1,000 documents, well below what a declaration quotes; a partner
that answers 202 answers it to all of a write-off's documents alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from adapters.base.ownership import PartitionOwnership
from adapters.base.pending import PendingOperations
from gun_contract.model.declaration import Direction, Stage
from gun_contract.model.exchange import (
    AuthorityRequest,
    Operation,
    RequestedDocument,
    RequestedItem,
    request_id_for,
)
from tests.adapter_fixtures import partner_request

LARGE = "26FR000690I0000L01"
SMALL = "26FR000690I0000S01"


def write_off_of(reference: str, documents: int) -> AuthorityRequest:
    """A release's write-off of ``documents`` CHED-P, one per goods item."""
    return AuthorityRequest(
        request_id=request_id_for(reference, 1, "dgal", Operation.WRITE_OFF),
        authority="dgal",
        operation=Operation.WRITE_OFF,
        reference=reference,
        version=1,
        stage=Stage.LODGED,
        direction=Direction.IMPORT,
        procedure="4000",
        declarant_eori="FR12345678901234",
        country_of_destination="FR",
        items=tuple(
            RequestedItem(
                number=n + 1,
                commodity_code="0302130000",
                documents=(
                    RequestedDocument(
                        code="N853",
                        reference=f"CHEDP.FR.2026.{n:07d}",
                        line=1,
                        quantity=Decimal("1"),
                        unit="KGM",
                    ),
                ),
            )
            for n in range(documents)
        ),
        sent_at=datetime.now(UTC),
    )


def handed_over_by(tmp_path: Path, accepted: list[tuple[AuthorityRequest, frozenset[int]]]) -> str:
    """The hand-over commit of partition 0 by a replica whose replayer has ``accepted``
    queued (at offsets 10, 11, ...), each unsettled, those documents answered 202."""
    pending = PendingOperations(tmp_path / "first.sqlite")
    try:
        ownership = PartitionOwnership(pending, lambda: [r for r, _ in accepted], lambda: accepted)
        ownership.assigned({0}, {}, committed={0: 10}, log_starts={0: 0}, group_generation=7)
        for offset, (request, _) in enumerate(accepted, start=10):
            pending.add(request, 0, offset)
        ownership.handled({0: 10 + len(accepted)}, ownership.generation)
        return ownership.commit_metadata(0)
    finally:
        pending.close()


def next_owner(tmp_path: Path, metadata: str) -> PartitionOwnership:
    pending = PendingOperations(tmp_path / "next.sqlite")
    ownership = PartitionOwnership(pending)
    ownership.assigned({0}, {0: metadata}, committed={0: 10}, log_starts={0: 0}, group_generation=8)
    return ownership


def test_a_small_accepted_follow_up_is_named_after_a_large_one_that_does_not_fit(
    tmp_path: Path,
) -> None:
    large = write_off_of(LARGE, 2_000)
    small = partner_request(Operation.WRITE_OFF, reference=SMALL, quantity="10")
    metadata = handed_over_by(tmp_path, [(large, frozenset(range(2_000))), (small, frozenset({0}))])
    assert len(metadata) <= 4000, len(metadata)
    taken = next_owner(tmp_path, metadata)
    assert taken.sent_before(0, 11), metadata
    assert set(taken.accepted_at(0, 11)) == frozenset({0}), (
        f"the write-off at offset 11, accepted (202) on its one document, is not named "
        f"accepted in the commit {metadata[:120]!r}...: the large write-off's entry before "
        "it did not fit, and every entry after it was left out"
    )


def test_a_write_off_accepted_on_two_thousand_documents_is_named_accepted(
    tmp_path: Path,
) -> None:
    large = write_off_of(LARGE, 2_000)
    metadata = handed_over_by(tmp_path, [(large, frozenset(range(2_000)))])
    assert len(metadata) <= 4000, len(metadata)
    taken = next_owner(tmp_path, metadata)
    assert taken.sent_before(0, 10), metadata
    assert set(taken.accepted_at(0, 10)) == frozenset(range(2_000)), (
        f"a write-off the partner accepted (202) on its 2,000 documents is not named "
        f"accepted in the commit ({metadata!r}): its next owner takes a 409 to any of "
        "them for a refusal once past the window"
    )
