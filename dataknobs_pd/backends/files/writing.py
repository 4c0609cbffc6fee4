"""Writes into a managed table of a file store, by key: new rows as a new part sorted by key, the parts that
hold the keys an update or delete touches rewritten, small parts merged once a table has many. Parts are
written on the pool's worker threads (pool.py) while the next chunk converts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pyarrow as pa

from ...failures import inserted
from ...schema import TableSchema
from ..base import put_rows
from ..keyed import match, sort_order
from . import parts as parts_
from .commit import Transactions
from .manifest import Part, State
from .pool import Writers
from .reading import Reader
from .storage import Storage

_MAX_PARTS = 64  # past this, writes merge small parts


class ManagedWrites:
    """The writes into the managed tables of one file store (those with a manifest), inside its transaction."""

    def __init__(
        self,
        storage: Storage,
        tx: Transactions,
        pool: Writers,
        keys: parts_.KeyCache,
        reader: Reader,
        suffix: str,
        chunk_rows: Callable[[int], int],
    ):
        self.storage, self.tx, self.pool, self.keys, self.reader = storage, tx, pool, keys, reader
        self.suffix = suffix  # of the part files
        self.chunk_rows = chunk_rows  # rows of a full part, for a number of columns

    def write(self, found: State, data: pa.Table, schema: TableSchema, mode: str) -> tuple[State, np.ndarray | None]:
        """Backend.write into a managed table: its new state and which rows' keys it held (None: none did)."""
        st = replace(found, schema=_kept(found.schema, schema))
        n = data.num_rows
        if schema.key:
            order = sort_order(data, schema.key)
            part_of, row_of = self._locate(st, data, order, schema.key)
        else:
            order, part_of, row_of = None, np.full(n, -1), np.full(n, -1)
        existed = part_of >= 0
        parts = list(st.parts)
        if mode != "insert" and existed.any():
            for p in np.unique(part_of[existed]):
                sel = np.flatnonzero(part_of == p)
                old = self.reader.whole(st, parts[p])
                parts[p] = self._write_part(st, put_rows(old, data.take(sel), row_of[sel]))
        new_rows = inserted(data, schema, mode, existed)
        if len(new_rows):
            if order is not None and st.schema.key:  # a keyed table's parts are sorted by key
                new_rows = order[np.isin(order, new_rows)] if len(new_rows) < n else order
            whole = len(new_rows) == n and bool((new_rows == np.arange(n)).all())
            add = data if whole else data.take(pa.array(new_rows))
            parts.append(self._write_part(st, parts_.complete(add, schema)))
        return replace(st, parts=tuple(self._compact(st, parts))), existed if existed.any() else None

    def delete(self, found: State, keys: pa.Table, schema: TableSchema) -> tuple[State, np.ndarray]:
        """Backend.delete from a managed table: its new state and which keys it held."""
        st, key = replace(found, schema=_kept(found.schema, schema)), schema.key or []
        part_of, row_of = self._locate(st, keys, sort_order(keys, key), key)
        parts: list = list(st.parts)
        for p in np.unique(part_of[part_of >= 0]):
            keep = np.ones(parts[p].rows, dtype=bool)
            keep[row_of[part_of == p]] = False
            rest = self.reader.whole(st, parts[p]).filter(pa.array(keep))
            parts[p] = self._write_part(st, rest) if rest.num_rows else None
        return replace(st, parts=tuple(p for p in parts if p is not None)), part_of >= 0

    def _compact(self, st: State, parts: list[Part]) -> list[Part]:
        """Merge small parts once a table has many, so that reads open (and merge) few files.

        Keyed tables merge any small parts (and sort them again); tables without a key only
        neighbouring ones, to keep the insertion order. One merge never exceeds a full part.
        """
        if len(parts) <= _MAX_PARTS:
            return parts
        full = self.chunk_rows(len(st.schema.columns))
        small = [i for i, p in enumerate(parts) if p.rows < full // 2]
        if st.schema.key:
            small.sort(key=lambda i: parts[i].rows)
        groups: list[list[int]] = []
        group: list[int] = []
        rows = 0
        for i in small:
            adjacent = st.schema.key or not group or i == group[-1] + 1
            if group and (rows + parts[i].rows > full or not adjacent):
                groups.append(group)
                group, rows = [], 0
            group.append(i)
            rows += parts[i].rows
        groups.append(group)
        out: list = list(parts)
        for group in (g for g in groups if len(g) > 1):
            data = pa.concat_tables([self.reader.whole(st, parts[i]) for i in sorted(group)])
            if st.schema.key:
                data = data.sort_by([(k, "ascending") for k in st.schema.key])
            out[min(group)] = self._write_part(st, data)
            for i in group:
                if i != min(group):
                    out[i] = None
        return [p for p in out if p is not None]

    def _write_part(self, st: State, data: pa.Table) -> Part:
        """Write rows (all columns, sorted by key when keyed) as a new part file, in the background."""
        name = f"part-{uuid.uuid4().hex[:20]}{self.suffix}"
        folder = self.storage.dir(st.name)
        path = f"{folder}/{name}"
        with self.storage.io(f"writing table {st.name!r}"):
            self.storage.ensure_dir(folder)
        self.pool.submit(self.tx.mine(), path, data.replace_schema_metadata(None), st.schema)
        lo = hi = None
        if st.schema.key:
            keys = data.select(st.schema.key)
            self.keys.put(path, keys)
            lo, hi = parts_.row(keys, 0), parts_.row(keys, data.num_rows - 1)
        return Part(name, data.num_rows, None, lo, hi)

    def _locate(self, st: State, data: pa.Table, order: np.ndarray, key: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """For each row of `data`: the part holding its `key` and the row there (-1, -1 when absent). `key` is
        the table's own (parts are ruled out by their key range), or a call's key= on a table without one."""
        n = data.num_rows
        part_of, row_of = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        if not st.parts or n == 0:
            return part_of, row_of
        keys = data.select(key)
        kmin, kmax = parts_.row(keys, int(order[0])), parts_.row(keys, int(order[-1]))
        for i, part in enumerate(st.parts):
            if st.schema.key:
                lo, hi = part.bounds
                if hi < kmin or lo > kmax:
                    continue
            pos = match(self._part_keys(st, part, key), keys, key)
            hit = pos >= 0
            part_of[hit], row_of[hit] = i, pos[hit]
        return part_of, row_of

    def _part_keys(self, st: State, part: Part, key: list[str]) -> pa.Table:
        if key != st.schema.key:  # a call's key= on a table without a key: its columns are not cached
            return self.reader.whole(st, part, key)
        path = f"{self.storage.dir(st.name)}/{part.file}"
        keys = self.keys.get(path)
        if keys is None:
            keys = self.reader.whole(st, part, key)
            self.keys.put(path, keys)
        return keys


def _kept(stored: TableSchema, schema: TableSchema) -> TableSchema:
    """The schema a write keeps for the table: the call's, less a key= the table does not have of its own."""
    return schema if stored.key or not schema.key else replace(schema, key=None)
