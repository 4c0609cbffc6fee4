"""What a store can do beyond the core verbs of `Backend`: one protocol per capability, checked with isinstance.

The engine, the api and the Dask layer ask these, never a store's scheme. A backend has a capability by
defining its methods (the protocols are structural); each ships a contract mixin in `dataknobs_pd.testing`
that a backend with the capability runs beside the core contract.

- `ParallelLoad`: a new table's rows taken from many processes at once (the partitions of a Dask
  DataFrame), into a table aside that one commit swaps in (aside.py). PostgreSQL, the file stores, Delta.
- `History`: earlier versions of a table kept, listed and read (time travel). Delta.
"""

from __future__ import annotations

from collections.abc import Iterator
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
