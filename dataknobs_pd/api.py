"""The public operations: save, update_batch, delete, load. Orchestration only, no backend details."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import pandas as pd
import pyarrow as pa

from . import keys
from .batch import BatchWriter, Job, Plan
from .errors import (
    InvalidArgumentError,
    KeyRequiredError,
    SchemaMismatchError,
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
    """Write `df` to `table`: create it, replace it, append to it or upsert into it by key.

    `df` may also be an iterable of frames (say pd.read_csv(path, chunksize=...)): one call, one
    report, rows counted across the whole stream, memory bounded by one frame.
    """
    _check_option("if_exists", if_exists, IF_EXISTS)
    _check_option("new_columns", new_columns, NEW_COLUMNS)
    data, (frames, df, again) = df, _input(df)
    _check_common(df, table, errors, chunksize)
    store = as_store(store)
    key_cols = keys.resolve(df, key)
    if if_exists == "upsert":
        keys.require(key_cols, "save(if_exists='upsert')", table)
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
                fresh.append(_mapper.schema(df, key_cols))
            return Plan(fresh[0], "insert", create=True)
        schema, changed, added = _fit(df, existing, key_cols, table, new_columns)
        return Plan(schema, "upsert" if if_exists == "upsert" else "insert", schema_changed=changed, added=tuple(added))

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
    """Change the columns present in `df` on the rows whose key is in the table.

    A key not in the table fails with stage "missing", unless insert_missing=True inserts it.
    `df` may also be an iterable of frames, as for `save`.
    """
    _check_option("new_columns", new_columns, NEW_COLUMNS)
    data, (frames, df, again) = df, _input(df)
    _check_common(df, table, errors, chunksize)
    store = as_store(store)
    key_cols = keys.require(keys.resolve(df, key), "update_batch", table)

    def plan(existing: TableSchema | None) -> Plan:
        schema, changed, added = _fit(df, _found(store, table, existing), key_cols, table, new_columns)
        return Plan(schema, "upsert" if insert_missing else "update", schema_changed=changed, added=tuple(added))

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
    """Delete the rows whose key appears in `df` (a frame or an iterable of frames); keys not in the
    table fail with stage "missing"."""
    data, (frames, df, again) = df, _input(df)
    _check_common(df, table, errors, chunksize)
    store = as_store(store)
    key_cols = keys.require(keys.resolve(df, key), "delete", table)

    def plan(existing: TableSchema | None) -> Plan:
        existing = _found(store, table, existing)
        _same_key(existing, key_cols, table)
        return Plan(existing, "delete")

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
    where=None,
    order_by=None,
    limit: int | None = None,
    chunksize: None = None,
    version: int | None = None,
    as_of=None,
) -> pd.DataFrame: ...


@overload
def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where=None,
    order_by=None,
    limit: int | None = None,
    *,
    chunksize: int,
    version: int | None = None,
    as_of=None,
) -> Iterator[pd.DataFrame]: ...


@overload
def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where=None,
    order_by=None,
    limit: int | None = None,
    chunksize: int | None = None,
    version: int | None = None,
    as_of=None,
) -> pd.DataFrame | Iterator[pd.DataFrame]: ...


def load(
    store: Store | str,
    table: str,
    columns: Sequence | None = None,
    where=None,
    order_by=None,
    limit: int | None = None,
    chunksize: int | None = None,
    version: int | None = None,
    as_of=None,
) -> pd.DataFrame | Iterator[pd.DataFrame]:
    """Read a table back with the dtypes, column order and index it was saved with.

    version= (a version number) or as_of= (a timestamp; naive means UTC) read an earlier version
    on stores that keep history (delta://); store.history(table) lists them.
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


def _frame_at(f, i: int) -> pd.DataFrame:
    if not isinstance(f, pd.DataFrame):
        raise InvalidArgumentError(f"item {i} of the input is a {type(f).__name__}, not a pandas DataFrame")
    return f


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
        raise TableNotFoundError(f"no table {table!r} in {store.url}; tables: {store.tables()}")
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


def _same_key(existing: TableSchema, key_cols: list[str] | None, table: str) -> None:
    if existing.key is None:
        if key_cols:
            raise KeyRequiredError(
                f"table {table!r} was saved without a key, so rows cannot be matched by {key_cols}; "
                f"save it again with key=... (if_exists='replace')"
            )
        return
    if key_cols and list(key_cols) != list(existing.key):
        raise SchemaMismatchError(
            f"the frame's key {key_cols} differs from the key {existing.key} of table {table!r}; "
            f"pass key={existing.key!r}"
        )


def _fit(
    df: pd.DataFrame, existing: TableSchema, key_cols, table: str, new_columns: str
) -> tuple[TableSchema, bool, list]:
    """Check `df`'s key against the stored table, then its columns (TypeMapper.fit)."""
    if existing.key and key_cols is None:
        key_cols = existing.key if all(_has(df, k) for k in existing.key) else None
    _same_key(existing, key_cols, table)
    if existing.key:
        missing = [k for k in existing.key if not _has(df, k)]
        if missing:
            raise SchemaMismatchError(f"the frame lacks key column(s) {missing} of table {table!r}")
    schema, changed, added = _mapper.fit(df, existing, table, new_columns)
    return schema, changed, added


def _has(df: pd.DataFrame, name: str) -> bool:
    return name in map(str, df.columns) or name in [str(n) for n in df.index.names if n is not None]


def _check_option(name: str, value, allowed) -> None:
    if value not in allowed:
        raise InvalidArgumentError(f"{name}={value!r} is not valid; use one of {', '.join(map(repr, allowed))}")


def _check_common(df, table, errors, chunksize) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InvalidArgumentError(f"expected a pandas DataFrame, got {type(df).__name__}")
    check_table_name(table)
    _check_option("errors", errors, ERRORS)
    if chunksize is not None and (not isinstance(chunksize, int) or isinstance(chunksize, bool) or chunksize < 1):
        raise InvalidArgumentError(f"chunksize= must be a positive int, got {chunksize!r}")
    if len(df.columns) == 0 and is_default_index(df.index):
        raise InvalidArgumentError(
            f"the frame has {len(df):,} rows and no columns (and only a default index): nothing to store in {table!r}"
        )
    check_column_names(df)
