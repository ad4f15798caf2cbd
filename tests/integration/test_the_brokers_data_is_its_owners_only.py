"""The embedded broker's data and logs are readable by its owner only (security probe,
stop 50: the data folder was 0755 and each segment 0644, so on the secured profile any
local account read every topic from disk, the SCRAM credential records of every principal
included, around the broker's authentication and ACLs). The partition folders and
segments Kafka makes under them keep the umask's modes: the folder above is what shuts
others out."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gun_contract.private_files import SHARED_BITS, make_own_folder_private
from gun_tools.local_broker import LocalBroker

pytestmark = pytest.mark.broker


def test_no_one_but_the_brokers_owner_may_enter_its_data_or_logs(
    local_broker: LocalBroker | None, kafka_bootstrap: str
) -> None:
    if local_broker is None:
        pytest.fail("this test needs the session's own broker (GUN_HUB_TEST_BOOTSTRAP set)")
    assert any(local_broker.data_dir.iterdir()), "the broker keeps its log there"
    for folder in (local_broker.data_dir, local_broker.logs_dir):
        mode = stat.S_IMODE(folder.stat().st_mode)
        assert not mode & SHARED_BITS, f"{folder} is {mode:o}"


def test_a_data_folder_made_before_the_rule_is_narrowed_to_its_owner(tmp_path: Path) -> None:
    """A broker home from an earlier version keeps its data: only the modes change."""
    data = tmp_path / "data"
    (data / "gun.status-0").mkdir(parents=True)
    data.chmod(0o755)
    make_own_folder_private(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "gun.status-0").is_dir()
    fresh = tmp_path / "home" / "logs"
    make_own_folder_private(fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
