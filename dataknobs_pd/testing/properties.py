"""The backend contract, property-based: random frames of random dtypes written into tables of random
column types, by `save`, append, upsert, replace and `update_batch`.

Each example saves a base frame (an `id` key, int64, and one to four columns of the dtypes of API.md's
Types list), then writes a second frame into that table whose columns may be of the column's own dtype,
of another dtype, or dirty object columns mixing values of every kind (fractions and NaN into integers,
strings into numbers, numbers into strings and categories, 2 and -1 into bools, timestamps with a time
into dates, naive timestamps into tz-aware columns, ...). The oracle, written here on its own (it does
not call the package's conversion rules):

- the base save is a round trip: every row comes back exactly (values and dtypes), or failed at
  `convert` (a value the store cannot hold);
- every row of the second call is either reported failed, at a stage that fits (a key the table has on
  append: `write`/KeyConflict; a key it lacks on update_batch: `missing`), or reads back equal to what
  was sent, as a pandas user means equal (NaN equals NaN, a midnight timestamp equals its date, 0/1 and
  "true"/"false"/"0"/"1" are booleans, a number equals the same number in another numeric type, a
  string spelling a number exactly equals that number); columns it did not send keep their values
  (updates) or are missing (inserts);
- a row refused although every value it sent is one the rules promise to write (a number into a numeric
  column that holds it exactly, a string into a string column, 0/1 into a bool, a date into a date
  column, ...) is a bug too, unless the store cannot hold the value at all (a fresh table of the
  column's dtype refuses it as well);
- rows the call did not write are unchanged, the table keeps its columns and dtypes (unordered
  categories may grow), and the counts add up;
- nothing raises but an `UnsupportedDtypeError` or `SchemaMismatchError` for a whole column, after
  which the table is as it was.

The number of examples comes from the hypothesis profile loaded (tests/conftest.py registers "ci",
small and deterministic, and "long"; HYPOTHESIS_PROFILE picks one). Needs hypothesis.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
import uuid
import warnings
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.testing import assert_frame_equal

import dataknobs_pd as dk

try:
    from hypothesis import HealthCheck, event, given, note, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the contract runs without this part
    st = None  # type: ignore[assignment]

ALLOWED_STAGES = {"convert", "validate", "missing", "write"}
WHOLE_CALL_ERRORS = (dk.UnsupportedDtypeError, dk.SchemaMismatchError)  # a dtype the column cannot take
MODES = ["append", "upsert", "update", "update_insert", "replace"]

# -- the dtypes of API.md's Types list ----------------------------------------------------------------
INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
DATETIMES = [f"datetime64[{u}]" for u in ("s", "ms", "us", "ns")] + [
    "datetime64[us, UTC]",
    "datetime64[ns, UTC]",
    "datetime64[s, America/New_York]",
    "datetime64[ns, America/New_York]",
]
TIMEDELTAS = [f"timedelta64[{u}]" for u in ("s", "ms", "us", "ns")]
KINDS = (
    list(INT_RANGES)
    + ["float32", "float64", "Int64", "boolean", "bool", "str", "string", "object_str"]
    + ["cat_str", "cat_ord", "cat_int"]
    + DATETIMES
    + TIMEDELTAS
    + ["decimal", "bytes", "date", "json"]
    + ["int64[pyarrow]", "double[pyarrow]", "string[pyarrow]", "bool[pyarrow]"]
)
PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
YEAR_1, YEAR_9999 = -62135596800, 253402300799  # seconds since the epoch of 0001-01-01 and 9999-12-31 23:59:59
AWKWARD_TEXT = ["", " ", '"', "'", ",", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "tab\t", "naïve ☃ 日本"]
AWKWARD_TEXT += ["NULL", "null", "None", "nan", "NaN", "NA", "<NA>", "\\N", "true", "0", "1.5", "[1]", '{"a": 1}']


def _ticks(unit: str) -> tuple[int, int]:
    """The range of datetime64 ticks of `unit` drawn: years 1 to 9999, or all of datetime64[ns] but NaT."""
    if unit == "ns":
        return -(2**63) + 1, 2**63 - 1
    return YEAR_1 * PER_SECOND[unit], YEAR_9999 * PER_SECOND[unit]


def _dtype_parts(kind: str) -> tuple[str, str | None]:
    """The unit and zone of a datetime64 kind."""
    inner = kind[kind.index("[") + 1 : -1]
    unit, _, tz = inner.partition(", ")
    return unit, tz or None


# -- strategies -----------------------------------------------------------------------------------------
if st is not None:
    _text = st.one_of(st.sampled_from(AWKWARD_TEXT), st.text(st.characters(codec="utf-8"), max_size=6))
    _json_key = st.text(st.characters(codec="utf-8"), max_size=4)
    _json_leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        _text,
    )
    _json = st.recursive(
        _json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(_json_key, c, max_size=3), max_leaves=6
    )
    _decimals = st.builds(
        lambda digits, places, neg: decimal.Decimal((int(neg), tuple(int(c) for c in str(digits)), -places)),
        st.integers(0, 10**20),
        st.integers(0, 6),
        st.booleans(),
    )

    def _ints(kind: str):
        lo, hi = INT_RANGES[kind]
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, 0, 1, -1 if lo < 0 else 2]))

    def _datetime_ticks(unit: str):
        lo, hi = _ticks(unit)
        per = PER_SECOND[unit]
        return st.one_of(
            st.integers(lo, hi),
            st.integers(lo // (86400 * per) + 1, hi // (86400 * per)).map(lambda d: d * 86400 * per),  # midnights
            st.integers(1577836800 * per, 1893456000 * per),  # 2020 to 2030
        )

    def _timedelta_ticks(unit: str):
        bound = {"s": 10**11, "ms": 10**14, "us": 10**17, "ns": 2**63 - 1}[unit]
        return st.integers(-bound, bound)

    def _maybe(values, n: int, missing: bool = True):
        return st.lists(st.none() | values if missing else values, min_size=n, max_size=n)

    @st.composite
    def clean_column(draw, kind: str, n: int, like: pd.Series | None = None) -> pd.Series:
        """`n` values of `kind`, in its dtype, with missing values where the dtype holds them.
        `like`: a column of the table, whose exact dtype (categories too) the values take."""
        if kind in INT_RANGES:
            return pd.Series(draw(_maybe(_ints(kind), n, missing=False)), dtype=kind)
        if kind in ("float32", "float64"):
            floats = st.floats(width=32) if kind == "float32" else st.floats()
            return pd.Series(draw(_maybe(floats, n, missing=False)), dtype=kind)
        if kind == "Int64":
            return pd.Series(pd.array(draw(_maybe(_ints("int64"), n)), dtype="Int64"))
        if kind == "int64[pyarrow]":
            return pd.Series(draw(_maybe(_ints("int64"), n)), dtype=kind)
        if kind == "double[pyarrow]":  # NaN and <NA> are two values here
            vals = draw(_maybe(st.floats() | st.just(math.nan), n))
            return pd.Series(pd.array(vals, dtype=kind))
        if kind in ("boolean", "bool[pyarrow]"):
            return pd.Series(draw(_maybe(st.booleans(), n)), dtype=kind)
        if kind == "bool":
            return pd.Series(draw(_maybe(st.booleans(), n, missing=False)), dtype=bool)
        if kind in ("str", "string", "string[pyarrow]", "object_str"):
            vals = draw(_maybe(_text, n))
            if kind == "object_str":
                return pd.Series(
                    [np.nan if v is None else v for v in vals] if draw(st.booleans()) else vals, dtype=object
                )
            return pd.Series(vals, dtype=kind)
        if kind.startswith("cat_"):
            if like is not None and isinstance(like.dtype, pd.CategoricalDtype):
                cats = list(like.cat.categories)
                return pd.Series(pd.Categorical(draw(_maybe(st.sampled_from(cats), n)), dtype=like.dtype))
            values = st.integers(-(2**40), 2**40) if kind == "cat_int" else _text
            cats = draw(st.lists(values, min_size=1, max_size=4, unique=True))
            picked = draw(_maybe(st.sampled_from(cats), n))
            return pd.Series(pd.Categorical(picked, categories=cats, ordered=kind == "cat_ord"))
        if kind.startswith("datetime64"):
            unit, tz = _dtype_parts(kind)
            ticks = draw(_maybe(_datetime_ticks(unit), n))
            arr = np.array(["NaT" if t is None else t for t in ticks], dtype=f"datetime64[{unit}]")
            if tz is not None:  # instants in UTC, shown in the zone
                lo, hi = (-(2**62), 2**62) if unit == "ns" else _ticks(unit)  # the zone's offset must not overflow
                arr = np.where((arr.astype(np.int64) > lo) & (arr.astype(np.int64) < hi), arr, np.datetime64("NaT"))
                return pd.Series(arr).dt.tz_localize("UTC").dt.tz_convert(tz).astype(kind)
            return pd.Series(arr)
        if kind.startswith("timedelta64"):
            unit = kind[len("timedelta64[") : -1]
            ticks = draw(_maybe(_timedelta_ticks(unit), n))
            return pd.Series(np.array(["NaT" if t is None else t for t in ticks], dtype=f"timedelta64[{unit}]"))
        if kind == "decimal":
            return pd.Series(draw(_maybe(_decimals, n)), dtype=object)
        if kind == "bytes":
            return pd.Series(draw(_maybe(st.binary(max_size=6), n)), dtype=object)
        if kind == "date":
            return pd.Series(draw(_maybe(st.dates(), n)), dtype=object)
        if kind == "json":
            lists = st.lists(_json, max_size=3) | st.dictionaries(_json_key, _json, max_size=3)
            return pd.Series(draw(_maybe(lists, n)), dtype=object)
        raise AssertionError(kind)

    def _dirty_values(kind: str, like: pd.Series):
        """Values to mix into an object column sent into a column of `kind`: right ones, wrong ones, borderline."""
        common = st.sampled_from(
            [None, np.nan, pd.NA, pd.NaT, "", "x", 0, 1, -1, 2, True, False, 0.5, 1.0, -0.0, "1", "0", "true"]
            + ["False", " 1", "1.0", np.int64(1), np.float32(0.1), decimal.Decimal("1"), b"x"]
            + [dt.date(2020, 1, 2), pd.Timestamp("2020-01-02"), pd.Timedelta(1), [1, 2], {"a": 1}]
        )
        own = clean_column(kind, 1, like).map(lambda s: s.iloc[0])  # a value of the column's own kind
        pool = [common, own]
        if kind in INT_RANGES or kind in ("Int64", "int64[pyarrow]", "float32", "float64", "double[pyarrow]"):
            lo, hi = INT_RANGES.get(kind, (-(2**63), 2**63 - 1))
            pool += [
                st.sampled_from([lo - 1, lo, hi, hi + 1, 2**53 + 1, 2**63, -(2**63) - 1, math.inf, -math.inf]),
                st.floats(),
                st.integers(lo - 2, hi + 2),
                st.integers(-(10**6), 10**6).map(str),
                st.floats(allow_nan=False).map(repr),
                st.sampled_from(["3", "-7", "3.0", "2.5", "1e3", "nan", "inf", "0x10", "1_000", "٣", " 3 ", "+4"]),
                _decimals,
                st.sampled_from([np.int8(-5), np.uint64(2**64 - 1), np.float16(0.5), np.float32(1e38), np.bool_(True)]),
            ]
        if kind in ("bool", "boolean", "bool[pyarrow]"):
            pool.append(
                st.sampled_from(
                    [0, 1, 2, -1, 0.0, 1.0, 0.5, "true", "TRUE", "tRuE", "false", "FALSE", "1", "0", "yes", "no"]
                    + [" true", "t", "2", np.bool_(True), np.int8(1), decimal.Decimal("0"), math.nan]
                )
            )
        if kind in ("str", "string", "string[pyarrow]", "object_str", "cat_str", "cat_ord"):
            pool += [_text, st.integers(), st.floats(), st.sampled_from([5, 5.0, True, b"5", pd.Timestamp(0)])]
        if kind.startswith("cat_"):
            cats = list(like.cat.categories)
            pool += [
                st.sampled_from(cats),
                st.sampled_from([str(c) for c in cats] + [float(c) for c in cats if isinstance(c, int)]),
            ]
        if kind == "date" or kind.startswith("datetime64"):
            pool += [
                st.dates(),
                st.datetimes(),
                st.datetimes(timezones=st.sampled_from([dt.UTC, zoneinfo.ZoneInfo("America/New_York")])),
                st.dates().map(pd.Timestamp),
                st.dates().map(lambda d: pd.Timestamp(d).tz_localize("UTC")),
                st.integers(-(2**62), 2**62).map(pd.Timestamp),
                st.dates().map(lambda d: d.isoformat()),
                st.sampled_from(["2020-01-02", "2020-01-02 00:00:00", "2020-01-02T03:04:05", "2020-01-02T00:00Z"]),
                st.sampled_from([np.datetime64("2020-01-02"), np.datetime64("2020-01-02T03:04:05.123456789")]),
            ]
        if kind.startswith("timedelta64"):
            pool += [
                st.integers(-(2**62), 2**62).map(pd.Timedelta),
                st.timedeltas(),
                st.sampled_from([np.timedelta64(3, "s"), np.timedelta64(7, "ns"), "1 day", "00:00:01", 5, 2.5]),
            ]
        if kind == "decimal":
            pool += [
                _decimals,
                st.sampled_from([decimal.Decimal("NaN"), decimal.Decimal("Infinity"), decimal.Decimal("1E+30")]),
                st.sampled_from([0.1, 2.5, 1e-7, "1.25", "12345678901234567890.123456"]),
            ]
        if kind == "bytes":
            pool += [st.binary(max_size=4), st.binary(max_size=4).map(bytearray), _text]
        if kind == "json":
            pool += [
                _json,
                st.sampled_from([{1: "int key"}, {"n": math.nan}, {"i": math.inf}, (1, 2), {"t": (1,)}, "\x00"]),
                st.sampled_from([{"d": decimal.Decimal("1.5")}, {"np": np.int64(3)}, {"s": {1, 2}}, {"b": b"x"}]),
            ]
        return st.one_of(*pool)

    # how the second frame sends a column of the table
    HOWS = ["same", "same", "recast", "other", "dirty", "dirty"]
    RECASTS = ["object", "float64", "float32", "int64", "Int64", "string", "str", "category", "boolean", "bool"]

    @st.composite
    def sent_column(draw, kind: str, like: pd.Series, n: int) -> tuple[str, pd.Series]:
        how = draw(st.sampled_from(HOWS))
        if how == "same":
            return how, draw(clean_column(kind, n, like))
        if how == "recast":  # the column's own kind of values, in another dtype
            values = draw(clean_column(kind, n, like))
            to = draw(st.sampled_from(RECASTS))
            try:
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")  # pandas saying a cast loses values: the oracle sees it
                    return f"recast:{to}", values.astype(to)
            except (TypeError, ValueError, OverflowError, ArithmeticError):
                return "recast:object", values.astype(object)
        if how == "other":
            other = draw(st.sampled_from(KINDS))
            return f"other:{other}", draw(clean_column(other, n))
        return how, pd.Series(draw(st.lists(_dirty_values(kind, like), min_size=n, max_size=n)), dtype=object)

    @st.composite
    def cases(draw) -> Case:
        kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
        base_ids = draw(st.lists(st.integers(0, 12), min_size=1, max_size=8, unique=True))
        columns = {f"c{i}": draw(clean_column(k, len(base_ids))) for i, k in enumerate(kinds)}
        base = _frame(base_ids, columns)
        mode = draw(st.sampled_from(MODES))
        ids = draw(st.lists(st.integers(0, 12), min_size=1, max_size=8, unique=True))
        names = list(columns)
        if mode in ("update", "update_insert", "upsert", "append"):
            names = draw(st.lists(st.sampled_from(names), min_size=0, max_size=len(names), unique=True))
        hows, sent = {}, {}
        for name in names:
            hows[name], sent[name] = draw(sent_column(kinds[int(name[1:])], base[name], len(ids)))
        return Case(base, dict(zip(columns, kinds)), mode, _frame(ids, sent), hows)


def _frame(ids: list[int], columns: dict[str, pd.Series]) -> pd.DataFrame:
    data = {"id": pd.Series(ids, dtype="int64")}
    data.update({k: v.reset_index(drop=True) for k, v in columns.items()})
    return pd.DataFrame(data)


# -- a counterexample as code ---------------------------------------------------------------------------
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


def _listed(s: pd.Series) -> list:
    """s.tolist(), but zoned timestamps one by one from their UTC instants: pandas 2.2 can crash (a segmentation
    fault) iterating zoned timestamps of a coarse unit far from 1970."""
    zone = getattr(s.dtype, "tz", None)
    if s.dtype.kind != "M" or zone is None:
        return s.tolist()
    naive = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    return [pd.NaT if np.isnat(v) else pd.Timestamp(v).tz_localize("UTC").tz_convert(zone) for v in naive]


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
REQUIRED = set(INT_RANGES) | {"bool"}  # dtypes without a missing value: a new row needs one


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
        unit, tz = _dtype_parts(kind)
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


def _typed(kind: str, like: pd.Series, value: Any) -> pd.Series:
    """A one-row column of the table's dtype holding `value` (a promised value in the column's terms)."""
    if isinstance(like.dtype, pd.CategoricalDtype):
        cats = list(like.cat.categories)
        if value is not None and value not in cats:
            cats.append(value)
        return pd.Series(pd.Categorical([value], categories=cats, ordered=like.cat.ordered))
    if like.dtype == object:
        return pd.Series([value], dtype=object)
    return pd.Series([value], dtype=like.dtype)


# -- one example ----------------------------------------------------------------------------------------
def _call(case: Case, store, table: str):
    if case.mode == "update":
        return case.frame.dk.update_batch(store, table)
    if case.mode == "update_insert":
        return case.frame.dk.update_batch(store, table, insert_missing=True)
    return case.frame.dk.save(store, table, if_exists=case.mode)


def _rows(df: pd.DataFrame) -> dict[int, dict[str, Any]]:
    """{key: {column: value}} of a frame with an `id` column."""
    cols = {c: _listed(df[c]) for c in df.columns}
    return {int(k): {c: cols[c][i] for c in df.columns} for i, k in enumerate(cols["id"])}


def _failures(res) -> dict[int, dict[str, Any]]:
    return {int(r["row"]): r for r in res.failures.to_dict("records")}


def _dtypes_kept(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    out = []
    if list(after.columns) != list(before.columns):
        return [f"the table's columns changed: {list(before.columns)} -> {list(after.columns)}"]
    for c in before.columns:
        b, a = before[c].dtype, after[c].dtype
        if isinstance(b, pd.CategoricalDtype) and isinstance(a, pd.CategoricalDtype):
            grown = not b.ordered and list(a.categories[: len(b.categories)]) == list(b.categories)
            if a.ordered != b.ordered or (a != b and not grown) or a.categories.dtype != b.categories.dtype:
                out.append(
                    f"column {c!r}: dtype {b} (categories {list(b.categories)}) became {a} ({list(a.categories)})"
                )
        elif a != b:
            out.append(f"column {c!r}: dtype {b} became {a}")
    return out


def run_case(store, case: Case) -> list[str]:
    """Run one example on `store`; the rules it breaks, each said in a sentence (empty: none)."""
    table = f"prop_{uuid.uuid4().hex[:12]}"
    problems: list[str] = []
    try:
        res0 = case.base.dk.save(store, table)
    except WHOLE_CALL_ERRORS as e:  # the store takes no column of this dtype (the round-trip contract's concern)
        event(f"base refused: {type(e).__name__}")
        return []
    base_failed = _failures(res0)
    for r, f in base_failed.items():
        if f["stage"] != "convert":
            problems.append(f"base save: row {r} failed at {f['stage']} ({f['error']}: {f['message']})")
    before = dk.load(store, table)
    kept = case.base.drop(index=list(base_failed)).sort_values("id").reset_index(drop=True)
    try:
        assert_frame_equal(before, kept, check_dtype=True)
    except AssertionError as e:
        return problems + [f"base save does not round trip: {e}"]
    if problems:
        return problems

    frame = case.frame
    try:
        res = _call(case, store, table)
    except WHOLE_CALL_ERRORS as e:
        event(f"whole call refused: {type(e).__name__}")
        note(f"refused: {type(e).__name__}: {e}")
        after = dk.load(store, table)
        try:
            assert_frame_equal(after, before, check_dtype=True)
        except AssertionError as err:
            problems.append(f"{type(e).__name__} was raised, but the table changed: {err}")
        return problems
    except dk.DataKnobsError as e:
        return [f"the call raised {type(e).__name__}: {e}"]

    fails = _failures(res)
    note(f"failures:\n{res.failures.to_string()}")
    event(f"{case.mode}: {'some rows failed' if fails else 'all written'}")
    if res.total != len(frame) or res.succeeded + res.failed != res.total or res.failed != len(fails):
        problems.append(f"counts: total {res.total}, succeeded {res.succeeded}, failed {res.failed}, {len(fails)} rows")
    if len(res.failures) != len(fails):
        problems.append("a row is reported failed twice")
    for r, f in fails.items():
        if f["stage"] not in ALLOWED_STAGES:
            problems.append(f"row {r}: stage {f['stage']!r}")
    after = dk.load(store, table)
    sent = {c: _listed(frame[c]) for c in frame.columns}
    ids = [int(k) for k in sent["id"]]

    if case.mode == "replace":
        ok_rows = [r for r in range(len(frame)) if r not in fails]
        if [str(d) for d in after.dtypes] != [str(d) for d in frame.dtypes] or list(after.columns) != list(
            frame.columns
        ):
            problems.append(f"replace: the table's dtypes are {dict(after.dtypes)}, the frame's {dict(frame.dtypes)}")
        got = _rows(after)
        if sorted(got) != sorted(ids[r] for r in ok_rows):
            problems.append(
                f"replace: the table holds keys {sorted(got)}, the rows written {sorted(ids[r] for r in ok_rows)}"
            )
        for r in ok_rows:
            for c in frame.columns:
                v = got.get(ids[r], {}).get(c, "<absent>")
                if ids[r] in got and not user_equal(sent[c][r], v):
                    problems.append(f"row {r}, column {c!r}: sent {sent[c][r]!r}, reads back {v!r}")
        return problems

    problems += _dtypes_kept(before, after)
    old, new = _rows(before), _rows(after)
    present = set(old)
    if not after["id"].is_unique:
        problems.append(f"a key is in the table twice: {after['id'].tolist()}")
    base_cols = [c for c in before.columns if c != "id"]
    sent_cols = [c for c in frame.columns if c != "id"]
    written: set[int] = set()
    for r, k in enumerate(ids):
        if r in fails:
            f = fails[r]
            if f["error"] == "KeyConflict" and not (case.mode == "append" and k in present):
                problems.append(
                    f"row {r} (key {k}): KeyConflict, but the call is {case.mode} of a key the table {'has' if k in present else 'lacks'}"
                )
            if f["stage"] == "missing" and not (case.mode == "update" and k not in present):
                problems.append(
                    f"row {r} (key {k}): stage missing, but the call is {case.mode} of a key the table {'has' if k in present else 'lacks'}"
                )
            if f["stage"] == "validate":
                problems.append(
                    f"row {r} (key {k}): stage validate, but its key is unique and present ({f['message']})"
                )
            if k not in present and k in new:
                problems.append(f"row {r} (key {k}) is reported failed, but the table now holds its key")
            problems += _refused(store, case, before, r, k, f, k in present)
            continue
        if case.mode == "append" and k in present:
            problems.append(
                f"row {r}: append of key {k}, which the table has, is not reported (a KeyConflict at write)"
            )
        if case.mode == "update" and k not in present:
            problems.append(f"row {r}: update_batch of key {k}, which the table lacks, is not reported (stage missing)")
        if k not in new:
            if case.mode != "update" or k in present:
                problems.append(f"row {r}: reported written, but key {k} is not in the table")
            continue
        written.add(k)
        for c in sent_cols:
            if not user_equal(sent[c][r], new[k][c]):
                problems.append(
                    f"row {r}, column {c!r} ({case.kinds[c]}, sent {case.hows[c]}): sent {sent[c][r]!r}, "
                    f"reads back {new[k][c]!r}"
                )
        for c in base_cols:
            if c in sent_cols:
                continue
            if k in present and not same(old[k][c], new[k][c]):
                problems.append(f"row {r}, column {c!r} (not sent): was {old[k][c]!r}, now {new[k][c]!r}")
            if k not in present and not missing(new[k][c]):
                problems.append(f"row {r}, column {c!r} (not sent) of a new row: {new[k][c]!r}, not missing")
    if set(new) != present | {k for k in written if k not in present}:
        problems.append(f"the table holds keys {sorted(new)}, expected {sorted(present | written)}")
    for k in present - written:  # rows the call did not write
        for c in before.columns:
            if k in new and not same(old[k][c], new[k][c]):
                problems.append(f"key {k}, column {c!r}, not written by the call: was {old[k][c]!r}, now {new[k][c]!r}")
    return problems


def _refused(store, case: Case, before: pd.DataFrame, r: int, k: int, f: dict, present: bool) -> list[str]:
    """A row that failed at convert or write though the rules promise to write every value it sent: a bug,
    unless a fresh table of the columns' dtypes refuses those values too (the store cannot hold them)."""
    if f["stage"] not in ("convert", "write") or f["error"] == "KeyConflict":
        return []
    if case.mode == "append" and present or case.mode == "update" and not present:
        return []  # the row fails anyway (KeyConflict, missing)
    insert = case.mode == "append" or not present
    sent_cols = [c for c in case.frame.columns if c != "id"]
    if insert and any(case.kinds[c] in REQUIRED for c in before.columns if c != "id" and c not in sent_cols):
        return []  # a new row lacking a required column: NotNull
    typed = {}
    for c in sent_cols:
        ok, value = promised(_listed(case.frame[c])[r], case.kinds[c], before[c])
        if not ok:
            return []
        typed[c] = _typed(case.kinds[c], before[c], value)
    fresh = f"prop_{uuid.uuid4().hex[:12]}"
    try:
        res = _frame([k], typed).dk.save(store, fresh)
    except dk.DataKnobsError:
        return []
    if not res.ok:
        return []  # the store cannot hold these values at all
    values = {c: _listed(case.frame[c])[r] for c in sent_cols}
    return [
        f"row {r} (key {k}) was refused at {f['stage']} ({f['error']}: {f['message']}), but the rules promise "
        f"to write its values {values} into columns { ({c: case.kinds[c] for c in sent_cols}) }, and the store "
        f"holds them"
    ]


# -- the contract part ----------------------------------------------------------------------------------
class PropertyContract:
    """Random frames of random dtypes into tables of random column types: every row written reads back
    equal to what was sent, or is reported failed; nothing else changes.

    `property_seconds`: under the hypothesis profiles "ci" and "default", once a store has spent this long
    the remaining examples are drawn but not run (a slow store runs fewer of the same examples); other
    profiles ("long") run every example. None: no limit."""

    property_seconds: float | None = 15.0

    def test_property_writes_read_back_equal_or_fail(self, store):
        if st is None:  # pragma: no cover
            import pytest

            pytest.skip("hypothesis is not installed")
        profile = getattr(settings, "get_current_profile_name", lambda: "default")()
        budget = self.property_seconds if profile in ("ci", "default") else None
        start = time.monotonic()

        # settings made here, when the test runs: they follow the hypothesis profile loaded by then
        @settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(case=cases())
        def writes_read_back_equal_or_fail(case):
            if budget is not None and time.monotonic() - start > budget:
                event("not run: the store's time is up")
                return
            note(repr(case))
            problems = run_case(store, case)
            assert not problems, "\n".join(problems)

        writes_read_back_equal_or_fail()
