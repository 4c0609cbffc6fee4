"""Checks before writing (validate=): a pandera schema validated against each frame a call writes.

pandera validates lazily (every failure at once). A failure it ties to a row fails that row at stage
`validate`, error `Check`, code the check's name, and the rest are written; a failure tied to no row (a
missing column, a dtype, a check of the whole frame) raises SchemaMismatchError before anything is written.
pandera coerces only where the schema asks, and only for its checks (on a copy): what is written is the
frame as given, converted by the package's own rules. update_batch and delete check the columns their
frame has.

A table keeps a schema (store.set_validation) in its dk schema, in pandera's own JSON: another process or
Store sees it, and every write through the package is checked against it as well as the call's own.
"""

from __future__ import annotations

import copy
import os
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd

from .errors import BackendUnavailableError, InvalidArgumentError, SchemaMismatchError
from .failures import Failures, RowError, RowFailure, Stage
from .schema import TableSchema

_SHOWN = 5  # row-less failures named in the error
_IGNORE_TIMEZONE = "PYARROW_IGNORE_TIMEZONE"


def _pandera():
    ignored = os.environ.get(_IGNORE_TIMEZONE)
    try:
        import pandera.errors
        import pandera.pandas
    except ImportError as e:  # pragma: no cover - the extra is missing
        raise BackendUnavailableError(
            f"validate= needs pandera ({e.name or e}); run: pip install 'dataknobs-pd[validate]'"
        ) from e
    finally:
        # Importing pandera sets PYARROW_IGNORE_TIMEZONE=1 for pyspark's sake, and pyarrow then reads the wall
        # time of any aware datetime as UTC, in the whole process: what this import set, it takes back.
        if ignored is None and "pyspark" not in sys.modules:
            os.environ.pop(_IGNORE_TIMEZONE, None)
    return pandera.pandas, pandera.errors


def schema_of(checks: Any):
    """The pandera DataFrameSchema of `checks` (a DataFrameSchema, or a DataFrameModel class)."""
    pa, _ = _pandera()
    if isinstance(checks, type) and issubclass(checks, pa.DataFrameModel):
        return checks.to_schema()  # type: ignore[attr-defined]
    if isinstance(checks, pa.DataFrameSchema):
        return checks
    raise InvalidArgumentError(
        f"validate= takes a pandera DataFrameSchema or DataFrameModel (import pandera.pandas as pa), "
        f"got {type(checks).__name__}"
    )


def _for_frame(schema, df: pd.DataFrame, partial: bool):
    """`schema` as it applies to `df`: with `partial` (update_batch, delete: a frame of some columns), its
    columns the frame has, and its checks of the whole frame only when the frame has every column."""
    if not partial:
        return schema
    have = [c for c in schema.columns if c in df.columns]
    out = schema.select_columns(have)
    if len(have) < len(schema.columns):  # a check of the whole frame may need the columns it lacks
        out = copy.deepcopy(out)
        out.checks = []
    return out


def failures(schema, df: pd.DataFrame, table: str, partial: bool = False) -> Failures:
    """The rows of `df` that fail `schema` (by position), or SchemaMismatchError for a failure of no row.
    `partial`: `df` is a frame of some of the columns (update_batch, delete; see _for_frame)."""
    _, errors = _pandera()
    schema = _for_frame(schema, df, partial)
    view = df if schema.index is not None else df.set_axis(pd.RangeIndex(len(df)), axis=0)
    try:
        schema.validate(view, lazy=True)  # a copy: a schema that coerces leaves the caller's frame alone
    except errors.SchemaErrors as e:
        cases = e.failure_cases
    except errors.SchemaError as e:  # pragma: no cover - lazy validation raises SchemaErrors
        raise SchemaMismatchError(f"{table!r}: the frame fails validate=: {e}") from e
    else:
        return {}
    rowless = cases[cases["index"].isna()]
    if len(rowless):
        shown = "; ".join(_case(r) for r in rowless.head(_SHOWN).itertuples(index=False))
        more = f" (and {len(rowless) - _SHOWN} more)" if len(rowless) > _SHOWN else ""
        raise SchemaMismatchError(
            f"the frame for {table!r} fails its checks (validate=, or the table's own) as a whole, so nothing "
            f"was written: {shown}{more}"
        )
    positions = _positions(view, cases["index"])
    found: dict[int, list] = {}
    for p, r in zip(positions, cases.itertuples(index=False)):
        for at in np.atleast_1d(p):
            found.setdefault(int(at), []).append(r)
    return {
        at: RowFailure(Stage.VALIDATE, RowError.Check, "; ".join(map(_case, rs)), ", ".join(str(r.check) for r in rs))
        for at, rs in found.items()
    }


def _positions(view: pd.DataFrame, labels: pd.Series) -> list:
    """The row positions of the failure cases' index labels (each position, where labels repeat)."""
    if isinstance(view.index, pd.RangeIndex) and view.index.start == 0 and view.index.step == 1:
        return labels.astype("int64").tolist()
    if view.index.is_unique:
        return view.index.get_indexer(labels.tolist()).tolist()
    return [np.flatnonzero(view.index == label) for label in labels]


def _case(r) -> str:
    """One failure case, naming the column, the value and the check."""
    check, value = str(r.check), r.failure_case
    if r.schema_context in ("Index", "MultiIndex"):
        level = "" if r.column is None or pd.isna(r.column) else f" {r.column!r}"
        return f"index{level}: value {value!r} fails {check}"
    if r.schema_context != "Column":
        if check == "column_in_dataframe":
            return f"column {value!r} is missing"
        return f"the frame fails {check}" + ("" if value is None else f" ({value!r})")
    if check.startswith("dtype("):
        return f"column {r.column!r} has dtype {value}, the schema wants {check}"
    return f"column {r.column!r}: value {value!r} fails {check}"


# -- checks a table keeps (store.set_validation) ------------------------------------------------
def serialize(checks: Any, table: str) -> str:
    """`checks` in pandera's own JSON, or InvalidArgumentError naming the checks it cannot keep (pandera
    writes registered checks only: a lambda, or any function of one's own, is lost)."""
    pa, _ = _pandera()
    schema = schema_of(checks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandera warns of each check it skips: named below
        try:
            text = schema.to_json()
        except Exception as e:  # noqa: BLE001 - whatever pandera cannot write, said as such
            raise InvalidArgumentError(
                f"set_validation({table!r}): pandera cannot serialize this schema ({type(e).__name__}: {e})"
            ) from e
    back = pa.DataFrameSchema.from_json(text)
    lost = [f"{where}: {name}" for where, name in _check_names(schema) if (where, name) not in set(_check_names(back))]
    if lost or back.to_json() != text:
        what = "; ".join(lost) if lost else "a part it does not read back as written"
        raise InvalidArgumentError(
            f"set_validation({table!r}): the table cannot keep this schema, as pandera's serialization loses "
            f"{what}. Only registered checks are kept (pandera.extensions.register_check_method), not lambdas "
            f"or functions of one's own; pass such a schema to each call with validate= instead"
        )
    return text


def kept(schema: TableSchema | None):
    """The pandera schema a table of dk schema `schema` keeps (store.set_validation), or None."""
    if schema is None or schema.checks is None:
        return None
    pa, _ = _pandera()
    return pa.DataFrameSchema.from_json(schema.checks)


def _check_names(schema) -> list[tuple[str, str]]:
    out = [("the frame", str(c.name)) for c in schema.checks]
    for name, col in schema.columns.items():
        out += [(f"column {name!r}", str(c.name)) for c in col.checks]
    return out
