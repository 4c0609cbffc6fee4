"""Text forms of Arrow values for the csv:// and jsonl:// stores, exact both ways.

Each logical Arrow type has one text form that other tools read naturally and that decodes
to the very same value: integers, floats (shortest round-trip digits, `nan`/`inf`), booleans,
decimals and dates as Arrow formats them; timestamps as ISO 8601 (tz-aware ones as the UTC
instant with a `Z`; the zone name lives in the dk schema); durations as integer counts of
their unit; bytes as base64; nested values as JSON. `unholdable` finds the values whose text
would not decode to the same value (a year past 9999, say), which the store then refuses
as `convert` failures instead of changing them.

CSV: a header of column names, then one record per row; nulls are empty unquoted fields and
every text value is quoted, so an empty string (`""`) stays apart from a missing one.
JSON lines: one object per row; numbers, booleans and nested values are native JSON
(non-finite floats as the strings "NaN", "Infinity", "-Infinity"), other values are the
strings above. dk `json` columns are embedded as JSON values, not as strings of JSON.
"""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Iterator
from json.encoder import encode_basestring

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from ...schema import Column, TableSchema

TEXT = pa.large_string()
_SPECIAL_OUT = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}
_SPECIAL_IN = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}
_MAX_BLOCK = (1 << 31) - 1  # the largest block Arrow's CSV reader takes (an int32)


# -- one value type <-> text ------------------------------------------------------------------
def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t)


def native_csv(t: pa.DataType) -> bool:
    """Types the Arrow CSV writer already formats as our text form (written unquoted)."""
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_date(t)
    )


