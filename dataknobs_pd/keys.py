"""Resolve a frame's key and find the rows whose key is null or repeated."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import KeyRequiredError, SchemaMismatchError
from .schema import TableSchema

KEY_COLUMNS = ("id", "record_id")


def resolve(df: pd.DataFrame, key: str | Sequence[str] | None = None) -> list[str] | None:
    """Return the key column names, in this order of preference.

    `key=` (a name or a list of names, columns or named index levels); a column named
    `id`; a column named `record_id`; the index, when every level is named. None when
    there is no key.
    """
    names = set(df.columns) | {n for n in df.index.names if n is not None}
    if key is not None:
        keys = [key] if isinstance(key, str) else list(key)
        if not keys:
            raise KeyRequiredError("key=[] names no column")
        unknown = [k for k in keys if k not in names]
        if unknown:
            raise KeyRequiredError(
                f"key column(s) {unknown} not found; the frame has columns {list(df.columns)}"
                + (f" and index {list(df.index.names)}" if any(df.index.names) else "")
            )
        return keys
    for name in KEY_COLUMNS:
        if name in df.columns:
            return [name]
    if all(n is not None for n in df.index.names):
        return list(df.index.names)
    return None


def choose(
    df: pd.DataFrame,
    key: str | Sequence[str] | None,
    existing: TableSchema | None,
    table: str,
    operation: str | None = None,
) -> tuple[list[str] | None, bool]:
    """The key a call matches rows by, and whether it is only that (the table declares no key).

    In this order: `key=`; else, when the table exists, the table's own key (a table without one
    matches no rows by key); else what `resolve` finds in the frame. A key column may stand in the
    frame as a column or as a named index level. `operation` (a call that matches rows by key:
    upsert, update_batch, delete) makes a missing key a KeyRequiredError.
    """
    loose = False
    if key is not None:
        chosen = resolve(df, key)
        if existing is not None and existing.key and chosen != list(existing.key):
            raise SchemaMismatchError(
                f"key={chosen!r} differs from the key {existing.key} of table {table!r}; "
                f"pass key={existing.key!r} or leave key= out"
            )
        loose = existing is not None and not existing.key
    elif existing is None:
        chosen = resolve(df)
    elif existing.key:
        chosen = list(existing.key)
        absent = [k for k in chosen if not has(df, k)]
        if absent:
            raise (KeyRequiredError if operation else SchemaMismatchError)(
                f"the frame lacks key column(s) {absent} of table {table!r}: give it them as columns or as index levels"
            )
    else:
        chosen = None
    if operation is not None and not chosen:
        columns = [c.pandas_label for c in existing.data_columns] if existing is not None else list(df.columns)
        if existing is not None and not existing.key:
            raise KeyRequiredError(
                f"{operation} on table {table!r} matches rows by key, and the table has none of its own: "
                f"pass key= naming the column(s) that identify a row, among {columns}"
            )
        require(None, operation, table)
    return chosen, loose


def has(df: pd.DataFrame, name: str) -> bool:
    """True when `name` is a column of `df` or a named level of its index."""
    return name in map(str, df.columns) or name in [str(n) for n in df.index.names if n is not None]


def require(keys: list[str] | None, operation: str, table: str) -> list[str]:
    """Raise KeyRequiredError (before anything is written) when `operation` needs a key."""
    if not keys:
        raise KeyRequiredError(
            f"{operation} on table {table!r} matches rows by key, and none was found: "
            f"pass key='column' (or a list), or give the frame an 'id' or 'record_id' "
            f"column or a named index"
        )
    return keys


def key_frame(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The key values of every row, as columns (index levels are lifted out)."""
    out = {}
    for k in keys:
        out[k] = df[k].array if k in df.columns else df.index.get_level_values(k).array  # keeps Int64, tz
    return pd.DataFrame(out, index=pd.RangeIndex(len(df)))


def invalid_rows(kf: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions of rows whose key (a key_frame) has a null part, and of rows repeating an earlier key."""
    if kf.shape[1] == 1 and isinstance(kf.dtypes.iloc[0], np.dtype) and kf.dtypes.iloc[0].kind in "iu":
        values = kf.iloc[:, 0].to_numpy()  # NumPy integers: never null
        if (values[1:] > values[:-1]).all():  # strictly increasing, as keys made by arange are: all unique
            none = np.array([], dtype=np.int64)
            return none, none
    null = kf.isna().any(axis=1).to_numpy()
    dup = kf.duplicated(keep="first").to_numpy() & ~null
    return np.flatnonzero(null), np.flatnonzero(dup)


class KeySet:
    """The keys of a stream's earlier frames, to find a key repeated across frames in O(n log m).

    Blocks of unique keys, merged like a binary counter so that there are at most log2(m) of them;
    each block keeps the row (in the whole input) where each of its keys first came.
    """

    def __init__(self):
        self._blocks: list[tuple[pd.Index, np.ndarray]] = []
        # The range of the keys so far, for one numeric or datetime key column (None: not kept): a frame
        # whose keys all lie outside it holds none of them, so it needs no look-up (keys that ascend
        # across frames, as ids usually do, are never hashed).
        self._span: tuple | None = ()

    def add(self, kf: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
        """For each key of `kf` (unique, none null), the row of an earlier frame holding it, or -1;
        the new ones are added, at `rows`."""
        index = as_index(kf)
        earlier = np.full(len(index), -1, dtype=np.int64)
        if not len(index):
            return earlier
        seen, span = self._span, _range(index) if self._span is not None else None
        outside = False
        if span is not None and seen:
            outside = span[0] > seen[1] or span[1] < seen[0]
            span = (min(span[0], seen[0]), max(span[1], seen[1]))
        self._span = span
        for block, at in [] if outside else self._blocks:
            hit = block.get_indexer(index)
            found = hit >= 0
            earlier[found] = at[hit[found]]
        new = earlier < 0
        block, at = index[new], np.asarray(rows, dtype=np.int64)[new]
        while self._blocks and len(self._blocks[-1][0]) <= len(block):
            last, last_at = self._blocks.pop()
            block, at = last.append(block), np.concatenate([last_at, at])
        if len(block):
            self._blocks.append((block, at))
        return earlier


def _range(index: pd.Index) -> tuple | None:
    """(lowest, highest) of a numeric or datetime key column; None for other keys."""
    if index.nlevels != 1 or index.dtype.kind not in "iufmM":
        return None
    return index.min(), index.max()


def as_index(kf: pd.DataFrame) -> pd.Index:
    """The rows of a frame of key columns as an Index (a MultiIndex for several)."""
    if kf.shape[1] == 1:
        return pd.Index(kf.iloc[:, 0])
    return pd.MultiIndex.from_frame(kf)


def key_labels(df: pd.DataFrame, keys: list[str] | None, positions: np.ndarray) -> list:
    """The key of each row at `positions`, a scalar for one key column and a tuple for several."""
    if not keys or len(positions) == 0:
        return [None] * len(positions)
    kf = key_frame(df.iloc[positions], keys)
    columns = [_scalars(kf.iloc[:, i]) for i in range(kf.shape[1])]
    return columns[0] if len(keys) == 1 else list(zip(*columns))


def _scalars(s: pd.Series) -> list:
    """The values as Python scalars, missing ones as None."""
    values = s.tolist()
    missing = s.isna().to_numpy()
    if missing.any():
        values = [None if m else v for v, m in zip(values, missing)]
    return values
