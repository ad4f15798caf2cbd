"""Found by the review of f763421 (adapters/base/ownership.py ``_as_spans``):

``Spans`` are documented as "sorted runs that neither overlap nor touch", and
``_as_spans`` takes any ``Collection[int]``; but a position repeated (a list, a tuple,
a multiset of calls) starts a new run instead of being absorbed by the last one:
``_as_spans([1, 1, 2])`` is ``(range(1, 2), range(1, 3))``, overlapping, and the
writer names it ``1.1-2``. Latent today (the replayer hands it frozensets), it costs
the commit's few characters of room (entries then left out, logged) and breaks the
invariant the reader's merging is relied on to restore."""

from __future__ import annotations

from adapters.base.ownership import _as_spans, _spans


def test_repeated_positions_make_one_run() -> None:
    spans = _as_spans([3, 1, 1, 2, 5])
    assert spans == (range(1, 4), range(5, 6)), (
        f"_as_spans([3, 1, 1, 2, 5]) is {spans}, written {_spans(spans)!r}: a repeated "
        "position starts an overlapping run"
    )


def test_spanned_positions_answer_in_without_listing_them() -> None:
    from adapters.base.ownership import SpannedPositions, _spans_named

    spans = _spans_named("0-99999")
    assert spans is not None
    positions = SpannedPositions(spans)
    assert 0 in positions
    assert 99_999 in positions
    assert 100_000 not in positions
    assert -1 not in positions
    assert len(positions) == 100_000
    assert set(positions) == set(range(100_000))
    holes = SpannedPositions(_spans_named("2-3.7") or ())
    assert [p for p in range(10) if p in holes] == [2, 3, 7]
    assert 0 not in SpannedPositions()
