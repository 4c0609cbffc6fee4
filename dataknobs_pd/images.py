"""Before-images: what an undoable call changed, kept in `table__undo` in the call's own transaction.

One row per row the call inserted, updated or deleted: `dk_batch_id`, `dk_action` (insert, update or delete:
what the call did), `dk_columns` (JSON: the columns it wrote), `dk_after` (a hash of the row's values in those
columns after the call, to tell whether a later call changed it since; none for a delete), then the table's
own columns, in its own types, holding the row as it was before: the key alone for an insert, the written
columns for an update, the whole row for a delete.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import changes, companions
from .backends.base import Backend
from .backends.capabilities import IMAGE_COLUMNS, Images, ImagesRead, StoreImages
from .changes import _positions
from .schema import Column, TableSchema
from .types import nullable

BATCH, ACTION, COLUMNS, AFTER = IMAGE_COLUMNS
_TEXT = {"name": "string", "storage": "python", "na": "NA"}
OWN = [
    Column(BATCH, "string", pa.large_string(), False, _TEXT),
    Column(ACTION, "string", pa.large_string(), False, _TEXT),
    Column(COLUMNS, "string", pa.large_string(), False, _TEXT),
    Column(AFTER, "int64", pa.int64(), True, {"name": "Int64"}),
]


def undo_schema(schema: TableSchema) -> TableSchema:
    """The undo table of a table of `schema`: its own columns, then the table's, every one nullable."""
    cols = [replace(nullable(c), index=False) for c in schema.columns]
    return TableSchema(columns=OWN + cols)


def ensure(backend: Backend, table: str, schema: TableSchema) -> TableSchema:
    """The undo table of `table`, made or given the table's newer columns; inside the call's transaction."""
    name = companions.name(table, companions.UNDO)
    want = undo_schema(schema)
    have = backend.schema(name)
    if have is None:
        backend.create(name, want)
        return want
    missing = [c for c in want.columns if have.get(c.name) is None]
    if missing:
        backend.add_columns(name, missing)
        have = TableSchema(columns=have.columns + missing)
        backend.set_schema(name, have)
    return have


def row_hash(t: pa.Table, columns: list[str]) -> np.ndarray:
    """A 64-bit hash of each row's values in `columns` (in any order), as the table holds them."""
    cols = sorted(columns)
    arrays = []
    for c in cols:
        a = t.column(c)
        if pa.types.is_dictionary(a.type):
            a = a.cast(a.type.value_type)
        arrays.append(a)
    frame = pa.table(arrays, names=cols).to_pandas(types_mapper=pd.ArrowDtype)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().view(np.int64)


def images(
    batch_id: str, schema: TableSchema, key: list[str], mode: str, data: pa.Table, before: pa.Table | None
) -> pa.Table:
    """The image rows of a chunk a call wrote (`data`, only its written rows) given the stored rows with its
    keys before it (`before`; None: none existed), in the undo table's columns of the table's columns."""
    n = data.num_rows
    at = _positions(before, data, key) if before is not None and before.num_rows else np.full(n, -1)
    found = at >= 0
    written = list(data.column_names)
    if mode == "delete":
        actions = np.full(n, "delete", dtype=object)
        values = before.take(pa.array(np.where(found, at, 0))) if before is not None and before.num_rows else None
        after = pa.nulls(n, pa.int64())
        written = list(before.column_names) if before is not None else written
    else:
        actions = np.where(found, "update", "insert").astype(object)
        values = _merge(data.select(key), before, at, found, [c for c in written if c not in key])
        after = pa.array(row_hash(data, written))
    own = {
        BATCH: pa.array([batch_id] * n, pa.large_string()),
        ACTION: pa.array(actions.tolist(), pa.large_string()),
        COLUMNS: pa.array([json.dumps(written)] * n, pa.large_string()),
        AFTER: after,
    }
    cols = [own[c.name] for c in OWN]
    for c in schema.columns:
        if values is not None and c.name in values.column_names:
            a = values.column(c.name)
            cols.append(a.cast(a.type.value_type) if pa.types.is_dictionary(a.type) else a)
        else:
            cols.append(pa.nulls(n, c.arrow))
    names = [c.name for c in OWN] + schema.names
    return pa.table(cols, names=names)


