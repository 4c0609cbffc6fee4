"""SQLite's storage classes for Arrow types, values encoded for them and decoded back, and the
values SQLite cannot keep exactly.

Timestamps and durations are integers in their unit, dates ISO text, decimals exact text,
nested values JSON; the dk schema turns them back into their Arrow types. A timestamp column of a
table another tool made holds text (foreign.py): its values are written and read in the form that
column already holds, which its dtype spec records under `sqlite_text`.

`storage`, `encode` and `decode` take a Column (its Arrow type and its text form, if any) or an
Arrow type.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import StorageError
from ...failures import Unholdable
from ...schema import Column, TableSchema

INT64_MAX = 2**63 - 1
TEXT = "sqlite_text"  # in a Column's dtype spec: the text form of a timestamp column (foreign.py)
_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}  # nanoseconds per unit


def _parts(t: pa.DataType | Column) -> tuple[pa.DataType, dict | None]:
    """(the Arrow type, the text form of a timestamp column kept as text, or None)."""
    if isinstance(t, Column):
        return t.arrow, t.dtype.get(TEXT)
    return t, None


def storage(t: pa.DataType | Column) -> tuple[str, pa.DataType | None]:
    """(declared SQL type, Arrow type of the stored values); None means JSON text."""
    t, form = _parts(t)
    if form is not None:
        return "TEXT", pa.string()
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_timestamp(t) or pa.types.is_duration(t):
        return "INTEGER", pa.int64()
    if pa.types.is_floating(t):
        return "REAL", pa.float64()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB", pa.binary()
    if pa.types.is_nested(t):
        return "TEXT", None
    return "TEXT", pa.string()


def encode(arr: pa.Array | pa.ChunkedArray, t: pa.DataType | Column) -> list:
    """Logical Arrow values -> Python values SQLite stores."""
    t, form = _parts(t)
    if form is not None:
        return stamp_text(arr, form)
    _, st = storage(t)
    if st is None:
        return [None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()]
    stored = arr.cast(st) if arr.type != st else arr
    if pa.types.is_floating(st) or pa.types.is_string(st) or (pa.types.is_integer(st) and stored.null_count == 0):
        return stored.to_numpy(zero_copy_only=False).tolist()  # NaN stands for NULL in REAL; None in text
    return stored.to_pylist()


def decode(values, t: pa.DataType | Column) -> pa.Array:
    """Values read from SQLite (a Python list, or an Arrow array from ADBC) -> the logical type."""
    col = t if isinstance(t, Column) else None
    t, form = _parts(t)
    if form is not None:
        return parse_stamps(values, t, col.name if col is not None else "")
    _, st = storage(t)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        if values.null_count == len(values):  # ADBC types an all-NULL column as int64
            return pa.nulls(len(values), t)
        values = values if st is not None else values.to_pylist()
    if st is None:
        return pa.array([None if v is None else json.loads(v) for v in values], type=t)
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type=st)
    return arr.cast(t)


# -- timestamps kept as text, in the form the column holds (foreign.py) ---------------------------
def stamp_text(arr: pa.Array | pa.ChunkedArray, form: dict) -> list:
    """Timestamps as text of `form` (None for a missing value); an aware column's in its own zone, with
    the offset."""
    s = pd.Series(arr.to_pandas(), copy=False)
    if not len(s):
        return []
    missing = s.isna().to_numpy()
    if getattr(s.dt, "tz", None) is not None:
        wall = s.dt.tz_localize(None)
        offset = ((wall - s.dt.tz_convert(None)).to_numpy().astype("timedelta64[s]").astype(np.int64)) // 60
    else:
        wall, offset = s, None
    unit = np.datetime_data(wall.to_numpy().dtype)[0]
    ints = wall.to_numpy().astype(f"datetime64[{unit}]").astype(np.int64)
    per = _NS["s"] // _NS[unit]  # units per second
    secs = np.where(missing, 0, np.floor_divide(ints, per))
    frac = (ints - secs * per) * _NS[unit]  # nanoseconds below the second
    text = np.datetime_as_string(secs.astype("datetime64[s]"), unit="s").astype(object)
    if form["sep"] != "T":
        text = np.char.replace(text.astype(str), "T", form["sep"]).astype(object)
    if not form["seconds"]:  # "HH:MM" where the value has no seconds
        short = (secs % 60 == 0) & (frac == 0)
        text[short] = np.array([v[:16] for v in text[short]], dtype=object)
    digits = form["digits"]
    cut = np.char.add(".", np.char.zfill(frac.astype(str), 9).astype(f"<U{digits}")).astype(object)
    if form["trim"]:  # none for a whole second; more digits (6 or 9) where `digits` cannot hold the value
        micro = np.char.add(".", np.char.zfill((frac // 1000).astype(str), 6)).astype(object)
        nano = np.char.add(".", np.char.zfill(frac.astype(str), 9)).astype(object)
        exact = frac % 10 ** (9 - digits) == 0
        tail = np.where(frac == 0, "", np.where(exact, cut, np.where(frac % 1000 == 0, micro, nano)))
    else:
        tail = cut
    text = text + tail
    if offset is not None and form["zone"]:
        text = text + np.array([_offset(int(m), form["zone"]) for m in offset], dtype=object)
    return [None if gone else v for v, gone in zip(text.tolist(), missing)]


def _offset(minutes: int, style: str) -> str:
    if style == "Z" and minutes == 0:
        return "Z"
    sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
    hh, mm = divmod(minutes, 60)
    return f"{sign}{hh:02d}{'' if style == '+HHMM' else ':'}{mm:02d}"


def parse_stamps(values, t: pa.DataType, name: str) -> pa.Array:
    """Timestamp text (any ISO form; an aware column's with offsets) -> timestamps of type `t`."""
    texts = values.to_pylist() if isinstance(values, (pa.Array, pa.ChunkedArray)) else list(values)
    try:
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), format="ISO8601", utc=t.tz is not None)
        if t.tz is None and getattr(parsed.dt, "tz", None) is not None:
            raise ValueError("a value carries a time zone in a column whose values have none")
        return pa.array(parsed, from_pandas=True).cast(t)
    except (ValueError, TypeError, OverflowError, pa.ArrowInvalid) as e:
        raise StorageError(
            f"column {name!r} holds a value that is not a timestamp of the form its first values have "
            f"({str(e).splitlines()[0][:200]}); load it with columns= leaving it out, or fix the value"
        ) from e


def unholdable(data: pa.Table, schema: TableSchema) -> dict[int, Unholdable]:
    """The rows holding a value SQLite would not give back exactly, and why (the first such column)."""
    facts: dict[int, Unholdable] = {}
    for name in data.column_names:
        col, arr = schema.column(name), data.column(name)
        form = col.dtype.get(TEXT)
        if form is not None and not form["trim"] and form["digits"] < 9 and pa.types.is_timestamp(arr.type):
            step = 10 ** (9 - form["digits"]) // _NS[arr.type.unit]  # units the text's last digit stands for
            if step > 1:
                ints = arr.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
                for i in np.flatnonzero(ints % step != 0):
                    facts.setdefault(
                        int(i),
                        Unholdable(
                            name,
                            f"the column keeps timestamps as text with {form['digits']} digits after the "
                            f"second, too few for {arr[int(i)]}",
                        ),
                    )
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
