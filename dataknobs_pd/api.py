"""The public operations: save, update_batch, delete, load. Orchestration only, no backend details."""

from __future__ import annotations

import functools
import time
from collections.abc import Hashable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeAlias, overload

import pandas as pd
import pyarrow as pa

from . import checks
from .backends.capabilities import History, no_history
from .errors import BatchError, InvalidArgumentError
from .filters import normalize, order_terms
from .names import check_table_name
from .result import BatchResult
from .schema import TableSchema
from .store import Store, as_store
from .writing import WriteOptions, found, mapper, write

Filter: TypeAlias = tuple[Hashable, str, Any]
"""One condition of `where=`: `(column, op, value)`, op one of `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`,
`not in` (these two take a list of values)."""

Filters: TypeAlias = Filter | Sequence[Filter] | Sequence[Sequence[Filter]]
"""`where=` of `load`, in the form of pandas' `read_parquet(filters=...)`: a list of conditions joined
by AND, or a list of such lists joined by OR."""

OrderBy: TypeAlias = Hashable | tuple[Hashable, str] | Sequence[Hashable | tuple[Hashable, str]]
"""`order_by=` of `load`: a column, a `(column, "asc" | "desc")` pair, or a list of those."""


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
    quarantine: bool | None = None,
    max_errors: int | None = None,
    max_error_rate: float | None = None,
    undoable: bool | None = None,
    validate: Any = None,
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
        quarantine: Keep the failed rows, with why they failed and their values as sent, in the table's
            quarantine `{table}__quarantine`, in the same transaction; `dk.quarantined` reads them back after
            a restart, and a later call that writes a key takes its rows out. Default: as `dk.connect` was
            told (False).
        max_errors: More failed rows than this and nothing is written (nor quarantined): `BatchError`.
        max_error_rate: Failed rows above this fraction of the rows (0.01 is 1%) and nothing is written.
        undoable: Keep the before-images of the rows this call changes, in the same transaction, so that
            `dk.undo(store, table, res.batch_id)` can put them back. Default: as `dk.connect` was told.
        validate: A pandera `DataFrameSchema` (or `DataFrameModel`) the frame is checked against first, lazily
            (every failure at once). pandera coerces only where the schema asks, and only for its checks: what
            is written is the frame as given, converted by the package's own rules. A row that fails a check
            fails at stage `validate`, error `Check`, `code` the check's name; the rest are written. A failure of no row (a missing column, a dtype, a check of the
            whole frame) raises `SchemaMismatchError` before anything is written. Needs
            `pip install 'dataknobs-pd[validate]'`.

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
    options = WriteOptions(
        key=key,
        if_exists=if_exists,
        errors=errors,
        chunksize=chunksize,
        progress=progress,
        dry_run=dry_run,
        track_changes=track_changes,
        new_columns=new_columns,
        quarantine=quarantine,
        max_errors=max_errors,
        max_error_rate=max_error_rate,
        undoable=undoable,
        validate=validate,
    )
    return write("save", df, store, table, options)


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
    quarantine: bool | None = None,
    max_errors: int | None = None,
    max_error_rate: float | None = None,
    undoable: bool | None = None,
    validate: Any = None,
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
        quarantine: Keep the failed rows, with why they failed and their values as sent, in the table's
            quarantine `{table}__quarantine`, in the same transaction; `dk.quarantined` reads them back after
            a restart, and a later call that writes a key takes its rows out. Default: as `dk.connect` was
            told (False).
        max_errors: More failed rows than this and nothing is written (nor quarantined): `BatchError`.
        max_error_rate: Failed rows above this fraction of the rows (0.01 is 1%) and nothing is written.
        undoable: Keep the before-images of the rows this call changes, in the same transaction, so that
            `dk.undo(store, table, res.batch_id)` can put them back. Default: as `dk.connect` was told.
        validate: A pandera `DataFrameSchema` (or `DataFrameModel`) the frame is checked against first, lazily:
            only the schema's columns the frame has (a frame of some columns is normal here), and its checks
            of the whole frame only when it has them all. A row that fails a check fails at stage `validate`,
            error `Check`, `code` the check's name; the rest are written. A failure of no row raises
            `SchemaMismatchError` before anything is written. Needs `pip install 'dataknobs-pd[validate]'`.

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
    options = WriteOptions(
        key=key,
        insert_missing=insert_missing,
        errors=errors,
        chunksize=chunksize,
        progress=progress,
        dry_run=dry_run,
        track_changes=track_changes,
        new_columns=new_columns,
        quarantine=quarantine,
        max_errors=max_errors,
        max_error_rate=max_error_rate,
        undoable=undoable,
        validate=validate,
    )
    return write("update_batch", df, store, table, options)


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
    quarantine: bool | None = None,
    max_errors: int | None = None,
    max_error_rate: float | None = None,
    undoable: bool | None = None,
    validate: Any = None,
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
        quarantine: Keep the failed rows, with why they failed and their values as sent, in the table's
            quarantine `{table}__quarantine`, in the same transaction; `dk.quarantined` reads them back after
            a restart, and a later call that writes a key takes its rows out. Default: as `dk.connect` was
            told (False).
        max_errors: More failed rows than this and nothing is written (nor quarantined): `BatchError`.
        max_error_rate: Failed rows above this fraction of the rows (0.01 is 1%) and nothing is written.
        undoable: Keep the before-images of the rows this call changes, in the same transaction, so that
            `dk.undo(store, table, res.batch_id)` can put them back. Default: as `dk.connect` was told.
        validate: A pandera `DataFrameSchema` (or `DataFrameModel`) the frame is checked against first, lazily:
            only the schema's columns the frame has (a frame of some columns is normal here), and its checks
            of the whole frame only when it has them all. A row that fails a check fails at stage `validate`,
            error `Check`, `code` the check's name; the rest are written. A failure of no row raises
            `SchemaMismatchError` before anything is written. Needs `pip install 'dataknobs-pd[validate]'`.

    Returns:
        The report: `total`, `succeeded`, `failed`, `failures` (one line per failed row: position, index,
            key, stage, error, message, code) and `failed_rows()`, the failed input rows ready to resubmit.

    Raises:
        TableNotFoundError: There is no such table.
        KeyRequiredError: No key could be resolved.
        BatchError: `errors="raise"` and a row failed: nothing was deleted; `.result` is the report.
        InvalidArgumentError: A bad argument (an option value, a table name, a Series).
    """
    options = WriteOptions(
        key=key,
        errors=errors,
        chunksize=chunksize,
        progress=progress,
        dry_run=dry_run,
        track_changes=track_changes,
        quarantine=quarantine,
        max_errors=max_errors,
        max_error_rate=max_error_rate,
        undoable=undoable,
        validate=validate,
    )
    return write("delete", df, store, table, options)


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
    validate: Any = None,
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
    validate: Any = None,
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
    validate: Any = None,
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
    validate: Any = None,
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
        validate: A pandera `DataFrameSchema` (or `DataFrameModel`) to check what is read against (each
            chunk, with `chunksize`): rows that fail raise `BatchError`, whose `.result` reports them as a
            write's failures are (stage `validate`, error `Check`, `code` the check) and holds the frame
            read (`failed_rows()`: the failing rows); a failure of no row raises `SchemaMismatchError`.

    Returns:
        The frame; with `chunksize`, an iterator of frames.

    Raises:
        TableNotFoundError: There is no such table (the message lists the tables there), or no store at
            all where the URL points (a SQLite file that does not exist: the message names its absolute
            path, and nothing is created).
        InvalidArgumentError: An unknown column, a bad filter, order, limit or chunksize, or `version`/
            `as_of` on a store that keeps no history.
        BatchError: With `validate=`, rows that fail its checks; `.result` is the report.
    """
    check_table_name(table)
    store = as_store(store)
    earlier = version is not None or as_of is not None
    if earlier:
        if not isinstance(store.backend, History):
            raise InvalidArgumentError(no_history(store.url))
        schema = store.backend.schema_at(table, version=version, as_of=as_of)
    else:
        schema = found(store, table, store.backend.schema(table))
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
    if isinstance(store.backend, History) and earlier:
        batches = store.backend.read_version(
            table, schema, selected, filters, order, limit, batch_rows, version=version, as_of=as_of
        )
    else:
        batches = store.backend.read(table, schema, selected, filters, order, limit, batch_rows)
    checked = (
        None if validate is None else functools.partial(_checked, checks.schema_of(validate), store, table, schema.key)
    )
    if chunksize:
        frames = _chunks(batches, view)
        return frames if checked is None else map(checked, frames)
    tables = list(batches)
    data = pa.concat_tables(tables) if tables else view.arrow_schema.empty_table()
    out = mapper.to_pandas(data, view)
    return out if checked is None else checked(out)


# -- helpers ---------------------------------------------------------------------------------


def _checked(schema, store: Store, table: str, key: list[str] | None, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (read from `table`) when it passes `schema` (load's validate=); else BatchError reporting
    the rows that fail, as a write's report does."""
    start = time.perf_counter()
    failures = checks.failures(schema, frame, table)
    if not failures:
        return frame
    res = BatchResult(
        operation="load",
        table=table,
        url=store.url,
        key=key,
        failures=failures,
        elapsed=time.perf_counter() - start,
        committed=False,
        frame=frame,
    )
    raise BatchError(f"{res.failed:,} of {res.total:,} rows read from {table!r} fail validate=", res)


def _chunks(batches, view: TableSchema) -> Iterator[pd.DataFrame]:
    start = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        frame = mapper.to_pandas(batch, view)
        if not view.index_columns:
            frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame


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
