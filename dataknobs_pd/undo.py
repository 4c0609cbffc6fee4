"""dk.undo: put back every row an undoable call inserted, updated or deleted, in one transaction.

A row a later call has changed since (its values in the columns the call wrote no longer hash to what the
call left, or a deleted key is back) is left as it is and reported (stage `undo`, error `Conflict`). The undo
is itself a call with a batch id and before-images, so undoing it redoes the call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import batchlog, changes, images
from .backends.base import conform
from .backends.capabilities import StoreImages
from .changes import CHANGE_COLUMNS
from .errors import InvalidArgumentError, TableNotFoundError
from .failures import RowError, RowFailure, Stage, key_text
from .result import BatchResult
from .schema import TableSchema
from .store import Store, as_store
from .types import TypeMapper

mapper = TypeMapper()


class _DryRun(Exception):
    """Raised inside the transaction to roll a dry run back."""


def undo(store: Store | str, table: str, batch_id: str, dry_run: bool = False) -> BatchResult:
    """Put back, in one transaction, every row that call `batch_id` inserted, updated or deleted."""
    store = as_store(store)
    backend = store.backend
    start = time.perf_counter()
    out: dict = {}
    try:
        with backend.transaction():
            backend.claim(table)
            out.update(_undo(store, table, batch_id))
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return BatchResult(
        operation="undo",
        table=table,
        url=store.url,
        key=out["schema"].key,
        failures=out["failures"],
        elapsed=time.perf_counter() - start,
        committed=not dry_run,
        total=out["total"],
        failed_rows=out["failed_rows"],
        changes=out["changes"],
        dry_run=dry_run,
        batch_id=out["batch_id"],
    )


def _undo(store: Store, table: str, batch_id: str) -> dict:
    backend = store.backend
    schema = backend.schema(table)
    if schema is None:
        raise TableNotFoundError(store.table_not_found(table))
    entry = batchlog.entry(backend, table, batch_id)
    if entry is None:
        raise InvalidArgumentError(
            f"no call {batch_id!r} in the batch log of {table!r}; store.batches({table!r}) lists them"
        )
    if not entry["undoable"]:
        raise InvalidArgumentError(
            f"call {batch_id!r} on {table!r} kept no before-images, so it cannot be undone; "
            f"pass undoable=True to a call (or dk.connect(url, undoable=True)) to undo it later"
        )
    if not pd.isna(entry["undone_by"]):
        raise InvalidArgumentError(
            f"call {batch_id!r} on {table!r} was already undone by {entry['undone_by']!r}; undo that to redo it"
        )
    key = json.loads(entry["key"])
    if schema.key != key:  # the call matched rows by a key= the table does not keep
        schema = replace(schema, key=key, loose=True)
    kept = images.read_with_rows(backend, table, schema, batch_id)
    if kept is None:
        raise InvalidArgumentError(
            f"the before-images of call {batch_id!r} on {table!r} are gone (the table was replaced)"
        )
    imgs, now, at = kept
    action = np.asarray(imgs.column(images.ACTION).to_pylist(), dtype=object)
    written = np.asarray(imgs.column(images.COLUMNS).to_pylist(), dtype=object)
    ok = _unchanged(imgs, now, at, action, written)
    me = batchlog.new_id()
    undo_table = images.ensure(backend, table, schema)
    kept_rows: list[pa.Table | None] = []
    tracked: list[Callable[[], pd.DataFrame]] = []  # what each group put back, made when u.changes is read
    for cols_text in sorted(set(written)):
        cols = [c for c in json.loads(cols_text) if schema.get(c) is not None]
        group = np.flatnonzero(ok & (written == cols_text))
        for act in ("insert", "update", "delete"):
            rows = group[action[group] == act]
            if len(rows):
                put = _put_back(backend, table, schema, (me, undo_table), act, imgs, now, at, rows, cols, tracked)
                kept_rows.append(put)
    undo_images = [r for r in kept_rows if r is not None]
    if undo_images:
        images.keep(backend, table, undo_table, pa.concat_tables(undo_images))
    failed = np.flatnonzero(~ok)
    failures = {
        int(i): RowFailure(
            Stage.UNDO,
            RowError.Conflict,
            f"a later call changed the row with key {key_text(key, imgs, int(i))} since {batch_id}, so the undo left it as "
            "it is",
        )
        for i in failed
    }
    keys_only = TableSchema(columns=[schema.column(k) for k in key], key=key)
    left = mapper.to_pandas(imgs.take(pa.array(failed, pa.int64())).select(key), keys_only)
    total = imgs.num_rows
    batchlog.record(backend, table, me, "undo", (total, total - len(failed), len(failed)), 0, True, key)
    batchlog.mark_undone(backend, table, batch_id, me)
    return {
        "schema": schema,
        "failures": failures,
        "total": total,
        "failed_rows": left,
        "changes": partial(_changes, tracked, imgs, key),
        "batch_id": me,
    }


def _unchanged(imgs: pa.Table, now: pa.Table, at: np.ndarray, action: np.ndarray, written: np.ndarray) -> np.ndarray:
    """Which image rows still stand as the call left them: a deleted key still absent, an inserted or
    updated row present with the values it was given."""
    present = at >= 0
    ok = np.where(action == "delete", ~present, present)
    after = pc.fill_null(imgs.column(images.AFTER), 0).to_numpy()  # exact: no float for the nulls of deletes
    for cols_text in set(written):
        rows = np.flatnonzero(present & (action != "delete") & (written == cols_text))
        if not len(rows):
            continue
        cols = json.loads(cols_text)
        if any(c not in now.column_names for c in cols):
            ok[rows] = False
            continue
        h = images.row_hash(now.take(pa.array(at[rows])), cols)
        ok[rows] &= h == after[rows]
    return ok


def _put_back(backend, table, schema: TableSchema, kept, act, imgs, now, at, rows, cols, tracked) -> pa.Table | None:
    """Undo rows `rows` of the images (all of action `act`); the undo's own images of them (None: the store
    copied them as it wrote). `kept`: the undo's batch id and its undo table's schema."""
    me, undo_table = kept
    key = schema.key or []
    take = pa.array(rows, pa.int64())
    if act == "insert":  # the call inserted them: delete them
        tracked.append(partial(_tracked, rows, "delete"))
        keys = imgs.take(take).select(key)
        if isinstance(backend, StoreImages):
            backend.write_imaged(
                table, keys, schema, "delete", images.for_store(table, undo_table, me, "delete", keys, schema.names)
            )
            return None
        backend.delete(table, keys, schema)
        gone = now.take(pa.array(at[rows]))
        return images.images(me, schema, key, "delete", gone.select(key), gone)
    if act == "update":  # put the written columns back as they were
        written = key + [c for c in cols if c not in key]
        old = conform(imgs.take(take), pa.schema([schema.column(c).field for c in written]))
        current = now.take(pa.array(at[rows])).select(old.column_names)
        tracked.append(partial(_diffed, old, current, key, rows))
        if isinstance(backend, StoreImages):
            backend.write_imaged(
                table, old, schema, "update", images.for_store(table, undo_table, me, "update", old, schema.names)
            )
            return None
        backend.write(table, old, schema, "update")
        return images.images(me, schema, key, "update", old, current)
    # the call deleted them: insert them again as they were
    full = conform(imgs.take(take), schema.arrow_schema)
    backend.write(table, full, schema, "insert")
    tracked.append(partial(_tracked, rows, "insert"))
    return images.images(me, schema, key, "insert", full, None)


def _tracked(rows: np.ndarray, action: str) -> pd.DataFrame:
    out = changes.plain(len(rows), action)
    out.insert(0, "row", rows)
    return out


def _diffed(old: pa.Table, current: pa.Table, key: list[str], rows: np.ndarray) -> pd.DataFrame:
    out = changes.diff(old, current, key, "update")
    out.insert(0, "row", rows)
    return out


def _changes(tracked: list[Callable[[], pd.DataFrame]], imgs: pa.Table, key: list[str]) -> pd.DataFrame:
    if not tracked:
        return changes.empty()
    out = pd.concat([made() for made in tracked], ignore_index=True).sort_values("row", ignore_index=True)
    keys = imgs.select(key).take(pa.array(out["row"].to_numpy(), pa.int64())).to_pylist()
    out.insert(1, "index", pd.Series([None] * len(out), dtype=object))
    labels = [r[key[0]] if len(key) == 1 else tuple(r[k] for k in key) for r in keys]
    out.insert(2, "key", pd.Series(labels, dtype=object))
    return out[CHANGE_COLUMNS]
