"""The oracle of the property-based contract (PropertyContract), written on its own (it does not call the
package's conversion rules): equality as a pandas user means it between a value sent and the value read back
(`user_equal`) and between two values read back (`same`), and what the rules promise to write into a column of
each kind (`promised`; a refusal of it is a bug unless the store cannot hold the value at all)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import numpy as np
import pandas as pd

from .kinds import INT_RANGES, REQUIRED, dtype_parts


def listed(s: pd.Series) -> list:
    """s.tolist(), but zoned timestamps one by one from their UTC instants: pandas 2.2 can crash (a segmentation
    fault) iterating zoned timestamps of a coarse unit far from 1970."""
    zone = getattr(s.dtype, "tz", None)
    if s.dtype.kind != "M" or zone is None:
        return s.tolist()
    naive = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return [pd.NaT if np.isnat(v) else pd.Timestamp(v).tz_localize("UTC").tz_convert(zone) for v in naive]


# -- equality as a pandas user means it (the oracle's own; it does not call the package's rules) --------
def missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, (float, np.floating)):
        return math.isnan(v)
    if isinstance(v, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(v))
    if isinstance(v, decimal.Decimal):
        return v.is_nan()
    return False


def _number(v: Any) -> Any:
    """A number as Python's int, float or Decimal (None for what is no number; a bool is 0 or 1)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float, decimal.Decimal)):
        return v
    return None


def _spelled(text: str) -> Any:
    """The number a string spells (None when it spells none)."""
    try:
        return decimal.Decimal(text.strip().replace("_", "#"))  # no digit separators: "1_000" is no number
    except decimal.InvalidOperation:
        return None


def _numbers_equal(a: Any, b: Any) -> bool:
    if (
        isinstance(a, float)
        and isinstance(b, decimal.Decimal)
        or isinstance(b, float)
        and isinstance(a, decimal.Decimal)
    ):
        a, b = float(a), float(b)  # 0.1 is the decimal 0.10 as a user reads it
    if missing(a) or missing(b):
        return missing(a) and missing(b)
    return bool(a == b)


def _timestamp(v: Any) -> pd.Timestamp | None:
    if isinstance(v, str):
        try:
            return pd.Timestamp(v)
        except (ValueError, TypeError, OverflowError):
            return None
    try:
        if isinstance(v, (dt.datetime, np.datetime64)):
            return pd.Timestamp(v)
        if isinstance(v, dt.date):
            return pd.Timestamp(v)  # midnight
    except (ValueError, OverflowError):  # beyond what a Timestamp holds
        return None
    return None


