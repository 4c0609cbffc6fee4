"""The Backend interface: small, Arrow in and Arrow out; backends report facts, not failures.

A backend stores tables of Arrow data with their dk schema. `write` is all or nothing for
the chunk it is given, except for the rows its mode leaves out by key (insert: keys already
in the table; update: keys not in it; insert and upsert: new rows when the data lacks a
required column, see failures.inserted): it returns which rows' keys existed, and the
engine turns that into failures (failures.classify). Anything else makes it raise
`WriteError`, classified with the store's own code; the engine then narrows the chunk down.
`prepare` names the values the store cannot hold exactly (failures.Unholdable).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager

import numpy as np
import pyarrow as pa

from ..failures import Unholdable
from ..schema import TableSchema


class Backend(ABC):
    """One store. Instances are shared by the Stores of one `pool_key`; they must be safe to share."""

    #: the Store over a connection the user lent, kept alive by its backend while a read still uses it
    borrowed_store: object | None = None

    #: True: only this process can reach the store (it lives in its memory, or on a connection the user
    #: lent): nothing opens it elsewhere (Store.address is None)
    in_process = False

    #: rows per chunk are chosen so that a chunk holds about this many cells
    chunk_cells = 1_000_000

    #: True: the engine may hand `prepare` and `write` a category column (kind "category", not a key column)
    #: as an Arrow dictionary array (the frame's categories, their values of the column's Arrow type) instead
    #: of its values, and `read` may return such a column dictionary-encoded (see `conform`)
    accepts_dictionary = False

    def __init__(self, url: str, **options):
        self.url = url
        self.options = options

    @classmethod
    def pool_key(cls, url: str, options: dict) -> tuple:
        """What Stores share one instance by in a process: the same URL and options by default; a backend
        over a file says which file (however the URL spells it)."""
        return (url, tuple(sorted((k, repr(v)) for k, v in options.items())))

    # -- catalogue -------------------------------------------------------------------
    @abstractmethod
    def tables(self) -> list[str]:
        """User tables, sorted."""

    def missing(self) -> str | None:
        """Why there is no store at all where the URL points, said to the user when a table is not found
        (a database file that does not exist, and that only a write creates); None when the store is there."""
        return None

    @abstractmethod
    def schema(self, table: str) -> TableSchema | None:
        """The stored dk schema, or None when the table does not exist."""

    @abstractmethod
    def create(self, table: str, schema: TableSchema) -> None:
        """Create an empty table (replacing nothing) and store its schema."""

    @abstractmethod
    def set_schema(self, table: str, schema: TableSchema) -> None:
        """Replace the stored dk schema of an existing table (same columns and types)."""

    @abstractmethod
    def drop(self, table: str) -> None:
        """Remove the table and its schema; a missing table is not an error."""

    @abstractmethod
    def add_columns(self, table: str, columns: list) -> None:
        """Add nullable columns (schema.Column) to an existing table; its stored rows hold no value in them.
        The engine stores the new dk schema with set_schema right after, in the same transaction."""

    def vacuum(self, table: str, retention: float | None = None) -> list[str]:
        """Remove what no reader of the table's current version needs (file stores); the names removed."""
        return []

    # -- data ------------------------------------------------------------------------
    def prepare(self, data: pa.Table, schema: TableSchema) -> tuple[pa.Table, dict[int, Unholdable]]:
        """Leave out the rows holding values this store cannot keep exactly, and say which and why."""
        return data, {}

    @abstractmethod
    def write(self, table: str, data: pa.Table, schema: TableSchema, mode: str) -> np.ndarray | None:
        """Write a chunk in `mode` (insert, upsert, update); return which rows' keys were in the table
        before (a bool per row; None when none were, or for an upsert that leaves out no row).
        Raise WriteError when the store refuses it."""

    @abstractmethod
    def delete(self, table: str, keys: pa.Table, schema: TableSchema) -> np.ndarray:
        """Delete the rows whose key is in `keys`; return which keys were in the table."""

    @abstractmethod
    def read(
        self,
        table: str,
        schema: TableSchema,
        columns: list[str],
        where: list,
        order: list,
        limit: int | None,
        batch_rows: int,
    ) -> Iterator[pa.Table]:
        """Yield the selected rows in batches of at most `batch_rows`, in the logical Arrow types.

        `where` is normalized (see filters.normalize); `order` is [(column, ascending)],
        and when it is empty rows come in key order, or in insertion order without a key.
        """

    # What a store can do beyond these verbs (a parallel load, history) is a capability: see capabilities.py.

    def chunk_rows(self, ncols: int) -> int:
        return max(1, self.chunk_cells // max(1, ncols))

    # -- transactions ----------------------------------------------------------------
    def claim(self, table: str) -> None:  # noqa: B027 - a hook: most stores need nothing here
        """Called first inside a writing transaction, before the engine reads whether `table` exists.

        A store whose transactions do not already serialize writers makes concurrent writers
        of `table` wait here (e.g. a lock held until the transaction ends), so that deciding
        "create or write into" and acting on it cannot interleave with another writer.
        """

    @abstractmethod
    def transaction(self) -> AbstractContextManager:
        """One call's unit of work: committed when the block ends, rolled back if it raises.
        Nested inside another transaction of the same thread, it is a savepoint."""

    @abstractmethod
    def savepoint(self) -> AbstractContextManager:
        """A nested unit inside a transaction, undone alone when the block raises."""

    def close(self) -> None:  # noqa: B027 - a hook: a store with no connections has nothing to release
        """Release connections."""

    def releaser(self) -> Callable[[], object]:
        """What closes this backend's connections while holding nothing of the backend itself: a finalizer
        runs it once the backend is gone (a Store over a connection the user lent). Default: nothing to close."""
        return _nothing

    def next_version(self, table: str) -> int | None:
        """The version of `table` that the open transaction's commit makes, on stores that number a table's
        versions and make one with every call that records itself in the batch log (the file stores' manifest
        version, Delta's table version); None elsewhere. The batch log keeps it (`version`)."""
        return None


def _nothing() -> None:
    return None


#: the suffixes of the tables the engine keeps beside a table (companions.py): its batch log, quarantine and
#: undo images
COMPANIONS = ("__batches", "__quarantine", "__undo")


def publish_order(tables) -> list[str]:
    """The order in which a store that publishes the tables of a transaction one at a time publishes them:
    the tables kept beside a table first, the tables themselves last, so that a failure on the way leaves
    every table of the call as it was (and at worst a record of a call that did not happen)."""
    return sorted(tables, key=lambda t: (not t.endswith(COMPANIONS), t))


def put_rows(stored: pa.Table, changes: pa.Table, at: np.ndarray) -> pa.Table:
    """Put the values of `changes` into rows `at` of `stored`: one take over both, any type."""
    n = stored.num_rows
    pick = np.arange(n)
    pick[at] = n + np.arange(len(at))
    pick = pa.array(pick)
    cols = []
    for f in stored.schema:
        col = stored.column(f.name)
        if f.name in changes.column_names:
            both = pa.chunked_array(col.chunks + changes.column(f.name).cast(f.type).chunks, type=f.type)
            col = both.take(pick)
        cols.append(col)
    return pa.table(cols, schema=stored.schema)


def without_rows(data: pa.Table, positions) -> pa.Table:
    """`data` less the rows at `positions` (`data` itself when there are none)."""
    if not len(positions):
        return data
    keep = np.ones(data.num_rows, dtype=bool)
    keep[list(positions)] = False
    return data.filter(pa.array(keep))


def rebatch(
    stream: Iterator[pa.Table], schema: pa.Schema, limit: int | None, rows: int, coded: Collection[str] = ()
) -> Iterator[pa.Table]:
    """Tables of exactly `rows` rows (the last may be shorter) in `schema`, at most `limit` rows in all;
    at least one table, empty when there are no rows. The columns named in `coded` come
    dictionary-encoded (see `conform`)."""
    held: list[pa.Table] = []
    have = sent = 0
    for t in stream:
        if limit is not None and sent + have >= limit:
            break
        t = conform(t, schema, coded)
        if limit is not None:
            t = t.slice(0, limit - sent - have)
        held.append(t)
        have += t.num_rows
        while have >= rows:
            merged = pa.concat_tables(held)
            yield merged.slice(0, rows)
            sent += rows
            rest = merged.slice(rows)
            held, have = [rest], rest.num_rows
    if have or not sent:
        yield pa.concat_tables(held) if held else schema.empty_table()


def conform(t: pa.Table, schema: pa.Schema, coded: Collection[str] = ()) -> pa.Table:
    """Exactly the columns, types and nullability of `schema` (a store may return e.g. a wider type).

    The columns named in `coded` (category columns a store reads dictionary-encoded, only from
    backends with `accepts_dictionary`) are instead dictionary<int32, their type of `schema`>: the
    dictionaries read are kept as they are, not expanded to their values."""
    t = t.select(schema.names).replace_schema_metadata(None)
    if coded:
        schema = pa.schema([f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in coded else f for f in schema])
    if t.schema.equals(schema):
        return t
    return pa.table([t.column(f.name).cast(f.type) for f in schema], schema=schema)


#: the longest name every store takes (PostgreSQL's identifiers), in bytes: the longest companion name
LONGEST_NAME = 63


def companion(table: str, suffix: str) -> str:
    """The name of `table`'s companion of `suffix` (one of COMPANIONS): `{table}{suffix}`, or for a name too long
    for that, its start and a hash of it (`{start}~{hash}{suffix}`), at most LONGEST_NAME bytes."""
    full = f"{table}{suffix}"
    if len(full.encode()) <= LONGEST_NAME:
        return full
    tail = f"~{hashlib.sha1(table.encode()).hexdigest()[:10]}{suffix}"
    start = table.encode()[: LONGEST_NAME - len(tail)].decode(errors="ignore")
    return start + tail


def owners(tables) -> dict[str, str]:
    """The companions among `tables` whose table is among them too, each with its table.

    A store that publishes a transaction's tables one at a time makes the table's own publish the commit point
    of its companions (see files/commit.py and delta/backend.py): a companion published with its table names
    it, and the table's version names that companion version."""
    names = set(tables)
    return {companion(t, s): t for t in names for s in COMPANIONS if companion(t, s) in names}
