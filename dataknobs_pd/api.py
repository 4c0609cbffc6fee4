"""The public operations: save, update_batch, delete, load. Orchestration only, no backend details."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeAlias, overload

import pandas as pd
import pyarrow as pa

from . import keys
from .batch import BatchWriter, Job, Plan
from .errors import (
    InvalidArgumentError,
    TableExistsError,
    TableNotFoundError,
)
from .filters import normalize, order_terms
from .names import check_column_names, check_table_name
from .result import BatchResult
from .schema import TableSchema
from .store import Store, as_store
from .types import TypeMapper, is_default_index

IF_EXISTS = ("fail", "replace", "append", "upsert")
ERRORS = ("collect", "raise")
NEW_COLUMNS = ("fail", "add")

Filter: TypeAlias = tuple[Hashable, str, Any]
"""One condition of `where=`: `(column, op, value)`, op one of `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`,
`not in` (these two take a list of values)."""

Filters: TypeAlias = Filter | Sequence[Filter] | Sequence[Sequence[Filter]]
"""`where=` of `load`, in the form of pandas' `read_parquet(filters=...)`: a list of conditions joined
by AND, or a list of such lists joined by OR."""

OrderBy: TypeAlias = Hashable | tuple[Hashable, str] | Sequence[Hashable | tuple[Hashable, str]]
"""`order_by=` of `load`: a column, a `(column, "asc" | "desc")` pair, or a list of those."""

_mapper = TypeMapper()


def save(
    df: pd.DataFrame,
    store: Store | str,
    table: str,
    key: str | Sequence[str] | None = None,
    if_exists: str = "fail",
    errors: str = "collect",
    chunksize: int | None = None,
    progress: bool | None = None,
    dry_run: bool = False,
    track_changes: bool = False,
    new_columns: str = "fail",
) -> BatchResult:
    """Write a frame to a table: create it, replace it, append to it, or upsert into it by key.

    A row that cannot be written (a null or repeated key, a value its column cannot hold, a constraint
    of the store) is reported with the reason, and every other row is written.

    Args:
        df: The frame; or an iterable of frames (say `pd.read_csv(path, chunksize=...)`): one call, one
            report, rows counted across the whole stream, memory bounded by one frame. A Series is refused
            (pass `series.to_frame()`).
        store: A Store, a store's URL (`"sqlite:///flights.db"`, `"postgresql://..."`: see `connect`), or a
            connection you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
        table: The table's name.
        key: The key column(s), a name or a list of names, as columns or index levels. Default: the table's
            own key when it exists; else a column `id`; else `record_id`; else the index when it is named.
            Without a key, "fail", "replace" and "append" still work.
        if_exists: When the table exists: `"fail"` (`TableExistsError`, nothing written), `"replace"` (a
            new table in its place), `"append"` (insert; a key already there fails its row) or `"upsert"`
            (insert new keys, update the rows of existing ones).
        errors: `"collect"` writes every row that can be written and reports each one that cannot;
            `"raise"` is all or nothing: if any row fails nothing is written and `BatchError` is raised.
        chunksize: Rows per write (default: the store's own, about a million cells a chunk).
        progress: A progress bar: True, False, or None for one on long writes in a terminal or notebook.
        dry_run: Do everything, asking the store too (constraints, key conflicts), then leave the table as
            it was: the result says what would have happened (`res.changes`); `res.commit()` runs it for real.
        track_changes: Also on a real call, record `res.changes` (each written row's action, and the changed
            columns' values before and after); it costs one read of the touched keys.
        new_columns: `"fail"`: a frame column the table lacks raises `SchemaMismatchError` before anything
            is written; `"add"`: such columns are added to the table (rows already stored read back as
            missing in them).

    Returns:
        The report: `total`, `succeeded`, `failed`, `failures` (one line per failed row: position, index,
            key, stage, error, message, code) and `failed_rows()`, the failed input rows ready to resubmit.

    Raises:
        TableExistsError: `if_exists="fail"` and the table exists.
        KeyRequiredError: `if_exists="upsert"` and no key could be resolved.
        SchemaMismatchError: The frame does not fit the existing table (its key, or a column it lacks).
        BatchError: `errors="raise"` and a row failed: nothing was written; `.result` is the report.
        InvalidArgumentError: A bad argument (an option value, a table or column name, a Series).
    """
    _check_option("if_exists", if_exists, IF_EXISTS)
    _check_option("new_columns", new_columns, NEW_COLUMNS)
    data, (frames, df, again) = df, _input(df)
    _check_common(df, table, errors, chunksize)
    store = as_store(store)
    upsert = "save(if_exists='upsert')" if if_exists == "upsert" else None
    fresh: list[TableSchema] = []  # the frame's own schema, described once

    def plan(existing: TableSchema | None) -> Plan:
        if existing is not None and if_exists == "fail":
            raise TableExistsError(
                f"table {table!r} already exists in {store.url}; pass if_exists='replace', 'append' or 'upsert'"
            )
        if existing is None or if_exists == "replace":
            if existing is None:
                _check_case(store, table)
            if not fresh:
                key_cols, _ = keys.choose(df, key, None, table, upsert)
                fresh.append(_mapper.schema(df, key_cols))
            return Plan(fresh[0], "insert", create=True)
        key_cols, loose = keys.choose(df, key, existing, table, upsert)
        if loose and not upsert:  # a table without a key takes appends as they are
            key_cols, loose = None, False
        return _planned(df, existing, key_cols, loose, table, new_columns, "upsert" if upsert else "insert")

    job = Job("save", store.backend, store.url, table, frames, plan, again=again, new_columns=new_columns)
    if store.scheme != "memory" and getattr(store, "borrowed", None) is None:  # other processes can open it
        job.spec = (store._url, store._options)
    res = _run(job, errors, chunksize, progress, dry_run, track_changes)
    if dry_run and (isinstance(data, pd.DataFrame) or again is not None or isinstance(frames, list)):
        res._commit = functools.partial(
            save,
            data,
            store,
            table,
            key=key,
            if_exists=if_exists,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            track_changes=track_changes,
            new_columns=new_columns,
        )
    return res


def update_batch(
    df: pd.DataFrame,
    store: Store | str,
    table: str,
    key: str | Sequence[str] | None = None,
    insert_missing: bool = False,
    errors: str = "collect",
    chunksize: int | None = None,
    progress: bool | None = None,
    dry_run: bool = False,
    track_changes: bool = False,
    new_columns: str = "fail",
) -> BatchResult:
    """Change the columns present in the frame on the rows of the table with the same key.

    The table's other columns stay as they are. A key not in the table fails with stage `"missing"`,
    unless `insert_missing=True` inserts its row.

    Args:
        df: The frame: the key and the columns to change; or an iterable of frames, as for `save`.
        store: A Store, a store's URL (`"sqlite:///flights.db"`, `"postgresql://..."`: see `connect`), or a
            connection you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
        table: The table's name.
        key: The key column(s), a name or a list of names, as columns or index levels. Default: the table's
            own key when it exists; else a column `id`; else `record_id`; else the index when it is named.
        insert_missing: Insert the rows whose key is not in the table (an upsert of the given columns)
            instead of failing them.
        errors: `"collect"` writes every row that can be written and reports each one that cannot;
            `"raise"` is all or nothing: if any row fails nothing is written and `BatchError` is raised.
        chunksize: Rows per write (default: the store's own, about a million cells a chunk).
        progress: A progress bar: True, False, or None for one on long writes in a terminal or notebook.
        dry_run: Do everything, asking the store too (constraints, key conflicts), then leave the table as
            it was: the result says what would have happened (`res.changes`); `res.commit()` runs it for real.
        track_changes: Also on a real call, record `res.changes` (each written row's action, and the changed
            columns' values before and after); it costs one read of the touched keys.
        new_columns: `"fail"`: a frame column the table lacks raises `SchemaMismatchError` before anything
            is written; `"add"`: such columns are added to the table (rows already stored read back as
            missing in them).

    Returns:
        The report: `total`, `succeeded`, `failed`, `failures` (one line per failed row: position, index,
            key, stage, error, message, code) and `failed_rows()`, the failed input rows ready to resubmit.

    Raises:
        TableNotFoundError: There is no such table.
        KeyRequiredError: No key could be resolved.
        SchemaMismatchError: The frame does not fit the table (its key, or a column it lacks).
        BatchError: `errors="raise"` and a row failed: nothing was written; `.result` is the report.
        InvalidArgumentError: A bad argument (an option value, a table or column name, a Series).
    """
    _check_option("new_columns", new_columns, NEW_COLUMNS)
    data, (frames, df, again) = df, _input(df)
    _check_common(df, table, errors, chunksize)
    store = as_store(store)

    def plan(existing: TableSchema | None) -> Plan:
        existing = _found(store, table, existing)
        key_cols, loose = keys.choose(df, key, existing, table, "update_batch")
        return _planned(df, existing, key_cols, loose, table, new_columns, "upsert" if insert_missing else "update")

    job = Job("update_batch", store.backend, store.url, table, frames, plan, again=again, new_columns=new_columns)
    res = _run(job, errors, chunksize, progress, dry_run, track_changes)
    if dry_run and (isinstance(data, pd.DataFrame) or again is not None or isinstance(frames, list)):
        res._commit = functools.partial(
            update_batch,
            data,
            store,
            table,
            key=key,
            insert_missing=insert_missing,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            track_changes=track_changes,
            new_columns=new_columns,
        )
    return res


def delete(
    df: pd.DataFrame,
    store: Store | str,
    table: str,
    key: str | Sequence[str] | None = None,
    errors: str = "collect",
    chunksize: int | None = None,
    progress: bool | None = None,
    dry_run: bool = False,
    track_changes: bool = False,
) -> BatchResult:
    """Delete the rows of the table whose key is in the frame; a key not in the table fails with stage
    `"missing"`.

    Args:
        df: The frame of keys (other columns are ignored); or an iterable of frames, as for `save`.
        store: A Store, a store's URL (`"sqlite:///flights.db"`, `"postgresql://..."`: see `connect`), or a
            connection you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
        table: The table's name.
        key: The key column(s), a name or a list of names, as columns or index levels. Default: the table's
            own key when it exists; else a column `id`; else `record_id`; else the index when it is named.
        errors: `"collect"` writes every row that can be written and reports each one that cannot;
            `"raise"` is all or nothing: if any row fails nothing is written and `BatchError` is raised.
        chunksize: Rows per write (default: the store's own, about a million cells a chunk).
        progress: A progress bar: True, False, or None for one on long writes in a terminal or notebook.
        dry_run: Do everything, asking the store too (constraints, key conflicts), then leave the table as
            it was: the result says what would have happened (`res.changes`); `res.commit()` runs it for real.
        track_changes: Also on a real call, record `res.changes` (each written row's action, and the changed
            columns' values before and after); it costs one read of the touched keys.

    Returns:
        The report: `total`, `succeeded`, `failed`, `failures` (one line per failed row: position, index,
            key, stage, error, message, code) and `failed_rows()`, the failed input rows ready to resubmit.

    Raises:
        TableNotFoundError: There is no such table.
        KeyRequiredError: No key could be resolved.
        BatchError: `errors="raise"` and a row failed: nothing was deleted; `.result` is the report.
        InvalidArgumentError: A bad argument (an option value, a table name, a Series).
    """
    data, (frames, df, again) = df, _input(df)
    _check_common(df, table, errors, chunksize)
    store = as_store(store)

    def plan(existing: TableSchema | None) -> Plan:
        existing = _found(store, table, existing)
        key_cols, loose = keys.choose(df, key, existing, table, "delete")
        return Plan(replace(existing, key=key_cols, loose=True) if loose else existing, "delete")

    job = Job("delete", store.backend, store.url, table, frames, plan, again=again)
    res = _run(job, errors, chunksize, progress, dry_run, track_changes)
    if dry_run and (isinstance(data, pd.DataFrame) or again is not None or isinstance(frames, list)):
        res._commit = functools.partial(
            delete,
            data,
            store,
            table,
            key=key,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            track_changes=track_changes,
        )
    return res


@overload
def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where: Filters | None = None,
    order_by: OrderBy | None = None,
    limit: int | None = None,
    chunksize: None = None,
    version: int | None = None,
    as_of: datetime | str | None = None,
) -> pd.DataFrame: ...


@overload
def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where: Filters | None = None,
    order_by: OrderBy | None = None,
    limit: int | None = None,
    *,
    chunksize: int,
    version: int | None = None,
    as_of: datetime | str | None = None,
) -> Iterator[pd.DataFrame]: ...


@overload
def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where: Filters | None = None,
    order_by: OrderBy | None = None,
    limit: int | None = None,
    chunksize: int | None = None,
    version: int | None = None,
    as_of: datetime | str | None = None,
) -> pd.DataFrame | Iterator[pd.DataFrame]: ...


def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where: Filters | None = None,
    order_by: OrderBy | None = None,
    limit: int | None = None,
    chunksize: int | None = None,
    version: int | None = None,
    as_of: datetime | str | None = None,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Read a table back with the dtypes, column order and index it was saved with.

    Rows come back ordered by key, or in insertion order for a table without one. Filters, order and
    limit run in the store (SQL, Parquet row-group statistics), never after reading everything.

    Args:
        store: A Store, a store's URL (`"sqlite:///flights.db"`, `"postgresql://..."`: see `connect`), or a
            connection you hold (`sqlite3`, SQLAlchemy, ADBC, psycopg, DuckDB), never closed by the call.
        table: The table's name.
        columns: The columns to read, by their labels, in the order wanted (the index comes back whole).
            Default: all of them.
        where: Filters: a list of `(column, op, value)` tuples joined by AND, or a list of such lists
            joined by OR, op one of `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in` (these two take a
            list), as pandas' `read_parquet(filters=...)` takes them; e.g. `[("dep_delay", ">", 60),
            ("carrier", "in", ["AA", "UA"])]`. A missing value (None, NaN, NaT) compares with `==` and
            `!=` only. Date and time columns take a Timestamp, datetime, date, `np.datetime64` or ISO
            string; a naive value against a zoned column is read in the column's zone.
        order_by: The rows' order: a column, a `(column, "asc" | "desc")` pair, or a list of those, e.g.
            `[("dep_delay", "desc"), "id"]`; ties then go by key (or insertion order).
        limit: At most this many rows (after `where` and `order_by`).
        chunksize: Return an iterator of frames of at most this many rows instead of one frame (memory
            bounded by one chunk; without an index the row numbers run on across chunks).
        version: Read the table as it was at this version, on stores that keep history (`delta://`);
            `store.history(table)` lists the versions.
        as_of: Read the version that was current at this time (a timestamp, datetime or ISO string;
            naive means UTC), on stores that keep history.

    Returns:
        The frame; with `chunksize`, an iterator of frames.

    Raises:
        TableNotFoundError: There is no such table (the message lists the tables there), or no store at
            all where the URL points (a SQLite file that does not exist: the message names its absolute
            path, and nothing is created).
        InvalidArgumentError: An unknown column, a bad filter, order, limit or chunksize, or `version`/
            `as_of` on a store that keeps no history.
    """
    check_table_name(table)
    store = as_store(store)
    earlier = version is not None or as_of is not None
    if earlier:
        schema = store.backend.schema_at(table, version=version, as_of=as_of)
    else:
        schema = _found(store, table, store.backend.schema(table))
    if columns is None:
        selected = schema.names
    else:
        selected = _select(schema, columns, table)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InvalidArgumentError(f"limit= must be a non-negative int, got {limit!r}")
    if chunksize is not None and (not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1):
        raise InvalidArgumentError(f"chunksize= must be a positive int, got {chunksize!r}")
    filters = normalize(where, schema)
    order = order_terms(order_by, schema)
    view = TableSchema(columns=[schema.column(n) for n in selected], key=schema.key, index_names=schema.index_names)
    batch_rows = chunksize or 1_000_000
    if earlier:
        batches = store.backend.read_version(
            table, schema, selected, filters, order, limit, batch_rows, version=version, as_of=as_of
        )
    else:
        batches = store.backend.read(table, schema, selected, filters, order, limit, batch_rows)
    if chunksize:
        return _chunks(batches, view)
    tables = list(batches)
    data = pa.concat_tables(tables) if tables else view.arrow_schema.empty_table()
    return _mapper.to_pandas(data, view)


# -- helpers ---------------------------------------------------------------------------------


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


def _run(job: Job, errors: str, chunksize, progress, dry_run: bool, track_changes: bool) -> BatchResult:
    job.errors, job.chunksize, job.progress = errors, chunksize, progress
    job.dry_run, job.track = bool(dry_run), bool(track_changes)
    return BatchWriter(_mapper).run(job)


def _chunks(batches, view: TableSchema) -> Iterator[pd.DataFrame]:
    start = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        frame = _mapper.to_pandas(batch, view)
        if not view.index_columns:
            frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


def _found(store: Store, table: str, schema: TableSchema | None) -> TableSchema:
    if schema is None:
        raise TableNotFoundError(store._no_table(table))
    return schema


def _check_case(store: Store, table: str) -> None:
    """Refuse a new table whose name differs only by case from one already there: SQLite and
    case-insensitive file systems cannot keep such names apart, so no store takes them."""
    folded = table.casefold()
    other = next((t for t in store.backend.tables() if t.casefold() == folded and t != table), None)
    if other is not None:
        raise InvalidArgumentError(
            f"table {table!r} differs only by case from table {other!r} in {store.url}; use {other!r} or another name"
        )


def _select(schema: TableSchema, columns, table: str) -> list[str]:
    """The stored names of the data columns asked for, in the caller's order, then the index levels."""
    if isinstance(columns, (str, int)) or not isinstance(columns, Iterable):
        raise InvalidArgumentError(f"columns= takes a list of column names, got {columns!r}")
    columns = list(columns)
    labels = [c.pandas_label for c in schema.data_columns]
    by_label = {c.pandas_label: c.name for c in schema.data_columns} | {c.name: c.name for c in schema.columns}
    unknown = [c for c in columns if not isinstance(c, (str, int)) or c not in by_label]
    if unknown:
        raise InvalidArgumentError(f"columns {unknown} are not in table {table!r}; columns: {labels}")
    asked = [by_label[c] for c in columns]
    repeated = sorted({c for c in columns if asked.count(by_label[c]) > 1}, key=str)
    if repeated:
        raise InvalidArgumentError(f"columns= names {repeated} more than once; name each column once")
    return [n for n in asked if not schema.column(n).index] + [c.name for c in schema.index_columns]


def _planned(
    df: pd.DataFrame, existing: TableSchema, key_cols, loose: bool, table: str, new_columns: str, mode: str
) -> Plan:
    """The plan of a write into an existing table: its columns checked against the frame's (TypeMapper.fit);
    a `loose` key (key= on a table without one) is what this call matches rows by, and is not stored."""
    schema, changed, added = _mapper.fit(df, existing, table, new_columns)
    if loose:
        schema = replace(schema, key=key_cols, loose=True)
    return Plan(schema, mode, schema_changed=changed, added=tuple(added))


def _check_option(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InvalidArgumentError(f"{name}={value!r} is not valid; use one of {', '.join(map(repr, allowed))}")


def _check_common(df, table, errors, chunksize) -> None:
    _frame_at(df, None)
    check_table_name(table)
    _check_option("errors", errors, ERRORS)
    if chunksize is not None and (not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1):
        raise InvalidArgumentError(f"chunksize= must be a positive int, got {chunksize!r}")
    if len(df.columns) == 0 and is_default_index(df.index):
        raise InvalidArgumentError(
            f"the frame has {len(df):,} rows and no columns (and only a default index): nothing to store in {table!r}"
        )
    check_column_names(df)
