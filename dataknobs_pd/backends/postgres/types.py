"""PostgreSQL column types for the logical Arrow types, and the Arrow data sent and read for them.

Each stored column gets a native type (smallint ... json). Arrow data is cast to the
"wire" type that ADBC's binary COPY sends for that native type, and cast back on read.
PostgreSQL keeps timestamps and intervals in microseconds: a nanosecond column gets a
hidden companion `_dk_ns_<name>` (smallint, 0..999) so that its values survive exactly,
while the main column stays a real timestamp/interval that other SQL tools can query.
Intervals are read as bigint microseconds computed in SQL: the driver turns an interval into
nanoseconds, which overflows beyond 292 years. JSON is stored as `json`, which keeps its text:
`jsonb` rewrites numbers (1e300 and -4.2e16 come back as integers); tables made with `jsonb`
by earlier versions still load and take rows (COPY sends their columns as jsonb).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import InvalidArgumentError, StorageError, UnsupportedDtypeError
from ...failures import RowError, Unholdable
from ...schema import Column, TableSchema
from ..sql import q

NS_PREFIX = "_dk_ns_"  # companion column with the nanoseconds below a microsecond
SEQ = "_dk_seq"  # hidden identity column that keeps the insertion order of keyless tables
MAX_IDENT = 63  # PostgreSQL cuts longer identifiers (NAMEDATALEN - 1 bytes)
SYSTEM_COLUMNS = ("tableoid", "xmin", "cmin", "xmax", "cmax", "ctid")  # every table has them already

INT64_MAX = 2**63 - 1
# PostgreSQL's timestamp range in microseconds since 1970 (4713-11-24 BC ..); the top is beyond int64
TS_MIN_US = -211813488000000000 - 946684800000000
# date range in days since 1970: julian day 0 .. 5874897-12-31
DATE_MIN, DATE_MAX = -2440588, 2147483494 - 2440588 - 1
_UNIT_US = {"s": 1_000_000, "ms": 1_000, "us": 1}  # ns is written as int64 nanoseconds, never scaled
_INTERVAL = np.dtype([("months", "<i4"), ("days", "<i4"), ("ns", "<i8")])
_JSON_SUSPECT = re.compile(r"NaN|Infinity|\\u0000")


def json_type() -> pa.DataType:
    """The Arrow type ADBC sends as jsonb (arrow.json over large strings)."""
    return pa.json_(pa.large_string())


# an interval as exact microseconds (30-day months, as _interval_us): EXTRACT gives numeric parts since PostgreSQL 14
_INTERVAL_US = (
    "((EXTRACT(YEAR FROM {c}) * 12 + EXTRACT(MONTH FROM {c})) * 2592000000000 + EXTRACT(DAY FROM {c}) * 86400000000"
    " + EXTRACT(HOUR FROM {c}) * 3600000000 + EXTRACT(MINUTE FROM {c}) * 60000000"
    " + EXTRACT(MICROSECONDS FROM {c}))::bigint"
)


@dataclass(frozen=True)
class PgColumn:
    """How one dk column is stored: native type, Arrow wire type, hidden nanosecond companion."""

    name: str
    sql: str  # the declared type
    wire: pa.DataType  # what is sent by COPY and compared with bound filter values
    family: str  # int, uint64, float, bool, text, json, nested, bytes, numeric, date, timestamp, interval, null
    ns: bool = False  # has a `_dk_ns_` companion

    @property
    def companion(self) -> str:
        return NS_PREFIX + self.name

    @property
    def stored(self) -> list[str]:
        """The table's column names for this column."""
        return [self.name, self.companion] if self.ns else [self.name]

    @property
    def selected(self) -> list[str]:
        """What a read selects for this column: intervals as bigint microseconds (see _INTERVAL_US)."""
        return self.selected_from("")

    def selected_from(self, alias: str) -> list[str]:
        """`selected` of the table `alias` of a join (each named `alias.column`, unique in the join)."""
        at, named = (f"{alias}.", f"{alias}.") if alias else ("", "")
        refs = [at + q(n) for n in self.stored]
        if self.family == "interval":
            refs[0] = _INTERVAL_US.format(c=refs[0])
        return [f"{r} AS {q(named + n)}" if r != q(named + n) else r for r, n in zip(refs, self.stored)]

    @property
    def compared(self) -> str:
        """The column as compared or ordered in SQL: json has no operators, jsonb has (also for jsonb columns)."""
        return f"{q(self.name)}::jsonb" if self.family in ("json", "nested") else q(self.name)

    def ddl(self, nullable: bool) -> list[str]:
        out = [f"{q(self.name)} {self.sql}{'' if nullable else ' NOT NULL'}"]
        if self.ns:
            out.append(f"{q(self.companion)} smallint NOT NULL DEFAULT 0")
        return out


