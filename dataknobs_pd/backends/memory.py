"""memory:// — tables held as Arrow in this process, shared by every connect of the same name."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa

from ..failures import inserted
from ..filters import to_expression
from ..schema import TableSchema
from .base import Backend, put_rows

_SPACES: dict[str, _Space] = {}
_SPACES_LOCK = threading.Lock()


class _Space:
    """The tables of one memory:// name: {table: (Arrow table, schema)}."""

    def __init__(self):
        self.tables: dict[str, tuple[pa.Table, TableSchema]] = {}
        self.lock = threading.RLock()


class MemoryBackend(Backend):
    """In-process store; a write replaces immutable Arrow tables, so undoing it is cheap."""

    in_process = True

    def __init__(self, url: str, **options):
        super().__init__(url, **options)
        name = url.split("://", 1)[1]
        with _SPACES_LOCK:
            self.space = _SPACES.setdefault(name, _Space())

    @property
    def _t(self):
        return self.space.tables

    def tables(self):
        with self.space.lock:
            return sorted(self._t)

    def schema(self, table):
        with self.space.lock:
            entry = self._t.get(table)
        return entry[1] if entry else None

    def create(self, table, schema):
        self._t[table] = (schema.arrow_schema.empty_table(), schema)

    def set_schema(self, table, schema):
        self._t[table] = (self._t[table][0], schema)

    def drop(self, table):
        self._t.pop(table, None)

    def add_columns(self, table, columns):
        stored, schema = self._t[table]
        order = schema.data_columns + list(columns) + schema.index_columns
        cols = [
            stored.column(c.name) if c.name in stored.column_names else pa.nulls(stored.num_rows, c.arrow)
            for c in order
        ]
        self._t[table] = (pa.table(cols, schema=pa.schema([c.field for c in order])), schema)

    # -- data --------------------------------------------------------------------------
    def write(self, table, data, schema, mode):
        stored, _ = self._t[table]
        at = _stored_at(stored, data, schema.key) if schema.key else np.full(data.num_rows, -1)
        exists = at >= 0
        if mode != "insert" and exists.any():
            stored = put_rows(stored, data.take(np.flatnonzero(exists)), at[exists])
        new_rows = inserted(data, schema, mode, exists)
        if len(new_rows):
            add = data.take(new_rows)
            cols = [
                add.column(f.name) if f.name in add.column_names else pa.nulls(len(add), f.type) for f in stored.schema
            ]
            stored = pa.concat_tables([stored, pa.table(cols, schema=stored.schema)])
        self._t[table] = (stored, self._t[table][1])
        return exists

    def delete(self, table, keys, schema):
        stored, sch = self._t[table]
        hit = _key_index(keys, schema.key).get_indexer(_key_index(stored, schema.key))
        self._t[table] = (stored.filter(pa.array(hit < 0)), sch)
        existed = np.zeros(keys.num_rows, dtype=bool)
        existed[hit[hit >= 0]] = True
        return existed

    def read(self, table, schema, columns, where, order, limit, batch_rows):
        data, _ = self._t[table]
        if where:
            data = data.filter(to_expression(where, data.schema))
        sort = [(c, "ascending" if asc else "descending") for c, asc in order]
        if not sort and schema.key:
            sort = [(k, "ascending") for k in schema.key]
        if sort:
            data = data.sort_by(sort)
        if limit is not None:
            data = data.slice(0, limit)
        data = data.select(columns)
        for start in range(0, max(data.num_rows, 1), batch_rows):
            yield data.slice(start, batch_rows)

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def transaction(self):
        with self.space.lock:
            with self.savepoint():
                yield

    @contextmanager
    def savepoint(self):
        snapshot = dict(self._t)
        try:
            yield
        except BaseException:
            self._t.clear()
            self._t.update(snapshot)
            raise


def _stored_at(stored: pa.Table, data: pa.Table, key: list[str]) -> np.ndarray:
    """For each row of `data` (unique keys), the stored row holding its key, or -1. The stored keys need not
    be unique: a table without a key of its own is matched by the key= of a call."""
    hit = _key_index(data, key).get_indexer(_key_index(stored, key))
    at = np.full(data.num_rows, -1)
    found = np.flatnonzero(hit >= 0)
    at[hit[found]] = found
    return at


def _key_index(table: pa.Table, key: list[str]) -> pd.Index:
    frame = table.select(key).to_pandas()
    if len(key) == 1:
        return pd.Index(frame.iloc[:, 0])
    return pd.MultiIndex.from_frame(frame)
