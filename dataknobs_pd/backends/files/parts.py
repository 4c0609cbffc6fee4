"""Parts of a keyed table: key ranges, matching, merging; they know nothing of files.

Every part of a keyed table is sorted by key, and the manifest keeps its first and last key.
These functions (with key order and matching from backends/keyed.py, which Delta shares) find which
rows of a chunk a part holds, rule parts out for a `where`, and merge parts whose key ranges overlap
back into key order a batch at a time. KeyCache keeps the key columns of recently used parts (parts
never change).
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Iterator

import pyarrow as pa

from ...errors import InternalError
from ...schema import TableSchema


def row(keys: pa.Table, i: int) -> tuple:
    return tuple(keys.column(c)[i].as_py() for c in range(keys.num_columns))


def complete(data: pa.Table, schema: TableSchema) -> pa.Table:
    """All columns of the schema, in its order and types; the absent ones null. A dictionary-encoded
    (category) column stays so, its dictionary of the column's type."""
    n = data.num_rows
    fields, cols = [], []
    for c in schema.columns:
        if c.name not in data.column_names:
            fields.append(c.field)
            cols.append(pa.nulls(n, c.arrow))
            continue
        col = data.column(c.name)
        if pa.types.is_dictionary(col.type) and col.type.value_type == c.arrow:
            fields.append(c.field.with_type(col.type))
            cols.append(col)
        else:
            fields.append(c.field)
            cols.append(col.cast(c.arrow))
    return pa.table(cols, schema=pa.schema(fields))


def encode_bounds(rows: list[tuple], schema: TableSchema) -> str:
    """Key tuples (first and last key of every part) as base64 Arrow IPC: exact for any key type."""
    if schema.key is None:
        raise InternalError("only the parts of a keyed table have bounds")
    cols = [pa.array([r[i] for r in rows], type=schema.column(k).arrow) for i, k in enumerate(schema.key)]
    table = pa.table(cols, names=schema.key)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return base64.b64encode(sink.getvalue().to_pybytes()).decode()


def decode_bounds(text: str | None) -> list[tuple] | None:
    if not text:
        return None
    table = pa.ipc.open_stream(pa.py_buffer(base64.b64decode(text))).read_all()
    return [row(table, i) for i in range(table.num_rows)]


def may_match(first: tuple | None, last: tuple | None, where: list, schema: TableSchema) -> bool:
    """False when a part's key range [first, last] rules out every OR group of `where` (first key column only)."""
    if not where or first is None:
        return True
    if last is None or schema.key is None:
        raise InternalError("a part of a keyed table has both bounds")
    k0, t = schema.key[0], schema.column(schema.key[0]).arrow
    lo, hi = first[0], last[0]
    return any(all(_term_may_match(lo, hi, op, value, t) for col, op, value in group if col == k0) for group in where)


def _term_may_match(lo, hi, op: str, value, t: pa.DataType) -> bool:
    try:
        if op == "in":
            return any(lo <= v <= hi for v in (pa.scalar(x, type=t).as_py() for x in value if x is not None))
        if op in ("!=", "not in") or value is None:
            return True
        v = pa.scalar(value, type=t).as_py()
        return {"==": lo <= v <= hi, "<": lo < v, "<=": lo <= v, ">": hi > v, ">=": hi >= v}[op]
    except Exception:  # noqa: BLE001 - when in doubt, read the part
        return True


def merge(streams: list, key: list[str]) -> Iterator[pa.Table]:
    """Merge streams of key-sorted tables into key order, holding about one batch per stream."""
    its = [iter(s) for s in streams]
    bufs: list[pa.Table | None] = [None] * len(its)
    done = [False] * len(its)
    sort = [(k, "ascending") for k in key]
    while True:
        for i, it in enumerate(its):
            while not done[i] and _empty(bufs[i]):
                try:
                    bufs[i] = next(it)
                except StopIteration:
                    done[i], bufs[i] = True, None
        live = [(i, b) for i, b in enumerate(bufs) if b is not None and b.num_rows]
        if not live:
            return
        pending = [b for i, b in live if not done[i]]  # streams that may hold more rows after their buffer
        frontier = min(row(b.select(key), b.num_rows - 1) for b in pending) if pending else None
        pieces = []
        for i, b in live:
            take = b.num_rows if frontier is None else _count_le(b.select(key), frontier)
            if take:
                pieces.append(b.slice(0, take))
                bufs[i] = b.slice(take)
        yield pa.concat_tables(pieces).sort_by(sort)


def _empty(b: pa.Table | None) -> bool:
    return b is None or b.num_rows == 0


def _count_le(keys: pa.Table, frontier: tuple) -> int:
    """How many leading rows of key-sorted `keys` are <= frontier (binary search)."""
    lo, hi = 0, keys.num_rows
    while lo < hi:
        mid = (lo + hi) // 2
        if row(keys, mid) <= frontier:
            lo = mid + 1
        else:
            hi = mid
    return lo


class KeyCache:
    """The key columns of recently used parts (path -> table), at most about `rows` rows in all."""

    def __init__(self, rows: int = 20_000_000):
        self.rows = rows
        self._keys: OrderedDict[str, pa.Table] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> pa.Table | None:
        with self._lock:
            keys = self._keys.get(path)
            if keys is not None:
                self._keys.move_to_end(path)
            return keys

    def put(self, path: str, keys: pa.Table) -> None:
        with self._lock:
            self._keys[path] = keys
            while sum(t.num_rows for t in self._keys.values()) > self.rows and len(self._keys) > 1:
                self._keys.popitem(last=False)

    def forget(self, paths) -> None:
        with self._lock:
            for p in paths:
                self._keys.pop(p, None)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