def plan(col: Column) -> PgColumn:
    """The PostgreSQL storage of a dk column, or UnsupportedDtypeError naming it."""
    t, name = col.arrow, col.name
    ints = {
        pa.int8(): ("smallint", pa.int16()),
        pa.int16(): ("smallint", pa.int16()),
        pa.int32(): ("integer", pa.int32()),
        pa.int64(): ("bigint", pa.int64()),
        pa.uint8(): ("smallint", pa.int16()),
        pa.uint16(): ("integer", pa.int32()),
        pa.uint32(): ("bigint", pa.int64()),
    }
    if t in ints:
        return PgColumn(name, ints[t][0], ints[t][1], "int")
    if pa.types.is_uint64(t):
        return PgColumn(name, "numeric(20,0)", pa.decimal128(20, 0), "uint64")
    if pa.types.is_floating(t):
        return (
            PgColumn(name, "double precision", pa.float64(), "float")
            if t.bit_width == 64
            else PgColumn(name, "real", pa.float32(), "float")
        )
    if pa.types.is_boolean(t):
        return PgColumn(name, "boolean", pa.bool_(), "bool")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if col.kind == "json":
            return PgColumn(name, "json", pa.large_string(), "json")
        return PgColumn(name, "text", t, "text")
    if pa.types.is_null(t):
        return PgColumn(name, "text", pa.large_string(), "null")
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return PgColumn(name, "bytea", pa.binary(), "bytes")
    if pa.types.is_decimal(t):
        if t.precision > 1000:
            raise UnsupportedDtypeError(f"column {name!r}: {t} exceeds PostgreSQL's numeric precision (1000)")
        return PgColumn(name, f"numeric({t.precision},{t.scale})", t, "numeric")
    if pa.types.is_date(t):
        return PgColumn(name, "date", pa.date32(), "date")
    if pa.types.is_timestamp(t):
        return PgColumn(
            name, "timestamptz" if t.tz else "timestamp", pa.timestamp("us", tz=t.tz), "timestamp", ns=t.unit == "ns"
        )
    if pa.types.is_duration(t):
        return PgColumn(name, "interval", pa.duration("us"), "interval", ns=t.unit == "ns")
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_struct(t)
        or pa.types.is_map(t)
        or pa.types.is_fixed_size_list(t)
    ):
        return PgColumn(name, "json", pa.large_string(), "nested")
    raise UnsupportedDtypeError(
        f"column {name!r} has Arrow type {t}, which has no PostgreSQL column type here; convert it first"
    )


def plans(schema: TableSchema) -> dict[str, PgColumn]:
    return {c.name: plan(c) for c in schema.columns}


def check_name(name, table, column: str | None = None) -> None:
    """Refuse a table (or column) name PostgreSQL cannot hold or would cut, before it reaches any statement."""
    what = f"table {table!r}" if column is None else f"column {column!r} of table {table!r}"
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{what}: a PostgreSQL name must be a non-empty string")
    if "\x00" in name:
        raise InvalidArgumentError(f"{what}: PostgreSQL names cannot hold a NUL character")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidArgumentError(f"{what}: the name is not valid Unicode text ({e.reason})") from None
    if size > MAX_IDENT:
        stored = "" if name in (table, column) else f" (stored as {name!r})"
        raise InvalidArgumentError(
            f"{what}{stored} is {size} bytes, longer than PostgreSQL's {MAX_IDENT} bytes; use a shorter name"
        )


def check_names(table: str, schema: TableSchema) -> None:
    """Refuse names PostgreSQL would cut or cannot hold, and clashes with the hidden columns."""
    check_name(table, table)
    for col, p in plans(schema).items():
        for n in p.stored:
            check_name(n, table, col)
    hidden = [n for n in schema.names if n == SEQ or n.startswith(NS_PREFIX)]
    if hidden:
        raise InvalidArgumentError(
            f"table {table!r}: column name(s) {hidden} are reserved for dataknobs' hidden columns"
        )
    system = [n for n in schema.names if n in SYSTEM_COLUMNS]
    if system:
        raise InvalidArgumentError(
            f"table {table!r}: column name(s) {system} are PostgreSQL's system columns; rename them"
        )


def physical_key(schema: TableSchema) -> list[str]:
    """The table's primary key columns: the key with the companions of nanosecond key columns."""
    p = plans(schema)
    return [n for k in (schema.key or []) for n in p[k].stored]