def to_text(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """The text form of each value (null stays null)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(t):
        return to_text(arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr, t.value_type)
    if pa.types.is_null(t):
        return pa.nulls(len(arr), TEXT)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(TEXT)
    if pa.types.is_timestamp(t):
        if t.tz is not None:
            arr = arr.cast(pa.timestamp(t.unit, "UTC"))
        return arr.cast(TEXT)
    if pa.types.is_duration(t):
        return arr.cast(pa.int64()).cast(TEXT)
    if _is_binary(t):
        return pa.array([None if v is None else base64.b64encode(v).decode("ascii") for v in arr.to_pylist()], TEXT)
    if _is_nested(t):
        return pa.array([None if v is None else json.dumps(v, default=_no_json) for v in arr.to_pylist()], TEXT)
    return arr.cast(TEXT)


def from_text(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """Decode text forms back into values of `t`."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(t):
        return from_text(arr, t.value_type).dictionary_encode().cast(t)
    if pa.types.is_null(t):
        return pa.nulls(len(arr), t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return arr.cast(t)
    if pa.types.is_timestamp(t):
        try:
            return arr.cast(pa.timestamp(t.unit, "UTC")).cast(t) if t.tz is not None else arr.cast(t)
        except pa.ArrowInvalid:
            return _parse_timestamps(arr, t)
    if pa.types.is_duration(t):
        return arr.cast(pa.int64()).cast(t)
    if _is_binary(t):
        return pa.array([None if v is None else base64.b64decode(v, validate=True) for v in arr.to_pylist()], t)
    if _is_nested(t):
        return pa.array([None if v is None else json.loads(v) for v in arr.to_pylist()], t)
    return arr.cast(t)


def _parse_timestamps(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """ISO text -> timestamps, for the values Arrow's parser refuses: the ends of the ns range (Timestamp.min/max).

    Seconds and fraction are parsed apart and joined as (s + 1) * f - (f - frac) below zero, s * f + frac
    above, so that no step overflows int64. What does not parse still raises.
    """
    digits = {"s": 0, "ms": 3, "us": 6, "ns": 9}[t.unit]
    if not digits:
        raise pa.ArrowInvalid("timestamps in seconds parse directly")
    factor = 10**digits
    secs = pc.utf8_slice_codeunits(arr, 0, 19).cast(pa.timestamp("s")).cast(pa.int64())
    frac = pc.utf8_slice_codeunits(arr, 20, 20 + digits).cast(pa.int64())
    below = pc.and_(pc.less(secs, 0), pc.greater(frac, 0))
    value = pc.if_else(
        below,
        pc.subtract(pc.multiply(pc.add(secs, 1), factor), pc.subtract(factor, frac)),
        pc.add(pc.multiply(secs, factor), frac),
    )
    return value.cast(pa.timestamp(t.unit, t.tz))


def _no_json(v):
    raise TypeError(f"{type(v).__name__} value {v!r} has no JSON form")


def unholdable(arr: pa.Array, col: Column, fmt: str) -> dict[int, str]:
    """Positions of values whose text form would not decode to the same value -> why (not naming the column)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = col.arrow
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return {}
    try:
        back = from_text(to_text(arr, t), t)
        same = _same(arr, back)
        bad = np.flatnonzero(~same)
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        bad = np.array([i for i in range(len(arr)) if not _one_holds(arr.slice(i, 1), t)], dtype=np.int64)
    return {int(i): f"the {fmt} store cannot hold {show(arr, int(i))} exactly as text ({t})" for i in bad}


def show(arr: pa.Array, i: int) -> str:
    """A value for a message, even one Python cannot represent (a timestamp in year 10000, say)."""
    try:
        return repr(arr[i].as_py())
    except (OverflowError, ValueError, pa.ArrowException):
        try:
            return f"{arr.slice(i, 1).cast(pa.int64())[0].as_py()} ({arr.type})"
        except pa.ArrowException:
            return f"a value of {arr.type}"


def _one_holds(arr: pa.Array, t: pa.DataType) -> bool:
    try:
        return bool(_same(arr, from_text(to_text(arr, t), t)).all())
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return False


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _same(a: pa.Array, b: pa.Array) -> np.ndarray:
    """Element-wise: equal values, both null, or both NaN."""
    if pa.types.is_nested(a.type) or pa.types.is_dictionary(a.type):
        return np.array([x == y or (_nan(x) and _nan(y)) for x, y in zip(a.to_pylist(), b.to_pylist())], dtype=bool)
    eq = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
    both_null = a.is_null().to_numpy(zero_copy_only=False) & b.is_null().to_numpy(zero_copy_only=False)
    out = eq | both_null
    if pa.types.is_floating(a.type):
        out |= pc.fill_null(pc.and_(pc.is_nan(a), pc.is_nan(b)), False).to_numpy(zero_copy_only=False)
    if pa.types.is_floating(a.type) or pa.types.is_decimal(a.type):
        # -0.0 == 0.0 compares equal; keep the sign too
        sa = (
            pc.fill_null(pc.less(pc.divide(pa.scalar(1.0), pc.cast(a, pa.float64())), 0), False)
            if pa.types.is_floating(a.type)
            else None
        )
        if sa is not None:
            sb = pc.fill_null(pc.less(pc.divide(pa.scalar(1.0), pc.cast(b, pa.float64())), 0), False)
            out &= (sa.to_numpy(zero_copy_only=False) == sb.to_numpy(zero_copy_only=False)) | both_null
    return out


# -- CSV ----------------------------------------------------------------------------------------
def write_csv(sink, data: pa.Table, schema: TableSchema) -> None:
    """One CSV part: header, then rows; text forms quoted, native numbers bare."""
    cols = []
    for name in data.column_names:
        t = schema.column(name).arrow
        arr = data.column(name)
        cols.append(arr if native_csv(t) else to_text(arr, t))
    table = pa.table(cols, names=data.column_names)
    pcsv.write_csv(table, sink, write_options=pcsv.WriteOptions(quoting_style="needed"))


def read_csv(source, schema: TableSchema, columns: list[str], block_size: int = 1 << 22) -> Iterator[pa.Table]:
    """Stream a CSV part as tables of the logical types, only `columns` decoded.

    Arrow's reader needs every record within one block. A record larger than the block (one
    cell of many megabytes) makes it read the part again from the start with blocks four times
    larger, skipping the rows already yielded, up to the largest block Arrow takes (2 GiB).
    `source` is a random-access pyarrow file.
    """
    parse = pcsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)  # one null column: empty line
    convert = pcsv.ConvertOptions(
        column_types={n: TEXT for n in schema.names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
        include_columns=columns,
        include_missing_columns=True,  # a column added to the table after this part was written: nulls
    )
    fields = [schema.column(n).field for n in columns]
    done = 0  # rows yielded so far
    view = source
    while True:
        skip = done
        try:
            reader = pcsv.open_csv(
                view, read_options=pcsv.ReadOptions(block_size=block_size), parse_options=parse, convert_options=convert
            )
            for batch in reader:
                if skip >= batch.num_rows:
                    skip -= batch.num_rows
                    continue
                batch, skip = batch.slice(skip), 0
                done += batch.num_rows
                yield pa.table(
                    [from_text(batch.column(n), f.type) for n, f in zip(columns, fields)], schema=pa.schema(fields)
                )
            return
        except pa.ArrowInvalid as e:
            if "straddling" not in str(e) or block_size >= _MAX_BLOCK:
                raise
            block_size = min(4 * block_size, _MAX_BLOCK)
            view = _Window(source)  # the failed reader may still be reading ahead from `source` on a thread


class _Window(io.RawIOBase):
    """A read position of its own over a random-access pyarrow file."""

    def __init__(self, f):
        self.f, self.pos = f, 0

    def readable(self):
        return True

    def readinto(self, buf):
        data = self.f.read_at(len(buf), self.pos)
        buf[: len(data)] = data
        self.pos += len(data)
        return len(data)


# -- JSON lines ---------------------------------------------------------------------------------
def write_jsonl(sink, data: pa.Table, schema: TableSchema) -> None:
    """One JSON-lines part: one object per row with every column (null as null)."""
    pieces = []
    for name in data.column_names:
        col = schema.column(name)
        prefix = encode_basestring(name) + ":"
        pieces.append([prefix + v for v in _json_values(data.column(name), col)])
    n = data.num_rows
    out = []
    step = 65536
    for lo in range(0, n, step):
        rows = zip(*(p[lo : lo + step] for p in pieces)) if pieces else ([] for _ in range(min(step, n - lo)))
        out.append("".join("{" + ",".join(r) + "}\n" for r in rows).encode("utf-8"))
    sink.write(b"".join(out))


def _json_values(arr, col: Column) -> list[str]:
    t = col.arrow
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(t):
        arr, t = (arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr), t.value_type
    if pa.types.is_integer(t):
        return _nullify(arr, arr.cast(TEXT).to_pylist())
    if pa.types.is_boolean(t):
        return ["null" if v is None else ("true" if v else "false") for v in arr.to_pylist()]
    if pa.types.is_floating(t):
        # float32 as the exact double it is: JSON parsers read float64 and cast back exactly
        text = arr.cast(pa.float64()).cast(TEXT).to_pylist()
        return ["null" if v is None else _SPECIAL_OUT.get(v) or _float_token(v) for v in text]
    if col.kind == "json" and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return ["null" if v is None else v for v in arr.to_pylist()]  # already JSON text
    if _is_nested(t):
        return ["null" if v is None else json.dumps(v, default=_no_json) for v in arr.to_pylist()]
    return ["null" if v is None else encode_basestring(v) for v in to_text(arr, t).to_pylist()]


def _float_token(text: str) -> str:
    """A JSON number that parsers read as a float: "-0" would come back as the integer 0, losing its sign."""
    return text if ("." in text or "e" in text) else text + ".0"


def _nullify(arr: pa.Array, values: list) -> list[str]:
    return ["null" if v is None else v for v in values] if arr.null_count else values


def read_jsonl(source, schema: TableSchema, columns: list[str], batch_rows: int) -> Iterator[pa.Table]:
    """Stream a JSON-lines part as tables of the logical types, only `columns` decoded."""
    fields = [schema.column(n).field for n in columns]
    cols = [schema.column(n) for n in columns]
    rows: list[dict] = []
    for line in _lines(source):
        if line.strip():
            rows.append(json.loads(line))
            if len(rows) >= batch_rows:
                yield _decode_rows(rows, cols, fields)
                rows = []
    if rows:
        yield _decode_rows(rows, cols, fields)


def _lines(source) -> Iterator[bytes]:
    rest: list[bytes] = []  # the pieces of a line not yet ended: joined once, so a long line costs its length
    while True:
        block = source.read(1 << 22)
        if not block:
            break
        lines = block.split(b"\n")
        if len(lines) == 1:
            rest.append(block)
            continue
        yield b"".join([*rest, lines[0]])
        yield from lines[1:-1]
        rest = [lines[-1]]
    tail = b"".join(rest)
    if tail:
        yield tail


def _decode_rows(rows: list[dict], cols: list[Column], fields: list[pa.Field]) -> pa.Table:
    arrays = []
    for col in cols:
        values = [r.get(col.name) for r in rows]
        arrays.append(_from_json(values, col))
    return pa.table(arrays, schema=pa.schema(fields))


def _from_json(values: list, col: Column) -> pa.Array:
    t = col.arrow
    inner = t.value_type if pa.types.is_dictionary(t) else t
    if pa.types.is_integer(inner) or pa.types.is_boolean(inner):
        out = pa.array(values, type=inner)
    elif pa.types.is_floating(inner):
        vals = [
            v if v is None or isinstance(v, float) else _SPECIAL_IN[v] if isinstance(v, str) else float(v)
            for v in values
        ]
        out = pa.array(vals, type=pa.float64()).cast(inner)
    elif col.kind == "json" and (pa.types.is_string(inner) or pa.types.is_large_string(inner)):
        out = pa.array([None if v is None else json.dumps(v) for v in values], type=inner)
    elif _is_nested(inner):
        out = pa.array(values, type=inner)
    else:
        out = from_text(pa.array(values, type=TEXT), inner)
    return out.dictionary_encode().cast(t) if pa.types.is_dictionary(t) else out
