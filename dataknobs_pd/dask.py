"""The `dk` accessor on Dask DataFrames, and lazy loads into them.

    import dataknobs_pd.dask                        # registers ddf.dk
    res = ddf.dk.save(store, "flights", key="id")   # the arguments of df.dk.save
    ddf = dataknobs_pd.dask.load(store, "flights", npartitions=8)

Writes: a save that creates (or replaces) a keyed table on a store that takes rows from many
writers (PostgreSQL, Parquet/CSV/JSON-lines folders locally or on S3, Delta) runs on the workers:
each partition is converted, checked and written aside (a table aside, part files the table does
not list yet) by the worker that computes it, and one commit at the driver makes it the table
(dataknobs_pd.aside). Every other write (into an existing table, SQLite, DuckDB, a keyless table,
a dry run) goes through one writer: Dask computes the partitions on its workers, a few ahead, and
the engine of `dk.save(frames)` writes them in partition order in one transaction. Either way a
partition that Dask runs again after a worker died never writes a row twice; `errors="raise"` is
all or nothing across every partition; a key repeated in a later partition fails at `validate`
like one repeated within a frame (the driver keeps the keys seen so far, keys only); `row` counts
across the whole frame and the failures gain a `partition` column. The in-process memory store
takes writes (its one writer is the driver); a lazy load of it needs the local scheduler.

Loads: one task per key range of the table (when it has a single sortable key; its values
become the divisions when the key is the index), each a `dk.load` with `where` and `columns`
pushed down; `meta` comes from the dk schema, so the dtypes are exact before anything is read.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from . import api
from .dtypes import NUMBER_KINDS
from .errors import BackendUnavailableError, InvalidArgumentError
from .result import BatchResult
from .store import Store, as_store
from .writing import WriteOptions, write

try:
    import dask
    import dask.dataframe as dd
    from dask.dataframe.extensions import register_dataframe_accessor
except ImportError as e:  # pragma: no cover - the extra is missing
    raise BackendUnavailableError(
        f"dataknobs_pd.dask needs Dask ({e.name or e}); run: pip install 'dataknobs-pd[dask]'"
    ) from e

__all__ = ["DaskAccessor", "Partitions", "load"]


class Partitions:
    """The partitions of a Dask DataFrame as pandas frames, in order, computed `ahead` at a time in
    parallel while the caller works on the earlier ones. Iterating again computes them again."""

    def __init__(self, ddf: dd.DataFrame, ahead: int | None = None):
        self.ddf = ddf
        self.ahead = ahead

    def __len__(self) -> int:
        return self.ddf.npartitions

    def __iter__(self) -> Iterator[pd.DataFrame]:
        parts = self.ddf.to_delayed()
        if not parts:
            return
        # The first alone: a caller may read only it (to plan the call) and then write through `on_workers`.
        yield parts[0].compute()
        client = _client()
        if client is not None:
            yield from self._distributed(client, parts[1:])
        else:
            yield from self._local(parts[1:])

    def on_workers(self, fn, *args) -> Iterator:
        """fn(partition, its number, *args) for every partition, each run where the partition is computed
        (one Dask task: a worker that dies takes both with it, and Dask runs them again); the results
        in partition order."""
        tasks = [dask.delayed(fn, pure=False)(p, i, *args) for i, p in enumerate(self.ddf.to_delayed())]
        client = _client()
        if client is None:
            yield from dask.compute(*tasks)
            return
        futures = client.compute(tasks)
        try:
            for f in futures:
                yield f.result()
                f.release()
        finally:
            client.cancel([f for f in futures if f.status == "pending"])

    def _distributed(self, client, parts) -> Iterator[pd.DataFrame]:
        ahead = self.ahead or max(2, 2 * len(client.scheduler_info().get("workers", {})))
        pending: deque = deque()
        i = 0
        while i < len(parts) or pending:
            while i < len(parts) and len(pending) < ahead:
                pending.append(client.compute(parts[i]))
                i += 1
            future = pending.popleft()
            frame = future.result()
            future.release()
            yield frame

    def _local(self, parts) -> Iterator[pd.DataFrame]:
        ahead = self.ahead or max(2, os.cpu_count() or 2)
        batches = [parts[lo : lo + ahead] for lo in range(0, len(parts), ahead)]
        if not batches:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="dk-dask") as pool:  # the next batch computes meanwhile
            nxt = pool.submit(dask.compute, *batches[0])
            for b in range(len(batches)):
                frames = nxt.result()
                if b + 1 < len(batches):
                    nxt = pool.submit(dask.compute, *batches[b + 1])
                yield from frames


@register_dataframe_accessor("dk")
class DaskAccessor:
    """ddf.dk.save / update_batch / delete: the arguments and the report of the pandas accessor."""

    def __init__(self, ddf: dd.DataFrame):
        self._ddf = ddf

    def save(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        if_exists: str = "fail",
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
        new_columns: str = "fail",
        quarantine: bool | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
        undoable: bool | None = None,
        validate: Any = None,
    ) -> BatchResult:
        """Write every partition to `table` (see dataknobs_pd.save); one report for the whole frame. A new
        keyed table on a store that other processes can open is written by the workers, in parallel."""
        options = WriteOptions(
            key=key,
            if_exists=if_exists,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            new_columns=new_columns,
            quarantine=quarantine,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
            undoable=undoable,
            validate=validate,
        )
        parts = Partitions(self._ddf)
        return write("save", parts, store, table, options, parallel=parts)

    def update_batch(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        insert_missing: bool = False,
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
        new_columns: str = "fail",
        quarantine: bool | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
        undoable: bool | None = None,
        validate: Any = None,
    ) -> BatchResult:
        """Change the frame's columns on the rows with the same key (see dataknobs_pd.update_batch)."""
        options = WriteOptions(
            key=key,
            insert_missing=insert_missing,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            new_columns=new_columns,
            quarantine=quarantine,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
            undoable=undoable,
            validate=validate,
        )
        return write("update_batch", Partitions(self._ddf), store, table, options)

    def delete(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
        quarantine: bool | None = None,
        max_errors: int | None = None,
        max_error_rate: float | None = None,
        undoable: bool | None = None,
        validate: Any = None,
    ) -> BatchResult:
        """Delete the rows whose key is in the frame (see dataknobs_pd.delete)."""
        options = WriteOptions(
            key=key,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            quarantine=quarantine,
            max_errors=max_errors,
            max_error_rate=max_error_rate,
            undoable=undoable,
            validate=validate,
        )
        return write("delete", Partitions(self._ddf), store, table, options)


