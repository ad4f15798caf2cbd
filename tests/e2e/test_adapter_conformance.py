"""The conformance kit certifies each authority's adapter against its partner system.

Partner system and adapter run as real processes on the real broker; the kit runs as the
``gun-hub conformance`` command, as an administration would run it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.conformance.scenarios import scenarios
from gun_tools.processes import ProcessGroup
from tests.conftest import KafkaEnv
from tests.e2e.conftest import start_partner

pytestmark = [pytest.mark.broker, pytest.mark.e2e]

# Short deadlines so the fault scenarios are quick; the kit is told the same deadline.
ADAPTER_TUNING = {
    "GUN_HUB_ADAPTER__PARTNER_TIMEOUT_S": "1",
    "GUN_HUB_ADAPTER__RETRY_ATTEMPTS": "2",
    "GUN_HUB_ADAPTER__CIRCUIT_FAILURE_THRESHOLD": "2",
    "GUN_HUB_ADAPTER__CIRCUIT_RESET_S": "1",
    "GUN_HUB_ADAPTER__REPLAY_INTERVAL_S": "0.5",
}


@pytest.mark.parametrize("authority", ["dgal", "cites", "dga"])
def test_the_adapter_passes_the_conformance_kit(
    kafka_env: KafkaEnv, samples: Path, tmp_path: Path, authority: str
) -> None:
    with ProcessGroup(tmp_path / "logs", kafka_env.env()) as group:
        port = start_partner(group, authority, samples, tmp_path, **ADAPTER_TUNING)
        kit = subprocess.run(
            [
                sys.executable,
                "-m",
                "gun_hub",
                "conformance",
                authority,
                "--partner-url",
                f"http://127.0.0.1:{port}",
                "--partner-timeout",
                "1",
                "--answer-timeout",
                "20",
            ],
            env={**os.environ, **kafka_env.env()},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        group.check_alive()
    print(kit.stdout)
    assert kit.returncode == 0, kit.stdout + kit.stderr
    summary = re.search(r"^(\d+) passed, (\d+) failed$", kit.stdout, re.MULTILINE)
    assert summary is not None
    assert int(summary.group(1)) == len(scenarios())  # every scenario ran, and passed
    assert summary.group(2) == "0"
