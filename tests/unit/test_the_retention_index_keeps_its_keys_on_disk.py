"""The retention index keeps every entry's key in due order on the worker's disk
(gun_hub/runtime/due_keys.py, ``RocksDueKeys``), as the in-memory heaps the other unit
tests use do (``HeapDueKeys``).

The table holds days of entries, 147 million at production's volume: held in memory they
would not fit, and holding only the next hour's meant reading the whole table again every
half hour (a quarter of a core, stop 44's ``./tasks bench-retention-read``). On RocksDB,
ordered by partition then due time, a look reads only what is due.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gun_hub.pipeline.retention import HeapDueKeys
from gun_hub.runtime.due_keys import DueKeysInUse, RocksDueKeys


@pytest.fixture
def on_disk(tmp_path: Path) -> RocksDueKeys:
    return RocksDueKeys(tmp_path / "retention-due")


def test_keys_come_out_oldest_first_by_partition_each_once(on_disk: RocksDueKeys) -> None:
    on_disk.put(0, 300.0, b"C")
    on_disk.put(0, 100.0, b"A")
    on_disk.put(1, 50.0, b"OTHER")
    on_disk.put(0, 200.0, b"B")
    on_disk.put(0, 200.0, b"B")  # the same due time again: one row
    on_disk.put(0, 250.0, b"A")  # the same key at another time: a row of its own
    assert len(on_disk) == 5

    assert on_disk.take(0, 260.0, None, 0) == [b"A", b"B"]
    assert len(on_disk) == 2
    assert on_disk.take(0, 1000.0, None, 0) == [b"C"]
    assert on_disk.take(1, 1000.0, None, 0) == [b"OTHER"]
    assert len(on_disk) == 0


def test_a_look_takes_the_window_of_the_oldest_yet_at_least_what_it_asks(
    on_disk: RocksDueKeys,
) -> None:
    for n, key in enumerate([b"A", b"B", b"C", b"D", b"E"]):
        on_disk.put(0, 1000.0 + 100 * n, key)
    assert on_disk.take(0, 5000.0, 150.0, 0) == [b"A", b"B"]
    assert on_disk.take(0, 5000.0, 50.0, 2) == [b"C", b"D"]
    assert on_disk.take(0, 1300.0, None, 10) == [], "never what is not due yet"
    assert on_disk.take(0, 1400.0, None, 0) == [b"E"]


def test_a_key_put_earlier_than_the_last_look_is_found(on_disk: RocksDueKeys) -> None:
    """Each look seeks from where the last one stopped (RocksDB's tombstones of what was
    taken lie before it); a row put before that point since is still found."""
    on_disk.put(0, 500.0, b"LATE")
    assert on_disk.take(0, 600.0, None, 0) == [b"LATE"]
    on_disk.put(0, 100.0, b"PUT_BACK")
    assert on_disk.take(0, 600.0, None, 0) == [b"PUT_BACK"]


def test_a_look_whose_deletions_fail_leaves_its_rows_to_the_next(on_disk: RocksDueKeys) -> None:
    """The look moved its seek point past the rows before deleting them: when the
    deletion failed (a full disk), the rows stayed but every later look sought past
    them until the next read of the table (review stop 45)."""
    on_disk.put(0, 10.0, b"A")
    on_disk.put(0, 20.0, b"B")
    disk = on_disk._db

    class FullDisk:
        def __getattr__(self, name: str) -> object:
            return getattr(disk, name)

        def write(self, _batch: object) -> None:
            raise OSError("no space left on device")

    on_disk._db = FullDisk()  # type: ignore[assignment]
    with pytest.raises(OSError, match="no space left"):
        on_disk.take(0, 100.0, None, 0)
    on_disk._db = disk
    assert on_disk.take(0, 100.0, None, 0) == [b"A", b"B"]


def test_a_partition_given_up_is_dropped_whole(on_disk: RocksDueKeys) -> None:
    for partition in (0, 1, 2):
        on_disk.put(partition, 10.0, b"K")
        on_disk.put(partition, 20.0, b"L")
    on_disk.drop(1)
    assert len(on_disk) == 4
    assert on_disk.take(1, 100.0, None, 0) == []
    assert on_disk.take(2, 100.0, None, 0) == [b"K", b"L"]


def test_what_a_previous_run_left_is_not_trusted(tmp_path: Path) -> None:
    first = RocksDueKeys(tmp_path / "retention-due")
    first.put(0, 10.0, b"OLD")
    first.close()
    again = RocksDueKeys(tmp_path / "retention-due")
    again.put(0, 20.0, b"NEW")
    assert again.take(0, 100.0, None, 0) == [b"NEW"], "each partition is read from the table"


@pytest.mark.parametrize("odd", [-0.0, -5.0, float("nan")], ids=["minus-zero", "negative", "nan"])
def test_a_due_time_that_would_not_sort_is_due_at_once_and_hides_no_other_row(
    on_disk: RocksDueKeys, odd: float
) -> None:
    """A negative double's bytes sort after every positive one's, -0.0's too, and NaN is
    never due: such a row, put first, made every look of its partition seek past the
    others until the next read of the table (review stop 45)."""
    on_disk.put(0, odd, b"ODD")
    on_disk.put(0, 5.0, b"LATER")
    assert on_disk.take(0, 10.0, None, 0) == [b"ODD", b"LATER"]
    on_disk.load([(1, odd, b"ODD"), (1, 5.0, b"LATER")])
    assert on_disk.take(1, 10.0, None, 0) == [b"ODD", b"LATER"]


def test_a_second_worker_on_the_same_folder_is_refused_and_wipes_nothing(
    tmp_path: Path,
) -> None:
    running = RocksDueKeys(tmp_path / "retention-due")
    running.put(0, 10.0, b"HELD")
    with pytest.raises(DueKeysInUse, match=r"another hub worker on the same hub\.data_dir"):
        RocksDueKeys(tmp_path / "retention-due", lock_wait_s=1.0)
    assert running.take(0, 100.0, None, 0) == [b"HELD"]
    running.close()


def test_a_worker_restarted_waits_for_the_one_it_replaces_to_let_go(tmp_path: Path) -> None:
    """The process it replaces may still be exiting, its lock held: refused at once, the
    restarted worker exited too (a restart loop), where faust waits for its tables."""
    exiting = RocksDueKeys(tmp_path / "retention-due")
    lets_go = threading.Timer(0.5, exiting.close)
    lets_go.start()
    try:
        restarted = RocksDueKeys(tmp_path / "retention-due", lock_wait_s=10.0)
    finally:
        lets_go.join()
    restarted.put(0, 10.0, b"NEW")
    assert restarted.take(0, 100.0, None, 0) == [b"NEW"]
    restarted.close()


def test_a_damaged_index_is_made_again_not_a_start_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache of the table, emptied at every start: a crash that left its files damaged
    refused the worker's start, naming "another hub worker", until someone deleted the
    folder by hand (review stop 45)."""
    folder = tmp_path / "retention-due"
    RocksDueKeys(folder).close()
    (folder / "CURRENT").write_text("not a manifest's name\n")
    again = RocksDueKeys(folder)
    again.put(0, 10.0, b"NEW")
    assert again.take(0, 100.0, None, 0) == [b"NEW"]
    again.close()
    assert "was damaged" in caplog.text
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_its_folder_is_its_owners_only_whatever_the_umask(tmp_path: Path) -> None:
    """Rows name declarations (their references), as the tables beside it do."""
    before = os.umask(0o022)
    try:
        RocksDueKeys(tmp_path / "data" / "retention-due").close()
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "data" / "retention-due").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700, "the hub's, made here"