def _merge(keys: pa.Table, before: pa.Table | None, at: np.ndarray, found: np.ndarray, columns: list[str]) -> pa.Table:
    """The keys, and for the rows found before, their stored values in `columns` (none for new rows)."""
    if before is None or not found.any():
        return keys
    pick = pa.array(np.where(found, at, 0))
    mask = pa.array(~found)
    out = keys
    for c in columns:
        v = before.column(c).take(pick)
        out = out.append_column(c, pc.if_else(mask, pa.nulls(len(at), v.type), v))
    return out


def for_store(table: str, undo: TableSchema, batch_id: str, mode: str, data: pa.Table, names: list[str]) -> Images:
    """What a store that copies before-images itself (capabilities.StoreImages) needs of a write of `data` into
    `table` (schema `undo`: its undo table's): a delete keeps whole rows (`names`, the table's columns), an update
    or upsert the columns it writes, and the hash of what it leaves."""
    name = companions.name(table, companions.UNDO)
    if mode == "delete":
        return Images(name, undo, batch_id, json.dumps(names), None)
    written = list(data.column_names)
    return Images(name, undo, batch_id, json.dumps(written), pa.array(row_hash(data, written)))


def keep(backend: Backend, table: str, undo: TableSchema, rows: pa.Table) -> None:
    """Write image rows into the undo table of `table` (schema `undo`), in the call's transaction."""
    if not rows.num_rows:
        return
    name = companions.name(table, companions.UNDO)
    full = []
    for c in undo.columns:
        full.append(
            rows.column(c.name).cast(c.arrow) if c.name in rows.column_names else pa.nulls(rows.num_rows, c.arrow)
        )
    backend.write(name, pa.table(full, schema=undo.arrow_schema), undo, "insert")


def read_with_rows(
    backend: Backend, table: str, schema: TableSchema, batch_id: str
) -> tuple[pa.Table, pa.Table, np.ndarray] | None:
    """The images call `batch_id` kept (their action, columns, hash and the columns the undo needs), what the
    rows of their keys hold now (the columns the call wrote and the key; whole rows where the undo must make
    images of rows it deletes itself), and where each image's row is in it (-1: the key is not there). None:
    there is no undo table."""
    name, key = companions.name(table, companions.UNDO), schema.key or []
    mine = [(BATCH, "==", batch_id)]
    if isinstance(backend, ImagesRead) and not schema.loose:  # one join in the store: the table's key is unique
        undo = backend.schema(name)
        if undo is None:
            return None
        columns = _wanted(backend, schema, backend.written_by(name, batch_id), True)
        picked = [c for c in undo.names if c in (ACTION, COLUMNS, AFTER) or c in columns]
        imgs, now = backend.read_images(table, schema, name, undo, batch_id, picked, columns)
        present = now.column(key[0]).is_valid().to_numpy(zero_copy_only=False)
        return imgs, now, np.where(present, np.arange(len(present)), -1)
    kept = companions.read_arrow(backend, name, mine)
    if kept is None:
        return None
    imgs = kept[1]
    written = pc.unique(imgs.column(COLUMNS)).to_pylist()
    columns = _wanted(backend, schema, written, "insert" in imgs.column(ACTION).to_pylist())
    now = changes.stored_rows(backend, table, schema, imgs.select(key), columns=columns)
    at = _positions(now, imgs, key) if now.num_rows else np.full(imgs.num_rows, -1)
    return imgs, now, at


def _wanted(backend: Backend, schema: TableSchema, written: list[str], inserts: bool) -> list[str]:
    """The columns an undo reads of the rows now: the key and the columns the call wrote (`written`, the
    images' JSON lists); all, where it makes the images of the rows it deletes itself (`inserts`: there may
    be some)."""
    if inserts and not isinstance(backend, StoreImages):
        return schema.names
    wanted = {c for text in written for c in json.loads(text)}
    return [c for c in schema.names if c in wanted or c in (schema.key or [])]
