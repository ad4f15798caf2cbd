"""``python -m chaos run --declarations N --seed S --out DIR``: one chaos run; exit 1 when an
invariant fails (``docs/chaos.md``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from chaos.orchestrator import execute
from gun_tools.processes import stopping_what_it_started_on_termination


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the stack under faults and check it")
    run.add_argument("--declarations", type=int, default=5000)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default .gun-hub/chaos/<time>)",
    )
    run.add_argument(
        "--profile",
        choices=("auto", "short", "full"),
        default="auto",
        help="fault schedule and timings (auto: full from 2,000 declarations)",
    )
    run.add_argument(
        "--workers", type=int, default=1, help="hub workers in one consumer group (issue 12)"
    )
    run.add_argument(
        "--adapter-replicas", type=int, default=1, help="adapter replicas per authority"
    )
    args = parser.parse_args()
    out = args.out or Path(".gun-hub/chaos") / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[logging.StreamHandler(sys.stderr), logging.FileHandler(out / "chaos.log")],
    )
    # A broker restart is part of the schedule: the clients' reconnection chatter is not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    report = asyncio.run(
        execute(
            out,
            args.declarations,
            args.seed,
            args.profile,
            workers=args.workers,
            adapter_replicas=args.adapter_replicas,
        )
    )
    print(f"results: {out / 'results.json'}", file=sys.stderr)
    return 0 if report.ok else 1


if __name__ == "__main__":
    # A SIGTERM or SIGHUP stops the broker and components it started, as Ctrl-C does.
    with stopping_what_it_started_on_termination():
        sys.exit(main())
