"""The tables the package keeps beside a table: its batch log, its quarantine and its undo images.

They are ordinary tables of the same store, named after the table (`flights__batches`,
`flights__quarantine`, `flights__undo`), so that any tool reads them; they are written in the transaction of
the call they record, through the same backend verbs as the table itself. `Store.tables()` leaves them out
(while their table is there), and `Store.drop` drops them with their table.

The rule that keeps them true to their table: **a companion's rows count only once the table's own commit
names them.** SQL stores commit a call's tables in one transaction. The file stores and Delta publish them
one at a time, the companions first and the table last (backends/base.py `publish_order`), so the table's
publish is the call's commit point: the companion versions published with it are named in it (the file
stores' manifest `companions`, Delta's commit info `dataknobs_pd.companions`), each such companion version
names its table (`owner`), and every read of a companion (`store.batches`, `dk.quarantined`, the quarantine's
resolver, `dk.undo`'s reads of the log and of the images, `dk.load` of the companion itself) takes the
version the table names. What a call that never committed left there (a crash or a failure between the
publishes: its log row, quarantined rows, images, the rows it took out of the quarantine, its `undone_by`
mark) is never seen, resolved, undone or counted as owed, and the next commit of the companion builds on the
named version (Delta restores it first). A call that changes a companion publishes its table too, so every
logged call made a version of its table (`version` in the log). A table another tool made (no manifest)
cannot name its companions: there they are published as they are.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from .backends.base import Backend, companion
from .errors import InternalError
from .schema import TableSchema
from .types import TypeMapper

LOG, QUARANTINE, UNDO = "batches", "quarantine", "undo"  # backends/base.py COMPANIONS: their suffixes
KINDS = (LOG, QUARANTINE, UNDO)

mapper = TypeMapper()


def name(table: str, kind: str) -> str:
    """The name of `table`'s companion of `kind` (LOG, QUARANTINE or UNDO): `{table}__{kind}`, or for a name
    too long for that, its start and a hash of it (`{start}~{hash}__{kind}`), at most 63 bytes."""
    return companion(table, f"__{kind}")


def of(table: str) -> list[str]:
    return [name(table, k) for k in KINDS]


def hidden(tables: list[str]) -> list[str]:
    """`tables` less the companions of the tables among them."""
    kept = {c for t in tables for c in of(t)}
    return [t for t in tables if t not in kept]


def ensure(backend: Backend, table: str, schema: TableSchema) -> TableSchema:
    """The companion's schema, creating it (empty) when it is not there; inside the caller's transaction."""
    existing = backend.schema(table)
    if existing is not None:
        return existing
    backend.create(table, schema)
    return schema


def append(backend: Backend, table: str, frame: pd.DataFrame, key: list[str]) -> None:
    """Insert the rows of `frame` (its columns in the companion's dtypes) into the companion `table`."""
    schema = ensure(backend, table, mapper.schema(frame, key))
    data, bad = mapper.to_arrow(frame, schema, False)
    if bad:
        raise InternalError(f"a row of {table!r} could not be converted: {next(iter(bad.values())).message}")
    backend.write(table, data, schema, "insert")


def read(
    backend: Backend, table: str, where: list | None = None, columns: list[str] | None = None
) -> pd.DataFrame | None:
    """The companion's rows (those matching `where`, filters as load takes them), or None when it is not there."""
    got = read_arrow(backend, table, where, columns)
    if got is None:
        return None
    schema, data = got
    return mapper.to_pandas(data, TableSchema(columns=[schema.column(n) for n in data.column_names], key=schema.key))


def read_arrow(
    backend: Backend, table: str, where: list | None = None, columns: list[str] | None = None
) -> tuple[TableSchema, pa.Table] | None:
    """The companion's schema and rows as Arrow (those matching `where`), or None when it is not there."""
    from .filters import normalize

    schema = backend.schema(table)
    if schema is None:
        return None
    names = columns or schema.names
    parts = list(backend.read(table, schema, names, normalize(where, schema), [], None, 1 << 30))
    empty = pa.schema([schema.column(n).field for n in names]).empty_table()
    return schema, pa.concat_tables(parts) if parts else empty


def remove(backend: Backend, table: str, keys: pd.DataFrame) -> None:
    """Delete the rows of the companion `table` whose key is a row of `keys`."""
    schema = backend.schema(table)
    if schema is None or not len(keys):
        return
    key = TableSchema(columns=[schema.column(k) for k in schema.key or []], key=schema.key)
    data, bad = mapper.to_arrow(keys.reset_index(drop=True), key, False)
    if bad:
        raise InternalError(f"a key of {table!r} could not be converted")
    backend.delete(table, data, schema)
