"""One example of the property-based contract (PropertyContract): the `Case` (the base frame and the table
kinds of its columns, the call, the frame it sends) and the Python that remakes it, which a counterexample
shows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


def id_frame(ids: list[int], columns: dict[str, pd.Series]) -> pd.DataFrame:
    """A frame of an `id` key (int64) and `columns`."""
    data = {"id": pd.Series(ids, dtype="int64")}
    data.update({k: v.reset_index(drop=True) for k, v in columns.items()})
    return pd.DataFrame(data)


def _value_code(v: Any) -> str:
    """One value as Python (with pd, np, datetime, zoneinfo and decimal's Decimal imported)."""
    if v is pd.NA:
        return "pd.NA"
    if v is pd.NaT:
        return "pd.NaT"
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return "np.nan" if math.isnan(v) else ("np.inf" if v > 0 else "-np.inf")
    if isinstance(v, pd.Timestamp):
        if v.tz is None:
            return f"pd.Timestamp({v.isoformat()!r}).as_unit({v.unit!r})"
        utc = v.tz_convert("UTC").tz_localize(None).isoformat()
        return f"pd.Timestamp({utc!r}, tz='UTC').tz_convert({str(v.tz)!r}).as_unit({v.unit!r})"
    if isinstance(v, pd.Timedelta):
        return f"pd.Timedelta(np.timedelta64({int(v.to_timedelta64().astype(np.int64))}, {v.unit!r}))"
    if isinstance(v, list):
        return "[" + ", ".join(map(_value_code, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_value_code(k)}: {_value_code(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _dtype_code(dtype: Any) -> str:
    """A dtype's name, with the storage of pandas' string dtypes (pandas 2.2 names both kinds "string")."""
    if isinstance(dtype, pd.StringDtype) and dtype.na_value is pd.NA:
        return f"string[{dtype.storage}]"
    return str(dtype)


def _series_code(s: pd.Series) -> tuple[str, str]:
    """A Series as the Python that makes it, and a comment showing its values when the code does not."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = _series_code(pd.Series(s.cat.categories))[0]
        return f"pd.Categorical({_value_code(s.tolist())}, categories=pd.Index({cats}), ordered={s.cat.ordered})", ""
    if s.dtype.kind in "Mm":  # ticks of its unit: exact beyond the range of nanoseconds too
        unit = np.datetime_data(s.dtype.base if hasattr(s.dtype, "base") else s.dtype)[0]
        kind = "datetime64" if s.dtype.kind == "M" else "timedelta64"
        zone = getattr(s.dtype, "tz", None)
        raw = (s.dt.tz_convert("UTC").dt.tz_localize(None) if zone else s).to_numpy().astype(np.int64)
        vals = "[" + ", ".join("'NaT'" if m else str(int(t)) for t, m in zip(raw, s.isna())) + "]"
        text = f"pd.Series(np.array({vals}, dtype='{kind}[{unit}]'))"
        if zone:
            text += f".dt.tz_localize('UTC').dt.tz_convert({str(zone)!r})"
        return text, ""  # no s.tolist(): pandas 2.2 crashes iterating s/ms timestamps beyond the ns range
    return f"pd.Series({_value_code(s.tolist())}, dtype={_dtype_code(s.dtype)!r})", ""


def _code(df: pd.DataFrame) -> str:
    """The frame as the Python that makes it (what a counterexample shows)."""
    cols = []
    for c in df.columns:
        text, comment = _series_code(df[c].reset_index(drop=True))
        cols.append(f"    {c!r}: {text},{comment}")
    return "pd.DataFrame({\n" + "\n".join(cols) + "\n})"


@dataclass
class Case:
    """One example: the base frame and the table kinds of its columns, the call, the frame it sends."""

    base: pd.DataFrame
    kinds: dict[str, str]
    mode: str
    frame: pd.DataFrame
    hows: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        call = {
            "append": 'frame.dk.save(store, "t", if_exists="append")',
            "upsert": 'frame.dk.save(store, "t", if_exists="upsert")',
            "replace": 'frame.dk.save(store, "t", if_exists="replace")',
            "update": 'frame.dk.update_batch(store, "t")',
            "update_insert": 'frame.dk.update_batch(store, "t", insert_missing=True)',
        }[self.mode]
        return (
            "import datetime, zoneinfo, numpy as np, pandas as pd; from decimal import Decimal\n"
            f"base = {_code(self.base)}\nbase.dk.save(store, 't')\nframe = {_code(self.frame)}\n{call}"
            f"\n# kinds {self.kinds}, sent {self.hows}"
        )
