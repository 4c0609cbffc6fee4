"""TypeMapper: pandas dtypes <-> portable field types <-> Arrow, exactly and both ways.

Only TypeMapper knows pandas dtypes. A frame is described once, here (`schema`; `fit` against a stored
schema), turned into Arrow chunk by chunk (`to_arrow`, to_arrow.py: the values that cannot become their
column's type are isolated), and rebuilt from Arrow with the saved schema (`to_pandas`, to_pandas.py).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Hashable
from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa

from .dtype_specs import categories
from .dtypes import _MASKED, NUMPY_KINDS, DtypeTools
from .errors import SchemaMismatchError, UnsupportedDtypeError
from .schema import INDEX_PREFIX, Column, TableSchema
from .to_arrow import ToArrow
from .to_pandas import ToPandas
from .zones import timestamp_spec as _timestamp_spec


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


class TypeMapper(ToArrow, ToPandas, DtypeTools):
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
            nullable(self.describe(df[label], str(label), label=None if isinstance(label, str) else label))
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


# -- helpers -------------------------------------------------------------------------------


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


def nullable(col: Column) -> Column:
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
    known = categories(col.dtype)[0]  # in their own dtype: timestamps are saved as text
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
