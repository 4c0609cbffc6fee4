"""Arrow -> pandas: a frame rebuilt from Arrow with its saved schema (dtypes, labels, column order and index,
exactly as saved). Mixed into TypeMapper."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .dtype_specs import categories, pandas_dtype, string_dtype
from .dtypes import _MASKED, NUMPY_KINDS
from .schema import INDEX_PREFIX, Column, TableSchema


class ToPandas:
    """TypeMapper's conversion of Arrow tables to frames."""

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
            cats, dtype = categories(spec)
            value_set = pa.array(cats, from_pandas=True).cast(arr.type)
            codes = pc.index_in(arr, value_set=value_set).fill_null(-1).to_numpy()
            return pd.Categorical.from_codes(codes.astype(np.int32, copy=False), dtype=dtype)
        if name == "string":
            return string_dtype(spec).__from_arrow__(arr)
        if name == "object":
            return self._object_values(arr, col)
        dtype = pandas_dtype(spec)
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
        cats, dtype = categories(col.dtype)
        value_set = pa.array(cats, from_pandas=True).cast(col.arrow)
        codes = np.empty(len(arr), dtype=np.int32)
        at = 0
        for chunk in arr.chunks:
            n = len(chunk)
            if n == 0:
                continue
            dictionary = chunk.dictionary
            if dictionary.type != col.arrow:
                dictionary = pc.cast(dictionary, col.arrow, safe=True)
            found = pc.index_in(dictionary, value_set=value_set).fill_null(-1)
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
