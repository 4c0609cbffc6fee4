"""The `dk` DataFrame accessor. Thin and stateless: pandas 3 builds a new one on every access."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import api
from .result import BatchResult
from .store import Store


@pd.api.extensions.register_dataframe_accessor("dk")
class DkAccessor:
    """df.dk.save / update_batch / delete, and pd.DataFrame.dk.load."""

    def __init__(self, df: pd.DataFrame):
        self._df = df

    def save(
        self,
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
        """Write the frame to `table`: create it, replace it, append to it or upsert into it by key.

        store: a Store or a URL ("sqlite:///file.db", "postgresql://...", "parquet:///folder", ...).
        key: the key column(s); default: `id`, else `record_id`, else the named index, else none.
        if_exists: "fail" (TableExistsError), "replace", "append" (existing keys fail) or "upsert".
        errors: "collect" writes every row that can be written and reports the others;
            "raise" writes nothing if any row fails (BatchError, its .result the report).
        chunksize: rows per write (default: the store's own size).
        progress: a progress bar; None shows one on long writes in a terminal or notebook.
        dry_run: do everything, asking the store too, then roll back: the result says what would
            happen (res.changes: each row's action and changed values) and nothing is written.
        track_changes: record res.changes on a real call (one read of the touched keys).
        new_columns: "fail" (SchemaMismatchError for a column the table lacks) or "add" (add it; rows
            already stored hold no value in it).
        """
        return api.save(
            self._df,
            store,
            table,
            key=key,
            if_exists=if_exists,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            new_columns=new_columns,
        )

    def update_batch(
        self,
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
        """Change the frame's columns on the rows of `table` with the same key; the other columns stay.

        A key not in the table fails with stage "missing", unless insert_missing=True inserts the row.
        The other arguments are those of `save`.
        """
        return api.update_batch(
            self._df,
            store,
            table,
            key=key,
            insert_missing=insert_missing,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
            new_columns=new_columns,
        )

    def delete(
        self,
        store: Store | str,
        table: str,
        key: str | Sequence[str] | None = None,
        errors: str = "collect",
        chunksize: int | None = None,
        progress: bool | None = None,
        dry_run: bool = False,
        track_changes: bool = False,
    ) -> BatchResult:
        """Delete the rows of `table` whose key is in the frame; keys not in the table fail as "missing"."""
        return api.delete(
            self._df,
            store,
            table,
            key=key,
            errors=errors,
            chunksize=chunksize,
            progress=progress,
            dry_run=dry_run,
            track_changes=track_changes,
        )

    load = staticmethod(api.load)  # usable as pd.DataFrame.dk.load(store, table, ...)
