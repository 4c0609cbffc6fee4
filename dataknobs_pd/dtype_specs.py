"""The pandas dtype a dtype spec of the dk schema names: strings (their storage and missing value), tz-aware
datetimes (the zone from its record, zones.py), the categories of a category column."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .zones import of_spec as _zone_of


def pandas_dtype(spec: dict):
    """The pandas dtype of a column's saved spec."""
    name = spec["name"]
    if name == "string":
        return string_dtype(spec)
    if name == "object":
        return np.dtype(object)
    if name.startswith("datetime64[") and ", " in name:  # tz-aware: the zone from its record (zones.py)
        return pd.DatetimeTZDtype(name[len("datetime64[") :].split(",", 1)[0], _zone_of(spec))
    return pd.api.types.pandas_dtype(name)


def string_dtype(spec: dict) -> pd.StringDtype:
    """The StringDtype of a string column's spec, in the pandas at hand."""
    storage, na = spec.get("storage", "python"), spec.get("na", "NA")
    try:
        return pd.StringDtype(storage, na_value=np.nan if na == "nan" else pd.NA)
    except TypeError:  # pandas 2.2: no na_value; NaN-semantics strings are "pyarrow_numpy"
        if na == "nan":
            return pd.StringDtype("pyarrow_numpy" if storage in ("pyarrow", "pyarrow_numpy") else "python")
        return pd.StringDtype("pyarrow" if storage == "pyarrow_numpy" else storage)


def categories(spec: dict) -> tuple[pd.Index, pd.CategoricalDtype]:
    """The saved categories, in their dtype, and the CategoricalDtype of the column."""
    cats = pd.Index(spec["categories"]).astype(pandas_dtype(spec["categories_dtype"]))
    return cats, pd.CategoricalDtype(cats, ordered=spec["ordered"])
