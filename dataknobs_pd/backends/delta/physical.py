"""What a dk column becomes in a Delta table, and back: natural Delta types, exact values.

Delta has no unsigned integers, no durations, no nanosecond timestamps and no decimals past
38 digits, and keeps timestamps in microseconds (naive ones as timestamp_ntz, aware ones as
UTC instants). So, stored ("physical") and back ("logical", the dk schema's Arrow types):

- uint8/16/32 widen to int16/32/64 (every value fits); uint64 goes in int64, and a value past
  2**63-1 fails its row at convert;
- timestamps are microseconds; s and ms widen exactly (a value outside the years 1-9999 Delta
  allows fails its row); a nanosecond column keeps the nanoseconds below the microsecond in a
  hidden int16 column `_dk_ns_<name>`, so Delta readers see a natural timestamp and dk.load gets
  every nanosecond back (the same as the PostgreSQL store);
- durations are int64 counts of their unit; the time zone name, the units and the unsigned
  types come back from the dk schema;
- a table without a key keeps its rows in insertion order by the names and the order of its files
  (order.py), no column of its own; tables written by earlier versions have an int64 column
  `_dk_seq` numbering their rows instead, which is still kept up and read by.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import InternalError, InvalidArgumentError, UnsupportedDtypeError
from ...failures import RowError, Unholdable, bisect
from ...schema import Column, TableSchema

NS = "_dk_ns_"  # + column name: nanoseconds below the microsecond of a ns timestamp column
SEQ = "_dk_seq"  # insertion order of the rows of a keyless table written by earlier versions

_UNSIGNED = {8: pa.int16(), 16: pa.int32(), 32: pa.int64(), 64: pa.int64()}
# Delta's range of dates and timestamps: the years 1 to 9999
_MIN_DAY, _MAX_DAY = -719162, 2932896  # 0001-01-01 and 9999-12-31, days since 1970-01-01
_MIN_S, _MAX_S = -62135596800, 253402300799  # 0001-01-01 00:00:00 and 9999-12-31 23:59:59
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError, ValueError)


@functools.lru_cache(maxsize=512)
def stored_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type a logical type is kept in, in a Delta table (recursively for nested types)."""
    if pa.types.is_unsigned_integer(t):
        return _UNSIGNED[t.bit_width]
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz="UTC" if t.tz else None)
    if pa.types.is_duration(t):
        return pa.int64()
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        return pa.string()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_date64(t):
        return pa.date32()
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_decimal(t) and t.precision > 38:
        return pa.decimal128(38, t.scale)
    if pa.types.is_dictionary(t):
        return stored_type(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return pa.list_(pa.field("element", stored_type(t.value_type), t.value_field.nullable))
    if pa.types.is_map(t):
        return pa.map_(stored_type(t.key_type), stored_type(t.item_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, stored_type(f.type), f.nullable) for f in t])
    return t


def has_ns(col: Column) -> bool:
    return pa.types.is_timestamp(col.arrow) and col.arrow.unit == "ns"


def stored_schema(schema: TableSchema, seq: bool = False) -> pa.Schema:
    """The Delta table's columns: the dk columns in order, then the hidden ones (`seq`: the table numbers its
    rows in `_dk_seq`). Only the key is NOT NULL in Delta: dk already refuses missing values elsewhere, and
    delta-rs checks every NOT NULL column again on each write (about 8% of a save)."""
    key = set(schema.key or ())
    fields = [pa.field(c.name, stored_type(c.arrow), c.name not in key) for c in schema.columns]
    fields += [pa.field(NS + c.name, pa.int16()) for c in schema.columns if has_ns(c)]
    if seq:
        fields.append(pa.field(SEQ, pa.int64()))
    return pa.schema(fields)


