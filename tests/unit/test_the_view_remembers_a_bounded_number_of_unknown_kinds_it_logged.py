"""The operations view's memory of unknown kinds it logged is bounded.

``OpsView._park`` logs a status event or fact of a kind the view does not know once
per (topic, kind), remembering the pair in ``OpsView._logged``, a set never pruned. The
kind is whatever the record says, as long as it matches ``[A-Z][A-Z0-9_]{0,63}``: the
status and fact topics carry plain JSON, so anyone who can write them (an unsecured
cluster) sends ``"kind": "X1"``, ``"X2"``, ... and each record adds one entry (and one
WARNING line) to the view process for as long as it runs. The parked rows leave with the
retention; the set never does. Expected: a bounded memory (a cap, as the view's replicas
are capped), whatever kinds are written.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from gun_hub.ops.view import OpsView
from tests.unit.test_operations_view import TOPICS, Feed

REF = "26FR000690I0000012"
KINDS = 5000
BOUND = 1024  # generous: a release knows a few dozen kinds


def _unknown_status(kind: str) -> bytes:
    return b'{"reference":"%s","version":1,"kind":"%s","at":"2026-11-22T12:01:00Z"}' % (
        REF.encode(),
        kind.encode(),
    )


def test_kinds_never_known_do_not_grow_the_view_without_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    caplog.set_level(logging.ERROR, logger="gun_hub.ops.view")
    records = [feed.record(TOPICS.status, _unknown_status(f"K{n}")) for n in range(KINDS)]
    view.apply(records)
    assert view.parked == KINDS  # each was parked as a kind a newer hub may write
    remembered = len(view._logged)
    assert remembered <= BOUND, (
        f"{remembered} (topic, kind) pairs held in OpsView._logged after {KINDS} "
        "records of made-up kinds: one per kind, never pruned"
    )
