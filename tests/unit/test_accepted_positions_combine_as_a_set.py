"""Found by the review of 350b50a (adapters/base/ownership.py ``SpannedPositions``):

``accepted_at`` now returns a ``SpannedPositions``, declared a
``collections.abc.Set[int]`` in place of the ``frozenset`` it returned before. The
``Set`` mixin builds the result of ``&``, ``|``, ``-`` and ``^`` (and the reflected
``{..} & accepted``) with ``cls._from_iterable(positions)``, which calls the class
with an iterable of ints; ``SpannedPositions.__init__`` takes spans (``range``) and
reads ``span.start`` of each: every set operation raises ``AttributeError: 'int'
object has no attribute 'start'``. Latent today (the only production caller asks
``position in accepted``), but any caller treating the promised set as one, e.g.
intersecting the accepted positions with a request's calls, stops on it. The ABC's
documented remedy is to override ``_from_iterable`` (return a frozenset, or spans of
the positions). It is also unhashable (``Set`` sets ``__hash__ = None``), where the
frozenset was not."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from adapters.base.ownership import SpannedPositions, _spans_named


def test_accepted_positions_intersect_join_and_subtract_as_a_set() -> None:
    spans = _spans_named("0-3.7")
    assert spans is not None
    accepted = SpannedPositions(spans)
    results: dict[str, set[int]] = {}
    combinations: dict[str, Callable[[], AbstractSet[int]]] = {
        "accepted & {1, 7, 9}": lambda: accepted & {1, 7, 9},
        "{1, 7, 9} & accepted": lambda: {1, 7, 9} & accepted,
        "accepted | {9}": lambda: accepted | {9},
        "accepted - {1}": lambda: accepted - {1},
        "accepted ^ {1, 9}": lambda: accepted ^ {1, 9},
    }
    for name, combine in combinations.items():
        try:
            results[name] = set(combine())
        except AttributeError as error:
            raise AssertionError(
                f"{name} raised AttributeError ({error}): the Set mixin builds its result "
                "by calling SpannedPositions with ints, which it reads as spans"
            ) from error
    assert results == {
        "accepted & {1, 7, 9}": {1, 7},
        "{1, 7, 9} & accepted": {1, 7},
        "accepted | {9}": {0, 1, 2, 3, 7, 9},
        "accepted - {1}": {0, 2, 3, 7},
        "accepted ^ {1, 9}": {0, 2, 3, 7, 9},
    }
