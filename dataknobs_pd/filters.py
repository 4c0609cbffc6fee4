"""`where` filters in the form of pandas' read_parquet(filters=...): validated and normalized."""

from __future__ import annotations

import datetime as dt

import numpy as np

from .errors import InvalidArgumentError

OPS = ("==", "=", "!=", "<", "<=", ">", ">=", "in", "not in")


def _names(schema) -> dict:
    """{pandas label or stored name: stored name} of a TableSchema (int labels are stored as str)."""
    out = {c.name: c.name for c in schema.columns}
    out.update({c.pandas_label: c.name for c in schema.columns})
    return out


def normalize(where, schema) -> list[list[tuple[str, str, object]]]:
    """Return `where` as OR-of-AND groups of (stored column, op, value), checking columns, ops and values.

    A flat list of tuples is one AND group; a list of lists is ORed groups. Columns may be
    named by their pandas label; each value must convert to its column's type.
    """
    if where is None:
        return []
    names = _names(schema)
    columns = [c.pandas_label for c in schema.columns]
    if isinstance(where, tuple):
        where = [where]
    if not isinstance(where, list) or not where:
        raise InvalidArgumentError(f"where= must be a non-empty list of (column, op, value) tuples, got {where!r}")
    groups = where if all(isinstance(g, list) for g in where) else [where]
    out = []
    for group in groups:
        conj = []
        for term in group:
            if not (isinstance(term, (tuple, list)) and len(term) == 3):
                raise InvalidArgumentError(f"where= term {term!r} is not a (column, op, value) tuple")
            col, op, value = term
            op = op.lower().strip() if isinstance(op, str) else op
            if op not in OPS:
                raise InvalidArgumentError(f"where= operator {op!r} in {tuple(term)!r}; use one of {', '.join(OPS)}")
            op = "==" if op == "=" else op
            if not _hashable(col) or col not in names:
                raise InvalidArgumentError(f"where= column {col!r} is not in the table; columns: {columns}")
            col = names[col]
            if op in ("in", "not in"):
                if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                    raise InvalidArgumentError(f"where= {op!r} needs a list of values, got {value!r} for {col!r}")
                value = [None if _missing(v) else v for v in value]
            elif _missing(value):  # NaN, NaT and NA mean "missing", as None does
                value = None
            if value is None and op not in ("==", "!=", "in", "not in"):
                raise InvalidArgumentError(
                    f"where= ({col!r}, {op!r}, {value!r}): a missing value can only be "
                    f"compared with == or != (is null / is not null)"
                )
            if value is not None:
                t = schema.column(col).arrow
                op, value = _temporal(col, op, value, t)
                if value is not None:
                    _check_value(col, op, value, t)
            conj.append((col, op, value))
        out.append(conj)
    return out


def _missing(v) -> bool:
    import pandas as pd

    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):  # list-like values
        return False


