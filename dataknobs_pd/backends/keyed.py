"""Rows of Arrow tables by key, for the stores that keep rows in files (the file stores, Delta): their key
order, and the rows of one table that hold the keys of another."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def sort_order(data: pa.Table, key: list[str]) -> np.ndarray:
    """Positions of `data` in key order (no sort when a single numeric key already ascends)."""
    n = data.num_rows
    if len(key) == 1 and n > 1:
        col = data.column(key[0])
        if pa.types.is_integer(col.type) or pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            if pc.all(pc.greater(arr.slice(1), arr.slice(0, n - 1))).as_py():
                return np.arange(n)
    if n <= 1:
        return np.arange(n)
    return pc.sort_indices(data.select(key), sort_keys=[(k, "ascending") for k in key]).to_numpy()


def match(have: pa.Table, want: pa.Table, key: list[str]) -> np.ndarray:
    """For each row of `want`, its row in `have` (both key columns only), or -1."""
    if len(key) == 1:
        values = have.column(0).combine_chunks()
        return pc.index_in(want.column(0), value_set=values).fill_null(-1).to_numpy(zero_copy_only=False)
    left = want.append_column("__dk_want", pa.array(np.arange(want.num_rows)))
    right = have.append_column("__dk_have", pa.array(np.arange(have.num_rows)))
    joined = left.join(right, keys=key, join_type="inner", use_threads=False)
    out = np.full(want.num_rows, -1, dtype=np.int64)
    out[joined.column("__dk_want").to_numpy()] = joined.column("__dk_have").to_numpy()
    return out


def take_keys(rows: pa.Table, keys: pa.Table, key: list[str], out: list) -> pa.Table | None:
    """Put each row of `rows` whose key is in `keys` into `out` at its key's position there; the other rows
    (`rows` itself when no key matched, None when none are left)."""
    at = match(rows.select(key), keys.select(key), key)
    hit = np.flatnonzero(at >= 0)
    if not len(hit):
        return rows
    for i in hit:
        out[i] = rows.slice(int(at[i]), 1)
    rest = np.ones(rows.num_rows, dtype=bool)
    rest[at[hit]] = False
    return rows.filter(pa.array(rest)) if rest.any() else None
