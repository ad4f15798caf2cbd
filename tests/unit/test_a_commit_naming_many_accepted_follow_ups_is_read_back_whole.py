"""Found by the review of 8dde22e (adapters/base/ownership.py ``_accepted_calls``):

the fix for the hostile ``accepted:`` part bounds the calls named by ALL the part's
entries together by ``_CALLS_AT_MOST`` (100,000), the bound of ONE request's calls
(5,994 documents, three calls each). The part names one entry per follow-up the partner
answered 202 on the partition, each up to a request's worth of calls, and the writer
(``_accepted_part``) bounds it only by characters: a span such as ``0-1999`` costs six.
A partner slow to settle fifty-one write-offs of 2,000 documents each (102,000 calls,
some 600 characters) gets a hand-over commit the replica writes happily, and that its
next owner refuses whole ("not understood: ignored", ``return {}``): not one of the
fifty-one is taken for accepted, so a 409 to any of them past the window is read as a
refusal, FOLLOW_UP_FAILED, and the give-back behind the write-off goes ahead of it (the
defect the accepted part exists for), for every declaration of the partition at once."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_every_accepted_follow_up_that_fits_is_named_in_the_commit import (
    handed_over_by,
    next_owner,
    write_off_of,
)

FOLLOW_UPS = 51
DOCUMENTS = 2_000


def test_every_accepted_follow_up_the_writer_names_is_read_back(tmp_path: Path) -> None:
    accepted = [
        (write_off_of(f"26FR000690I{n:07d}", DOCUMENTS), frozenset(range(DOCUMENTS)))
        for n in range(FOLLOW_UPS)
    ]
    metadata = handed_over_by(tmp_path, accepted)
    assert len(metadata) <= 4000, len(metadata)
    # The writer named every one of them (each entry fits).
    assert metadata.count("=0-1999") == FOLLOW_UPS, metadata
    taken = next_owner(tmp_path, metadata)
    assert taken.sent_before(0, 10), metadata
    read = [o for o in range(10, 10 + FOLLOW_UPS) if taken.accepted_at(0, o)]
    assert len(read) == FOLLOW_UPS, (
        f"the commit names {FOLLOW_UPS} write-offs accepted (202) on their {DOCUMENTS} "
        f"documents ({len(metadata)} characters), its next owner reads {len(read)} of "
        "them as accepted: the part's calls together exceed one request's bound "
        "(_CALLS_AT_MOST) and the whole part is ignored"
    )
