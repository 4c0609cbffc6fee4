"""Why a row was not written: the one place that turns facts into row failures.

Every input row of a write ends written or as a RowFailure at one stage:

- validate: its key is missing (NullKey) or repeats an earlier row of the input (DuplicateKey);
- convert:  a value cannot become its column's type (TypeConversion), or the store cannot hold it
            exactly (OutOfRange), or a required column has no value (NotNull);
- write:    the store refused it: its key exists on insert (KeyConflict), or matches several rows of a
            table that has no key of its own (AmbiguousKey), a new row lacks a required
            column (NotNull), a constraint (CheckConstraint, ForeignKey, Constraint) or anything else
            (WriteError), with the store's own code;
- missing:  update_batch or delete of a key that is not in the table (MissingKey).

Backends report facts (which rows' keys existed, which values they cannot hold) or raise a
classified WriteError; the engine (batch.py) asks `classify` and `unholdable` for the failures
and narrows refused chunks down with `bisect`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InternalError
from .schema import INDEX_PREFIX, TableSchema


class Stage(StrEnum):
    VALIDATE = "validate"
    CONVERT = "convert"
    WRITE = "write"
    MISSING = "missing"
    UNDO = "undo"


class RowError(StrEnum):
    NullKey = "NullKey"
    Check = "Check"
    DuplicateKey = "DuplicateKey"
    TypeConversion = "TypeConversion"
    OutOfRange = "OutOfRange"
    KeyConflict = "KeyConflict"
    AmbiguousKey = "AmbiguousKey"
    NotNull = "NotNull"
    CheckConstraint = "CheckConstraint"
    ForeignKey = "ForeignKey"
    Constraint = "Constraint"
    WriteError = "WriteError"
    MissingKey = "MissingKey"
    Conflict = "Conflict"


# What each class means (the `error` column of BatchResult.failures; the report widget shows these).
ROW_ERRORS = {
    RowError.NullKey: "the key is missing (validate)",
    RowError.Check: "a pandera check (validate=, or the table's own) failed; code names the check (validate)",
    RowError.DuplicateKey: "the key repeats one seen earlier in the same frame (validate)",
    RowError.TypeConversion: "the value cannot become the column's type (convert)",
    RowError.OutOfRange: "the value is outside what the column or the store can hold (convert)",
    RowError.KeyConflict: "the key already exists in the table (write)",
    RowError.AmbiguousKey: "the key matches several rows of a table that has no key of its own (write)",
    RowError.NotNull: "a required column has no value (write)",
    RowError.CheckConstraint: "a CHECK constraint rejected the row (write)",
    RowError.ForeignKey: "a FOREIGN KEY constraint rejected the row (write)",
    RowError.Constraint: "another constraint rejected the row (write)",
    RowError.WriteError: "the store rejected the row for another reason (write)",
    RowError.MissingKey: "update_batch/delete: the key is not in the table (missing)",
    RowError.Conflict: "dk.undo: a later call changed the row since, so it was left as it is (undo)",
}


@dataclass(frozen=True, slots=True)
class RowFailure:
    """Why one input row was not written: stage, error class, message and the store's own code."""

    stage: Stage
    error: RowError
    message: str
    code: str | None = None

    def __post_init__(self):  # plain strings are accepted; an unknown stage or class is a bug
        object.__setattr__(self, "stage", Stage(self.stage))
        object.__setattr__(self, "error", RowError(self.error))


Failures = dict[int, RowFailure]  # position -> why that row was not written


@dataclass(frozen=True, slots=True)
class Unholdable:
    """A backend's fact: a value it cannot keep exactly (a `convert` failure of its row)."""

    column: str
    why: str
    error: RowError = RowError.OutOfRange


