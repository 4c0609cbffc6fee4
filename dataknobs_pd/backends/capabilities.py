"""What a store can do beyond the core verbs of `Backend`: one protocol per capability, checked with isinstance.

The engine, the api and the Dask layer ask these, never a store's scheme. A backend has a capability by
defining its methods (the protocols are structural); each ships a contract mixin in `dataknobs_pd.testing`
that a backend with the capability runs beside the core contract.

- `ParallelLoad`: a new table's rows taken from many processes at once (the partitions of a Dask
  DataFrame), into a table aside that one commit swaps in (aside.py). PostgreSQL, the file stores, Delta.
- `History`: earlier versions of a table kept, listed and read (time travel). Delta.
- `KeyedRead`: the stored rows of given keys read through a join on the keys staged in the store, rather
  than `in` filters (change tracking, dry runs, before-images, undo). SQLite and PostgreSQL.
- `ImagesRead`: a call's before-images read beside the rows they are of now, in one join in the store (dk.undo):
  the keys never leave the store to be staged again. SQLite and PostgreSQL.
- `StoreImages`: the before-images of an undoable write (images.py) copied by the store itself, from the
  rows the write is about to change into the table's undo table, through the write's own stage: no rows
  read back into Python. SQLite and PostgreSQL; the other stores' images are made from a keyed read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from ..schema import TableSchema


@runtime_checkable
class ParallelLoad(Protocol):
    """A new table loaded by many writers at once.

    The driver opens the table aside; each partition's writer, in another process, clears what an earlier
    try of its partition wrote and adds its rows, in one transaction of its own; the driver takes out the
    rows it rejects (a key an earlier partition holds) and swaps the table in at one commit.
    """

    def open_aside(self, table: str, schema: TableSchema) -> str | None:
        """Create, committed at once, an empty table of `schema`'s columns (no key, hidden from `tables`)
        for writers in other processes to fill; its name, or None when this table cannot be loaded so
        (e.g. too wide for the store's table aside)."""
        ...

    def clear_aside(self, aside: str, part: int, schema: TableSchema) -> None:
        """Remove the rows of partition `part` (what an earlier try of it wrote), in the caller's transaction."""
        ...

    def write_aside(self, aside: str, part: int, data: pa.Table, schema: TableSchema, rows: np.ndarray) -> None:
        """Add `data`, rows `rows` of partition `part`, in the caller's transaction."""
        ...

    def take_aside(self, aside: str, schema: TableSchema, part: int, rows: np.ndarray, keys: pa.Table) -> pa.Table:
        """Remove rows `rows` of partition `part` (whose keys are `keys`) and return them (all columns, logical
        types, in that order)."""
        ...

    def swap_in(self, aside: str, table: str, schema: TableSchema) -> None:
        """Make the aside table `table` (there is none of that name now), with `schema`, its key included,
        in the call's transaction."""
        ...

    def drop_aside(self, aside: str) -> None:
        """Remove the aside table, if it is still there."""
        ...


@runtime_checkable
class History(Protocol):
    """Earlier versions of each table, kept by the store: listed, and read by number or by time."""

    def history(self, table: str) -> list[dict]:
        """The table's versions, newest first: version, timestamp, operation, rows ..."""
        ...

    def schema_at(self, table: str, version: int | None = None, as_of=None) -> TableSchema:
        """The dk schema of an earlier version (by number, or the one current at `as_of`)."""
        ...

    def read_version(
        self,
        table: str,
        schema: TableSchema,
        columns: list[str],
        where: list,
        order: list,
        limit: int | None,
        batch_rows: int,
        version: int | None = None,
        as_of=None,
    ) -> Iterator[pa.Table]:
        """`Backend.read` of an earlier version of the table."""
        ...

    def last_version(self, table: str) -> int | None:
        """The version the calling thread's last commit of `table` created."""
        ...


def no_history(url: str) -> str:
    """What to say when versions are asked of a store that keeps none."""
    return f"{url.split('://', 1)[0]}:// keeps no history of its tables; versions are kept by delta:// stores"


@runtime_checkable
class KeyedRead(Protocol):
    """The rows of given keys, read by joining the keys staged in the store."""

    def read_keys(self, table: str, schema: TableSchema, keys: pa.Table, columns: list[str]) -> pa.Table:
        """The stored rows whose key (`schema.key`) is a row of `keys`, with `columns` in their logical types, in
        any order; in the caller's transaction when there is one (its own writes are seen)."""
        ...


IMAGE_COLUMNS = ("dk_batch_id", "dk_action", "dk_columns", "dk_after")  # an undo table's own, first


@dataclass(frozen=True)
class Images:
    """What a write with before-images copies into the undo table (its layout: images.py)."""

    table: str  # the undo table
    schema: TableSchema  # its schema
    batch_id: str
    columns: str  # the columns the call writes (a JSON list), for every image row
    after: pa.Array | None  # per row of the data: the hash of its written values (None for a delete)

    def slice(self, lo: int, n: int) -> Images:
        return self if self.after is None else replace(self, after=self.after.slice(lo, n))


@runtime_checkable
class ImagesRead(Protocol):
    """A call's before-images and the rows they are of now, read in one join."""

    def written_by(self, undo: str, batch_id: str) -> list[str]:
        """The lists of columns (`dk_columns`, JSON) the images of call `batch_id` in undo table `undo` name,
        each once."""
        ...

    def read_images(
        self,
        table: str,
        schema: TableSchema,
        undo: str,
        undo_schema: TableSchema,
        batch_id: str,
        kept: list[str],
        columns: list[str],
    ) -> tuple[pa.Table, pa.Table]:
        """The columns `kept` of the rows of undo table `undo` (schema `undo_schema`) kept by call `batch_id`, in
        the order they were kept; and beside each, `columns` (the key among them) of the row of `table` with
        its key now, in their logical types (nulls where there is none). One row of `table` per key
        (`schema.key` is its own); in the caller's transaction."""
        ...


@runtime_checkable
class StoreImages(Protocol):
    """Before-images copied by the store, in the write's transaction, from the rows it is about to change."""

    def write_imaged(self, table: str, data: pa.Table, schema: TableSchema, mode: str, images: Images):
        """`Backend.write` of `data` (mode update or upsert), or `Backend.delete` of the keys `data` (mode
        delete), that first adds to `images.table` one row per row it will change: for a row it updates, the
        key and the stored values of the columns it writes (action 'update'); for a row it adds, the key
        alone ('insert'); for a row it deletes, the whole stored row ('delete'). Returns what write or
        delete returns."""
        ...