def _check_value(col: str, op: str, value, t) -> None:
    import pyarrow as pa

    values = value if op in ("in", "not in") else [value]
    try:
        pa.array(values, type=t, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        raise InvalidArgumentError(
            f"where= ({col!r}, {op!r}, {value!r}): the value cannot be compared with column {col!r} ({t}): "
            f"{str(e).splitlines()[0]}"
        ) from e


# -- dates, datetimes and durations ------------------------------------------------------------
# Backends turn filter values into the column's Arrow type, which reads only some Python forms
# (no strings, no dates for a datetime column, np.datetime64 only in the column's unit) and reads
# others wrongly without a word: a naive value as UTC on a tz-aware column, an aware one as UTC
# wall time on a naive column, a finer value truncated to the column's unit. So values for these
# columns are read here, as pandas reads them, into exactly the values Arrow stores.

_DATELIKE = (str, dt.date, np.datetime64)  # dt.datetime and pd.Timestamp are dt.date
_DURATIONLIKE = (str, dt.timedelta, np.timedelta64)  # pd.Timedelta is a dt.timedelta
_ROUND = {"==": "in", "!=": "!=", "<": "<=", "<=": "<=", ">": ">", ">=": ">"}  # op against the floor


def _temporal(col: str, op: str, value, t) -> tuple[str, object]:
    """(op, value) with the date, datetime or duration values of a filter on such a column read as its type.

    A value between two values the column can hold (a finer unit, a time of day for a date column)
    is compared exactly: against the one below it, with the operator adjusted, and no row equals it.
    Values of other Python types (e.g. ints) are left to the usual conversion.
    """
    import pyarrow as pa

    accepted: tuple[type, ...]
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        accepted = _DATELIKE
    elif pa.types.is_duration(t):
        accepted = _DURATIONLIKE
    else:
        return op, value
    if op in ("in", "not in"):
        out = []
        for v in value:
            if v is None or not isinstance(v, accepted):
                out.append(v)
                continue
            stored, exact = _stored(col, op, v, t)
            if exact:  # a value the column cannot hold equals no row: in and not in alike leave it out
                out.append(stored)
        return op, out
    if not isinstance(value, accepted):
        return op, value
    stored, exact = _stored(col, op, value, t)
    if exact:
        return op, stored
    op = _ROUND[op]
    if op == "in":  # == a value no row can hold
        return "in", []
    if op == "!=":  # every non-null row differs from it (as != always leaves nulls out)
        return "!=", None
    return op, stored


def _zone_errors() -> tuple[type[BaseException], ...]:
    """What Timestamp.tz_localize raises for a wall time that does not exist or is ambiguous in a zone:
    ValueError, and on pandas 2 pytz's own errors."""
    try:
        import pytz
    except ImportError:  # pandas 3 does not need pytz
        return (ValueError, TypeError)
    return (ValueError, TypeError, pytz.InvalidTimeError)


_ZONE_ERRORS = _zone_errors()


def _stored(col: str, op: str, value, t) -> tuple[object, bool]:
    """The value as the column stores it (the largest one not above it) and whether that is the value itself."""
    import pandas as pd
    import pyarrow as pa

    def refuse(why: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"where= ({col!r}, {op!r}, {value!r}): {why}")

    if pa.types.is_duration(t):
        try:
            td = pd.Timedelta(value)
        except (ValueError, TypeError, OverflowError) as e:
            raise refuse(f"the value cannot be read as a duration for column {col!r} ({t}): {e}") from None
        if td is pd.NaT:
            raise refuse(f"the value cannot be read as a duration for column {col!r} ({t})")
        return _in_unit(td, t, lambda e: refuse(f"the value is outside the range of column {col!r} ({t}): {e}"))
    if pa.types.is_date(t) and type(value) is dt.date:
        return value, True
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as e:
        kind = "date" if pa.types.is_date(t) else "datetime"
        raise refuse(f"the value cannot be read as a {kind} for column {col!r} ({t}): {e}") from None
    if ts is pd.NaT:
        raise refuse(f"the value cannot be read as a date or datetime for column {col!r} ({t})")
    zone = getattr(t, "tz", None)
    if ts.tz is not None and zone is None:
        what = "dates" if pa.types.is_date(t) else "naive datetimes (no time zone)"
        raise refuse(
            f"the value is tz-aware ({ts.tz}) and column {col!r} holds {what}, which pandas will not compare; "
            f"give a naive value, e.g. ts.tz_convert(zone).tz_localize(None)"
        )
    try:
        # a naive value against a tz-aware column is a wall time in the column's zone, as pandas reads a string
        ts = ts.tz_convert(zone) if ts.tz is not None else ts.tz_localize(zone) if zone else ts
    except _ZONE_ERRORS as e:  # a wall time that does not exist or is ambiguous there
        raise refuse(f"the value cannot be read in the time zone {zone} of column {col!r}: {e}") from None
    if pa.types.is_date(t):
        day = ts.date()
        return day, ts == pd.Timestamp(day)
    stored, exact = _in_unit(ts, t, lambda e: refuse(f"the value is outside the range of column {col!r} ({t}): {e}"))
    # An aware value goes on as UTC: pyarrow reads any other zone's wall time as UTC when the environment has
    # PYARROW_IGNORE_TIMEZONE=1, which importing pandera sets (for pyspark); UTC reads the same either way.
    return (stored.tz_convert("UTC") if stored.tz is not None else stored), exact


def _in_unit(value, t, refuse):
    """A Timestamp or Timedelta in the unit of the Arrow type `t`, floored, and whether that is the value
    itself; `refuse(error)` is raised when the unit cannot hold it."""
    import pandas as pd

    try:
        stored = value.as_unit(t.unit)
    except (ValueError, OverflowError) as e:
        raise refuse(e) from None
    if stored > value:  # as_unit floors; this only makes sure of it
        stored -= pd.Timedelta(1, unit=t.unit)
    if isinstance(stored, pd.Timedelta) and t.unit != "ns":
        # pyarrow reads a Timedelta's count as nanoseconds whatever its unit (with pandas 2.2): give it a
        # timedelta, exact in s, ms and us
        return stored.to_pytimedelta(), stored == value
    return stored, stored == value


_DIRECTIONS = {"asc": True, "ascending": True, "desc": False, "descending": False}


def order_terms(order_by, schema) -> list[tuple[str, bool]]:
    """order_by as [(stored column, ascending)]: a column, a (column, "asc"|"desc") pair, or a list of those."""
    if order_by is None:
        return []
    names = _names(schema)
    columns = [c.pandas_label for c in schema.columns]
    items = [order_by] if isinstance(order_by, (str, tuple)) or not isinstance(order_by, list) else order_by
    out = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise InvalidArgumentError(f"order_by term {item!r}: use a column or a (column, 'asc'|'desc') pair")
            name, direction = item
        else:
            name, direction = item, "asc"
        if not _hashable(name) or name not in names:
            raise InvalidArgumentError(f"order_by column {name!r} is not in the table; columns: {columns}")
        ascending = _DIRECTIONS.get(str(direction).lower())
        if ascending is None:
            raise InvalidArgumentError(f"order_by direction {direction!r} for {name!r}; use 'asc' or 'desc'")
        out.append((names[name], ascending))
    return out


def _hashable(v) -> bool:
    try:
        hash(v)
        return True
    except TypeError:
        return False


def to_expression(where, schema):
    """The normalized filters as a pyarrow.compute expression, values typed like their columns."""
    import operator

    import pyarrow as pa
    import pyarrow.compute as pc

    ops = {
        "==": operator.eq,
        "!=": operator.ne,
        "<": operator.lt,
        "<=": operator.le,
        ">": operator.gt,
        ">=": operator.ge,
    }
    any_of = None
    for group in where:
        all_of = None
        for col, op, value in group:
            field, t = pc.field(col), schema.field(col).type
            if op in ("in", "not in"):
                expr = field.isin(pa.array(value, type=t, from_pandas=True))
                expr = ~expr if op == "not in" else expr
            elif value is None:
                expr = field.is_null() if op == "==" else field.is_valid()
            else:
                expr = ops[op](field, pa.scalar(value, type=t))
            all_of = expr if all_of is None else all_of & expr
        any_of = all_of if any_of is None else any_of | all_of
    return any_of
