"""Frames that exercise every dtype of the API contract's matrix."""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pandas as pd

N = 7  # rows of the matrix frame


def _pattern(values, n=N):
    return [values[i % len(values)] for i in range(n)]


def dtype_matrix(n: int = N, with_key: bool = True) -> pd.DataFrame:
    """One column per dtype of API.md's matrix, with missing and awkward values."""
    rng = np.random.default_rng(1)
    ts = pd.Series(pd.date_range("2021-03-14 01:59:59", periods=n, freq="37min"))
    ts_na = ts.copy()
    ts_na.iloc[1] = pd.NaT
    strings = _pattern(["plain", None, "", 'quo"te, comma', "new\nline", "naïve ☃ 日本", "tab\tend"], n)
    cols = {
        "id": np.arange(n, dtype="int64") * 3 + 1,
        "i8": np.array(_pattern([-128, 0, 127]), dtype="int8")[:n]
        if n <= N
        else rng.integers(-128, 127, n, dtype="int8"),
        "i16": rng.integers(-(2**15), 2**15 - 1, n, dtype="int16"),
        "i32": rng.integers(-(2**31), 2**31 - 1, n, dtype="int32"),
        "i64": np.array(_pattern([-(2**63), 0, 2**63 - 1, 12345678901234567], n), dtype="int64"),
        "u8": rng.integers(0, 255, n, dtype="uint8"),
        "u16": rng.integers(0, 2**16 - 1, n, dtype="uint16"),
        "u32": np.array(_pattern([0, 2**32 - 1, 7], n), dtype="uint32"),
        "f32": np.array(_pattern([1.5, np.nan, -0.25, 3.4e38], n), dtype="float32"),
        "f64": np.array(_pattern([0.1, np.nan, np.inf, -np.inf, 1e-300, -2.5], n), dtype="float64"),
        "Int64": pd.array(_pattern([1, None, -(2**62), 2**53 + 1], n), dtype="Int64"),
        "boolean": pd.array(_pattern([True, None, False], n), dtype="boolean"),
        "bool": np.array(_pattern([True, False, False], n), dtype=bool),
        "str": pd.Series(strings, dtype="str"),
        "string": pd.Series(strings, dtype="string"),
        "obj_str": pd.Series(strings, dtype=object),
        "obj_str_nan": pd.Series([np.nan if v is None else v for v in strings], dtype=object),
        "cat_str": pd.Categorical(_pattern(["b", "a", None, "c"], n), categories=["c", "b", "a"]),
        "cat_ord": pd.Categorical(_pattern(["lo", "hi", "mid", None], n), categories=["lo", "mid", "hi"], ordered=True),
        "cat_num": pd.Categorical(_pattern([10, 20, None], n), categories=[20, 10, 30]),
        "dt_s": ts_na.astype("datetime64[s]"),
        "dt_ms": (ts_na + pd.Timedelta(milliseconds=7)).astype("datetime64[ms]"),
        "dt_us": (ts_na + pd.Timedelta(microseconds=7)).astype("datetime64[us]"),
        "dt_ns": (ts_na + pd.Timedelta(nanoseconds=7)).astype("datetime64[ns]"),
        "dt_utc": (ts_na + pd.Timedelta(microseconds=3)).dt.tz_localize("UTC").astype("datetime64[us, UTC]"),
        "dt_ny": ts_na.dt.tz_localize("UTC")
        .dt.tz_convert("America/New_York")
        .astype("datetime64[ns, America/New_York]"),
        "td": pd.Series(pd.to_timedelta(_pattern([1, None, -3600, 86400 * 400], n), unit="s")).astype(
            "timedelta64[ns]"
        ),
        "dec": pd.Series(
            _pattern([decimal.Decimal("1.10"), None, decimal.Decimal("-12345678901234.5678")], n), dtype=object
        ),
        "bytes": pd.Series(_pattern([b"\x00\x01", None, b"", "é".encode()], n), dtype=object),
        "date": pd.Series(
            _pattern([dt.date(2020, 2, 29), None, dt.date(1, 1, 1), dt.date(9999, 12, 31)], n), dtype=object
        ),
        "json": pd.Series(
            _pattern([{"a": [1, 2], "b": None}, None, [1, "x", 2.5], {"nested": {"k": True}}], n), dtype=object
        ),
        "pa_int": pd.Series(_pattern([1, None, 3], n), dtype="int64[pyarrow]"),
        "pa_str": pd.Series(_pattern(["x", None, "ÿ"], n), dtype="string[pyarrow]"),
        "pa_f64": pd.Series(_pattern([1.5, None], n), dtype="double[pyarrow]"),
    }
    df = pd.DataFrame(
        {k: pd.Series(v).reset_index(drop=True) if not isinstance(v, pd.Categorical) else v for k, v in cols.items()}
    )
    if not with_key:
        df = df.drop(columns="id")
    return df