def check_columns(schema: TableSchema, table: str) -> None:
    """Refuse what Delta cannot keep: names equal but for case, decimals past 38 digits of scale."""
    seen: dict[str, str] = {}
    for c in schema.columns:
        other = seen.setdefault(c.name.casefold(), c.name)
        if other != c.name:
            raise InvalidArgumentError(
                f"columns {other!r} and {c.name!r} of table {table!r} differ only by case, "
                f"which Delta Lake cannot keep apart; rename one of them"
            )
        if pa.types.is_decimal(c.arrow) and c.arrow.scale > 38:
            raise UnsupportedDtypeError(
                f"column {c.name!r}: decimals with {c.arrow.scale} digits after the point; Delta Lake keeps at most 38"
            )


def stored_names(schema: TableSchema, names: list[str]) -> list[str]:
    """The stored columns that hold the dk columns `names` (with their hidden ns columns)."""
    out = list(names)
    out += [NS + n for n in names if has_ns(schema.column(n))]
    return out


def stored_key(schema: TableSchema) -> list[str]:
    """The stored columns that hold the key of a keyed table."""
    if schema.key is None:
        raise InternalError("a table without a key")
    return stored_names(schema, schema.key)


def exact_order(t: pa.DataType) -> bool:
    """Whether stored values compare as the logical ones do (a filter on them can be pushed down)."""
    if pa.types.is_timestamp(t):
        return t.unit != "ns"
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_date32(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_duration(t)
        or (pa.types.is_decimal(t) and t.precision <= 38)
    )


# -- logical -> stored -------------------------------------------------------------------------
def to_stored(data: pa.Table, schema: TableSchema) -> pa.Table:
    """The columns of `data` (logical types) as the Delta table keeps them, hidden ns columns after."""
    cols, fields, extra = [], [], []
    for name in data.column_names:
        col = schema.column(name)
        arr = data.column(name)
        if has_ns(col):
            us, ns = _split_ns(arr, col.arrow.tz)
            cols.append(us)
            extra.append((pa.field(NS + name, pa.int16()), ns))
        else:
            cols.append(_cast(arr, stored_type(col.arrow)))
        fields.append(pa.field(name, stored_type(col.arrow), name not in (schema.key or ())))
    for f, a in extra:
        fields.append(f)
        cols.append(a)
    return pa.table(cols, schema=pa.schema(fields))


