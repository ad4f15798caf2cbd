"""A takeover notice written by an upgraded worker is not lost on a worker not yet
upgraded: the upgrade to sealed notices is rolled out in two steps.

Stop 56 seals takeover notices with the hub's state key (``b"GS1..."``, takeover.py) and
reads the JSON ones of older workers (the upgrade *backwards*). The other direction is
left out: hub workers are replaced one at a time (docs/deployment.md, "Upgrading the
hub": "a rolling update"; the upgrades that need every worker stopped are listed there,
and stop 56 is not among them). While both releases run, an upgraded worker's notice
goes to every other partition, some still owned by workers of the release before. Their
deadlines agent (runtime/app.py ``on_deadlines_record`` as of stop 55, copied below) takes
a value that does not begin with ``{`` as a deadline tick and calls ``int()`` on it: a
``ValueError``, an UNHANDLED_ERROR dead letter (the deadlines agent has no redrive gate),
and the notice is gone for good. The earlier version's case there is never taken over: a
control's reservations are kept (reported overdue a week later, though the office
released or refused the goods), an invalidation never gives back what that partition
wrote off, an undecided earlier version is decided and followed up as if no later one
existed.
"""

from __future__ import annotations

from pathlib import Path

from gun_contract.model.declaration import Stage
from gun_hub.domain.routing import RoutingTable
from gun_hub.pipeline.retention import RETENTION_TICK
from gun_hub.pipeline.takeover import Notice
from tests.builders import declaration_xml
from tests.unit.test_pipeline import Hub
from tests.unit.test_versions_and_recovery import REF, at

REPO = Path(__file__).resolve().parents[2]


def read_by_a_worker_of_stop_55(value: bytes) -> str:
    """What a deadlines agent of the release before stop 56 makes of ``value`` (its
    ``on_deadlines_record`` and ``is_notice``, verbatim in substance)."""
    if value == RETENTION_TICK:
        return "retention tick"
    if value.startswith(b"{"):  # takeover.is_notice before stop 56
        Notice.from_bytes(value)
        return "notice"
    int(value or b"0")  # deadlines.handle(reference, int(value or b"0"), source)
    return "deadline tick"


def test_during_the_rolling_upgrade_an_older_worker_reads_the_upgraded_workers_notices(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """The first step of the upgrade (docs/deployment.md): the new version writes clear
    notices (``hub.seal_takeover_notices`` false), which a worker of the release before
    reads as notices; the second step seals them."""
    upgrading = Hub(routing_table, keys_dir, seal_takeover_notices=False)
    told = upgrading.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(0, partition=1)
    )
    values = [r.value for r in told.to(upgrading.topics.deadlines) if r.key == REF.encode()]
    assert len(values) == 3, "a version first read above 1 tells the 3 other partitions"
    assert [read_by_a_worker_of_stop_55(v or b"") for v in values] == ["notice"] * 3


def test_once_upgraded_the_notices_are_sealed_and_the_upgrade_says_so(
    routing_table: RoutingTable, keys_dir: Path
) -> None:
    """By default notices are sealed, which an older worker cannot read: the upgrade's
    two steps are in docs/deployment.md."""
    upgraded = Hub(routing_table, keys_dir)
    told = upgraded.intake.handle(
        declaration_xml(version=2, stage=Stage.RELEASED_AFTER_CONTROL), at(0, partition=1)
    )
    values = [r.value for r in told.to(upgraded.topics.deadlines) if r.key == REF.encode()]
    assert len(values) == 3
    assert not any(is_clear_notice(v or b"") for v in values)
    text = (REPO / "docs" / "deployment.md").read_text()
    section = text.split("## Upgrading the hub", 1)[1].split("\n## ", 1)[0]
    assert "GUN_HUB_HUB__SEAL_TAKEOVER_NOTICES=false" in section


def is_clear_notice(value: bytes) -> bool:
    return value.startswith(b"{")
