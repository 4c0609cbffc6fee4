"""TypeMapper: pandas dtypes <-> portable field types <-> Arrow, exactly and both ways.

Only this module knows pandas dtypes. A frame is described once (`schema`), turned into
Arrow chunk by chunk (`to_arrow`, which isolates the values that cannot become their
column's type), and rebuilt from Arrow with the saved schema (`to_pandas`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Hashable
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import conversion
from .conversion import (
    Unequal,
    bool_array,
    check_zone,
    ints_as_floats,
    json_keys_exact,
    takes_as_is,
    temporal_array,
)
from .dtypes import _MASKED, NUMPY_KINDS, DtypeTools
from .errors import SchemaMismatchError, UnsupportedDtypeError
from .failures import Failures, bisect, required, unconvertible, unequal
from .schema import INDEX_PREFIX, Column, TableSchema
from .zones import of_spec as _zone_of
from .zones import timestamp_spec as _timestamp_spec

_CONVERT_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError, decimal.InvalidOperation)


def _arrow_kind(t: pa.DataType) -> str:
    """The portable field type of an Arrow type."""
    if pa.types.is_integer(t):
        return str(t)
    if pa.types.is_floating(t):
        return {16: "float16", 32: "float32", 64: "float64"}[t.bit_width]
    checks = [
        (pa.types.is_boolean, "bool"),
        (pa.types.is_string, "string"),
        (pa.types.is_large_string, "string"),
        (pa.types.is_timestamp, "datetime"),
        (pa.types.is_duration, "timedelta"),
        (pa.types.is_date, "date"),
        (pa.types.is_decimal, "decimal"),
        (pa.types.is_binary, "bytes"),
        (pa.types.is_large_binary, "bytes"),
    ]
    for check, kind in checks:
        if check(t):
            return kind
    return "json" if pa.types.is_nested(t) else str(t)


def is_default_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.name is None and index.start == 0 and index.step == 1


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")


class TypeMapper(DtypeTools):
    """Maps pandas dtypes to field types and Arrow types, and back, without changing a value."""

    # -- describing a frame --------------------------------------------------------
    def schema(self, df: pd.DataFrame, key: list[str] | None = None) -> TableSchema:
        """Describe `df` (columns, then index levels unless the index is the default range)."""
        labels = list(df.columns)
        if len(set(map(str, labels))) != len(labels):
            dup = sorted({str(x) for x in labels if list(map(str, labels)).count(str(x)) > 1})
            raise SchemaMismatchError(f"column names must be unique; repeated: {dup}")
        cols = []
        for label in labels:
            if not isinstance(label, (str, int)) or isinstance(label, bool):
                raise UnsupportedDtypeError(
                    f"column label {label!r} ({type(label).__name__}): only str and int labels can be stored"
                )
            cols.append(self.describe(df[label], str(label), label=None if isinstance(label, str) else label))
        index_names = []
        if not is_default_index(df.index):
            index_names = list(df.index.names)
            for i, name in enumerate(index_names):
                sname = str(name) if name is not None else f"{INDEX_PREFIX}{i}__"
                if sname in {c.name for c in cols}:
                    if key and sname in key and name in df.columns:
                        raise SchemaMismatchError(f"{sname!r} is both a column and an index level")
                    raise SchemaMismatchError(
                        f"index level {sname!r} has the same name as a column; rename one of them"
                    )
                level = pd.Series(df.index.get_level_values(i), index=pd.RangeIndex(len(df)))
                label = None if name is None or isinstance(name, str) else name
                cols.append(_with_freq(self.describe(level, sname, label=label, index=True), df.index))
        if key:
            cols = [
                Column(c.name, c.kind, c.arrow, False, c.dtype, c.label, c.index) if c.name in key else c for c in cols
            ]
        return TableSchema(columns=cols, key=list(key) if key else None, index_names=index_names)

    def describe(self, s: pd.Series, name: str, label=None, index: bool = False) -> Column:
        """The stored Column for one Series."""
        d = s.dtype
        if isinstance(d, pd.CategoricalDtype):
            cats = d.categories
            inner = self.describe(pd.Series(cats), name)
            if inner.kind not in NUMPY_KINDS | {"string", "datetime", "timedelta"}:
                raise UnsupportedDtypeError(f"column {name!r}: categories of {cats.dtype} are not supported")
            spec = {
                "name": "category",
                "ordered": bool(d.ordered),
                "categories": _jsonable(cats),
                "categories_dtype": inner.dtype,
            }
            return Column(name, "category", inner.arrow, True, spec, label, index)
        if isinstance(d, pd.ArrowDtype):
            t = d.pyarrow_dtype
            return Column(name, _arrow_kind(t), t, True, {"name": str(d), "arrow": True}, label, index)
        if isinstance(d, pd.StringDtype):
            na = "nan" if _is_nan(d.na_value) else "NA"
            spec = {"name": "string", "storage": d.storage, "na": na}
            return Column(name, "string", pa.large_string(), True, spec, label, index)
        if isinstance(d, pd.DatetimeTZDtype) or d.kind == "M":
            unit = np.datetime_data(d.base if hasattr(d, "base") else d)[0] if d.kind == "M" else d.unit
            if not isinstance(d, pd.DatetimeTZDtype):
                return Column(name, "datetime", pa.timestamp(unit), True, {"name": str(d)}, label, index)
            # the zone as every store and Arrow read it back, and the record of the exact pandas zone
            tz, spec = _timestamp_spec(d.tz, unit, name)
            return Column(name, "datetime", pa.timestamp(unit, tz=tz), True, spec, label, index)
        if d.kind == "m":
            unit = np.datetime_data(d)[0]
            return Column(name, "timedelta", pa.duration(unit), True, {"name": str(d)}, label, index)
        if str(d) in _MASKED:
            kind = _MASKED[str(d)]
            return Column(name, kind, pa.from_numpy_dtype(d.numpy_dtype), True, {"name": str(d)}, label, index)
        if d.kind in "biuf":
            nullable = d.kind == "f"
            return Column(name, str(d), pa.from_numpy_dtype(d), nullable, {"name": str(d)}, label, index)
        if d == np.dtype(object):
            kind = self._object_kind(s, name)
            arrow = {
                "string": pa.large_string(),
                "json": pa.large_string(),
                "null": pa.large_string(),
                "bytes": pa.binary(),
                "date": pa.date32(),
            }.get(kind)
            if kind == "decimal":
                arrow = _decimal_type(s, name)
            na = "nan" if any(isinstance(v, float) and math.isnan(v) for v in s[s.isna()].head(1000)) else "none"
            return Column(name, kind, arrow, True, {"name": "object", "na": na}, label, index)
        raise UnsupportedDtypeError(
            f"column {name!r} has dtype {d}, which cannot be stored; convert it first "
            f"(for example with .astype(str) or .astype('float64'))"
        )

    def _object_kind(self, s: pd.Series, name: str) -> str:
        inferred = pd.api.types.infer_dtype(s, skipna=True)
        if inferred == "empty":
            return "null"
        if inferred in ("string", "decimal", "bytes", "date"):
            return inferred
        values = s[s.notna()]
        ok = (list, dict, str, int, float, bool, np.integer, np.floating, np.bool_)
        if all(isinstance(v, ok) for v in values):
            return "json"
        bad = next(v for v in values if not isinstance(v, ok))
        raise UnsupportedDtypeError(
            f"column {name!r} is an object column holding {type(bad).__name__} values ({bad!r}); "
            f"object columns can hold str, Decimal, bytes, datetime.date or JSON-like list/dict values"
            + ("; use pd.to_datetime for datetimes" if isinstance(bad, dt.datetime) else "")
        )

    def fit(
        self, df: pd.DataFrame, existing: TableSchema, table: str, new_columns: str = "fail"
    ) -> tuple[TableSchema, bool, list[Column]]:
        """Check the columns of `df` against a stored schema; return the schema the write needs
        (unordered categories grown by the frame's new ones; with new_columns="add", the frame's new
        columns after the stored ones), whether it differs from `existing`, and the added columns.

        An added column of a dtype that cannot hold a missing value (int64, bool, ...) gets its
        nullable counterpart (Int64, boolean, ...): the rows already stored have no value in it."""
        stored = {c.name for c in existing.columns}
        extra = [label for label in df.columns if str(label) not in stored]
        if extra and new_columns != "add":
            raise SchemaMismatchError(
                f"column(s) {extra} are not in table {table!r} (columns: "
                f"{[c.pandas_label for c in existing.data_columns]}); pass new_columns='add' to add them, "
                f"drop them, or save with if_exists='replace'"
            )
        labels = {str(label): label for label in df.columns}
        schema, changed = existing, False
        added = [
            _nullable(self.describe(df[label], str(label), label=None if isinstance(label, str) else label))
            for label in extra
        ]
        if added:
            data, index = existing.data_columns, existing.index_columns
            schema, changed = replace(existing, columns=data + added + index), True
        for col in existing.data_columns:
            if col.name not in labels:
                continue
            s = df[labels[col.name]]
            if col.kind == "null" and s.notna().any():  # saved with no values: the first ones decide its kind
                typed = self._first_values(s, col, table)
                schema, changed = schema.with_column(typed), True
            elif col.kind == "category" and not col.dtype["ordered"]:
                grown = _grow_categories(s, col)
                if grown is not None:
                    schema, changed = schema.with_column(grown), True
        return schema, changed, added

    def _first_values(self, s: pd.Series, col: Column, table: str) -> Column:
        """A column saved with only missing values (stored as text) takes the kind of its first values,
        when text holds them; else the frame cannot be written into it."""
        new = self.describe(s, col.name, label=col.label, index=col.index)
        if new.arrow != col.arrow or new.kind not in ("string", "json"):
            raise SchemaMismatchError(
                f"column {col.pandas_label!r} of table {table!r} was saved with no values (as text) and cannot "
                f"hold the frame's {s.dtype} values; save the table again with if_exists='replace'"
            )
        return Column(col.name, new.kind, col.arrow, col.nullable, col.dtype, col.label, col.index)

    # -- pandas -> Arrow ---------------------------------------------------------------
    def to_arrow(
        self, df: pd.DataFrame, schema: TableSchema, with_index: bool = True, dictionary: bool = False
    ) -> tuple[pa.Table, Failures]:
        """Convert the columns of `df` that `schema` holds; rows that cannot convert are left out.

        with_index=False leaves out unnamed index levels (a default range index says nothing
        about rows being updated). Returns the Arrow table of the good rows (schema order, only
        the columns present in `df`) and {position in df: RowFailure} for the others.

        dictionary=True (for backends with `accepts_dictionary`): a Categorical column of a category
        column that is not part of the key stays an Arrow dictionary array (the frame's categories, as
        the column's Arrow type, and their codes) instead of being expanded to its values.
        """
        failures: Failures = {}
        rows = np.arange(len(df))
        while True:  # the rows left after each pass convert again: a value may fail only beside others
            if not len(rows):
                cols = [c for c, _ in self._series_for(df, schema, with_index)]
                return pa.schema([c.field for c in cols]).empty_table(), failures
            part = df if len(rows) == len(df) else df.iloc[rows]
            table, more = self._to_arrow(part, schema, with_index, dictionary)
            if not more:
                return table, failures
            for pos, f in more.items():
                failures.setdefault(int(rows[pos]), f)
            rows = np.delete(rows, np.fromiter(more, dtype=np.int64))

    def _to_arrow(
        self, df: pd.DataFrame, schema: TableSchema, with_index: bool, dictionary: bool
    ) -> tuple[pa.Table, Failures]:
        """One pass of to_arrow: the table when every row converts, else the failures (positions in `df`)."""
        series = self._series_for(df, schema, with_index)
        failures: Failures = {}
        arrays = {}
        coded = {c.name for c, s in series if dictionary and _keeps_dictionary(s, c, schema)}
        for col, s in series:
            try:
                arrays[col.name] = self._convert(s, col, col.name in coded)
            except Unequal as e:  # the rows at fault are known at once: no halving
                values = s.reset_index(drop=True)
                for at in np.flatnonzero(e.mask).tolist():
                    failures.setdefault(at, unequal(col.name, col.kind, values.iloc[at], e.reason))
            except _CONVERT_ERRORS:
                parts, bad = self._isolate(s.reset_index(drop=True), col, col.name in coded)
                if not bad:  # every value converts alone (e.g. floats mixed with numeric strings)
                    arrays[col.name] = pa.concat_arrays(parts) if parts else pa.array([], type=col.arrow)
                for pos, f in bad.items():
                    failures.setdefault(pos, f)
        for col, _ in series:  # values a required column lacks
            arr = arrays.get(col.name)
            if not col.nullable and arr is not None and arr.null_count:
                for null in np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)):
                    failures.setdefault(int(null), required(col.name))
        cols = [c for c, _ in series]
        if failures:
            return pa.schema([c.field for c in cols]).empty_table(), failures
        fields = [c.field.with_type(arrays[c.name].type) if c.name in coded else c.field for c in cols]
        return pa.table([arrays[c.name] for c in cols], schema=pa.schema(fields)), {}

    def _series_for(self, df: pd.DataFrame, schema: TableSchema, with_index: bool) -> list[tuple[Column, pd.Series]]:
        by_name = {str(label): label for label in df.columns}
        out = []
        index_levels = {}  # a named level stands for a column of that name too (a key kept as the index)
        for i, name in enumerate(df.index.names):
            if name is not None or (with_index and schema.index_columns):
                index_levels[str(name) if name is not None else f"{INDEX_PREFIX}{i}__"] = i
        for col in schema.columns:
            if col.name in by_name and not (col.index and col.name in index_levels):
                s = df[by_name[col.name]]
            elif col.name in index_levels:
                s = pd.Series(df.index.get_level_values(index_levels[col.name]), index=df.index)
            else:
                continue
            out.append((col, s))
        return out

    def _convert(self, s: pd.Series, col: Column, coded: bool = False) -> pa.Array:
        """One Series to an Arrow array of the column's logical type; raises when a value does not fit, and
        Unequal for the values that would be stored as another value (conversion.py, the rules).

        coded=True: a Categorical stays a dictionary array, its dictionary (the categories) of that type."""
        t = col.arrow
        check_zone(s, t)
        if isinstance(s.dtype, pd.CategoricalDtype) and not takes_as_is(s, t):
            s, coded = s.astype(object), False  # categories of another type: value by value, by the rules
        if not coded and not isinstance(s.dtype, pd.CategoricalDtype) and not takes_as_is(s, t):
            missing = s.isna().to_numpy()
            if missing.any():  # a missing value of another dtype (NaN of floats, <NA>) is missing in any column
                return _scattered(missing, lambda: self._convert(s[~missing], col), t)
            if pa.types.is_boolean(t):
                return bool_array(s)  # 0/1 and true/false text only: Arrow would take 2 for True
            if pa.types.is_timestamp(t) or pa.types.is_duration(t):
                return temporal_array(s, t)  # no number is a timestamp, no digit or zone is dropped
        arr = self._arrow_of(s, col, coded)
        conversion.check(s, col, arr)
        return arr

    def _arrow_of(self, s: pd.Series, col: Column, coded: bool) -> pa.Array:
        t = col.arrow
        if isinstance(s.dtype, pd.CategoricalDtype):
            if col.kind == "category" and col.dtype["ordered"]:
                self._check_ordered(s, col)
            try:  # through Arrow's dictionary: no Python objects per value
                arr = pa.array(s, from_pandas=True)
                if coded:
                    if arr.dictionary.type == t:
                        return arr
                    return pa.DictionaryArray.from_arrays(
                        arr.indices, _cast(arr.dictionary, t), ordered=arr.type.ordered
                    )
                return _cast(arr.dictionary_decode(), t)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                s = s.astype(object)
        elif col.kind == "category" and col.dtype["ordered"]:
            self._check_ordered(s, col)
        if col.kind == "json" and pa.types.is_large_string(t):  # object values as JSON text
            values = s.tolist()
            na = s.isna().to_numpy() if len(s) else np.zeros(0, dtype=bool)
            keyed = np.fromiter((json_keys_exact(v) for v in values), dtype=bool, count=len(values))
            if not keyed.all():
                raise Unequal(~keyed, "JSON keys are text: a dict with other keys would read back changed")
            vals = [None if m else json.dumps(v, default=_json_default) for v, m in zip(values, na)]
            return pa.array(vals, type=t)
        if s.dtype == object and col.kind in NUMPY_KINDS | {"datetime", "timedelta"}:
            arr = pa.array(s, from_pandas=True)
            if pa.types.is_floating(t) and pa.types.is_integer(arr.type):
                return ints_as_floats(arr, t)
            return _cast(arr, t)
        if isinstance(s.dtype, pd.ArrowDtype):
            arr = pa.chunked_array(s.array.__arrow_array__()).combine_chunks()
            return arr if arr.type == t else _cast(arr, t)
        if pa.types.is_floating(t) and s.dtype.kind in "iu":
            return ints_as_floats(pa.array(s, from_pandas=True), t)
        try:
            arr = pa.array(s, type=t, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arr = _cast(pa.array(s, from_pandas=True), t)
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr

    def _check_ordered(self, s: pd.Series, col: Column):
        cats = _categories(col.dtype)[0]  # in their own dtype: datetimes are saved as text
        vals = s.dropna()
        bad = ~pd.Index(vals.astype(object), dtype=object).isin(cats.astype(object))
        if bad.any():
            raise ValueError(f"{vals[bad].iloc[0]!r} is not one of the categories of ordered column {col.name!r}")

    def _isolate(self, s: pd.Series, col: Column, coded: bool = False) -> tuple[list[pa.Array], Failures]:
        """Find the values of `s` that do not convert, by halving: O(k log n) conversions.

        Returns the converted parts in order (the whole column when nothing failed) and the failures."""
        parts: list[pa.Array] = []
        out: Failures = {}

        def failed(i: int, e: Exception) -> None:
            out[i] = unconvertible(col.name, col.kind, s.iloc[i], e)

        bisect(len(s), lambda lo, hi: parts.append(self._convert(s.iloc[lo:hi], col, coded)), failed, _CONVERT_ERRORS)
        return parts, out

    # -- Arrow -> pandas ---------------------------------------------------------------
    def to_pandas(self, table: pa.Table, schema: TableSchema) -> pd.DataFrame:
        """Rebuild the frame: dtypes, column order, labels and index exactly as saved."""
        data, index = {}, []
        present = set(table.column_names)
        for col in schema.columns:
            if col.name not in present:
                continue
            values = self.array_to_pandas(table.column(col.name), col)
            if col.index:
                index.append((col, values))
            else:
                data[col.pandas_label] = values
        n = table.num_rows
        if index:
            names = [
                schema.index_names[int(c.name[len(INDEX_PREFIX) : -2])]
                if c.name.startswith(INDEX_PREFIX)
                else c.pandas_label
                for c, _ in index
            ]
            if len(index) == 1:
                idx = _index(index[0][1], names[0], index[0][0])
            else:
                idx = pd.MultiIndex.from_arrays([v for _, v in index], names=names)
        else:
            idx = pd.RangeIndex(n)
        # Series with explicit dtypes: the DataFrame constructor would infer str from object arrays. copy=False:
        # every column is already a fresh array of its own, so the frame keeps them as they are instead of
        # stacking the columns of each dtype into one block (a second copy of every number).
        columns = {
            label: pd.Series(_writable(v), index=idx, dtype=getattr(v, "dtype", None), copy=False)
            for label, v in data.items()
        }
        return pd.DataFrame(columns, index=idx, copy=False) if columns else pd.DataFrame(index=idx)

    def array_to_pandas(self, arr: pa.ChunkedArray | pa.Array, col: Column):
        """One Arrow column to a pandas array of the saved dtype."""
        if isinstance(arr, pa.Array):
            arr = pa.chunked_array([arr], type=arr.type)
        spec = col.dtype
        name = spec["name"]
        if name == "category" and pa.types.is_dictionary(arr.type):
            return self._categories_of_dictionary(arr, col)
        if arr.type != col.arrow:
            arr = arr.cast(col.arrow)
        if spec.get("arrow"):
            return pd.arrays.ArrowExtensionArray(arr)
        if name == "category":
            cats, dtype = _categories(spec)
            value_set = pa.array(cats, from_pandas=True).cast(arr.type)
            codes = pc.index_in(arr, value_set=value_set).fill_null(-1).to_numpy()
            return pd.Categorical.from_codes(codes.astype(np.int32, copy=False), dtype=dtype)
        if name == "string":
            return _string_dtype(spec).__from_arrow__(arr)
        if name == "object":
            return self._object_values(arr, col)
        dtype = _pandas_dtype(spec)
        if name in _MASKED:
            return dtype.__from_arrow__(arr)
        if col.kind in NUMPY_KINDS:
            return arr.to_numpy().astype(dtype, copy=False)
        if isinstance(dtype, pd.DatetimeTZDtype) and len(arr):
            # the instants in UTC, then the saved zone: the zone comes from the dk schema, never from Arrow's
            # tz string (a table saved before zone records holds str(tz) there, which neither reads back)
            utc = arr.cast(pa.timestamp(arr.type.unit, "UTC")).to_pandas()
            return pd.array(utc.dt.tz_convert(dtype.tz), dtype=dtype)
        return pd.array(arr.to_pandas(), dtype=dtype) if len(arr) else pd.array([], dtype=dtype)

    def _categories_of_dictionary(self, arr: pa.ChunkedArray, col: Column) -> pd.Categorical:
        """A dictionary-encoded category column: each chunk's dictionary (small) is matched against the
        saved categories once, and its indices pick the codes; a value not among them, or missing, is -1."""
        cats, dtype = _categories(col.dtype)
        value_set = pa.array(cats, from_pandas=True).cast(col.arrow)
        codes = np.empty(len(arr), dtype=np.int32)
        at = 0
        for chunk in arr.chunks:
            n = len(chunk)
            if n == 0:
                continue
            found = pc.index_in(_cast(chunk.dictionary, col.arrow), value_set=value_set).fill_null(-1)
            picked = pc.take(found, chunk.indices)
            codes[at : at + n] = (picked.fill_null(-1) if picked.null_count else picked).to_numpy()
            at += n
        return pd.Categorical.from_codes(codes, dtype=dtype)

    def _object_values(self, arr: pa.ChunkedArray, col: Column) -> np.ndarray:
        na = np.nan if col.dtype.get("na") == "nan" else None
        if col.kind == "json":
            vals = [na if v is None else json.loads(v) for v in arr.to_pylist()]
        elif col.kind == "null":  # saved without values; text another writer put there still shows
            vals = arr.to_pylist()
        elif col.kind == "date":
            vals = arr.to_pandas(date_as_object=True).tolist()
        else:  # to_pylist: pandas 3 would make str-dtype NaN of missing strings
            vals = arr.to_pylist()
        out = np.empty(len(vals), dtype=object)
        out[:] = vals
        if na is not None:
            out[pd.isna(out)] = na
        return out


# -- helpers -------------------------------------------------------------------------------


def _scattered(missing: np.ndarray, convert, t: pa.DataType) -> pa.Array:
    """The column with nulls where `missing`, the other values by `convert()` (of those values alone); an
    Unequal of those values marks their positions in the whole column."""
    if missing.all():
        return pa.nulls(len(missing), t)
    present = np.flatnonzero(~missing)
    try:
        part = convert()
    except Unequal as e:
        mask = np.zeros(len(missing), dtype=bool)
        mask[present[e.mask]] = True
        raise Unequal(mask, e.reason) from e
    at = np.cumsum(~missing) - 1
    return pc.take(part, pa.array(at, type=pa.int64(), mask=missing))


def _writable(values):
    """`values`, copied when its NumPy buffer is a read-only view of Arrow memory (a frame's columns can be set)."""
    bufs: list
    if isinstance(values, np.ndarray):
        bufs = [values]
    elif isinstance(values, (pd.arrays.IntegerArray, pd.arrays.FloatingArray, pd.arrays.BooleanArray)):
        bufs = [values._data, values._mask]  # NumPy values and mask
    else:  # datetimes, durations: a NumPy array inside; Arrow-backed arrays are never written in place
        bufs = [getattr(values, "_ndarray", None)]
    if any(isinstance(b, np.ndarray) and not b.flags.writeable for b in bufs):
        return values.copy()
    return values


def _keeps_dictionary(s: pd.Series, col: Column, schema: TableSchema) -> bool:
    """A Categorical of a category column outside the key: it can cross to the backend as a dictionary."""
    return col.kind == "category" and isinstance(s.dtype, pd.CategoricalDtype) and col.name not in (schema.key or ())


def _categories(spec: dict) -> tuple[pd.Index, pd.CategoricalDtype]:
    """The saved categories, in their dtype, and the CategoricalDtype of the column."""
    cats = pd.Index(spec["categories"]).astype(_pandas_dtype(spec["categories_dtype"]))
    return cats, pd.CategoricalDtype(cats, ordered=spec["ordered"])


def _cast(arr, t: pa.DataType):
    return arr if arr.type == t else pc.cast(arr, t, safe=True)


def _is_nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _jsonable(index: pd.Index) -> list:
    if index.dtype.kind in "Mm":
        return [str(v) for v in index.astype(str)]
    return [v.item() if isinstance(v, np.generic) else v for v in index.tolist()]


def _decimal_type(s: pd.Series, name: str) -> pa.DataType:
    try:
        inferred = pa.array(s, from_pandas=True).type
    except (pa.ArrowException, ValueError) as e:
        raise UnsupportedDtypeError(f"column {name!r}: decimal values cannot be stored: {e}") from e
    scale = inferred.scale
    if inferred.precision - scale > 38 - scale or scale > 38:
        return pa.decimal256(76, scale)
    return pa.decimal128(38, scale)


def _string_dtype(spec: dict) -> pd.StringDtype:
    storage, na = spec.get("storage", "python"), spec.get("na", "NA")
    try:
        return pd.StringDtype(storage, na_value=np.nan if na == "nan" else pd.NA)
    except TypeError:  # pandas 2.2: no na_value; NaN-semantics strings are "pyarrow_numpy"
        if na == "nan":
            return pd.StringDtype("pyarrow_numpy" if storage in ("pyarrow", "pyarrow_numpy") else "python")
        return pd.StringDtype("pyarrow" if storage == "pyarrow_numpy" else storage)


def _pandas_dtype(spec: dict):
    name = spec["name"]
    if name == "string":
        return _string_dtype(spec)
    if name == "object":
        return np.dtype(object)
    if name.startswith("datetime64[") and ", " in name:  # tz-aware: the zone from its record (zones.py)
        return pd.DatetimeTZDtype(name[len("datetime64[") :].split(",", 1)[0], _zone_of(spec))
    return pd.api.types.pandas_dtype(name)


def _with_freq(col: Column, index: pd.Index) -> Column:
    """The column of a DatetimeIndex or TimedeltaIndex with its freq in the spec ("W-SAT", "h"), when the freq's
    name gives it back (a custom business day's holidays do not)."""
    freq = getattr(index, "freq", None) if isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)) else None
    if freq is None:
        return col
    try:
        same = pd.tseries.frequencies.to_offset(freq.freqstr) == freq
    except (ValueError, TypeError):
        same = False
    return replace(col, dtype={**col.dtype, "freq": freq.freqstr}) if same else col