def _split_ns(arr, tz) -> tuple[pa.Array, pa.Array]:
    """A ns timestamp column as (whole microseconds, the nanoseconds below them, 0-999)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    ints = arr.cast(pa.int64())
    valid = ints.is_valid()
    values = ints.fill_null(0).to_numpy(zero_copy_only=False)
    us = np.floor_divide(values, 1000)
    ns = (values - us * 1000).astype(np.int16)
    mask = ~valid.to_numpy(zero_copy_only=False)
    us_arr = pa.array(us, mask=mask).cast(pa.timestamp("us", tz="UTC" if tz else None))
    return us_arr, pa.array(ns, mask=mask)


def _cast(arr, t: pa.DataType):
    if arr.type == t:
        return arr
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode() if isinstance(arr, pa.Array) else pc.dictionary_decode(arr)
    return pc.cast(arr, t, safe=True)


# -- stored -> logical -------------------------------------------------------------------------
def to_logical(stored: pa.Table, schema: TableSchema, names: list[str]) -> pa.Table:
    """The dk columns `names` from a table read from Delta (which may lack columns added later)."""
    cols = []
    n = stored.num_rows
    for name in names:
        col = schema.column(name)
        if name not in stored.column_names:
            cols.append(pa.nulls(n, col.arrow))
            continue
        arr = stored.column(name)
        if has_ns(col):
            ints = pc.multiply_checked(arr.cast(pa.int64()), 1000)
            if NS + name in stored.column_names:
                ints = pc.add_checked(ints, pc.fill_null(stored.column(NS + name).cast(pa.int64()), 0))
            cols.append(ints.cast(col.arrow))
        elif pa.types.is_duration(col.arrow):
            cols.append(arr.cast(pa.int64()).cast(col.arrow))
        else:
            cols.append(arr if arr.type == col.arrow else arr.cast(col.arrow))
    return pa.table(cols, schema=pa.schema([c.field for c in (schema.column(x) for x in names)]))


# -- what Delta cannot hold -------------------------------------------------------------------
def unholdable(data: pa.Table, schema: TableSchema) -> dict[int, Unholdable]:
    """The rows holding a value the Delta table cannot keep exactly, and why (the first reason per row)."""
    out: dict[int, Unholdable] = {}
    for name in data.column_names:
        col = schema.column(name)
        t = col.arrow
        if not (
            _may_fail(t)
            or pa.types.is_uint64(t)
            or pa.types.is_date(t)
            or (pa.types.is_timestamp(t) and t.unit != "ns")
        ):
            continue  # every value fits its stored type
        arr = data.column(name)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        for i, why in _out_of_range(arr, t).items():
            out.setdefault(i, Unholdable(name, why, RowError.OutOfRange))
        if not _may_fail(t):
            continue
        try:
            _cast(arr, stored_type(t))
        except _ARROW_ERRORS:
            for i, why in _isolate(arr, stored_type(t)).items():
                out.setdefault(i, Unholdable(name, why, RowError.OutOfRange))
    return out


def _may_fail(t: pa.DataType) -> bool:
    """Whether casting to the stored type can refuse a value (the rest widen, or are checked above)."""
    return pa.types.is_nested(t) or pa.types.is_decimal(t) or pa.types.is_dictionary(t) or pa.types.is_float16(t)


def _out_of_range(arr: pa.Array, t: pa.DataType) -> dict[int, str]:
    """Values outside Delta's range that a cast would not notice: big uint64, years outside 1-9999."""
    if pa.types.is_uint64(t):
        bad = pc.greater(arr, pa.scalar(2**63 - 1, pa.uint64()))
        why = "{} is beyond the signed 64-bit integers Delta Lake stores (at most 9223372036854775807)"
    elif pa.types.is_timestamp(t) and t.unit != "ns":
        ints = arr.cast(pa.int64())
        per = _PER_SECOND[t.unit]
        bad = pc.or_(pc.less(ints, _MIN_S * per), pc.greater(ints, _MAX_S * per + per - 1))
        why = "{} is outside the years 1 to 9999 that Delta Lake timestamps hold"
    elif pa.types.is_date(t):
        days = arr.cast(pa.date32()).cast(pa.int32())
        bad = pc.or_(pc.less(days, _MIN_DAY), pc.greater(days, _MAX_DAY))
        why = "{} is outside the years 1 to 9999 that Delta Lake dates hold"
    else:
        return {}
    positions = np.flatnonzero(pc.fill_null(bad, False).to_numpy(zero_copy_only=False))
    return {int(i): why.format(_show(arr, int(i))) for i in positions}


def _isolate(arr: pa.Array, t: pa.DataType) -> dict[int, str]:
    """The positions whose value does not cast to `t`, found by halving (k bad values: ~k*log n casts)."""
    out: dict[int, str] = {}

    def failed(i: int, e: Exception) -> None:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        out[i] = f"{_show(arr, i)} cannot be kept exactly in Delta Lake as {t} ({text})"

    bisect(len(arr), lambda lo, hi: _cast(arr.slice(lo, hi - lo), t), failed, _ARROW_ERRORS)
    return out


def _show(arr: pa.Array, i: int) -> str:
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):  # numpy shows years Python's datetime cannot
        unit: Literal["s", "ms", "us", "ns", "D"] = t.unit if pa.types.is_timestamp(t) else "D"
        return str(np.datetime64(arr.cast(pa.int64() if pa.types.is_timestamp(t) else pa.int32())[i].as_py(), unit))
    return repr(arr[i].as_py())