_TICKS = {"W": 7 * 86400 * 10**9, "D": 86400 * 10**9, "h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9}
_TICKS.update({"ms": 10**6, "us": 10**3, "ns": 1})


def _nanoseconds(v: Any) -> int | None:
    """A duration as a Python int of nanoseconds, exactly and beyond what pandas' Timedelta holds
    (None: no duration)."""
    if isinstance(v, pd.Timedelta):
        v = v.to_timedelta64()  # in its own unit
    if isinstance(v, np.timedelta64):
        unit, count = np.datetime_data(v.dtype)
        return int(v.astype(np.int64)) * count * _TICKS[unit] if unit in _TICKS else None
    if isinstance(v, dt.timedelta):
        return ((v.days * 86400 + v.seconds) * 10**6 + v.microseconds) * 1000
    if isinstance(v, str):  # text that spells a duration ('1h', '0 days') is that duration, as pandas reads it
        try:
            return _nanoseconds(pd.Timedelta(v))
        except (ValueError, TypeError, OverflowError):
            return None
    return None


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.generic):
        a = a.item()
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_json_equal(a[k], b[k]) for k in a)  # as dicts compare: in any order
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, list, tuple)) or isinstance(b, (dict, list, tuple)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _numbers_equal(a, b)
    return type(a) is type(b) and a == b


def user_equal(sent: Any, got: Any) -> bool:
    """Whether the value read back (`got`, in the table's dtype) is the value sent, as a pandas user means."""
    if missing(sent) or missing(got):
        return missing(sent) and missing(got)
    if isinstance(got, np.generic):
        got = got.item()
    if isinstance(got, bool):
        if isinstance(sent, str):
            return sent.strip().lower() in (("true", "1") if got else ("false", "0"))
        n = _number(sent)
        return n is not None and n in (0, 1) and bool(n) == got
    if isinstance(got, str):
        return isinstance(sent, str) and sent == got
    if isinstance(got, bytes):
        return isinstance(sent, (bytes, bytearray)) and sent == got
    if isinstance(got, (dt.datetime, np.datetime64)):
        g, s = pd.Timestamp(got), _timestamp(sent)
        return s is not None and (s.tz is None) == (g.tz is None) and bool(s == g)
    if isinstance(got, dt.date):
        s = _timestamp(sent)
        return s is not None and s.tz is None and s == pd.Timestamp(got)
    if isinstance(got, (dt.timedelta, np.timedelta64)):
        a, b = _nanoseconds(sent), _nanoseconds(got)
        return a is not None and a == b
    if isinstance(got, (int, float, decimal.Decimal)):
        n = _spelled(sent) if isinstance(sent, str) else _number(sent)
        if isinstance(sent, str) and isinstance(got, float) and n is not None:
            n = float(n)
        return n is not None and _numbers_equal(n, got)
    if isinstance(got, (list, dict)):
        return _json_equal(sent, got)
    return type(sent) is type(got) and bool(sent == got)


def same(a: Any, b: Any) -> bool:
    """Whether two values read back from one column are the same value (a row the call left alone)."""
    if missing(a) or missing(b):
        return missing(a) and missing(b) and type(a) is type(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a == 0 and b == 0:
        return math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b) if not isinstance(a, (list, dict)) else _json_equal(a, b)


# -- what the rules promise to write (a refusal of it is a bug unless the store cannot hold it) ----------
def _whole(n: Any) -> int | None:
    if isinstance(n, bool):
        return int(n)
    if isinstance(n, int):
        return n
    if isinstance(n, float) and n.is_integer():
        return int(n)
    if isinstance(n, decimal.Decimal) and n.is_finite() and n == n.to_integral_value():
        return int(n)
    return None


def _exact_number(v: Any, whole: bool = False) -> Any:
    """A number sent as a number (numpy scalars included), or as a string spelling it the way Python
    writes it ("3", "2.5"; whole=True: integers only, "3.0" is no integer); None for anything else."""
    if isinstance(v, str):
        for parse in (int,) if whole else (int, float):
            try:
                n = parse(v)
            except ValueError:
                continue
            if str(n) == v or repr(n) == v:
                return n
        return None
    n = _number(v)
    if isinstance(n, int) and not -(2**63) <= n < 2**63:
        return None  # beyond int64, sent as a Python object: Arrow takes none, and the rules promise nothing
    return n if isinstance(n, (int, float)) else None  # decimals into floats: the rules say nothing


def promised(v: Any, kind: str, like: pd.Series) -> tuple[bool, Any]:
    """(True, the value in the column's terms) when the rules promise to write `v` into a column of `kind`
    (`like`: that column as the table holds it); (False, None) otherwise."""
    no = (False, None)
    if missing(v):
        return (False, None) if kind in REQUIRED else (True, None)
    if kind in INT_RANGES or kind in ("Int64", "int64[pyarrow]"):
        lo, hi = INT_RANGES.get(kind, INT_RANGES["int64"])
        n = _whole(_exact_number(v, whole=True)) if not isinstance(v, (np.bool_, bool)) else int(v)
        return (True, n) if n is not None and lo <= n <= hi else no
    if kind in ("float32", "float64", "double[pyarrow]"):
        n = _exact_number(v)
        if n is None:
            return no
        try:
            with np.errstate(over="ignore"):  # compared as Python floats: exactly
                f = float(np.float32(n)) if kind == "float32" else float(n)
        except OverflowError:
            return no
        return (True, f) if (math.isnan(f) and math.isnan(n)) or f == n else no
    if kind in ("bool", "boolean", "bool[pyarrow]"):
        if isinstance(v, (bool, np.bool_)):
            return True, bool(v)
        if isinstance(v, (int, np.integer)) and v in (0, 1):
            return True, bool(v)
        if isinstance(v, str) and v.lower() in ("true", "false", "0", "1"):
            return True, v.lower() in ("true", "1")
        return no
    if kind in ("str", "string", "string[pyarrow]", "object_str", "cat_str"):
        return (True, v) if isinstance(v, str) else no
    if kind == "cat_ord":
        return (True, v) if isinstance(v, str) and v in list(like.cat.categories) else no
    if kind == "cat_int":
        return (True, int(v)) if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) else no
    if kind.startswith("datetime64"):
        unit, tz = dtype_parts(kind)
        if not isinstance(v, (pd.Timestamp, np.datetime64)) and not isinstance(v, dt.datetime):
            return no
        ts = _timestamp(v)
        if ts is None or (ts.tz is None) != (tz is None):
            return no
        try:
            kept = ts.as_unit(unit)
        except (ValueError, OverflowError):
            return no
        return (True, kept) if kept == ts else no
    if kind.startswith("timedelta64"):
        if not isinstance(v, (pd.Timedelta, dt.timedelta, np.timedelta64)):
            return no
        try:
            td = pd.Timedelta(v)
            kept = td.as_unit(kind[len("timedelta64[") : -1])
        except (ValueError, OverflowError):
            return no
        return (True, kept) if kept == td else no
    if kind == "decimal":
        places = [
            -int(d.as_tuple().exponent) for d in like.dropna() if isinstance(d, decimal.Decimal) and d.is_finite()
        ]
        if not places:
            return no
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            v = decimal.Decimal(int(v))
        if not isinstance(v, decimal.Decimal) or not v.is_finite() or -int(v.as_tuple().exponent) > max(places):
            return no
        return (True, v) if len(v.as_tuple().digits) + max(places) <= 38 else no
    if kind == "bytes":
        return (True, v) if isinstance(v, bytes) else no
    if kind == "date":
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return True, v
        if isinstance(v, pd.Timestamp) and v.tz is None and v == v.normalize():
            return True, v.date()
        if isinstance(v, str) and len(v) == 10:
            try:
                return True, dt.date.fromisoformat(v)
            except ValueError:
                return no
        return no
    if kind == "json":
        return (True, v) if isinstance(v, (list, dict)) and _plain_json(v) else no
    return no


def _plain_json(v: Any) -> bool:
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain_json(x) for k, x in v.items())
    if isinstance(v, list):
        return all(_plain_json(x) for x in v)
    if isinstance(v, float):
        return math.isfinite(v)
    return v is None or isinstance(v, (str, int, bool))


def typed_column(kind: str, like: pd.Series, value: Any) -> pd.Series:
    """A one-row column of the table's dtype holding `value` (a promised value in the column's terms)."""
    if isinstance(like.dtype, pd.CategoricalDtype):
        cats = list(like.cat.categories)
        if value is not None and value not in cats:
            cats.append(value)
        return pd.Series(pd.Categorical([value], categories=cats, ordered=like.cat.ordered))
    if like.dtype == object:
        return pd.Series([value], dtype=object)
    if isinstance(value, pd.Timedelta) and like.dtype.kind == "m":
        # pandas 2.2 builds a timedelta column from Timedelta objects through nanoseconds, which overflows
        # beyond ±292 years even for a coarser unit: the value's own numpy form keeps its unit
        return pd.Series(np.array([value.to_timedelta64()]).astype(like.dtype))
    return pd.Series([value], dtype=like.dtype)
