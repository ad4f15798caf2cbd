"""A status event or fact of a kind this view does not know is kept, not skipped for good.

During a rolling upgrade a newer hub worker may emit a status kind or a fact kind the
running view does not know yet. The view moves past it (its offset is recorded with the
batch), so before stop 37 it was skipped and no upgraded view ever read it again: the
trader's history and the counts lacked it for good (review stop 37-s, F5). It is now kept
raw (*parked*), counted and logged, and a view that knows its kind applies it when it
starts. An older view is played here by the view with its models narrowed (the kind
taken out), which is exactly what an older release's models are.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from gun_hub.domain.status_events import StatusKind
from gun_hub.ops import view as view_module
from gun_hub.ops.facts import DecisionFact, ReceivedFact, WriteOffFact, WrittenOff, fact_bytes
from gun_hub.ops.view import FeedRecord, OpsView
from tests.unit.test_operations_view import NOON, TOPICS, Feed

REF = "26FR000690I0000012"
UNKNOWN_STATUS = (
    b'{"reference":"%s","version":1,"kind":"QUEUED_FOR_OFFICE","at":"2026-11-22T12:01:00Z"}'
    % REF.encode()
)
UNKNOWN_FACT = b'{"kind":"GIVEN_BACK_SOMEHOW","reference":"%s","version":1}' % REF.encode()

OlderKind = StrEnum(  # type: ignore[misc]
    "OlderKind",
    {k.name: k.value for k in StatusKind if k is not StatusKind.CONTROL_RESULT_OVERDUE},
)


class OlderStatusEvent(BaseModel):
    """The status event of a release before CONTROL_RESULT_OVERDUE."""

    model_config = ConfigDict(frozen=True)

    reference: str
    version: int
    kind: OlderKind
    at: datetime
    detail: str = ""
    authority: str | None = None
    outcome: str | None = None
    lodging: str | None = None  # the view's own code reads it (stop 53)


OLDER_FACT: TypeAdapter[ReceivedFact | DecisionFact] = TypeAdapter(
    Annotated[ReceivedFact | DecisionFact, Field(discriminator="kind")]
)


def test_a_status_of_a_kind_this_view_does_not_know_is_not_lost(tmp_path: Path) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    view.apply([feed.status(REF, StatusKind.RECEIVED)])
    view.apply([feed.record(TOPICS.status, UNKNOWN_STATUS)])
    assert view.skipped == 0
    assert view.parked == 1
    assert view.parked_records() == {"status": {"QUEUED_FOR_OFFICE": 1}}
    # Not shown while unknown (no redaction rule, no state for it), and passed.
    history = view.history(REF)
    assert [e["kind"] for e in history] == ["RECEIVED"]
    assert view.positions()[(TOPICS.status, 0)] == 2
    # A view opened again that still does not know it keeps it.
    view.close()
    again = OpsView(tmp_path / "v.sqlite3", TOPICS)
    assert again.parked_records() == {"status": {"QUEUED_FOR_OFFICE": 1}}
    assert again.skipped == 0


def test_a_fact_of_a_kind_this_view_does_not_know_is_not_lost(tmp_path: Path) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    view.apply([feed.record(TOPICS.facts, UNKNOWN_FACT)])
    assert (view.skipped, view.parked) == (0, 1)
    assert view.parked_records() == {"facts": {"GIVEN_BACK_SOMEHOW": 1}}


def test_an_upgraded_view_applies_the_statuses_an_older_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path, feed = tmp_path / "v.sqlite3", Feed()
    with monkeypatch.context() as older:
        older.setattr(view_module, "StatusEvent", OlderStatusEvent)
        view = OpsView(path, TOPICS)
        with caplog.at_level(logging.WARNING, logger=view_module.__name__):
            view.apply(
                [
                    feed.status(REF, StatusKind.RECEIVED),
                    feed.status(REF, StatusKind.CONTROL_RESULT_OVERDUE, 5),
                    feed.status(REF, StatusKind.CONTROL_RESULT_OVERDUE, 5),  # read again
                ]
            )
        assert (view.skipped, view.parked) == (0, 2)
        assert "CONTROL_RESULT_OVERDUE" in caplog.text
        assert [e["kind"] for e in view.history(REF)] == ["RECEIVED"]
        view.close()
    upgraded = OpsView(path, TOPICS)
    assert [e["kind"] for e in upgraded.history(REF)] == ["RECEIVED", "CONTROL_RESULT_OVERDUE"]
    assert upgraded.parked_records() == {}
    assert upgraded.skipped == 0


def test_an_upgraded_view_counts_the_facts_an_older_one_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, feed = tmp_path / "v.sqlite3", Feed()
    written = WriteOffFact(
        reference=REF,
        version=1,
        authority="dgal",
        at=NOON,
        documents=[
            WrittenOff(
                code="N853", reference="CHEDP.1", line=1, quantity=Decimal("1200"), unit="KGM"
            )
        ],
    )
    with monkeypatch.context() as older:
        older.setattr(view_module, "FACT", OLDER_FACT)
        view = OpsView(path, TOPICS)
        view.apply([feed.record(TOPICS.facts, fact_bytes(written))])
        assert view.parked_records() == {"facts": {"WRITTEN_OFF": 1}}
        assert view.written_off() == []
        view.close()
    upgraded = OpsView(path, TOPICS)
    [row] = upgraded.written_off()
    assert (row["document"], row["quantity"]) == ("CHEDP.1", "1200")
    assert upgraded.parked_records() == {}


def test_a_record_of_no_kind_or_of_a_known_kind_but_malformed_is_still_skipped(
    tmp_path: Path,
) -> None:
    """Only a record whose one fault is its kind is kept: the rest is no record of ours."""
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    malformed = [
        feed.record(TOPICS.status, b'{"reference":"R","kind":"QUEUED_FOR_OFFICE"}'),
        feed.record(TOPICS.status, b'{"reference":"R","version":1,"kind":7,"at":"2026-11-22"}'),
        feed.record(TOPICS.status, b'{"reference":"R","version":1,"kind":"x y","at":"2026"}'),
        feed.record(TOPICS.facts, b'{"kind":5,"reference":"R"}'),
        feed.record(TOPICS.facts, b'{"reference":"R"}'),
        feed.record(TOPICS.facts, b'{"kind":"DECIDED","reference":"R"}'),
        feed.record(TOPICS.facts, b'{"kind":"' + b"A" * 100 + b'"}'),
    ]
    view.apply(malformed)
    assert (view.skipped, view.parked) == (len(malformed), 0)
    assert view.parked_records() == {}


def test_kept_records_leave_with_the_retention(tmp_path: Path) -> None:
    view, feed = OpsView(tmp_path / "v.sqlite3", TOPICS), Feed()
    view.apply([feed.record(TOPICS.status, UNKNOWN_STATUS)])
    record = feed.record(TOPICS.facts, UNKNOWN_FACT)
    later = FeedRecord(
        record.topic, record.partition, record.offset, record.timestamp_ms + 7_200_000, record.value
    )
    view.apply([later])
    while view.prune(datetime.fromtimestamp(NOON.timestamp() + 3600).astimezone()):
        pass
    assert view.parked_records() == {"facts": {"GIVEN_BACK_SOMEHOW": 1}}
