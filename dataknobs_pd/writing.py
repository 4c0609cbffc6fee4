"""One write call, whatever its caller: the options checked, the input read, the plan, the writer chosen.

`api.save`, `update_batch` and `delete` (and the accessors, and the Dask accessor) spell their options out
for `help()`; a `WriteOptions` carries them here. The caller says whether the input can be written by many
writers at once (`parallel`: a Dask frame's partitions); otherwise, or when that path declines, the one
writer of the engine (batch.BatchWriter) writes it.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from . import aside, batchlog, checks, keys
from .batch import BatchWriter, Job, Plan
from .errors import InvalidArgumentError, TableExistsError, TableNotFoundError
from .names import check_column_names, check_table_name
from .result import BatchResult
from .schema import TableSchema
from .store import Store, as_store
from .types import TypeMapper, is_default_index

IF_EXISTS = ("fail", "replace", "append", "upsert")
ERRORS = ("collect", "raise")
NEW_COLUMNS = ("fail", "add")
OPERATIONS = ("save", "update_batch", "delete")

mapper = TypeMapper()


@dataclass(frozen=True)
class WriteOptions:
    """The options of a writing call, as the public functions document them."""

    key: str | Sequence[str] | None = None
    if_exists: str = "fail"  # save
    insert_missing: bool = False  # update_batch
    errors: str = "collect"
    chunksize: int | None = None
    progress: bool | None = None
    dry_run: bool = False
    track_changes: bool = False
    new_columns: str = "fail"  # save, update_batch
    quarantine: bool | None = None  # None: as the store was connected with
    max_errors: int | None = None
    max_error_rate: float | None = None
    undoable: bool | None = None  # None: as the store was connected with
    validate: Any = None  # a pandera schema (checks.py)

    def check(self) -> None:
        """Refuse a value no call takes, naming the option."""
        _check_option("if_exists", self.if_exists, IF_EXISTS)
        _check_option("new_columns", self.new_columns, NEW_COLUMNS)
        _check_option("errors", self.errors, ERRORS)
        c = self.chunksize
        if c is not None and (not isinstance(c, int) or isinstance(c, bool) or c < 1):
            raise InvalidArgumentError(f"chunksize= must be a positive int, got {c!r}")
        m = self.max_errors
        if m is not None and (not isinstance(m, int) or isinstance(m, bool) or m < 0):
            raise InvalidArgumentError(f"max_errors= must be a non-negative int (failed rows allowed), got {m!r}")
        r = self.max_error_rate
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 1):
            raise InvalidArgumentError(f"max_error_rate= must be a fraction between 0 and 1, got {r!r}")
        for name in ("quarantine", "undoable"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, bool):
                raise InvalidArgumentError(f"{name}= must be True or False, got {v!r}")
        if self.undoable and self.if_exists == "replace":
            raise InvalidArgumentError(
                "undoable=True cannot keep what if_exists='replace' drops (the whole table); save to a new "
                "table, or use a store that keeps history (delta://) and load(version=)"
            )


def write(
    operation: str, data, store: Store | str, table: str, options: WriteOptions, parallel: aside.Source | None = None
) -> BatchResult:
    """Run one writing call (`operation`: save, update_batch or delete) of `data` (a frame, or an iterable of
    frames) into `table`. `parallel`: the input's partitions can be written by many writers at once."""
    if operation not in OPERATIONS:
        raise InvalidArgumentError(f"unknown operation {operation!r}")
    options.check()
    frames, df, again = _input(data)
    _check_frame(df, table)
    store = as_store(store)
    job = Job(
        operation,
        store.backend,
        store.url,
        table,
        frames,
        _planner(operation, df, store, table, options),
        errors=options.errors,
        chunksize=options.chunksize,
        progress=options.progress,
        again=again,
        new_columns=options.new_columns,
        dry_run=bool(options.dry_run),
        track=bool(options.track_changes),
        batch_id=batchlog.new_id(),
        quarantine=_default(options.quarantine, store, "quarantine"),
        undoable=_default(options.undoable, store, "undoable") and options.if_exists != "replace",
        max_errors=options.max_errors,
        max_error_rate=options.max_error_rate,
        checks=None if options.validate is None else checks.schema_of(options.validate),
    )
    writer = BatchWriter(mapper)
    res = None
    if parallel is not None and store.address is not None:  # aside.save declines what it cannot load so
        res = aside.save(writer, job, parallel, store.address)
    if res is None:
        res = writer.run(job)
    if options.dry_run and (isinstance(data, pd.DataFrame) or again is not None or isinstance(frames, list)):
        res._commit = functools.partial(write, operation, data, store, table, replace(options, dry_run=False), parallel)
    return res


def _default(value: bool | None, store: Store, name: str) -> bool:
    """A call's quarantine= or undoable=, or the store's (dk.connect(url, quarantine=True))."""
    return bool(store.defaults.get(name, False)) if value is None else value


