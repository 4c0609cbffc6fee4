"""SQLite's storage classes for Arrow types, values encoded for them and decoded back, and the
values SQLite cannot keep exactly.

Timestamps and durations are integers in their unit, dates ISO text, decimals exact text,
nested values JSON; the dk schema turns them back into their Arrow types.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...failures import Unholdable
from ...schema import TableSchema

INT64_MAX = 2**63 - 1


def storage(t: pa.DataType) -> tuple[str, pa.DataType | None]:
    """(declared SQL type, Arrow type of the stored values); None means JSON text."""
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t):
        return "INTEGER", pa.int64()
    if pa.types.is_floating(t):
        return "REAL", pa.float64()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB", pa.binary()
    if pa.types.is_nested(t):
        return "TEXT", None
    return "TEXT", pa.string()


def encode(arr: pa.Array | pa.ChunkedArray, t: pa.DataType) -> list:
    """Logical Arrow values -> Python values SQLite stores."""
    _, st = storage(t)
    if st is None:
        return [None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()]
    stored = arr.cast(st) if arr.type != st else arr
    if pa.types.is_floating(st) or pa.types.is_string(st) or (pa.types.is_integer(st) and stored.null_count == 0):
        return stored.to_numpy(zero_copy_only=False).tolist()  # NaN stands for NULL in REAL; None in text
    return stored.to_pylist()


def decode(values, t: pa.DataType) -> pa.Array:
    """Values read from SQLite (a Python list, or an Arrow array from ADBC) -> the logical type."""
    _, st = storage(t)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count == len(values):  # ADBC types an all-NULL column as int64
            return pa.nulls(len(values), t)
        values = values if st is not None else values.to_pylist()
    if st is None:
        return pa.array([None if v is None else json.loads(v) for v in values], type=t)
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=st)
    return arr.cast(t)


def unholdable(data: pa.Table, schema: TableSchema) -> dict[int, Unholdable]:
    """The rows holding a value SQLite would not give back exactly, and why (the first such column)."""
    facts: dict[int, Unholdable] = {}
    for name in data.column_names:
        col, arr = schema.column(name), data.column(name)
        if pa.types.is_uint64(arr.type):
            bad = pc.fill_null(pc.greater(arr, pa.scalar(INT64_MAX, pa.uint64())), False)
            for i in np.flatnonzero(bad.to_numpy(zero_copy_only=False)):
                facts.setdefault(
                    int(i), Unholdable(name, f"{arr[int(i)].as_py()} is beyond SQLite's 64-bit signed integers")
                )
        if pa.types.is_floating(arr.type) and col.dtype.get("arrow"):
            nan = pc.fill_null(pc.is_nan(arr), False)
            for i in np.flatnonzero(nan.to_numpy(zero_copy_only=False)):
                facts.setdefault(
                    int(i), Unholdable(name, f"SQLite keeps no NaN apart from NULL in a {col.dtype['name']} column")
                )
        if pa.types.is_floating(arr.type):  # SQLite writes whole REAL values as integers: -0.0 comes back 0.0
            v = arr.to_numpy(zero_copy_only=False)
            for i in np.flatnonzero((v == 0) & np.signbit(v)):
                facts.setdefault(
                    int(i),
                    Unholdable(
                        name,
                        "SQLite keeps -0.0 as 0.0 (it stores whole REAL values as integers); "
                        "write 0.0 if the sign does not matter",
                    ),
                )
    return facts
