"""Values as sent, as JSON text that holds any of them: the rows a quarantine keeps.

A quarantined row may hold what its table's types cannot (`"x"` in an integer column, a date with a time),
so its values are kept as JSON, readable by any tool, with every value JSON has no form of tagged as a
one-key object `{"$type": text}`: `{"$decimal": "1.234"}`, `{"$bytes": base64}`, `{"$timestamp": iso}`
(nanoseconds, with its zone `{"$timestamp": iso, "tz": name}`), `{"$date": iso}`, `{"$time": iso}`,
`{"$timedelta": nanoseconds}`, `{"$float": "nan" | "inf" | "-inf"}`, `{"$na": "NA" | "NaT"}`,
`{"$tuple": [...]}`, `{"$array": [...]}` (a numpy array), `{"$dict": [[key, value], ...]}` (a dict whose keys
are not all text, or that holds a key starting with "$"), `{"$repr": text}` (anything else: kept as its repr,
read back as that text). The dtypes of the frame the row came in are kept beside it (its dk dtype specs), so
that the rows read back in them.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
from typing import Any

import numpy as np
import pandas as pd

from .dtype_specs import pandas_dtype
from .types import TypeMapper

_mapper = TypeMapper()


def dumps(value: Any) -> str:
    """The JSON text of one value (or of a list of them)."""
    return json.dumps(encode(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def loads(text: str) -> Any:
    return decode(json.loads(text))


def encode(v: Any) -> Any:  # noqa: C901, PLR0911 - one case per kind of value
    """A value in the JSON data model (tagged where JSON has no form of it)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if v is pd.NA:
        return {"$na": "NA"}
    if v is pd.NaT or (isinstance(v, (np.datetime64, np.timedelta64)) and np.isnat(v)):
        return {"$na": "NaT"}
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else {"$float": repr(f)}
    if isinstance(v, decimal.Decimal):
        return {"$decimal": str(v)}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, (pd.Timestamp, dt.datetime, np.datetime64)):
        ts = pd.Timestamp(v)
        if ts.tz is None:
            return {"$timestamp": ts.isoformat()}
        return {"$timestamp": ts.tz_convert("UTC").tz_localize(None).isoformat(), "tz": _zone_name(ts.tz)}
    if isinstance(v, dt.date):
        return {"$date": v.isoformat()}
    if isinstance(v, dt.time):
        return {"$time": v.isoformat()}
    if isinstance(v, (pd.Timedelta, dt.timedelta, np.timedelta64)):
        return {"$timedelta": int(pd.Timedelta(v).value)}
    if isinstance(v, tuple):
        return {"$tuple": [encode(x) for x in v]}
    if isinstance(v, list):
        return [encode(x) for x in v]
    if isinstance(v, np.ndarray):
        return {"$array": [encode(x) for x in v.tolist()]}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: encode(x) for k, x in v.items()}
        return {"$dict": [[encode(k), encode(x)] for k, x in v.items()]}
    return {"$repr": repr(v)}


def decode(v: Any) -> Any:  # noqa: C901, PLR0911 - one case per tag
    if isinstance(v, list):
        return [decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) >= 1:
        tag = next(iter(v))
        if tag.startswith("$"):
            x = v[tag]
            if tag == "$na":
                return pd.NaT if x == "NaT" else pd.NA
            if tag == "$float":
                return float(x)
            if tag == "$decimal":
                return decimal.Decimal(x)
            if tag == "$bytes":
                return base64.b64decode(x)
            if tag == "$timestamp":
                ts = pd.Timestamp(x)
                return ts.tz_localize("UTC").tz_convert(v["tz"]) if "tz" in v else ts
            if tag == "$date":
                return dt.date.fromisoformat(x)
            if tag == "$time":
                return dt.time.fromisoformat(x)
            if tag == "$timedelta":
                return pd.Timedelta(int(x))
            if tag == "$tuple":
                return tuple(decode(y) for y in x)
            if tag == "$array":
                return np.array([decode(y) for y in x])
            if tag == "$dict":
                return {_hashable(decode(k)): decode(y) for k, y in x}
            if tag == "$repr":
                return x
    return {k: decode(x) for k, x in v.items()}


