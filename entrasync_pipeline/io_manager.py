"""Where the job's tables live between steps: columnar pickles at the default fs IO manager's paths.

Paths are exactly those of Dagster's ``fs_io_manager`` (``<base_dir>/<asset key path>/<partition>``,
base_dir defaulting to the instance's ``storage`` directory under DAGSTER_HOME), so the UI can
re-execute any step from failure, and values the pickling manager stored before still load.

A DataFrame is stored column by column in one pickle (protocol 5) behind a short header: a text
column (only ``str`` or ``None``) as one joined string, the length of each value and where the
``None`` are; any other column as its array (numbers as raw buffers; tuples of role ids, change
dicts and nullable integers as pandas pickles them). It loads back equal, dtype for dtype and value
for value (``None`` stays ``None``, ``NaN`` stays ``NaN``). Every other value is pickled, as the fs
IO manager does. At 100,000 users this writes ``universal_users`` in a fraction of the time a
pickle of the frame takes: pickle records every string object one by one, a joined string is one
copy. (Arrow would do the same, but pyarrow installed costs every process that imports pandas
some 65 MB of memory, a sixth of the sync's budget.)

In one process, a value stored here is handed to the step that reads it without reading the file
back, as long as the file on disk is still the one written (same inode, size and mtime). The
in-process executor (``entrasync sync``, tests, the bench) keeps every step output in memory
anyway (``execute_in_process`` captures them), so reading the file again would cost the time to
parse it and a second copy of the table. A step gets a shallow copy, so adding a column to its
input does not change the upstream value; steps in their own processes (the daemon's
multiprocess executor) read the file. This module does not interpret the tables it stores.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field
from upath import UPath

FORMAT = "entrasync.frame.v2"
TARGETED_DIR = "targeted"
ROOT_RUN_TAG = "dagster/root_run_id"  # set by Dagster on re-executions
_MAGIC = b"entrasync-frame\n"  # a pickle starts with 0x80: old files are told apart by their first byte


# --- the file format -------------------------------------------------------------------------------
def _storable_as_columns(value: Any) -> bool:
    return (
        isinstance(value, pd.DataFrame)
        and not isinstance(value.columns, pd.MultiIndex)
        and all(isinstance(c, str) for c in value.columns)
        and value.columns.is_unique
    )


def _text_column(values: np.ndarray) -> tuple[str, np.ndarray, np.ndarray | None] | None:
    """``(joined, lengths, missing)`` for a column of ``str`` and ``None`` only, else None."""
    if values.dtype != object:
        return None
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "string":  # text in every row, the common case
        texts, missing = values.tolist(), None
    elif pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):
        missing = np.equal(values, None)  # None only: a NaN stays among the texts and fails the join
        texts = values[~missing].tolist()
    else:
        return None
    try:
        joined = "".join(texts)
    except TypeError:  # NaN among the text: kept as it is, in the column's own pickle
        return None
    return joined, np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)), missing


def _texts_back(joined: str, lengths: np.ndarray, missing: np.ndarray | None) -> np.ndarray:
    ends = np.cumsum(lengths)
    pieces = map(joined.__getitem__, map(slice, (ends - lengths).tolist(), ends.tolist()))
    texts = np.fromiter(pieces, dtype=object, count=len(lengths))
    if missing is None:
        return texts
    values = np.full(len(missing), None, dtype=object)
    values[~missing] = texts
    return values


def write_frame(frame: pd.DataFrame, sink: Any) -> None:
    """The header, then one pickle of the frame's columns, index and attrs."""
    columns = []
    for position, name in enumerate(frame.columns):
        column = frame.iloc[:, position]
        text = _text_column(column.to_numpy())
        columns.append((name, "text", text) if text is not None else (name, "array", column.array))
    default_index = isinstance(frame.index, pd.RangeIndex) and frame.index.equals(pd.RangeIndex(len(frame)))
    payload = {
        "format": FORMAT,
        "rows": len(frame),
        "columns": columns,
        "index": None if default_index else frame.index,
        "attrs": frame.attrs,
    }
    sink.write(_MAGIC)
    pickle.dump(payload, sink, protocol=5)


def read_frame(source: Any) -> pd.DataFrame:
    """The frame ``write_frame`` wrote (``source``: positioned after the header)."""
    payload = pickle.load(source)
    columns = {name: _texts_back(*data) if kind == "text" else data for name, kind, data in payload["columns"]}
    index = payload["index"] if payload["index"] is not None else pd.RangeIndex(payload["rows"])
    frame = pd.DataFrame(columns, index=index) if columns else pd.DataFrame(index=index)
    frame.attrs = payload["attrs"]
    return frame


