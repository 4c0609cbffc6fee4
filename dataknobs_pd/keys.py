"""Resolve a frame's key and find the rows whose key is null or repeated."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .errors import KeyRequiredError

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
    null = kf.isna().any(axis=1).to_numpy()
    dup = kf.duplicated(keep="first").to_numpy() & ~null
    return np.flatnonzero(null), np.flatnonzero(dup)


def key_labels(df: pd.DataFrame, keys: list[str] | None, positions: np.ndarray) -> list:
    """The key of each row at `positions`, a scalar for one key column and a tuple for several."""
    if not keys or len(positions) == 0:
        return [None] * len(positions)
    kf = key_frame(df.iloc[positions], keys)
    if len(keys) == 1:
        return [_scalar(v) for v in kf.iloc[:, 0].tolist()]
    return [tuple(_scalar(v) for v in row) for row in kf.itertuples(index=False, name=None)]


def _scalar(v):
    return None if v is None or (not isinstance(v, (list, dict, bytes)) and pd.isna(v)) else v
