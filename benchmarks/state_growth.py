"""What the hub keeps per declaration, store by store (issue 12, bounded state).

Drives the hub's pipeline directly (no Kafka, the unit tests' wiring) with declarations
of 1 to 5 DGAL documents, each answered VALID and its write-off confirmed, and measures
what every store holds afterwards, per declaration: the cases table (as sealed in the
worker), open-cases, the retention entries and markers, the replay memories (one claim
per declaration, one id per answer), and the operations view fed with the status and
facts records the pipeline emitted. Then it moves the clock past the retention and the
marker time and runs the retention ticks, and measures again.

    PYTHONPATH=. .venv/bin/python -m benchmarks.state_growth [declarations]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from gun_contract.dead_letter import SourcePosition
from gun_contract.effects import Effects
from gun_contract.model.verdicts import Verdict
from gun_contract.security.keystore import KeystoreFolder
from gun_hub.domain.routing import load_routing_table
from gun_hub.ops.view import FeedRecord, FeedTopics, OpsView
from tests.builders import declaration_xml, document, goods_item
from tests.unit.test_decided_cases_leave_the_hot_table import (
    MARKER_S,
    RETENTION_S,
    RetainingHub,
)

# What sealing adds to a case in the worker (docs/security.md: 64 bytes per value).
SEAL_OVERHEAD_BYTES = 64
# What a claimed id and a seen message id hold: key (a UUID jti) and "position|expiry".
_REPLAY_ENTRY_BYTES = 36 + len("gun.declarations/3/1234567|1796000000")


def _declaration(n: int) -> bytes:
    documents = (n % 5) + 1
    return declaration_xml(
        reference=f"26FRSTATE{n:09d}",
        items=tuple(
            goods_item(item + 1, (document("N853", f"CHEDP.FR.2026.{n:07d}{item}"),))
            for item in range(documents)
        ),
    )


def _feed(view: OpsView, outbox: Effects, offset: list[int]) -> None:
    records = []
    for record in outbox.records:
        if record.topic in (view.topics.status, view.topics.facts):
            offset[0] += 1
            records.append(FeedRecord(record.topic, 0, offset[0], 0, record.value, (), record.key))
    view.apply(records)


def _sizes(hub: RetainingHub, view: OpsView) -> dict[str, float]:
    rows = {
        table: view._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
        for table in ("events", "decisions", "decision_documents", "declarants", "write_offs")
    }
    return {
        "cases": len(hub.cases),
        "cases_bytes": sum(len(v) + SEAL_OVERHEAD_BYTES for v in hub.cases.values()),
        "open_cases": len(hub.open_cases),
        "retention_entries": len(hub.retained),
        "retention_bytes": sum(len(k) + len(v) for k, v in hub.retained.items()),
        **{f"view_{table}": count for table, count in rows.items()},
        "view_file_bytes": view.path.stat().st_size
        + (Path(f"{view.path}-wal").stat().st_size if Path(f"{view.path}-wal").exists() else 0),
    }


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        keys = Path(work) / "keys"
        KeystoreFolder(keys).init(["hub", "clearance", "gateway", "cites", "dga", "dgal"])
        hub = RetainingHub(load_routing_table(Path("config/routing.toml")), keys)
        topics = hub.topics
        view = OpsView(
            Path(work) / "view.sqlite3",
            FeedTopics(status=topics.status, facts=topics.facts, dlq=topics.dlq, health="h"),
        )
        offset = [0]
        answers = 0
        for n in range(count):
            source = SourcePosition(topics.declarations, 0, n)
            sent = hub.intake.handle(_declaration(n), source)
            decided = hub.answer(sent, "dgal", Verdict.VALID)
            written_off = hub.answer(decided, "dgal", Verdict.VALID)
            answers += 2
            for outbox in (sent, decided, written_off):
                _feed(view, outbox, offset)
        before = _sizes(hub, view)
        print(f"after {count} declarations, nothing retired yet (per declaration):")
        for name, value in before.items():
            print(f"  {name:22} {value:>12,.0f}   {value / count:10.1f}")
        print(f"  {'claimed_ids_bytes':22} {count * _REPLAY_ENTRY_BYTES:>12,.0f}")
        print(f"  {'seen_messages_bytes':22} {answers * _REPLAY_ENTRY_BYTES:>12,.0f}")
        hub.now += timedelta(seconds=RETENTION_S + 1)
        _tick_due(hub)
        print(
            "after the retention:", {k: v for k, v in _sizes(hub, view).items() if "view" not in k}
        )
        hub.now += timedelta(seconds=MARKER_S + 1)
        _tick_due(hub)
        print(
            "after the marker time:",
            {k: v for k, v in _sizes(hub, view).items() if "view" not in k},
        )


def _tick_due(hub: RetainingHub) -> None:
    now = hub.now.timestamp()
    asyncio.run(hub.index.refresh({0}, hub.retained.items))
    for key in hub.index.due(0, now):
        hub.retention.handle(
            key.decode(),
            0,
            lambda outbox, case: hub.context.announce_again_if_lost(outbox, case, 0),
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
