"""The conversion rules: which values sent into a column of another type are written, and which fail.

A value is written only when the value stored equals the one sent, as a pandas user means equal: NaN
equals NaN; a midnight timestamp equals its date; 0/1 and the strings "true"/"false"/"0"/"1" (any case)
are booleans; a number equals the same number in another numeric type, and a string the number or date
it spells exactly ("3" into an integer column). Anything else fails its row at stage `convert`, naming
the column and the value: never a rounded, truncated or coerced value. Every store gets the rows after
these rules (the engine applies them in TypeMapper.to_arrow), and TypeMapper.convert_value follows them.

`RULES` is the table (what is sent x the column's type -> what happens), shown in docs/types.md; `check`
finds the rows of one column that break it, after Arrow converted the column (Arrow's own safe casts
already refuse what does not fit: a fraction into an integer, a number out of range, a decimal with more
places than its column); `to_bool` reads the values a bool column takes.
"""

from __future__ import annotations

import datetime as dt
import decimal
import numbers

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .dtype_specs import pandas_dtype
from .schema import Column

# (what is sent, the column's type) -> what happens; the table docs/types.md shows.
RULES: list[tuple[str, str, str]] = [
    ("the column's own dtype", "any", "written as it is"),
    ("integers, floats", "integer", "written when whole and in range (`2.5`, `2**63` fail)"),
    (
        "integers",
        "float",
        "written when the float holds them exactly (`2**60 + 1` into float64 fails, `-2**63` is written)",
    ),
    ("float64", "float32", "written when float32 holds them exactly (`0.1` fails, `0.5` is written)"),
    ("integers, floats", "decimal", "written when the decimal holds them exactly (`1.234` into 2 places fails)"),
    ("decimals", "decimal", "written when no place is lost (`Decimal('1.234')` into 2 places fails)"),
    ("`True`/`False`, `0`/`1`, `'true'`/`'false'`/`'0'`/`'1'` (any case)", "bool", "written as booleans"),
    ("any other number or string (`2`, `-1`, `'yes'`)", "bool", "fails: `TypeConversion`"),
    ("booleans", "integer, float", "written as 1 and 0"),
    ("strings that spell a number exactly (`'3'`, `'2.5'`)", "integer, float, decimal", "written as that number"),
    ("other strings (`'x'`, `'3.0'` into an integer)", "integer, float, decimal", "fails: `TypeConversion`"),
    ("strings", "string, category of strings", "written as they are"),
    ("numbers, booleans, timestamps", "string, category of strings", "fails: `TypeConversion` (no `5` to `'5'`)"),
    ("values not of the categories' type (`5.0` into strings)", "category", "fails: `TypeConversion`"),
    ("midnight timestamps (naive), `datetime.date`, ISO dates", "date", "written as the date"),
    ("timestamps with a time, tz-aware timestamps", "date", "fails: `TypeConversion` (no time is dropped)"),
    ("naive timestamps", "tz-aware timestamp", "fails: `TypeConversion` (say which zone: `.dt.tz_localize`)"),
    ("tz-aware timestamps", "naive timestamp", "fails: `TypeConversion` (`.dt.tz_convert(None)`)"),
    (
        "timestamps of another unit, or as objects, `datetime`, `np.datetime64`, ISO text",
        "timestamp",
        "written when no digit is lost (ns into a us column fails)",
    ),
    ("`Timedelta`, `timedelta`, `np.timedelta64`, text such as `'1h'`", "duration", "written when no digit is lost"),
    (
        "numbers (`5`, `1600000000`)",
        "timestamp, duration, date",
        "fails: `TypeConversion` (no number is a time: say its unit with `pd.to_datetime`)",
    ),
    ("strings", "bytes", "fails: `TypeConversion` (encode them first)"),
    ("anything JSON-like", "JSON (object of list/dict)", "written as JSON"),
    (
        "dicts with keys that are not text (`{1: 'x'}`)",
        "JSON",
        "fails: `TypeConversion` (JSON would give `{'1': 'x'}`)",
    ),
    (
        "a missing value of any kind (`NaN`, `None`, `NaT`, `<NA>`)",
        "a column that can be missing",
        "written as missing",
    ),
    ("a missing value", "a required column (`int64`, `bool`, a key)", "fails: `NotNull`"),
]


