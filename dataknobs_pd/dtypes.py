"""What TypeMapper offers beyond round trips: a value's field type, the dtype for a field type,
one value converted, and a frame in its smallest exact dtypes."""

from __future__ import annotations

import decimal
import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import UnsupportedDtypeError

if TYPE_CHECKING:
    from .schema import Column

INT_KINDS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
NUMBER_KINDS = (*INT_KINDS, "float32", "float64")
NUMPY_KINDS = frozenset((*NUMBER_KINDS, "bool"))  # kinds whose values a NumPy array holds as they are
_MASKED = {  # nullable extension dtype name -> field kind
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "UInt8": "uint8",
    "UInt16": "uint16",
    "UInt32": "uint32",
    "UInt64": "uint64",
    "Float32": "float32",
    "Float64": "float64",
    "boolean": "bool",
}
_OBJECT_KINDS = {"string", "decimal", "bytes", "date", "json", "null"}


class DtypeTools:
    """Mixed into TypeMapper (which provides `describe`)."""

    if TYPE_CHECKING:

        def describe(self, s: pd.Series, name: str, label=None, index: bool = False) -> Column: ...

    def infer_field_type(self, obj) -> str:
        """The portable field type of a Series, a dtype (or dtype name) or a single value."""
        if isinstance(obj, pd.Series):
            return self.describe(obj, str(obj.name)).kind
        if isinstance(obj, (np.dtype, pd.api.extensions.ExtensionDtype)) or (
            isinstance(obj, str) and _looks_like_dtype(obj)
        ):
            d = pd.api.types.pandas_dtype(obj)
            return "object" if d == np.dtype(object) else self.describe(pd.Series([], dtype=d), "value").kind
        scalar = isinstance(obj, (bool, int, float, np.generic, pd.Timestamp, pd.Timedelta))
        return self.describe(pd.Series([obj]) if scalar else pd.Series([obj], dtype=object), "value").kind

    def get_pandas_dtype(self, field_type: str, nullable: bool = True):
        """The pandas dtype that holds a field type (a nullable one unless nullable=False)."""
        if field_type in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"):
            return pd.api.types.pandas_dtype(
                field_type.capitalize().replace("Uint", "UInt") if nullable else field_type
            )
        if field_type in ("float32", "float64"):
            return np.dtype(field_type)
        if field_type == "bool":
            return pd.BooleanDtype() if nullable else np.dtype(bool)
        if field_type == "string":
            return pd.StringDtype()
        if field_type == "category":
            return pd.CategoricalDtype()
        if field_type == "datetime":
            return np.dtype("datetime64[ns]")
        if field_type == "timedelta":
            return np.dtype("timedelta64[ns]")
        if field_type in _OBJECT_KINDS:
            return np.dtype(object)
        raise UnsupportedDtypeError(f"unknown field type {field_type!r}")

    def convert_value(self, value, field_type: str):
        """Convert one value to a field type by the rules every write follows (conversion.py), or raise
        UnsupportedDtypeError saying why not: a value is converted only when the result equals it."""
        from .conversion import Unequal
        from .schema import Column

        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return None
        if field_type == "json":
            return json.loads(value) if isinstance(value, str) else value
        t = _FIELD_ARROW.get(field_type)
        if t is None:
            raise UnsupportedDtypeError(f"unknown field type {field_type!r}; known: {sorted(_FIELD_ARROW)} and 'json'")
        if isinstance(value, str) and field_type in ("datetime", "timedelta"):
            value = _parsed(value, field_type)
        if field_type == "decimal" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                value = decimal.Decimal(value.strip() if isinstance(value, str) else str(value))
            except decimal.InvalidOperation as e:
                raise UnsupportedDtypeError(f"cannot convert {value!r} to decimal: not a number") from e
        s = pd.Series([value], dtype=object)
        if isinstance(value, (pd.Timestamp, np.datetime64, pd.Timedelta, np.timedelta64)):
            s = pd.Series([value])
        if field_type == "decimal":
            if not isinstance(value, decimal.Decimal):
                raise UnsupportedDtypeError(f"cannot convert {value!r} to decimal: not a number")
            return value
        col = Column("value", field_type, t, True, {"name": "object"})
        try:
            arr = self._convert(s, col)  # type: ignore[attr-defined]
        except Unequal as e:
            raise UnsupportedDtypeError(f"cannot convert {value!r} to {field_type}: {e.reason}") from e
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as e:
            raise UnsupportedDtypeError(f"cannot convert {value!r} to {field_type}: {str(e).splitlines()[0]}") from e
        out = arr[0].as_py()
        if field_type == "datetime":
            return pd.Timestamp(out)
        if field_type == "timedelta":
            return pd.Timedelta(out)
        return out

    def optimize_dtypes(self, df: pd.DataFrame, category_ratio: float = 0.5) -> pd.DataFrame:
        """The same frame in the most memory-efficient dtypes that change no value."""
        out = {}
        for label in df.columns:
            s = df[label]
            d = s.dtype
            if d.kind in "iu" and not isinstance(d, pd.api.extensions.ExtensionDtype):
                out[label] = _downcast_int(s, nullable=False)
            elif str(d) in _MASKED and _MASKED[str(d)][0] in "iu":
                out[label] = _downcast_int(s, nullable=True)
            elif d == np.float64:
                f32 = s.astype(np.float32)
                same = (f32.astype(np.float64) == s) | (s.isna() & f32.isna())
                out[label] = f32 if same.all() else s
            elif (d == np.dtype(object) and pd.api.types.infer_dtype(s, skipna=True) == "string") or (
                isinstance(d, pd.StringDtype)
            ):
                n = len(s)
                out[label] = s.astype("category") if n and s.nunique() <= category_ratio * n else s
            else:
                out[label] = s
        return pd.DataFrame(out, index=df.index)


_FIELD_ARROW = {  # field type -> the Arrow type convert_value converts to
    **{k: pa.from_numpy_dtype(np.dtype(k)) for k in NUMBER_KINDS},
    "bool": pa.bool_(),
    "string": pa.large_string(),
    "bytes": pa.binary(),
    "date": pa.date32(),
    "datetime": pa.timestamp("ns"),
    "timedelta": pa.duration("ns"),
    "decimal": pa.decimal128(38, 0),  # not used to convert: a Decimal keeps its own places
}


def _parsed(text: str, field_type: str):
    """A timestamp or a duration from its text, as pandas reads it (ValueError when it reads none)."""
    try:
        return pd.Timestamp(text) if field_type == "datetime" else pd.Timedelta(text)
    except ValueError as e:
        raise UnsupportedDtypeError(f"cannot convert {text!r} to {field_type}: {e}") from e


def _looks_like_dtype(s: str) -> bool:
    try:
        pd.api.types.pandas_dtype(s)
        return True
    except TypeError:
        return False


def _downcast_int(s: pd.Series, nullable: bool) -> pd.Series:
    if s.isna().all():
        return s
    lo, hi = s.min(), s.max()
    signed = str(s.dtype).lower().startswith("int")
    for bits in (8, 16, 32, 64):
        name = f"{'int' if signed else 'uint'}{bits}"
        info = np.iinfo(name)
        if info.min <= lo and hi <= info.max:
            target = name.capitalize().replace("Uint", "UInt") if nullable else name
            return s.astype(target)
    return s
