"""Start-up refuses a bad configuration with a message naming the fault."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_bad_routing_table_stops_the_hub_with_its_reason(tmp_path: Path) -> None:
    table = tmp_path / "routing.toml"
    table.write_text(
        '[authorities.dgal]\nname = "DGAL"\ncodes = ["C640"]\n'
        '[authorities.cites]\nname = "CITES"\ncodes = ["C640"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "gun_hub", "hub"],
        env={**os.environ, "GUN_HUB_HUB__ROUTING_TABLE": str(table)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "document code C640 is routed to both dgal and cites" in result.stderr
    assert "Traceback" not in result.stderr