def _index(values, name, col: Column) -> pd.Index:
    """A one-level index: with the freq it was saved with while the values read still fit it (a filtered,
    limited or reordered read may not: then none)."""
    freq = col.dtype.get("freq")
    if freq is not None and col.kind in ("datetime", "timedelta"):
        cls = pd.DatetimeIndex if col.kind == "datetime" else pd.TimedeltaIndex
        try:
            return cls(values, name=name, freq=freq)
        except (ValueError, TypeError):
            pass
    return pd.Index(values, name=name)


_NULLABLE = {
    "int8": "Int8",
    "int16": "Int16",
    "int32": "Int32",
    "int64": "Int64",
    "uint8": "UInt8",
    "uint16": "UInt16",
    "uint32": "UInt32",
    "uint64": "UInt64",
    "bool": "boolean",
}


def _nullable(col: Column) -> Column:
    """The column able to hold a missing value: numpy ints and bools become their nullable dtypes."""
    name = col.dtype.get("name")
    spec = dict(col.dtype, name=_NULLABLE[name]) if name in _NULLABLE else col.dtype
    return Column(col.name, col.kind, col.arrow, True, spec, col.label, col.index)


def _same_family(values: pd.Index, dtype) -> bool:
    """Whether `values` are of the kind of a category column's categories (strings, numbers or timestamps)."""
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred == "empty":
        return True
    if isinstance(dtype, pd.StringDtype) or dtype == np.dtype(object):
        return inferred == "string"
    if dtype.kind in "iu":
        return inferred == "integer"
    if dtype.kind == "f":
        return inferred in ("integer", "floating", "mixed-integer-float")
    if dtype.kind in "Mm":
        return inferred in ("datetime64", "datetime", "timedelta64", "timedelta")
    return True


def _grow_categories(s: pd.Series, col: Column) -> Column | None:
    """The column with the frame's new categories appended to the stored ones (None when none are new). Only
    values of the categories' own type that it holds exactly become categories: the others fail their rows
    (conversion.py), and never make the stored categories unreadable."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        candidates = list(s.cat.categories)
    else:
        candidates = list(dict.fromkeys(v for v in s.dropna().tolist() if isinstance(v, Hashable)))
    known = _categories(col.dtype)[0]  # in their own dtype: timestamps are saved as text
    new = []
    for v in candidates:
        one = pd.Index([v])
        if not _same_family(one, known.dtype):
            continue
        try:
            typed = one.astype(known.dtype)
            if not (typed.astype(object)[0] == v) or typed.isin(known)[0] or typed[0] in new:
                continue
        except (TypeError, ValueError, OverflowError):
            continue
        new.append(typed[0])
    if not new:
        return None
    spec = dict(col.dtype, categories=col.dtype["categories"] + _jsonable(pd.Index(new, dtype=known.dtype)))
    return Column(col.name, col.kind, col.arrow, col.nullable, spec, col.label, col.index)
