"""The hypothesis strategies of the property-based contract (PropertyContract): columns of each kind, clean
or dirty (values of every kind mixed into an object column), how the second frame sends a column of the table,
and whole examples (`cases`). Needs hypothesis."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import warnings
import zoneinfo

import numpy as np
import pandas as pd
from hypothesis import strategies as st

from .case import Case, id_frame
from .kinds import INT_RANGES, KINDS, dtype_parts

MODES = ["append", "upsert", "update", "update_insert", "replace"]
PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
YEAR_1, YEAR_9999 = -62135596800, 253402300799  # seconds since the epoch of 0001-01-01 and 9999-12-31 23:59:59
AWKWARD_TEXT = ["", " ", '"', "'", ",", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf", "tab\t", "naïve ☃ 日本"]
AWKWARD_TEXT += ["NULL", "null", "None", "nan", "NaN", "NA", "<NA>", "\\N", "true", "0", "1.5", "[1]", '{"a": 1}']


def _ticks(unit: str) -> tuple[int, int]:
    """The range of datetime64 ticks of `unit` drawn: years 1 to 9999, or all of datetime64[ns] but NaT."""
    if unit == "ns":
        return -(2**63) + 1, 2**63 - 1
    return YEAR_1 * PER_SECOND[unit], YEAR_9999 * PER_SECOND[unit]


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
            return pd.Series([np.nan if v is None else v for v in vals] if draw(st.booleans()) else vals, dtype=object)
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
        unit, tz = dtype_parts(kind)
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
    base = id_frame(base_ids, columns)
    mode = draw(st.sampled_from(MODES))
    ids = draw(st.lists(st.integers(0, 12), min_size=1, max_size=8, unique=True))
    names = list(columns)
    if mode in ("update", "update_insert", "upsert", "append"):
        names = draw(st.lists(st.sampled_from(names), min_size=0, max_size=len(names), unique=True))
    hows, sent = {}, {}
    for name in names:
        hows[name], sent[name] = draw(sent_column(kinds[int(name[1:])], base[name], len(ids)))
    return Case(base, dict(zip(columns, kinds)), mode, id_frame(ids, sent), hows)