# -- facts -> failures -----------------------------------------------------------------------
def validate(key_frame: pd.DataFrame, null: np.ndarray, dup: np.ndarray, offset: int | None = None) -> Failures:
    """Rows whose key has a missing part, or repeats an earlier row's key (the first occurrence is kept).

    `offset`: the frame is part of a stream and starts at that row of the whole input."""
    names = ", ".join(map(str, key_frame.columns))
    out: Failures = {}
    for p in null:
        out[int(p)] = RowFailure(Stage.VALIDATE, RowError.NullKey, f"key ({names}) has a missing value")
    if len(dup):
        key = list(key_frame.columns)
        first = key_frame.reset_index().groupby(key, dropna=False, sort=False)["index"].transform("min")
        for p in dup:
            where = "of this frame" if offset is None else "of this input"
            out[int(p)] = RowFailure(
                Stage.VALIDATE,
                RowError.DuplicateKey,
                f"key ({names}) repeats row {int(first.iloc[p]) + (offset or 0)} {where}",
            )
    return out


def repeated(key_frame: pd.DataFrame, positions: np.ndarray, earlier: np.ndarray) -> Failures:
    """Rows of a stream whose key an earlier frame already had (at row `earlier` of the whole input)."""
    names = ", ".join(map(str, key_frame.columns))
    return {
        int(p): RowFailure(Stage.VALIDATE, RowError.DuplicateKey, f"key ({names}) repeats row {int(e)} of this input")
        for p, e in zip(positions, earlier)
    }


def unholdable(facts: dict[int, Unholdable]) -> Failures:
    """The convert failures of the values a store said it cannot hold."""
    return {int(i): RowFailure(Stage.CONVERT, u.error, f"column {u.column!r}: {u.why}") for i, u in facts.items()}


def unconvertible(column: str, kind: str, value, error: Exception) -> RowFailure:
    """A value that does not become its column's type."""
    value = value.item() if isinstance(value, np.generic) else value
    text = str(error).split("\n")[0]
    kind_of = RowError.OutOfRange if _is_range_error(text) else RowError.TypeConversion
    detail = "" if "parse" in text.lower() or "could not convert" in text.lower() else f": {text}"
    return RowFailure(Stage.CONVERT, kind_of, f"column {column!r} ({kind}): cannot store {value!r}{detail}")


def unequal(column: str, kind: str, value, reason: str) -> RowFailure:
    """A value that its column's type would store as another value (conversion.py)."""
    value = value.item() if isinstance(value, np.generic) else value
    return RowFailure(
        Stage.CONVERT, RowError.TypeConversion, f"column {column!r} ({kind}): cannot store {value!r}: {reason}"
    )


def required(column: str) -> RowFailure:
    """A required column without a value in this row."""
    return RowFailure(Stage.CONVERT, RowError.NotNull, f"column {column!r} requires a value and this row has none")


def absent_columns(schema: TableSchema, data: pa.Table) -> list[str]:
    """Required columns of the table that `data` lacks: rows it would insert cannot be written."""
    return [c.name for c in schema.columns if c.name not in data.column_names and not c.nullable]


def classify(data: pa.Table, schema: TableSchema, mode: str, existed: np.ndarray | None) -> Failures:
    """The rows a write of `mode` left out, and why, from which rows' keys were in the table.

    insert leaves out rows whose key existed (KeyConflict); update and delete the rows whose
    key did not (MissingKey); insert and upsert leave out new rows when the data lacks a
    required column (NotNull). `existed` None means no key existed.
    """
    n = data.num_rows
    existed = np.zeros(n, dtype=bool) if existed is None else np.asarray(existed, dtype=bool)
    key = schema.key or []
    out: Failures = {}
    if mode == "insert" and key:
        for i in np.flatnonzero(existed):
            out[int(i)] = RowFailure(
                Stage.WRITE, RowError.KeyConflict, f"key {key_text(key, data, int(i))} already exists in the table"
            )
    if mode in ("update", "delete"):
        for i in np.flatnonzero(~existed):
            out[int(i)] = RowFailure(
                Stage.MISSING, RowError.MissingKey, f"key {key_text(key, data, int(i))} is not in the table"
            )
    absent = absent_columns(schema, data) if mode in ("insert", "upsert") else []
    if absent:
        names = ", ".join(repr(a) for a in absent)
        why = (
            " (the table keeps the index it was saved with: give the frame that index)"
            if any(a.startswith(INDEX_PREFIX) for a in absent)
            else ""
        )
        failure = RowFailure(
            Stage.WRITE, RowError.NotNull, f"a new row needs a value for column(s) {names}, which the frame lacks{why}"
        )
        for i in np.flatnonzero(~existed):
            out.setdefault(int(i), failure)
    return out