def rules_table() -> str:
    """RULES as the Markdown table docs/types.md shows (a test keeps the two the same)."""
    rows = ["| sent | into a column of | what happens |", "| --- | --- | --- |"]
    rows += [f"| {sent} | {into} | {what} |" for sent, into, what in RULES]
    return "\n".join(rows)


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}


class Unequal(ValueError):
    """Rows of a column whose converted value is not the value sent: `mask` marks them, `reason` says why."""

    def __init__(self, mask: np.ndarray, reason: str):
        super().__init__(reason)
        self.mask, self.reason = mask, reason


def to_bool(value) -> bool | None:
    """The boolean a value stands for (None: missing); ValueError when it stands for none."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        b = _BOOL_TEXT.get(value.strip().lower())
        if b is None:
            raise ValueError(f"{value!r} is not a boolean (true/false/1/0, any case)")
        return b
    if isinstance(value, numbers.Number) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{value!r} is not a boolean (only 0 and 1 are)")


def bool_array(s: pd.Series) -> pa.Array:
    """A bool column's values from any Series, each by `to_bool`; Unequal for the values that are no boolean."""
    values: list = []
    bad = np.zeros(len(s), dtype=bool)
    for i, v in enumerate(s.tolist()):
        try:
            values.append(to_bool(v))
        except ValueError:
            values.append(None)
            bad[i] = True
    if bad.any():
        raise Unequal(bad, "a bool column takes True/False, 0/1 and the strings true/false/1/0 (any case)")
    return pa.array(values, type=pa.bool_())


