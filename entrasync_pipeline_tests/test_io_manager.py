"""The job's IO manager: tables come back exactly as stored, at the fs IO manager's paths.

Re-executing a step from failure in the UI loads what an earlier process stored, so a table must
load back value for value (None stays None, a tuple stays a tuple, nullable integers keep their
dtype), files the pickling manager wrote before must still load, and a value handed over in one
process must never be a stale or shared one.
"""

from __future__ import annotations

import gc
import os
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from upath import UPath

from entrasync_pipeline.io_manager import FrameFilesystemIOManager, FrameIOManager

TABLES = {
    "text-with-none": pd.DataFrame({"email": ["a@x.example", None, ""], "n": [1, 2, 3]}),
    "nan-among-text": pd.DataFrame({"name": ["Jane", float("nan"), None]}),
    "tuples-and-dicts": pd.DataFrame(
        {"roles": [(), ("Agent",), (1, 2)], "changes": [{}, {"email": ["a", "b"]}, {"active": [True, False]}]}
    ),
    "nullable-integers": pd.DataFrame({"zammad_id": pd.array([5, None, 7], dtype="Int64"), "ok": [True, False, True]}),
    "numbers": pd.DataFrame({"i": np.arange(3, dtype=np.int64), "f": [0.5, np.nan, 2.0], "u": np.uint8([1, 2, 3])}),
    "lists": pd.DataFrame({"otherMails": [[], ["x@y.example"], None], "bytes": [b"a", b"b", None]}),
    "any-text": pd.DataFrame({"name": ["Zoë 🙂", "lone \ud800 surrogate", "tab\tand\nnewline"], "none": None}),
    "empty": pd.DataFrame({"action": pd.Series([], dtype=object), "zammad_id": pd.array([], dtype="Int64")}),
    "no-columns": pd.DataFrame(index=pd.RangeIndex(2)),
    "other-index": pd.DataFrame({"a": ["x", "y"]}, index=[10, 3]),
}


def _identical(stored: pd.DataFrame, loaded: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(loaded, stored, check_exact=True)
    assert loaded.attrs == stored.attrs
    for column in stored.columns:
        for before, after in zip(stored[column].tolist(), loaded[column].tolist()):
            assert type(before) is type(after), (column, before, after)


def _manager(tmp_path: Path) -> FrameFilesystemIOManager:
    return FrameFilesystemIOManager(str(tmp_path))


@pytest.mark.parametrize("name", list(TABLES))
def test_a_table_loads_back_exactly_in_another_process(tmp_path: Path, name: str) -> None:
    table = TABLES[name].copy()
    table.attrs["has_entra_attributes"] = True
    path = UPath(tmp_path / "asset" / "profile")
    path.parent.mkdir(parents=True)
    _manager(tmp_path).dump_to_path(None, table, path)  # type: ignore[arg-type]
    assert path.read_bytes().startswith(b"entrasync-frame\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["profile"]  # no temporary file left behind
    del table
    gc.collect()  # nothing keeps the stored value alive: the file is read, as a new process would
    loaded = _manager(tmp_path).load_from_path(None, path)  # type: ignore[arg-type]
    expected = TABLES[name].copy()
    expected.attrs["has_entra_attributes"] = True
    _identical(expected, loaded)


@pytest.mark.parametrize("value", [None, {"counts": {"created": 1}}, ["a", ("b",)]], ids=["none", "dict", "list"])
def test_values_other_than_tables_are_pickled(tmp_path: Path, value: Any) -> None:
    path = UPath(tmp_path / "value")
    _manager(tmp_path).dump_to_path(None, value, path)  # type: ignore[arg-type]
    assert _manager(tmp_path).load_from_path(None, path) == value  # type: ignore[arg-type]


def test_files_of_the_pickling_fs_io_manager_still_load(tmp_path: Path) -> None:
    path = tmp_path / "zammad_users" / "profile"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(TABLES["tuples-and-dicts"], 4))
    _identical(TABLES["tuples-and-dicts"], _manager(tmp_path).load_from_path(None, UPath(path)))  # type: ignore[arg-type]


def test_in_one_process_the_stored_table_is_handed_over_without_sharing_the_frame(tmp_path: Path) -> None:
    table = TABLES["text-with-none"].copy()
    path = UPath(tmp_path / "t")
    manager = _manager(tmp_path)
    manager.dump_to_path(None, table, path)  # type: ignore[arg-type]
    loaded = manager.load_from_path(None, path)  # type: ignore[arg-type]
    assert loaded is not table and loaded.equals(table)
    loaded["extra"] = 1
    assert "extra" not in table.columns


def test_a_file_another_process_rewrote_is_read_not_the_value_kept_here(tmp_path: Path) -> None:
    kept, newer = TABLES["text-with-none"], TABLES["numbers"]
    path = UPath(tmp_path / "t")
    _manager(tmp_path).dump_to_path(None, kept, path)  # type: ignore[arg-type]
    other = tmp_path / "other"
    _manager(tmp_path).dump_to_path(None, newer, UPath(other))  # type: ignore[arg-type]
    os.replace(other, path)  # what a concurrent run of the same partition does
    _identical(newer, _manager(tmp_path).load_from_path(None, path))  # type: ignore[arg-type]


# --- in a job --------------------------------------------------------------------------------------
PARTITIONS = dg.StaticPartitionsDefinition(["helpdesk"])


@dg.asset(partitions_def=PARTITIONS)
def members() -> pd.DataFrame:
    return TABLES["tuples-and-dicts"]


@dg.asset(partitions_def=PARTITIONS)
def users(members: pd.DataFrame) -> pd.DataFrame:
    return members.assign(count=len(members))


def test_a_job_stores_at_the_fs_io_manager_paths_and_a_step_reexecutes_from_them(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [members, users],
            resources={"io_manager": FrameIOManager(base_dir=str(tmp_path))},
            partition_key="helpdesk",
            instance=instance,
        )
        assert result.success
        assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
            "members/helpdesk",
            "users/helpdesk",
        ]
        messages = [e.user_message for e in instance.all_logs(result.run_id) if e.dagster_event is None]
        assert not [m for m in messages if m.startswith(("Loading", "Writing"))], messages
        # Only the downstream step, as a re-execution from failure runs it: members comes from its file.
        again = dg.materialize(
            [members, users],
            selection=[users],
            resources={"io_manager": FrameIOManager(base_dir=str(tmp_path))},
            partition_key="helpdesk",
            instance=instance,
        )
        assert again.success
        _identical(TABLES["tuples-and-dicts"].assign(count=3), again.output_for_node("users"))


def test_without_base_dir_the_values_live_in_the_instance_storage(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert dg.materialize(
            [members], resources={"io_manager": FrameIOManager()}, partition_key="helpdesk", instance=instance
        ).success
        assert (
            (Path(instance.storage_directory()) / "members" / "helpdesk").read_bytes().startswith(b"entrasync-frame\n")
        )
