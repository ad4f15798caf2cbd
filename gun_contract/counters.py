"""Labelled counters exported at 0 from the start, for every label value known then.

prometheus_client exports a labelled counter's series only once its child exists, which
is at its first ``inc()``; Prometheus' ``increase()`` needs two samples of a series and
never counts the step from "no series" to the first value. An alert on a counter's first
increment would stay silent (review stop 39-O, O1), so each process makes the children
it can name (topics, routed authorities, kinds, results) when it starts. Label values
that cannot be known then are covered by the alert itself (deploy/prometheus/).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from prometheus_client import Counter


def export_at_zero(counter: Counter, **values: Iterable[str]) -> None:
    """Make ``counter``'s series for every combination of the label ``values`` (each label
    of the counter named, with the values it can take), at 0 where not counted yet."""
    names = list(values)
    for combination in itertools.product(*(sorted(set(v)) for v in values.values())):
        counter.labels(**dict(zip(names, combination, strict=True)))