def inserted(data: pa.Table, schema: TableSchema, mode: str, existed: np.ndarray) -> np.ndarray:
    """Positions a write of `mode` inserts: rows whose key is new, unless updating or a required column is absent."""
    if mode not in ("insert", "upsert") or absent_columns(schema, data):
        return np.array([], dtype=np.int64)
    return np.flatnonzero(~np.asarray(existed, dtype=bool))


def ambiguous(data: pa.Table, key: list[str], matches: dict[int, int]) -> Failures:
    """Rows whose key= value the table (which has no key of its own) holds in several rows: {row: how many}."""
    return {
        i: RowFailure(
            Stage.WRITE,
            RowError.AmbiguousKey,
            f"key {key_text(key, data, i)} matches {n} rows of the table, which has no key of its own; "
            f"rows are matched by key= only where the key picks out one row",
        )
        for i, n in matches.items()
    }


def key_text(key: list[str], data: pa.Table, i: int) -> str:
    """How a report names the key of row `i` of `data`: `id=5`, or `a=1, b='x'`."""
    return ", ".join(f"{k}={data.column(k)[i].as_py()!r}" for k in key)


def _is_range_error(text: str) -> bool:
    words = ("range", "overflow", "out of bounds", "truncated", "would lose", "precision", "too large")
    return any(w in text.lower() for w in words)


# -- narrowing down --------------------------------------------------------------------------
E = TypeVar("E", bound=BaseException)


def bisect(
    n: int, attempt: Callable[[int, int], None], failed: Callable[[int, E], None], errors: tuple[type[E], ...]
) -> None:
    """Run attempt(lo, hi) over [0, n); a range that raises one of `errors` is halved until the positions
    at fault stand alone, and failed(position, error) is called for each. Ranges run in order.

    k failing positions among n cost about k*log2(n) extra attempts, not n.
    """
    stack = [(0, n)]
    while stack:
        lo, hi = stack.pop()
        if lo >= hi:
            continue
        try:
            attempt(lo, hi)
        except errors as e:
            if hi - lo == 1:
                failed(lo, e)
            else:
                mid = (lo + hi) // 2
                stack += [(mid, hi), (lo, mid)]  # the first half runs first


# -- the report ------------------------------------------------------------------------------
FAILURE_COLUMNS = ["row", "index", "key", "stage", "error", "message", "code"]


def failures_frame(
    failed_rows: pd.DataFrame | None, key: list[str] | None, failures: Failures, partition: dict[int, int] | None = None
) -> pd.DataFrame:
    """One row per failed input row: position, index label, key, stage, error, message, the store's code,
    and for a stream the frame (partition) it came in.

    `failed_rows` are the failed input rows themselves, in the order of their positions."""
    from .keys import key_labels

    rows = np.array(sorted(failures), dtype=np.int64)
    fs = [failures[r] for r in rows]
    here = np.arange(len(rows))
    if len(rows):
        if failed_rows is None:
            raise InternalError("failures come with their failed rows")
        labels = failed_rows.index.tolist()
    else:
        labels = []
    out = pd.DataFrame(
        {
            "row": rows,
            "index": pd.Series(labels, dtype=object),
            "key": pd.Series(key_labels(failed_rows, key, here) if len(rows) else [], dtype=object),
            "stage": pd.Series([str(f.stage) for f in fs], dtype=object),
            "error": pd.Series([str(f.error) for f in fs], dtype=object),
            "message": pd.Series([f.message for f in fs], dtype=object),
            "code": pd.Series([f.code for f in fs], dtype=object),
        },
        columns=FAILURE_COLUMNS,
    )
    if partition is not None:
        out.insert(1, "partition", np.array([partition[r] for r in rows], dtype=np.int64))
    return out