# -- values PostgreSQL cannot hold -----------------------------------------------------------------
def unstorable(arr: pa.Array, col: Column, p: PgColumn) -> dict[int, Unholdable]:
    """Rows of one column whose value PostgreSQL cannot keep exactly, and why."""
    out: dict[int, Unholdable] = {}

    def flag(mask, error, why):
        mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
        for i in np.flatnonzero(mask):
            out.setdefault(int(i), Unholdable(col.name, why(int(i)), error))

    if p.family == "text" and col.kind == "category" and not any("\x00" in str(c) for c in col.dtype["categories"]):
        pass  # the values are among the categories, which hold no NUL: no need to look at every row
    elif p.family == "text" and arr.null_count < len(arr):
        flag(
            pc.match_substring(arr, "\x00"),
            RowError.TypeConversion,
            lambda i: f"{arr[i].as_py()!r} holds a NUL character, which PostgreSQL text cannot store",
        )
    elif p.family == "json" and arr.null_count < len(arr):
        suspects = pc.fill_null(pc.match_substring_regex(arr, _JSON_SUSPECT.pattern), False)
        for i in np.flatnonzero(suspects.to_numpy(zero_copy_only=False)):
            why = _json_problem(arr[int(i)].as_py())
            if why:
                out.setdefault(int(i), Unholdable(col.name, why, RowError.TypeConversion))
    elif p.family == "timestamp" and not p.ns and len(arr):
        f = _UNIT_US[arr.type.unit]
        v = arr.cast(pa.int64())
        lo, hi = -((-TS_MIN_US) // f), INT64_MAX // f
        flag(
            pc.or_(pc.less(v, lo), pc.greater(v, hi)),
            RowError.OutOfRange,
            lambda i: (
                f"{np.datetime64(v[i].as_py(), arr.type.unit)} is outside PostgreSQL's timestamp range "
                f"(4713 BC to 294276 AD)"
            ),
        )
    elif p.family == "interval" and not p.ns and len(arr) and _UNIT_US[arr.type.unit] > 1:
        lim = INT64_MAX // _UNIT_US[arr.type.unit]
        v = arr.cast(pa.int64())
        flag(
            pc.greater(pc.abs(v), lim),
            RowError.OutOfRange,
            lambda i: f"{np.timedelta64(v[i].as_py(), arr.type.unit)} is beyond PostgreSQL's interval range",
        )
    elif p.family == "date" and len(arr):
        v = arr.cast(pa.date32()).cast(pa.int32())
        flag(
            pc.or_(pc.less(v, DATE_MIN), pc.greater(v, DATE_MAX)),
            RowError.OutOfRange,
            lambda i: f"{np.datetime64(v[i].as_py(), 'D')} is outside PostgreSQL's date range",
        )
    return out


def _json_problem(text: str) -> str | None:
    def refuse(name):
        raise ValueError(f"{name} is not a JSON number and jsonb cannot store it")

    try:
        value = json.loads(text, parse_constant=refuse)
    except ValueError as e:
        return str(e)
    if _has_nul(value):
        return "a string holds a NUL character (\\u0000), which jsonb cannot store"
    return None


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


# -- Arrow -> wire ---------------------------------------------------------------------------------
def _split_ns(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """int64 nanoseconds -> (microseconds floored, remainder 0..999, null mask)."""
    v = arr.cast(pa.int64())
    mask = v.is_null().to_numpy(zero_copy_only=False) if v.null_count else None
    n = v.fill_null(0).to_numpy(zero_copy_only=False)
    us = n // 1000  # floor, so the remainder is never negative
    return us, (n - us * 1000).astype(np.int16), mask


def to_wire(arr: pa.Array | pa.ChunkedArray, p: PgColumn, jsonb: bool = False) -> list[pa.Array]:
    """One logical column as the arrays COPY sends (the column, then its companion if any); `jsonb`: the
    table's column is jsonb (made by an earlier version), whose binary form differs from json's."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if p.ns:
        us, rem, mask = _split_ns(arr)
        main = pa.array(us, type=pa.int64(), mask=mask).cast(p.wire)
        return [main, pa.array(rem, type=pa.int16())]
    if p.family in ("json", "nested"):
        if p.family == "json":
            storage = arr if arr.type == pa.large_string() else arr.cast(pa.large_string())
        else:
            texts = [None if v is None else json.dumps(v, default=str) for v in arr.to_pylist()]
            storage = pa.array(texts, type=pa.large_string())
        return [pa.ExtensionArray.from_storage(json_type(), storage) if jsonb else storage]
    if p.family == "null":
        return [pa.nulls(len(arr), pa.large_string())]
    if p.family == "timestamp" and arr.type.tz:
        return [arr.cast(pa.timestamp("us", tz=arr.type.tz))]
    return [arr if arr.type == p.wire else arr.cast(p.wire)]


def wire_table(
    data: pa.Table, schema: TableSchema, extra: dict[str, pa.Array] | None = None, jsonb: frozenset[str] = frozenset()
) -> pa.Table:
    """The chunk as COPY sends it: wire types, companions beside their columns, then `extra`;
    `jsonb` names the table's jsonb columns (see to_wire)."""
    p = plans(schema)
    names, arrays = [], []
    for n in data.column_names:
        names += p[n].stored
        arrays += to_wire(data.column(n), p[n], n in jsonb)
    for n, a in (extra or {}).items():
        names.append(n)
        arrays.append(a)
    return pa.table(arrays, names=names)


def zoned(p: PgColumn) -> bool:
    """A timestamptz column compared with bound values: ADBC's driver binds a zoned value by setting the session's
    time zone inside a transaction of its own, which commits ours; such values are bound as naive UTC instead,
    and turned back into timestamptz in SQL (`$1::timestamp AT TIME ZONE 'UTC'`)."""
    return p.family == "timestamp" and not p.ns and pa.types.is_timestamp(p.wire) and p.wire.tz is not None


def filter_values(column: str, values: list, t: pa.DataType, p: PgColumn) -> list:
    """Filter values as one-value Arrow arrays of the type compared with (None for a null)."""
    try:
        arr = pa.array(values, type=t, from_pandas=True)
        wire = arr.cast(pa.int64()) if p.ns else to_wire(arr, p)[0]
        if zoned(p):  # the instant in UTC, without its zone (see zoned)
            wire = wire.cast(pa.timestamp(wire.type.unit))
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError(
            f"where= value(s) {values!r} for column {column!r} do not fit its type {t}: {e}"
        ) from e
    return [wire.slice(i, 1) if arr[i].is_valid else None for i in range(len(arr))]


# -- reading ---------------------------------------------------------------------------------------
def from_wire(parts: list[pa.ChunkedArray | pa.Array], col: Column, p: PgColumn) -> pa.Array:
    """The fetched array(s) of one column back in its logical Arrow type."""
    arr = _one(parts[0])
    if isinstance(arr.type, pa.ExtensionType):  # numeric and jsonb come as extension types over text
        arr = arr.storage
    t = col.arrow
    try:
        if p.family in ("timestamp", "interval"):
            us = _interval_us(arr) if pa.types.is_interval(arr.type) else arr.cast(pa.int64())
            if not p.ns:
                return us.cast(p.wire).cast(t)
            ns = _join_ns(us, _one(parts[1]).cast(pa.int64()))
            return ns.cast(pa.duration("ns") if p.family == "interval" else pa.timestamp("ns", tz=t.tz))
        if p.family == "nested":
            return pa.array([None if v is None else json.loads(v) for v in arr.to_pylist()], type=t)
        if p.family == "null":
            return pa.nulls(len(arr), t)
        return arr if arr.type == t else arr.cast(t)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise StorageError(f"column {col.name!r}: a stored value cannot be read back as {t}: {e}") from e


def _join_ns(us: pa.Array, rem: pa.Array) -> pa.Array:
    """us * 1000 + rem without passing through a product below int64 (-2**63 + 1 ns is floored to a
    microsecond whose nanoseconds are out of range): a negative us with a remainder is one us higher."""
    up = pc.and_(pc.less(us, 0), pc.greater(rem, 0))
    us = pc.if_else(up, pc.add(us, 1), us)
    rem = pc.if_else(up, pc.subtract(rem, 1000), rem)
    return pc.add_checked(pc.multiply_checked(us, 1000), rem)


def _one(arr):
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _interval_us(arr: pa.Array) -> pa.Array:
    """month_day_nano intervals -> int64 microseconds (30-day months, as PostgreSQL's epoch counts)."""
    if len(arr) == 0:
        return pa.array([], type=pa.int64())
    raw = np.frombuffer(arr.buffers()[1], dtype=_INTERVAL, count=len(arr) + arr.offset)[arr.offset :]
    day = 86_400 * 10**6
    total = raw["months"].astype(np.int64) * 30 * day + raw["days"].astype(np.int64) * day + raw["ns"] // 1000
    mask = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    return pa.array(total, type=pa.int64(), mask=mask)