def _planner(operation: str, df: pd.DataFrame, store: Store, table: str, o: WriteOptions):
    """The call's `plan`: what to do to the table as it stands (None: it does not exist)."""
    if operation == "delete":

        def plan_delete(existing: TableSchema | None) -> Plan:
            existing = found(store, table, existing)
            key_cols, loose = keys.choose(df, o.key, existing, table, "delete")
            return Plan(replace(existing, key=key_cols, loose=True) if loose else existing, "delete")

        return plan_delete

    if operation == "update_batch":

        def plan_update(existing: TableSchema | None) -> Plan:
            existing = found(store, table, existing)
            key_cols, loose = keys.choose(df, o.key, existing, table, "update_batch")
            return _into(
                df, existing, key_cols, loose, table, o.new_columns, "upsert" if o.insert_missing else "update"
            )

        return plan_update

    upsert = "save(if_exists='upsert')" if o.if_exists == "upsert" else None
    fresh: list[TableSchema] = []  # the frame's own schema, described once

    def plan_save(existing: TableSchema | None) -> Plan:
        if existing is not None and o.if_exists == "fail":
            raise TableExistsError(
                f"table {table!r} already exists in {store.url}; pass if_exists='replace', 'append' or 'upsert'"
            )
        if existing is None or o.if_exists == "replace":
            if existing is None:
                _check_case(store, table)
            if not fresh:
                key_cols, _ = keys.choose(df, o.key, None, table, upsert)
                fresh.append(mapper.schema(df, key_cols))
            return Plan(fresh[0], "insert", create=True)
        key_cols, loose = keys.choose(df, o.key, existing, table, upsert)
        if loose and not upsert:  # a table without a key takes appends as they are
            key_cols, loose = None, False
        return _into(df, existing, key_cols, loose, table, o.new_columns, "upsert" if upsert else "insert")

    return plan_save


def _into(
    df: pd.DataFrame, existing: TableSchema, key_cols, loose: bool, table: str, new_columns: str, mode: str
) -> Plan:
    """The plan of a write into an existing table: its columns checked against the frame's (TypeMapper.fit);
    a `loose` key (key= on a table without one) is what this call matches rows by, and is not stored."""
    schema, changed, added = mapper.fit(df, existing, table, new_columns)
    if loose:
        schema = replace(schema, key=key_cols, loose=True)
    return Plan(schema, mode, schema_changed=changed, added=tuple(added))


def found(store: Store, table: str, schema: TableSchema | None) -> TableSchema:
    """`schema`, or TableNotFoundError saying what the store holds."""
    if schema is None:
        raise TableNotFoundError(store.table_not_found(table))
    return schema


# -- the input -------------------------------------------------------------------------------------
def _input(data) -> tuple[list[pd.DataFrame] | Iterator[pd.DataFrame], pd.DataFrame, Iterable | None]:
    """The frames to write, the first of them, and what to read again for a retry (None: a one-shot stream)."""
    if isinstance(data, pd.DataFrame):
        return [data], data, None
    if isinstance(data, (pd.Series, dict)):  # iterable, but not of frames: say what to pass instead
        _frame_at(data, None)
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise InvalidArgumentError(f"expected a pandas DataFrame or an iterable of them, got {type(data).__name__}")
    if isinstance(data, (list, tuple)):
        frames = list(data)
        for i, f in enumerate(frames):
            _frame_at(f, i)
        if not frames:
            raise InvalidArgumentError("the input holds no frames")
        return frames, frames[0], None
    again = None if isinstance(data, Iterator) else data  # an iterable that is not an iterator reads again
    it = iter(data)
    first = next(it, None)
    if first is None:
        raise InvalidArgumentError("the input stream holds no frames")
    _frame_at(first, 0)
    return itertools.chain([first], (_frame_at(f, i) for i, f in enumerate(it, 1))), first, again


def _frame_at(f, i: int | None) -> pd.DataFrame:
    """`f` when it is a DataFrame (item `i` of the input, or the input itself when None); else an error
    saying what it is and, for a Series or a dict, how to make a frame of it."""
    if isinstance(f, pd.DataFrame):
        return f
    what = "the input" if i is None else f"item {i} of the input"
    if isinstance(f, pd.Series):
        if f.name is None:
            how = "series.to_frame(name), a one-column frame whose column is `name` (series.to_frame() calls it 0)"
        else:
            how = f"series.to_frame(), a one-column frame whose column is {f.name!r} (or series.to_frame(name))"
        raise InvalidArgumentError(f"{what} is a pandas Series, not a DataFrame: pass {how}")
    if isinstance(f, dict):
        raise InvalidArgumentError(f"{what} is a dict, not a pandas DataFrame: pass pd.DataFrame(data) instead")
    raise InvalidArgumentError(f"{what} is a {type(f).__name__}, not a pandas DataFrame")


def _check_frame(df, table: str) -> None:
    _frame_at(df, None)
    check_table_name(table)
    if len(df.columns) == 0 and is_default_index(df.index):
        raise InvalidArgumentError(
            f"the frame has {len(df):,} rows and no columns (and only a default index): nothing to store in {table!r}"
        )
    check_column_names(df)


def _check_case(store: Store, table: str) -> None:
    """Refuse a new table whose name differs only by case from one already there: SQLite and
    case-insensitive file systems cannot keep such names apart, so no store takes them."""
    folded = table.casefold()
    other = next((t for t in store.backend.tables() if t.casefold() == folded and t != table), None)
    if other is not None:
        raise InvalidArgumentError(
            f"table {table!r} differs only by case from table {other!r} in {store.url}; use {other!r} or another name"
        )


def _check_option(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InvalidArgumentError(f"{name}={value!r} is not valid; use one of {', '.join(map(repr, allowed))}")
