"""The clearance system's decision reader, held back: ``python -m chaos.clearance_reader``.

It is the project's own reader (:class:`gun_tools.clearance_stand_in.DecisionReader` with the
clearance party's envelope, consumer group ``gun-clearance``, dead letters on), started
only once the whole run is over, with the envelope's clock moved forward by
``--clock-offset`` seconds (default 65 minutes). Every decision it reads is therefore more
than an hour old by the reader's clock, while the broker's record timestamps are real:
the contract's freshness rule (judged against the time the broker accepted the record)
must let it act on every one. Only the envelope module's clock is shifted, so Kafka
client timeouts are unaffected. Prints one JSON object: opened, rejected and why.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import gun_contract.security.jose_envelope as jose_envelope
from gun_contract.resources import config_path
from gun_contract.settings import SecuritySettings, Settings
from gun_contract.topics import topic_registry
from gun_hub.domain.routing import load_routing_table
from gun_hub.security.factory import build_envelope
from gun_tools.clearance_stand_in import DecisionReader


def shift_envelope_clock(offset_s: float) -> None:
    """The envelope module reads ``time.time()``: give it a clock ``offset_s`` ahead."""
    real = time.time
    setattr(jose_envelope, "time", SimpleNamespace(time=lambda: real() + offset_s))  # noqa: B010


async def read_all(run: dict[str, str], state_dir: Path, offset_s: float) -> dict[str, object]:
    routing = load_routing_table(config_path("routing.toml"))
    topics = topic_registry(run["prefix"], routing.authorities)
    security = SecuritySettings(keys_dir=Path(run["keys_dir"]), state_dir=state_dir)
    envelope = build_envelope(security, "clearance", topics)
    reader = DecisionReader(
        run["bootstrap"],
        topics.decisions,
        envelope,
        group_id=Settings().ops.clearance_group,
        dlq_topic=topics.dlq,
    )
    shift_envelope_clock(offset_s)
    await reader.start()
    opened = 0
    oldest: float | None = None
    idle_rounds = 0
    deadline = time.monotonic() + 240
    try:
        while idle_rounds < 2 and time.monotonic() < deadline:
            rejected_before = len(reader.rejected)
            received = await reader.collect(expected=10**9, timeout_s=4)
            opened += len(received)
            for decision in received:
                issued = decision.envelope.issued_at
                oldest = issued if oldest is None else min(oldest, issued)
            got_any = received or len(reader.rejected) > rejected_before
            idle_rounds = 0 if got_any else idle_rounds + 1
    finally:
        await reader.stop()
    kinds = Counter(rejection.kind.value for rejection in reader.rejected)
    age = (time.time() + offset_s - oldest) if oldest is not None else None
    return {
        "opened": opened,
        "rejected": len(reader.rejected),
        "kinds": dict(kinds),
        "clock_offset_s": offset_s,
        "oldest_age_s": round(age) if age is not None else None,
        "age": f"{offset_s / 60:.0f} min + run time",
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.clearance_reader")
    parser.add_argument("--run", type=Path, required=True, help="the chaos run's folder")
    parser.add_argument("--clock-offset", type=float, default=65 * 60)
    args = parser.parse_args()
    run = json.loads((args.run / "run.json").read_text())
    result = asyncio.run(read_all(run, args.run / "state-clearance", args.clock_offset))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
