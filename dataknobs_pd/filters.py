"""`where` filters in the form of pandas' read_parquet(filters=...): validated and normalized."""

from __future__ import annotations

from .errors import DataKnobsError

OPS = ("==", "=", "!=", "<", "<=", ">", ">=", "in", "not in")


def normalize(where, columns: list[str], types: dict | None = None) -> list[list[tuple[str, str, object]]]:
    """Return `where` as OR-of-AND groups of (column, op, value), checking columns, ops and values.

    A flat list of tuples is one AND group; a list of lists is ORed groups. With `types`
    ({column: Arrow type}), each value must convert to its column's type.
    """
    if where is None:
        return []
    if isinstance(where, tuple):
        where = [where]
    if not isinstance(where, list) or not where:
        raise DataKnobsError(f"where= must be a non-empty list of (column, op, value) tuples, got {where!r}")
    groups = where if all(isinstance(g, list) for g in where) else [where]
    out = []
    for group in groups:
        conj = []
        for term in group:
            if not (isinstance(term, (tuple, list)) and len(term) == 3):
                raise DataKnobsError(f"where= term {term!r} is not a (column, op, value) tuple")
            col, op, value = term
            op = op.lower().strip() if isinstance(op, str) else op
            if op not in OPS:
                raise DataKnobsError(f"where= operator {op!r} in {tuple(term)!r}; use one of {', '.join(OPS)}")
            op = "==" if op == "=" else op
            if col not in columns:
                raise DataKnobsError(f"where= column {col!r} is not in the table; columns: {columns}")
            if op in ("in", "not in"):
                if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                    raise DataKnobsError(f"where= {op!r} needs a list of values, got {value!r} for {col!r}")
                value = [None if _missing(v) else v for v in value]
            elif _missing(value):  # NaN, NaT and NA mean "missing", as None does
                value = None
            if value is None and op not in ("==", "!=", "in", "not in"):
                raise DataKnobsError(f"where= ({col!r}, {op!r}, {value!r}): a missing value can only be "
                                     f"compared with == or != (is null / is not null)")
            if types is not None and value is not None:
                _check_value(col, op, value, types[col])
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
        raise DataKnobsError(
            f"where= value {value!r} cannot be compared with column {col!r} ({t}): {str(e).splitlines()[0]}"
        ) from e


def order_terms(order_by, columns: list[str]) -> list[tuple[str, bool]]:
    """order_by (a name, or a list of names or (name, "asc"|"desc")) as [(column, ascending)]."""
    if order_by is None:
        return []
    items = [order_by] if isinstance(order_by, (str, tuple)) else list(order_by)
    out = []
    for item in items:
        name, direction = (item, "asc") if isinstance(item, str) else item
        if name not in columns:
            raise DataKnobsError(f"order_by column {name!r} is not in the table; columns: {columns}")
        if str(direction).lower() not in ("asc", "desc", "ascending", "descending"):
            raise DataKnobsError(f"order_by direction {direction!r} for {name!r}; use 'asc' or 'desc'")
        out.append((name, str(direction).lower().startswith("asc")))
    return out


def to_expression(where, schema):
    """The normalized filters as a pyarrow.compute expression, values typed like their columns."""
    import operator

    import pyarrow as pa
    import pyarrow.compute as pc

    ops = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
           ">=": operator.ge}
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
