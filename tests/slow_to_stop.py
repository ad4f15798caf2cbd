"""A child process for the process-group tests: says it runs, and once asked to stop
(SIGTERM) says so in ``<folder>/<name>.asked`` and takes ``--takes`` seconds to exit."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType


def main() -> None:
    folder, name, takes = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])

    def asked(_signum: int, _frame: FrameType | None) -> None:
        (folder / f"{name}.asked").write_text("asked")
        time.sleep(takes)
        sys.exit(0)

    signal.signal(signal.SIGTERM, asked)
    (folder / f"{name}.running").write_text("running")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