def takes_as_is(s: pd.Series, t: pa.DataType) -> bool:
    """Whether Arrow's own conversion of `s` to `t` can only give back the values sent."""
    d = s.dtype
    if isinstance(d, pd.CategoricalDtype):
        cats = d.categories
        if cats.dtype == object and (pa.types.is_string(t) or pa.types.is_large_string(t)):
            return pd.api.types.infer_dtype(cats, skipna=True) in ("string", "empty")  # pandas 2: str as object
        return takes_as_is(pd.Series(cats), t)
    if pa.types.is_boolean(t):
        return d.kind == "b" or str(d) in ("boolean", "bool[pyarrow]")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return isinstance(d, pd.StringDtype) or str(d) in ("string[pyarrow]", "large_string[pyarrow]")
    if pa.types.is_float32(t) or pa.types.is_float16(t):
        return d.kind in "iub" or (d.kind == "f" and d.itemsize <= t.bit_width // 8)  # float64 may round
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return d.kind in "iufb"  # numbers between numeric types: Arrow's safe cast refuses what changes
    if pa.types.is_duration(t):
        return d.kind == "m"
    if pa.types.is_timestamp(t):
        return d.kind == "M"  # the zone is checked in `check_zone`, lost digits by Arrow's safe cast
    if pa.types.is_decimal(t):
        return d.kind in "iub"
    return False


def ints_as_floats(arr: pa.Array, t: pa.DataType) -> pa.Array:
    """Integers into a float column: Arrow's safe cast refuses any beyond 2**53 (float64) or 2**24 (float32),
    though a float holds many of them exactly (-2**63); those it holds are written, the others are Unequal."""
    try:
        return pc.cast(arr, t, safe=True)
    except pa.ArrowInvalid:
        pass
    width = np.float32 if pa.types.is_float32(t) else np.float64
    exact = np.fromiter((v is None or int(width(v)) == v for v in arr.to_pylist()), dtype=bool, count=len(arr))
    if not exact.all():
        raise Unequal(
            ~exact,
            f"{t} would round it (it holds integers exactly only up to 2**{24 if width is np.float32 else 53} and some beyond)",
        )
    return pc.cast(arr, t, safe=False)


def temporal_array(s: pd.Series, t: pa.DataType) -> pa.Array:
    """Timestamps or durations of another dtype (an object column, numbers, dates) as the column's type `t`:
    each value by pandas (a Timestamp or Timedelta, also from ISO text), in the column's unit without losing a
    digit; Unequal for the values that are no such thing (numbers), or whose zone does not match the column's
    (naive into tz-aware or the other way round). A digit the unit cannot hold raises ValueError (its row fails)."""
    stamp = pa.types.is_timestamp(t)
    values: list = []
    bad = np.zeros(len(s), dtype=bool)
    for i, v in enumerate(s.tolist()):
        if v is None or (not isinstance(v, (str, list, dict)) and pd.isna(v)):
            values.append(None)
            continue
        try:
            if stamp:
                if not isinstance(v, (str, dt.date, np.datetime64)):  # np.datetime64 is no Number, but check first
                    raise TypeError
                ts = pd.Timestamp(v)
                if ts is pd.NaT or (ts.tz is not None) != (t.tz is not None):  # '' and 'NaT' are text, no time
                    raise TypeError
                values.append(ts.as_unit(t.unit, round_ok=False)._value)
            else:
                if not isinstance(v, (str, dt.timedelta, np.timedelta64)):  # np.timedelta64 is an integer type too
                    raise TypeError
                td = pd.Timedelta(v)
                if td is pd.NaT:
                    raise TypeError
                values.append(td.as_unit(t.unit, round_ok=False)._value)
        except (TypeError, ValueError, OverflowError):
            values.append(None)
            bad[i] = True
    if bad.any():
        what = "timestamps" if stamp else "durations"
        zone = (
            f" in {'a tz-aware' if t.tz else 'a naive'} column, timestamps {'with' if t.tz else 'without'} a zone"
            if stamp
            else ""
        )
        raise Unequal(bad, f"only {what} (or their ISO text) go into a column of {what}{zone}; no number is one")
    return pa.array(values, type=pa.int64()).cast(t)


def check_zone(s: pd.Series, t: pa.DataType) -> None:
    """Raise Unequal for every timestamp of `s` when naive ones are sent into a tz-aware column or the other
    way round (which zone was meant is not known)."""
    if not (pa.types.is_timestamp(t) and s.dtype.kind == "M"):
        return
    aware = getattr(s.dtype, "tz", None) is not None or getattr(getattr(s.dtype, "pyarrow_dtype", None), "tz", None)
    if bool(aware) != (t.tz is not None) and s.notna().any():
        fix = ".dt.tz_localize(...)" if t.tz else ".dt.tz_convert(None)"
        raise Unequal(
            s.notna().to_numpy(),
            f"{'tz-aware' if aware else 'naive'} timestamps do not go into a {'tz-aware' if t.tz else 'naive'} "
            f"column; convert them first ({fix})",
        )


def check(s: pd.Series, col: Column, arr: pa.Array) -> None:
    """Raise Unequal for the rows of `s` whose value in `arr` (its conversion to the column's type) is not
    the value sent."""
    t = arr.type if not pa.types.is_dictionary(arr.type) else arr.type.value_type
    if col.kind == "category":
        _check_categories(s, col, arr)
    if col.kind in ("json", "null") or takes_as_is(s, t):
        return
    if pa.types.is_floating(t) and s.dtype.kind == "f":  # a wider float into a narrower one rounds
        sent = s.to_numpy(dtype=np.float64, na_value=np.nan)
        got = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~((sent == got) | (np.isnan(sent) & np.isnan(got)))
        if bad.any():
            raise Unequal(bad, f"{t} would round it; keep the column float64 or round the values first")
        return
    family = _family(t)
    numeric = family in ("integer", "floating")  # an object column of numbers may mix types Arrow would wrap
    if not (numeric and s.dtype == object) and _inferred(s) in _EXACT.get(family, ()):
        return  # Arrow's safe cast of these is exact: no value to look at
    values = _sent(s)
    present = ~pd.isna(values)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        bad = present & ~np.fromiter((isinstance(v, str) for v in values), dtype=bool, count=len(values))
        reason = "only strings go into a column of strings (no 5 to '5'); convert with .astype(str) first"
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        bad = present & ~np.fromiter((isinstance(v, bytes) for v in values), dtype=bool, count=len(values))
        reason = "only bytes go into a bytes column; encode strings first"
    elif pa.types.is_date(t):
        bad = present & ~_dates_equal(values, arr)
        reason = "only dates (or naive midnight timestamps) go into a date column: the time would be lost"
    elif pa.types.is_decimal(t) or pa.types.is_floating(t) or pa.types.is_integer(t):
        bad = present & ~_numbers_equal(values, arr)
        reason = f"the {t} value stored would not equal it"
    else:
        return
    if bad.any():
        raise Unequal(bad, reason)


_EXACT = {  # column family -> the inferred kinds of sent values that Arrow converts exactly or refuses
    "string": ("string", "empty"),
    "bytes": ("bytes", "empty"),
    "integer": ("integer", "floating", "mixed-integer-float", "boolean", "empty"),
    "floating": ("integer", "floating", "mixed-integer-float", "boolean", "empty"),
    "decimal": ("integer", "decimal", "boolean", "empty"),
}


def _family(t: pa.DataType) -> str:
    for family, test in (
        ("string", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
        ("bytes", lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)),
        ("date", pa.types.is_date),
        ("integer", pa.types.is_integer),
        ("floating", pa.types.is_floating),
        ("decimal", pa.types.is_decimal),
    ):
        if test(t):
            return family
    return "other"


def _inferred(s: pd.Series) -> str:
    if isinstance(s.dtype, pd.CategoricalDtype):
        return pd.api.types.infer_dtype(s.cat.categories, skipna=True)
    return pd.api.types.infer_dtype(s, skipna=True)


def json_keys_exact(value) -> bool:
    """Whether JSON text gives `value` back with its dict keys: JSON's keys are strings ({1: 'x'} reads back
    {'1': 'x'})."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_keys_exact(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(json_keys_exact(v) for v in value)
    return True


def _check_categories(s: pd.Series, col: Column, arr: pa.Array) -> None:
    """Values of a category column that are none of its categories (the stored ones, grown by the frame's new
    ones of the same type): they would read back missing."""
    cats = col.dtype.get("categories") or []
    coded = pa.types.is_dictionary(arr.type)
    try:
        value_set = pa.array(pd.Index(cats).astype(_category_dtype(col)), from_pandas=True)
        value_set = value_set.cast(arr.type.value_type if coded else arr.type)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return
    if coded and pc.all(pc.is_in(arr.dictionary, value_set=value_set)).as_py() is not False:
        return  # every category of the frame is one of the column's: so is every value
    plain = arr.dictionary_decode() if coded else arr
    known = pc.or_(pc.is_in(plain, value_set=value_set), pc.is_null(plain)).to_numpy(zero_copy_only=False)
    if not known.all():
        raise Unequal(~known, "not one of the column's categories, nor a new one of their type")


def _category_dtype(col: Column):
    return pandas_dtype(col.dtype["categories_dtype"])  # the categories' dtype, as TypeMapper rebuilds it


def _sent(s: pd.Series) -> np.ndarray:
    """The values sent, as objects (missing ones as None or NaN)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    return s.to_numpy(dtype=object, na_value=None) if s.dtype != object else s.to_numpy()


def _numbers_equal(values: np.ndarray, arr: pa.Array) -> np.ndarray:
    """Whether each value sent equals the number stored (a string: the number it spells)."""
    stored = arr.to_pylist()
    out = np.ones(len(values), dtype=bool)
    for i, (v, got) in enumerate(zip(values, stored)):
        if got is None:
            continue
        if isinstance(v, str):
            v = _spelled(v, got)
        elif isinstance(v, float) and isinstance(got, decimal.Decimal):
            got = float(got)  # 0.1 means the decimal 0.10, as a pandas user reads it
        try:
            out[i] = bool(v == got) or (isinstance(v, float) and isinstance(got, float) and v != v and got != got)
        except (TypeError, ValueError):
            out[i] = False
    return out


def _spelled(text: str, got):
    """The number `text` spells, in the type of the value stored (None when it spells another)."""
    try:
        if isinstance(got, bool):
            return None
        if isinstance(got, int):
            return int(text) if str(int(text)) == text.strip() else None
        if isinstance(got, decimal.Decimal):
            return decimal.Decimal(text.strip())
        return float(text)
    except (ValueError, decimal.InvalidOperation):
        return None


def _dates_equal(values: np.ndarray, arr: pa.Array) -> np.ndarray:
    """Whether each value sent is the date stored: a date, or a naive timestamp at midnight of that day."""
    stored = arr.to_pylist()
    out = np.ones(len(values), dtype=bool)
    for i, (v, got) in enumerate(zip(values, stored)):
        if got is None:
            continue
        if isinstance(v, (dt.datetime, np.datetime64)):
            ts = pd.Timestamp(v)
            out[i] = ts.tz is None and ts == pd.Timestamp(got)
        elif isinstance(v, dt.date):
            out[i] = v == got
        elif isinstance(v, str):
            out[i] = v.strip() == got.isoformat()
        else:
            out[i] = False
    return out


if __name__ == "__main__":  # python -m dataknobs_pd.conversion: the table for docs/types.md
    print(rules_table())