def load(
    store: Store | str, table: str, columns: Sequence | None = None, where=None, npartitions: int | None = None
) -> dd.DataFrame:
    """A lazy Dask DataFrame of `table`: exact dtypes and index, split by key range into `npartitions`
    (default: one per worker thread) when the table has a single sortable key."""
    store = as_store(store)
    schema = store.schema(table)
    meta = api.load(store, table, columns=columns, where=where, limit=0)  # reads no row: the dtypes, exactly
    if npartitions is not None and (not isinstance(npartitions, int) or npartitions < 1):
        raise InvalidArgumentError(f"npartitions= must be a positive int, got {npartitions!r}")
    if store.address is None and _client() is not None:
        raise InvalidArgumentError(
            f"{store.url} lives in this process (an in-process store, or a connection you lent), so the workers "
            f"of a distributed cluster cannot read it; load it with dk.load and dd.from_pandas, or give its URL"
        )
    # what a task needs to open the store: the Store itself in this process, else its URL and options
    spec = store.address or store  # the store itself when only this process can reach it
    groups = _groups(where)
    split = _split(store, table, schema, npartitions or _threads()) if schema.key and len(schema.key) == 1 else None
    if split is None:
        return dd.from_map(_read, [(spec, table, columns, groups, None)], meta=meta, enforce_metadata=False)
    edges, starts = split
    k = schema.key[0]
    pieces = []
    for i in range(len(edges) - 1):
        upper = "<=" if i == len(edges) - 2 else "<"
        ranged = (
            [g + [(k, ">=", edges[i]), (k, upper, edges[i + 1])] for g in groups]
            if groups
            else [[(k, ">=", edges[i]), (k, upper, edges[i + 1])]]
        )
        # without a filter each range's first row number is known: the default index runs on across partitions
        pieces.append((spec, table, columns, ranged, None if groups else starts[i]))
    key_is_index = schema.index_names and [str(n) for n in schema.index_names] == schema.key
    divisions = tuple(edges) if key_is_index else None
    return dd.from_map(_read, pieces, meta=meta, divisions=divisions, enforce_metadata=False)


def _read(piece) -> pd.DataFrame:
    spec, table, columns, where, start = piece
    from .store import pooled

    store = spec if isinstance(spec, Store) else pooled(spec[0], **spec[1])
    out = api.load(store, table, columns=columns, where=where or None)
    if start and isinstance(out.index, pd.RangeIndex):
        out.index = pd.RangeIndex(start, start + len(out))
    return out


def _groups(where) -> list[list]:
    """`where` as a list of AND groups (the OR form), so that a key range can be added to each."""
    if not where:
        return []
    if isinstance(where, tuple):
        return [[where]]
    if all(isinstance(g, list) for g in where):
        return [list(g) for g in where]
    return [list(where)]


def _split(store: Store, table: str, schema, n: int) -> tuple[list, list] | None:
    """n+1 ascending key values splitting the table into about equal ranges, and the row number where
    each range starts (None: no such split)."""
    k = schema.key[0]
    col = schema.column(k)
    if col.kind not in (*NUMBER_KINDS, "datetime", "date", "string"):
        return None
    keys = api.load(store, table, columns=[k] if not col.index else None)
    values = keys.index if col.index else keys[col.pandas_label]
    values = values.dropna()
    if len(values) == 0:
        return None
    n = max(1, min(n, len(values)))
    at = np.unique(np.linspace(0, len(values) - 1, n + 1).round().astype(np.int64))
    edges = [v.item() if isinstance(v, np.generic) else v for v in pd.Index(values)[at]]
    if len(edges) < 2:
        edges, at = [edges[0], edges[0]], np.array([0, 0])
    return edges, [int(a) for a in at]


def _threads() -> int:
    client = _client()
    if client is not None:
        return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()))
    return max(1, os.cpu_count() or 2)


def _client():
    """The distributed Client in use, or None (the local scheduler)."""
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:
        return None
