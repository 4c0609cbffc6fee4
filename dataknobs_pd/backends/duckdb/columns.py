"""How each dk column lives in DuckDB: its SQL type, and the Arrow conversions on the way in and out.

DuckDB's own types where they hold the values exactly, so that other DuckDB users see natural
columns: TINYINT..UBIGINT, FLOAT/DOUBLE, BOOLEAN, VARCHAR, BLOB, DATE, DECIMAL(p,s), JSON,
TIMESTAMP_S/_MS/TIMESTAMP/TIMESTAMP_NS, TIMESTAMPTZ (s, ms, us) and TIMESTAMPTZ_NS, INTERVAL
(durations in s, ms, us), ENUM for string categories, LIST/STRUCT/MAP for nested Arrow types.
Two encodings where no DuckDB type is exact, each described in a column comment: durations in
nanoseconds as BIGINT (an INTERVAL keeps microseconds), and decimals wider than DECIMAL(38) as
their exact text. The dk schema restores dtype, zone name, unit and categories on load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import UnsupportedDtypeError
from ...failures import Unholdable
from ...schema import Column, TableSchema

INT64_MAX = 2**63 - 1
_PER_US = {"s": 1_000_000, "ms": 1_000, "us": 1}

_SIMPLE = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.float16(): "FLOAT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.binary(): "BLOB",
    pa.large_binary(): "BLOB",
    pa.date32(): "DATE",
}
_TIMESTAMP = {"s": "TIMESTAMP_S", "ms": "TIMESTAMP_MS", "us": "TIMESTAMP", "ns": "TIMESTAMP_NS"}


def literal(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Plan:
    """One column in DuckDB. `sql` None: the type DuckDB gives the Arrow type (nested ones it cannot name here)."""

    sql: str | None
    stage: Callable[[pa.ChunkedArray], pa.ChunkedArray] | None = None  # logical -> what DuckDB scans
    select: str = "{}"  # the read expression around the quoted column
    back: Callable[[pa.ChunkedArray], pa.ChunkedArray] | None = None  # read -> logical (before base.conform)
    compare: str = "{}"  # the column in where terms (<, >, ...)
    comment: str | None = None  # for encodings another DuckDB user must know about


def plan(col: Column) -> Plan:
    t = col.arrow
    if pa.types.is_dictionary(t):  # DuckDB scans dictionaries as their values
        return Plan(_sql(t.value_type, col))
    if col.kind == "category" and _is_text(t) and col.dtype.get("categories"):
        return Plan("ENUM(" + ", ".join(literal(str(c)) for c in col.dtype["categories"]) + ")")
    if col.kind == "json" and _is_text(t):
        return Plan("JSON")
    if pa.types.is_duration(t):
        if t.unit == "ns":  # INTERVAL keeps microseconds
            return Plan(
                "BIGINT",
                stage=lambda a: a.cast(pa.int64()),
                back=lambda a: a.cast(t),
                comment=f"duration in nanoseconds ({col.dtype.get('name', 'timedelta64[ns]')})",
            )
        # Read through epoch_us: DuckDB's Arrow intervals count nanoseconds and overflow past 292 years.
        return Plan(
            "INTERVAL",
            stage=_zero_null_slots if t.unit != "us" else None,
            select="epoch_us({})",
            back=lambda a: a.cast(pa.duration("us")).cast(t),
        )
    if pa.types.is_decimal(t) and t.precision > 38:  # beyond DuckDB's DECIMAL(38): exact text
        return Plan(
            "VARCHAR",
            stage=lambda a: a.cast(pa.large_string()),
            back=lambda a: a.cast(t),
            compare="CAST({} AS DOUBLE)",
            comment=f"decimal({t.precision}, {t.scale}) as exact text",
        )
    return Plan(_sql(t, col))


def _sql(t: pa.DataType, col: Column) -> str | None:
    """The DuckDB type of an Arrow type (None: let DuckDB choose); refuses what DuckDB cannot hold exactly."""
    if t in _SIMPLE:
        return _SIMPLE[t]
    if pa.types.is_timestamp(t):
        if t.tz is None:
            return _TIMESTAMP[t.unit]
        return "TIMESTAMPTZ_NS" if t.unit == "ns" else "TIMESTAMPTZ"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t):
        return "BLOB"
    if pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_nested(t):
        inner = _inner(t)
        for f in inner:
            if pa.types.is_duration(f.type) or (pa.types.is_decimal(f.type) and f.type.precision > 38):
                raise UnsupportedDtypeError(
                    f"column {col.name!r} ({t}): DuckDB cannot keep {f.type} values inside a list, struct or map "
                    f"exactly; store them in a column of their own"
                )
        parts = [_sql(f.type, col) for f in inner]
        if any(p is None for p in parts):
            return None
        if pa.types.is_struct(t):
            return "STRUCT(" + ", ".join(f"{_ident(f.name)} {p}" for f, p in zip(inner, parts)) + ")"
        if pa.types.is_map(t):
            return f"MAP({parts[0]}, {parts[1]})"
        if pa.types.is_fixed_size_list(t):
            return f"{parts[0]}[{t.list_size}]"
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            return f"{parts[0]}[]"
    return None


def _inner(t: pa.DataType) -> list[pa.Field]:
    if pa.types.is_map(t):
        return [t.key_field, t.item_field]
    return [t.field(i) for i in range(t.num_fields)]


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


# -- on the way in ---------------------------------------------------------------------------
def _zero_null_slots(a: pa.ChunkedArray) -> pa.ChunkedArray:
    """Durations in s or ms with 0 under their nulls. DuckDB scales each slot of an Arrow duration to
    microseconds before it looks at the validity bitmap, and pandas leaves NaT's int64 minimum under
    a null, which overflows ("Could not convert Interval to Microsecond") and fails the statement."""
    if not a.null_count:
        return a
    chunks = []
    for c in a.chunks:
        if c.null_count:
            ints = pc.fill_null(c.cast(pa.int64()), 0).to_numpy()
            c = pa.array(ints, type=c.type, mask=pc.is_null(c).to_numpy(zero_copy_only=False))
        chunks.append(c)
    return pa.chunked_array(chunks, type=a.type)


def staged(data: pa.Table, schema: TableSchema) -> pa.Table:
    """The chunk as DuckDB should scan it: each column in the Arrow type that becomes its SQL type exactly."""
    cols, changed = [], False
    for name in data.column_names:
        p = plan(schema.column(name))
        arr = data.column(name)
        if p.stage is not None:
            arr, changed = p.stage(arr), True
        cols.append(arr)
    return pa.table(cols, names=data.column_names) if changed else data


def unholdable(data: pa.Table, schema: TableSchema) -> dict[int, Unholdable]:
    """Rows holding values DuckDB cannot keep exactly: tz-aware timestamps and durations in s or ms
    beyond what microseconds (TIMESTAMPTZ, INTERVAL) reach; strings outside a column's ENUM."""
    out: dict[int, Unholdable] = {}
    for name in data.column_names:
        col, arr = schema.column(name), data.column(name)
        t, p = col.arrow, plan(col)
        bad, why = None, ""
        wide = (pa.types.is_timestamp(t) and t.tz is not None) or (pa.types.is_duration(t) and t.unit != "ns")
        if wide and _PER_US.get(t.unit, 1) > 1:
            limit = INT64_MAX // _PER_US[t.unit]
            ints = arr.cast(pa.int64())
            bad = pc.or_(pc.greater(ints, limit), pc.less(ints, -limit))
            what = "tz-aware timestamps (TIMESTAMPTZ)" if pa.types.is_timestamp(t) else "durations (INTERVAL)"
            why = f"DuckDB keeps {what} in microseconds, and this value is beyond that range"
        elif p.sql and p.sql.startswith("ENUM("):
            known = pc.is_in(arr, value_set=pa.array(col.dtype["categories"], type=t))
            bad = pc.and_(pc.is_valid(arr), pc.invert(known))
            why = "the value is not one of the column's categories (its DuckDB ENUM)"
        if bad is not None:
            for i in np.flatnonzero(pc.fill_null(bad, False).to_numpy(zero_copy_only=False)):
                out.setdefault(int(i), Unholdable(name, why))
    return out