def _hashable(k):
    return tuple(k) if isinstance(k, list) else k


def _zone_name(tz) -> str:
    """A name pandas reads back as the same zone: a zoneinfo/pytz/dateutil key, else the UTC offset."""
    key = getattr(tz, "key", None) or getattr(tz, "zone", None)
    if key:
        return key
    name = str(tz)
    try:
        pd.Timestamp(0, tz=name)
        return name
    except Exception:  # noqa: BLE001 - a fixed offset pandas names as it cannot read ("UTC-05:00")
        off = pd.Timestamp(0, tz=tz).utcoffset() or dt.timedelta(0)
        sign, off = ("-", -off) if off < dt.timedelta(0) else ("+", off)
        h, m = divmod(int(off.total_seconds()) // 60, 60)
        return f"{sign}{h:02d}:{m:02d}"


# -- a frame's rows and dtypes ---------------------------------------------------------------------------------
def row_values(df: pd.DataFrame, positions) -> list[str]:
    """The JSON text of each row at `positions`: a list of its values, in column order."""
    columns = [df.iloc[:, j].iloc[positions].tolist() for j in range(df.shape[1])]
    return [dumps(list(vals)) for vals in zip(*columns)] if columns else [dumps([]) for _ in positions]


def index_values(df: pd.DataFrame, positions) -> list[str]:
    """The JSON text of the index label of each row at `positions` (a tuple's levels as a list)."""
    labels = df.index[positions].tolist()
    return [dumps(list(x) if isinstance(df.index, pd.MultiIndex) else x) for x in labels]


def frame_dtypes(df: pd.DataFrame) -> str:
    """The frame's shape as JSON: its labels and dtype specs, and its index's names and dtype specs."""
    cols = [[label, _spec(df.iloc[:, j])] for j, label in enumerate(df.columns)]
    idx = df.index
    levels = [[name, _spec(pd.Series(idx.get_level_values(i)))] for i, name in enumerate(idx.names)]
    return json.dumps({"columns": cols, "index": levels, "range": isinstance(idx, pd.RangeIndex)}, default=str)


def _spec(s: pd.Series) -> dict:
    try:
        return _mapper.describe(s, "c").dtype
    except Exception:  # noqa: BLE001 - a dtype the stores take no column of: its values as they are
        return {"name": "object"}


def rebuild(values: list[str], index: list[str], dtypes: str) -> pd.DataFrame:
    """The rows written by row_values/index_values, in the frame dtypes that frame_dtypes kept."""
    shape = json.loads(dtypes)
    rows = [loads(v) for v in values]
    labels = [c[0] for c in shape["columns"]]
    data = {}
    for j, (_, spec) in enumerate(shape["columns"]):
        data[j] = _series([r[j] for r in rows], spec)
    out = pd.DataFrame(data)
    out.columns = pd.Index(labels) if labels else out.columns
    levels = [
        _series([_level(loads(x), i, len(shape["index"])) for x in index], spec)
        for i, (_, spec) in enumerate(shape["index"])
    ]
    names = [n for n, _ in shape["index"]]
    if len(levels) == 1:
        out.index = pd.Index(levels[0], name=names[0])
    elif levels:
        out.index = pd.MultiIndex.from_arrays(levels, names=names)
    return out


def _level(label, i: int, n: int):
    return label[i] if n > 1 else label


def _series(values: list, spec: dict) -> pd.Series:
    """The values in the dtype `spec` names, or as objects where that dtype cannot hold them all."""
    s = pd.Series(values, dtype=object)
    try:
        if spec.get("name") == "category":
            from .dtype_specs import categories

            return s.astype(categories(spec)[1])
        dtype = pandas_dtype(spec)
        if dtype == np.dtype(object):
            return s
        return s.astype(dtype)
    except Exception:  # noqa: BLE001 - a value the frame's dtype could not hold cannot have come in it
        return s
