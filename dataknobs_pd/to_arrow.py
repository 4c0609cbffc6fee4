"""pandas -> Arrow: a frame's columns converted to their stored Arrow types, chunk by chunk, the values that
cannot become their column's type isolated and failed alone (conversion.py, the rules). Mixed into TypeMapper."""

from __future__ import annotations

import decimal
import json

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
from .dtype_specs import categories
from .dtypes import NUMPY_KINDS
from .failures import Failures, bisect, required, unconvertible, unequal
from .schema import INDEX_PREFIX, Column, TableSchema

_CONVERT_ERRORS = (pa.ArrowException, ValueError, TypeError, OverflowError, decimal.InvalidOperation)


class ToArrow:
    """TypeMapper's conversion of frames to Arrow tables."""

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
        cats = categories(col.dtype)[0]  # in their own dtype: datetimes are saved as text
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


def _keeps_dictionary(s: pd.Series, col: Column, schema: TableSchema) -> bool:
    """A Categorical of a category column outside the key: it can cross to the backend as a dictionary."""
    return col.kind == "category" and isinstance(s.dtype, pd.CategoricalDtype) and col.name not in (schema.key or ())


def _cast(arr, t: pa.DataType):
    return arr if arr.type == t else pc.cast(arr, t, safe=True)


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"{type(v).__name__} is not JSON serializable")
