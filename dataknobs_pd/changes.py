"""What a write changes, row by row: the diff a dry run shows and `track_changes=True` records.

Before a chunk of an upsert or update is written, the stored rows with its keys are read once
(only the columns the chunk writes); each written row is then an `insert` (its key was not
there), an `update` (some written column differs), `unchanged` (none does) or a `delete`.
Values are compared as the table holds them: both missing is equal, floats compare by their
bits (NaN equals the same NaN, 0.0 and -0.0 differ), times by instant and zone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .backends.capabilities import KeyedRead
from .errors import InternalError
from .keys import as_index
from .schema import TableSchema

ACTIONS = ("insert", "update", "unchanged", "delete")
CHANGE_COLUMNS = ["row", "index", "key", "action", "changed", "before", "after"]
_IN_LIST = 10_000  # key values per `in` filter: a bound parameter each on SQL stores


def stored_rows(backend, table: str, schema: TableSchema, data: pa.Table, columns: list[str] | None = None) -> pa.Table:
    """The stored rows whose key is among those of `data`, with the columns of `data` (or `columns`): one
    keyed read (a join on the keys staged in the store, when it can; else `in` filters)."""
    key = schema.key
    if key is None:
        raise InternalError("only a keyed table's rows are read by key")
    columns = list(data.column_names if columns is None else columns)
    if isinstance(backend, KeyedRead):
        return backend.read_keys(table, schema, data.select(key), columns)
    pieces = []
    for lo in range(0, data.num_rows, _IN_LIST):
        part = data.slice(lo, _IN_LIST)
        where = [[(k, "in", pc.unique(part.column(k)).to_pylist()) for k in key]]
        pieces += list(backend.read(table, schema, columns, where, [], None, 1 << 30))
    fields = [schema.column(c).field for c in columns]
    out = pa.concat_tables([p.select(columns) for p in pieces]) if pieces else pa.schema(fields).empty_table()
    if len(key) > 1 and out.num_rows:  # `in` per column reads a superset: keep the exact key tuples
        out = out.take(pa.array(np.flatnonzero(_positions(data, out, key) >= 0)))
    return out


def repeated_keys(backend, table: str, schema: TableSchema, data: pa.Table) -> dict[int, int]:
    """The rows of `data` whose key the table holds in more than one row, and in how many: a table without a
    key of its own, matched by a call's key=."""
    key = schema.key
    if key is None:
        raise InternalError("only rows with a key are matched")
    keyed = data.select(key)
    stored = stored_rows(backend, table, schema, keyed)
    if stored.num_rows < 2:
        return {}
    counts = stored.group_by(key).aggregate([([], "count_all")])
    many = counts.filter(pc.greater(counts.column("count_all"), 1))
    if not many.num_rows:
        return {}
    at = _positions(many, keyed, key)
    n = many.column("count_all").to_numpy()
    return {int(i): int(n[at[i]]) for i in np.flatnonzero(at >= 0)}


def diff(data: pa.Table, stored: pa.Table | None, key: list[str] | None, mode: str) -> pd.DataFrame:
    """One row per row of `data`: action, the columns that change, and their values before and after.

    `stored` holds the stored rows with the keys of `data` (None: no key existed, every row is new)."""
    n = data.num_rows
    if mode == "delete":
        return plain(n, "delete")
    if stored is None or stored.num_rows == 0 or not key:
        return plain(n, "insert")
    at = _positions(stored, data, key)
    found = at >= 0
    values = [c for c in data.column_names if c not in key]
    differs = {}
    for c in values:
        new = data.column(c).filter(pa.array(found))
        old = stored.column(c).take(pa.array(at[found]))
        same = np.ones(n, dtype=bool)
        same[found] = _same(new, old)
        differs[c] = ~same
    touched = np.zeros(n, dtype=bool)
    for c in values:
        touched |= differs[c]
    actions = np.where(~found, "insert", np.where(touched, "update", "unchanged")).tolist()
    changed: list = [[] for _ in range(n)]
    before: list = [{} for _ in range(n)]
    after: list = [{} for _ in range(n)]
    rows = np.flatnonzero(touched)
    if not len(rows):
        return _frame(actions, changed, before, after)
    # The rows that change the same columns together (few patterns, however many rows): a pattern's values
    # are read a column at a time, and each row's dicts are built in one step.
    grid = np.column_stack([differs[c][rows] for c in values])
    if len(values) < 63:  # each row's pattern as the bits of one integer: a fast unique
        codes = grid.astype(np.int64) @ (np.int64(1) << np.arange(len(values), dtype=np.int64))
        _, first, which = np.unique(codes, return_index=True, return_inverse=True)
        patterns = grid[first]
    else:
        patterns, which = np.unique(grid, axis=0, return_inverse=True)
    which = np.asarray(which).reshape(-1)
    for p, pattern in enumerate(patterns):
        picked = rows[which == p]
        cols = [c for c, on in zip(values, pattern) if on]
        olds = [_values(stored.column(c).take(pa.array(at[picked]))) for c in cols]
        news = [_values(data.column(c).take(pa.array(picked))) for c in cols]
        for i, o, v in zip(picked.tolist(), zip(*olds), zip(*news)):
            changed[i] = list(cols)
            before[i], after[i] = dict(zip(cols, o)), dict(zip(cols, v))
    return _frame(actions, changed, before, after)


def _values(a) -> list:
    """The values as Python objects, as `to_pylist` gives them; numbers and booleans without nulls
    (the common case) through NumPy, several times faster."""
    t = a.type
    if a.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        return a.to_numpy(zero_copy_only=False).tolist()
    return a.to_pylist()


def plain(n: int, action: str) -> pd.DataFrame:
    """`n` rows of one `action` that names no changed column (an insert or a delete)."""
    return _frame([action] * n, [[] for _ in range(n)], [{} for _ in range(n)], [{} for _ in range(n)])


def empty() -> pd.DataFrame:
    """No changes, in the columns of BatchResult.changes."""
    return pd.DataFrame({c: pd.Series(dtype="int64" if c == "row" else object) for c in CHANGE_COLUMNS})


def _frame(actions, changed, before, after) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "action": pd.Series(actions, dtype=object),
            "changed": pd.Series(changed, dtype=object),
            "before": pd.Series(before, dtype=object),
            "after": pd.Series(after, dtype=object),
        }
    )


def _positions(have: pa.Table, want: pa.Table, key: list[str]) -> np.ndarray:
    """For each row of `want`, its row in `have` by key, or -1."""

    return as_index(have.select(key).to_pandas()).get_indexer(as_index(want.select(key).to_pandas()))


def _same(a, b) -> np.ndarray:
    """Elementwise: equal values, or both missing; floats by their bits."""
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    b = b.combine_chunks() if isinstance(b, pa.ChunkedArray) else b
    both_null = np.asarray(pc.and_(a.is_null(), b.is_null()), dtype=bool)
    one_null = np.asarray(pc.xor(a.is_null(), b.is_null()), dtype=bool)
    t = a.type
    if pa.types.is_floating(t):
        bits = {16: pa.uint16(), 32: pa.uint32(), 64: pa.uint64()}[t.bit_width]
        a, b = a.view(bits), b.view(bits)
    try:
        eq = np.asarray(pc.fill_null(pc.equal(a, b), False), dtype=bool)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):  # nested values: compare as Python
        eq = np.array([x == y for x, y in zip(a.to_pylist(), b.to_pylist())], dtype=bool)
    return both_null | (eq & ~one_null)