def _trim() -> Callable[[], None]:
    """glibc's ``malloc_trim(0)``, or nothing where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None

    def release() -> None:
        trim(0)

    return release


# A step's input is read right after the previous step let go of its temporaries (a 100,000-user
# read parses some 200 MB of JSON). glibc keeps freed pages for reuse, so without a trim the next
# step's peak adds to the previous one's: measured on the 100k no-change sync, 8 MB less peak RSS.
_release_free_memory = _trim()


# --- the in-process hand-over --------------------------------------------------------------------------
class _Stored:
    """Values this process stored, by path, kept only while something else keeps them alive."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, int, int], weakref.ref[Any]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _signature(path: str) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def remember(self, path: str, value: Any) -> None:
        signature = self._signature(path)
        with self._lock:
            self._entries.pop(path, None)
            if signature is not None and isinstance(value, pd.DataFrame):
                self._entries[path] = (signature, weakref.ref(value))

    def recall(self, path: str) -> pd.DataFrame | None:
        with self._lock:
            entry = self._entries.get(path)
        if entry is None:
            return None
        signature, ref = entry
        value = ref()
        if value is None or self._signature(path) != signature:
            return None
        return value.copy(deep=False)


_STORED = _Stored()


# --- the IO manager ------------------------------------------------------------------------------------
class FrameFilesystemIOManager(dg.UPathIOManager):
    """DataFrames stored column by column, anything else pickled, at the fs IO manager's paths."""

    extension: str = ""  # the fs IO manager's paths: <base>/<asset key>/<partition>, no suffix

    def __init__(self, base_dir: str) -> None:
        super().__init__(base_path=UPath(base_dir))

    # handle_output and load_input do what UPathIOManager's do, minus their debug lines ("Loading
    # 1 partitions...", "Writing file at..."): each is an event written to the instance, three per
    # input, inside the step's time. The path stays in the output's metadata.
    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if context.has_asset_partitions:
            paths = self._get_paths_for_partitions(context)
            if len(paths) != 1:
                raise dg.DagsterInvariantViolationError(
                    f"{type(self).__name__} stores one partition per output; launch backfills as one run per partition"
                )
            path = self._scoped(context, next(iter(paths.values())))
            self._handle_transition_to_partitioned_asset(context, path.parent)
        else:
            path = self._scoped(context, self._get_path(context))
        self.make_directory(path.parent)
        self.dump_to_path(context=context, obj=obj, path=path)
        metadata: dict[str, Any] = {"path": dg.MetadataValue.path(str(path))} if obj is not None else {}
        context.add_output_metadata({**metadata, **self.get_metadata(context=context, obj=obj)})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_key and context.has_asset_partitions and len(context.asset_partition_keys) == 1:
            (path,) = self._get_paths_for_partitions(context).values()
            return self.load_from_path(context=context, path=self._scoped(context, path))
        if not context.has_asset_key or not context.has_asset_partitions:
            return self.load_from_path(context=context, path=self._scoped(context, self._get_path(context)))
        return super().load_input(context)  # several partitions at once: the base class's dict

    def _scoped(self, context: dg.OutputContext | dg.InputContext, path: UPath) -> UPath:
        """A targeted run's tables live under ``targeted/<root run id>/``, never at the full run's paths.

        So re-executing a full run from failure never loads a targeted run's partial table, and a
        re-executed targeted run (same root run id) finds its parent's. Whether a run is targeted
        is in its run config (``resources.run_options.config.targets``), which re-executions copy.
        """
        step = getattr(context, "_step_context", None)  # None when built outside a run (tests, tools)
        run = step.dagster_run if step is not None else None
        if run is None or not _targets_of(run.run_config):
            return path
        root = run.tags.get(ROOT_RUN_TAG) or run.run_id
        return self._base_path / TARGETED_DIR / root / path.relative_to(self._base_path)

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        if getattr(path, "protocol", "") not in ("", "file"):  # a remote UPath: no rename there
            with path.open("wb") as handle:
                self._write(obj, handle)
            return
        # Write beside, then rename: a reader (or a crash) never sees half a file.
        handle, temporary = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as sink:
                self._write(obj, sink)
            os.replace(temporary, str(path))
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _STORED.remember(str(path), obj)

    @staticmethod
    def _write(obj: Any, sink: Any) -> None:
        if _storable_as_columns(obj):
            write_frame(obj, sink)
        else:
            pickle.dump(obj, sink, pickle.HIGHEST_PROTOCOL)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        _release_free_memory()  # a step starts: what the steps before it freed goes back to the OS
        kept = _STORED.recall(str(path))
        if kept is not None:
            return kept
        with path.open("rb") as handle:
            if handle.read(len(_MAGIC)) == _MAGIC:
                return read_frame(handle)
            handle.seek(0)
            return pickle.load(handle)  # the fs IO manager's files, and values other than frames


def _targets_of(run_config: Any) -> Any:
    options = ((run_config or {}).get("resources") or {}).get("run_options") or {}
    return (options.get("config") or {}).get("targets")


class FrameIOManager(dg.ConfigurableIOManagerFactory):
    """The job's IO manager (resource key ``io_manager``), configured like ``FilesystemIOManager``."""

    base_dir: Optional[str] = Field(
        default=None, description="Where the values live; empty: the instance's storage directory (DAGSTER_HOME)."
    )

    def create_io_manager(self, context: dg.InitResourceContext) -> FrameFilesystemIOManager:
        instance = context.instance
        if self.base_dir is None and instance is None:
            raise dg.DagsterInvariantViolationError("FrameIOManager needs base_dir or a Dagster instance")
        return FrameFilesystemIOManager(self.base_dir or instance.storage_directory())  # type: ignore[union-attr]
