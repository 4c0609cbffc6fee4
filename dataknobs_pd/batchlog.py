"""The batch log: one row per writing call of a table, written in the call's own transaction.

`table__batches` holds, for each call that was committed: its id, when it ran (UTC), what it was, its
counts, how many rows it quarantined, whether it kept before-images (`undoable`), the version of the table it
made (`version`: Delta's table version, the file stores' manifest version; None on stores without numbered
versions), the id of the undo that undid it (`undone_by`), and the key columns its rows were matched by
(JSON). `store.batches(table)` reads it.

On the file stores and Delta the table's own publish is the commit point of its log, quarantine and undo
images (see companions.py): a row of a call that never committed is not read.
"""

from __future__ import annotations

import functools
import json
import secrets
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa

from . import companions
from .backends.base import Backend
from .errors import InternalError
from .schema import TableSchema

COLUMNS = [
    "batch_id",
    "time",
    "operation",
    "total",
    "succeeded",
    "failed",
    "quarantined",
    "undoable",
    "version",
    "undone_by",
    "key",
]


def new_id() -> str:
    """A batch id: when (UTC, to the microsecond) and a random part; ids sort by time."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"


def record(
    backend: Backend,
    table: str,
    batch_id: str,
    operation: str,
    counts: tuple[int, int, int],
    quarantined: int,
    undoable: bool,
    key: list[str] | None,
    version: int | None = None,
) -> None:
    """Add the call's row to the log, inside the call's transaction (built as Arrow: a log row costs little)."""
    total, succeeded, failed = counts
    if version is None:
        version = backend.next_version(table)
    values = [
        batch_id,
        datetime.now(UTC),
        operation,
        total,
        succeeded,
        failed,
        quarantined,
        undoable,
        version,
        None,
        json.dumps(key),
    ]
    schema = _schema()
    fields = pa.schema([c.field for c in schema.columns])
    row = pa.Table.from_pylist([dict(zip(COLUMNS, values))], schema=fields)
    log = companions.name(table, companions.LOG)
    backend.write(log, row, companions.ensure(backend, log, schema), "insert")


@functools.cache
def _schema() -> TableSchema:
    """The log's schema: its columns in their dtypes, keyed by batch_id."""
    return companions.mapper.schema(_empty(), ["batch_id"])


def batches(backend: Backend, table: str) -> pd.DataFrame:
    """The log of `table`, oldest call first (an empty frame of its columns when there is none)."""
    out = companions.read(backend, companions.name(table, companions.LOG))
    if out is None:
        return _empty()
    return out.sort_values(["time", "batch_id"], ignore_index=True)[COLUMNS]


def entry(backend: Backend, table: str, batch_id: str) -> dict | None:
    """The log row of one call, or None."""
    out = companions.read(backend, companions.name(table, companions.LOG), [("batch_id", "==", batch_id)])
    if out is None or not len(out):
        return None
    return out.iloc[0].to_dict()


def mark_undone(backend: Backend, table: str, batch_id: str, by: str) -> None:
    """Note in the log that `by` undid `batch_id`, inside the undo's transaction."""
    log = companions.name(table, companions.LOG)
    schema = backend.schema(log)
    if schema is None:
        raise InternalError(f"table {table!r} has no batch log")
    row = pd.DataFrame(
        {"batch_id": pd.Series([batch_id], dtype="string"), "undone_by": pd.Series([by], dtype="string")}
    )
    data, _ = companions.mapper.to_arrow(row, schema, False)
    backend.write(log, data, schema, "update")


def _empty() -> pd.DataFrame:
    dtypes = {"time": "datetime64[us, UTC]", "version": "Int64", "undoable": "bool"}
    ints = {"total", "succeeded", "failed", "quarantined"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "int64" if c in ints else "string")) for c in COLUMNS})
