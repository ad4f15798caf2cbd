"""``python -m chaos.checker --run DIR``: check a finished chaos run whose stack still runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from chaos.checker.run import check_run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.checker", description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="the chaos run's output folder")
    args = parser.parse_args()
    return 0 if check_run(args.run).ok else 1


if __name__ == "__main__":
    sys.exit(main())