# Due times, the ones that do not sort as bytes included (a due of 0 or less is due at once).
_DUES = st.one_of(st.floats(-10.0, 1000.0), st.sampled_from([-0.0, float("nan")]))
_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("put"),
            st.integers(0, 2),
            _DUES,
            st.sampled_from([b"A", b"B", b"C", b"D"]),
        ),
        st.tuples(
            st.just("take"),
            st.integers(0, 2),
            st.floats(0.0, 1000.0, allow_nan=False),
            st.one_of(st.none(), st.floats(0.0, 500.0, allow_nan=False)),
            st.integers(0, 3),
        ),
        st.tuples(st.just("drop"), st.integers(0, 2)),
        # A partition read again from the table: dropped, then loaded in one batch.
        st.tuples(
            st.just("read"),
            st.integers(0, 2),
            st.lists(
                st.tuples(_DUES, st.sampled_from([b"A", b"B", b"C", b"D"])),
                unique_by=lambda r: r[1],
            ),
        ),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(operations=_OPERATIONS)
def test_on_disk_it_answers_as_the_heaps_do(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[object, ...]]
) -> None:
    """Any sequence of puts, looks, drops and reads: the same keys out, in the same order,
    and as many rows held."""
    on_disk = RocksDueKeys(tmp_path_factory.mktemp("due") / "retention-due")
    heaps = HeapDueKeys()
    for operation in operations:
        match operation:
            case ("put", int(partition), float(due), bytes(key)):
                on_disk.put(partition, due, key)
                heaps.put(partition, due if due > 0.0 else 0.0, key)
            case ("take", int(partition), float(now), within_s, int(at_least)):
                assert isinstance(within_s, float | None)
                assert on_disk.take(partition, now, within_s, at_least) == heaps.take(
                    partition, now, within_s, at_least
                ), operation
            case ("drop", int(partition)):
                on_disk.drop(partition)
                heaps.drop(partition)
            case ("read", int(partition), list(rows)):
                on_disk.drop(partition)
                heaps.drop(partition)
                on_disk.load([(partition, due, key) for due, key in rows])
                heaps.load([(partition, due if due > 0.0 else 0.0, key) for due, key in rows])
        assert len(on_disk) == len(heaps), operation
    on_disk.close()