def params(col: Column, values: list) -> list:
    """Filter values as Python values DuckDB binds to the column's type exactly."""
    t, p = col.arrow, plan(col)
    arr = pa.array(values, type=t, from_pandas=True)
    if pa.types.is_timestamp(t):  # ISO text keeps nanoseconds; DuckDB casts it to the column's type
        arr = arr.cast(pa.timestamp(t.unit, tz="UTC")) if t.tz else arr
        arr = arr.cast(pa.string())
    elif p.stage is not None:
        arr = p.stage(arr)
    return arr.to_pylist()


# -- tables made elsewhere -------------------------------------------------------------------
def foreign_column(name: str, t: pa.DataType, nullable: bool) -> Column:
    """A dk column for a column of a table this package did not create, from the Arrow type DuckDB reads it as."""
    if pa.types.is_dictionary(t):  # an ENUM: its strings
        t = t.value_type
    if _is_text(t):
        return Column(name, "string", pa.large_string(), True, {"name": "object", "na": "none"})
    if pa.types.is_integer(t):
        dtype = str(t) if not nullable else str(t).capitalize().replace("Uint", "UInt")
        return Column(name, str(t), t, nullable, {"name": dtype})
    if pa.types.is_floating(t):
        kind = f"float{t.bit_width}"
        return Column(name, kind, t, True, {"name": kind})
    if pa.types.is_boolean(t):
        return Column(name, "bool", t, nullable, {"name": "boolean" if nullable else "bool"})
    if pa.types.is_timestamp(t):
        t = pa.timestamp(t.unit, tz="UTC" if t.tz else None)
        return Column(name, "datetime", t, True, {"name": f"datetime64[{t.unit}{', UTC' if t.tz else ''}]"})
    plain = (
        {"date32": "date"}.get(str(t))
        or ("decimal" if pa.types.is_decimal(t) else None)
        or ("bytes" if pa.types.is_binary(t) or pa.types.is_large_binary(t) else None)
    )
    if plain:  # kept as Python objects
        return Column(name, plain, t, True, {"name": "object", "na": "none"})
    # the rest (lists, structs, intervals, times): pyarrow-backed, as DuckDB reads them
    return Column(
        name, "json" if pa.types.is_nested(t) else str(t), t, True, {"name": str(pd.ArrowDtype(t)), "arrow": True}
    )
